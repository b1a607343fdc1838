//! The auth guard (a live, authenticated record before any guarded user code runs), the
//! authorization of declared roles and scopes and the app-wide check (`forbidden`), and the
//! per-connection rate window.

use super::{Dispatcher, NO_RECORD};
use crate::protocol::ErrorCode;
use crate::store::Connection;

impl Dispatcher {
    /// Counts the message in the connection's rate window. Fails open on a store error: a
    /// counter that cannot be updated never blocks legitimate traffic.
    /// The same store call returns the record, which the guard then uses instead of reading
    /// it again (one DynamoDB request per guarded message instead of two).
    pub(super) async fn rate_check(&self, id: &str) -> RateCheck {
        if self.limits.burst == 0 {
            return RateCheck::Allowed(None);
        }
        let window = self.clock.now_ms() / self.limits.window_ms * self.limits.window_ms;
        match self.store.count_message_and_get(id, window).await {
            Ok(Some((count, _))) if count > self.limits.burst => RateCheck::Limited,
            Ok(Some((_, record))) => RateCheck::Allowed(record),
            Ok(None) => RateCheck::NoRecord,
            Err(e) => {
                tracing::warn!(connection_id = %id, error = %e, "rate counter failed; message allowed");
                RateCheck::Allowed(None)
            }
        }
    }
    /// The auth guard: the caller's record must be live and authenticated. A connection
    /// with no live record (window or session over, or removed) is to be closed.
    pub(super) async fn guard(
        &self,
        id: &str,
        known: Option<Connection>,
    ) -> Result<Connection, Refusal> {
        let record = match known {
            // Read in the same call as the rate count: live at that moment.
            Some(record) => Ok(Some(record)),
            None => self.store.get(id).await,
        };
        match record {
            Ok(Some(record)) if record.authenticated => Ok(record),
            Ok(Some(_)) => Err(Refusal {
                code: ErrorCode::Unauthorized,
                message: "authenticate first: send {\"action\":\"auth\",\"token\":\"<jwt>\"}",
                close: false,
            }),
            Ok(None) => Err(Refusal {
                code: ErrorCode::Unauthorized,
                message: NO_RECORD,
                close: true,
            }),
            // Our infrastructure failed, not the client: retryable, and the socket stays open.
            Err(e) => {
                tracing::error!(connection_id = %id, error = %e, "guard: reading the record failed");
                Err(Refusal {
                    code: ErrorCode::Internal,
                    message: "could not verify the connection; try again",
                    close: false,
                })
            }
        }
    }
}

pub(super) struct Refusal {
    pub(super) code: ErrorCode,
    pub(super) message: &'static str,
    pub(super) close: bool,
}

/// What the rate window says about a message.
pub(super) enum RateCheck {
    /// Allowed, with the record when the counting call returned it.
    Allowed(Option<Connection>),
    Limited,
    /// The connection has no live record.
    NoRecord,
}

/// What an app-wide authorization check sees (see `App::authorize`).
#[derive(Debug)]
#[non_exhaustive]
pub struct Authorization<'a> {
    /// The action being called.
    pub action: &'a str,
    /// The caller's record (authenticated, live), with its kept claims.
    pub connection: &'a Connection,
}

/// An app-wide authorization check: `Err(message)` refuses the call with `forbidden`.
pub type AuthorizeFn = dyn Fn(&Authorization<'_>) -> Result<(), String> + Send + Sync;

impl Dispatcher {
    /// Declared roles (any one) and scopes (all), then the app-wide check. A refusal is
    /// `forbidden`; the connection stays open.
    pub(super) fn authorize(
        &self,
        def: &crate::action::ActionDef,
        record: &Connection,
    ) -> Result<(), String> {
        if !def.roles().is_empty() && !record.claims.holds_any(&self.app.roles_claim, def.roles()) {
            return Err(match def.roles() {
                [one] => format!("`{}` requires the role `{one}`", def.name()),
                many => format!(
                    "`{}` requires one of the roles {}",
                    def.name(),
                    many.iter()
                        .map(|r| format!("`{r}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        if !def.scopes().is_empty() {
            let held = record.claims.scopes();
            if let Some(missing) = def.scopes().iter().find(|s| !held.contains(s)) {
                return Err(format!("`{}` requires the scope `{missing}`", def.name()));
            }
        }
        if let Some(check) = &self.authorize {
            check(&Authorization {
                action: def.name(),
                connection: record,
            })?;
        }
        Ok(())
    }
}
