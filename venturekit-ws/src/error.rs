//! Errors: [`WsError`] for handlers, [`Error`] for the framework's own failures.

use crate::protocol::ErrorCode;
use std::borrow::Cow;

/// The error a `#[ws_action]` handler returns.
///
/// It becomes an error reply to the calling connection:
/// `{"action":"error","requestAction":…,"error":{"code":…,"message":…}}`.
///
/// Any `std::error::Error` converts into it with `?`; such errors are **internal**: the
/// client gets `internal` with a generic message and the details go to the log. Use the
/// constructors for errors the client should see.
///
/// ```
/// use venturekit_ws::WsError;
/// fn check(amount: i64) -> Result<(), WsError> {
///     if amount < 0 {
///         return Err(WsError::bad_request("`amount` must not be negative"));
///     }
///     let _n: i32 = "42".parse()?; // a ParseIntError would become `internal`
///     Ok(())
/// }
/// # check(1).unwrap();
/// ```
pub struct WsError {
    code: ErrorCode,
    message: Cow<'static, str>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl WsError {
    /// An error with the given code and a message the client may read.
    pub fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        WsError {
            code,
            message: message.into(),
            source: None,
        }
    }

    /// `bad_request` with a message for the client.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::BadRequest, message)
    }

    /// `unauthorized` with a message for the client (e.g. "only admins may do this").
    pub fn unauthorized(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::Unauthorized, message)
    }

    /// `forbidden` with a message for the client: authenticated, but not allowed.
    pub fn forbidden(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(ErrorCode::Forbidden, message)
    }

    /// `internal`: the client sees a generic message; `detail` is only logged.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        WsError {
            code: ErrorCode::Internal,
            message: Cow::Borrowed(INTERNAL_MESSAGE),
            source: Some(detail.to_string().into()),
        }
    }

    /// The error code sent to the client.
    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The message sent to the client.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The logged-only cause, if any.
    pub fn source(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        self.source.as_deref()
    }
}

pub(crate) const INTERNAL_MESSAGE: &str = "internal error";

impl<E> From<E> for WsError
where
    E: std::error::Error + Send + Sync + 'static,
{
    fn from(err: E) -> Self {
        WsError {
            code: ErrorCode::Internal,
            message: Cow::Borrowed(INTERNAL_MESSAGE),
            source: Some(Box::new(err)),
        }
    }
}

impl std::fmt::Debug for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("WsError");
        d.field("code", &self.code).field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", &format_args!("{source}"));
        }
        d.finish()
    }
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(source) = &self.source {
            write!(f, " ({source})")?;
        }
        Ok(())
    }
}

/// A failure of the framework itself: configuration, startup, I/O.
///
/// Its `Debug` output is the human-readable message, so `main` returning
/// `Result<(), venturekit_ws::Error>` prints something useful.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An environment variable or setting is missing or invalid.
    #[error("configuration error: {0}")]
    Config(String),
    /// Two registered actions share a name.
    #[error("duplicate action name `{0}`: every action must be registered once")]
    DuplicateAction(String),
    /// An action name is empty or reserved.
    #[error(
        "invalid action name `{0}`: names must be non-empty, not one of `$connect`, `$disconnect`, `$default`, `auth`, `ping`, and not start with `vk:`"
    )]
    ReservedAction(String),
    /// A handler needs app state the app was not given.
    #[error(
        "action `{action}` needs state of type `{type_name}`, but the app was not given one: add `.state(value)` to the App"
    )]
    MissingState {
        /// The action.
        action: String,
        /// The missing state type.
        type_name: String,
    },
    /// The local server could not bind or serve.
    #[error("local server: {0}")]
    Io(#[from] std::io::Error),
    /// The Lambda runtime failed.
    #[error("lambda runtime: {0}")]
    Lambda(String),
}

impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
