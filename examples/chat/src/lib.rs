//! The venturekit-ws reference app: a multi-tenant chat (DESIGN.md section 4.4).
//!
//! - `{"action":"broadcast","data":X}`: every authenticated connection in the sender's
//!   tenant scope (sender included) receives `{"action":"message","from":…,"data":X}`.
//! - `{"action":"send","to":"<userId>","data":X}`: every connection of that user in the
//!   sender's tenant scope receives the message; the sender gets
//!   `{"action":"send","delivered":N}`.
//!
//! The built-in `auth` and `ping` come with the framework.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use venturekit_ws::{App, Ctx, WsError, actions, ws_action};

/// `{"action":"broadcast","data":X}`.
#[derive(Debug, Deserialize)]
pub struct Broadcast {
    /// Any JSON value.
    pub data: Value,
}

/// `{"action":"send","to":"bob","data":X}`.
#[derive(Debug, Deserialize)]
pub struct Send {
    /// The recipient's user id.
    pub to: String,
    /// Any JSON value.
    pub data: Value,
}

/// What recipients receive.
#[derive(Debug, Serialize)]
pub struct ChatMessage<'a> {
    action: &'static str,
    from: &'a str,
    data: &'a Value,
}

impl<'a> ChatMessage<'a> {
    fn new(from: &'a str, data: &'a Value) -> Self {
        ChatMessage {
            action: "message",
            from,
            data,
        }
    }
}

/// The reply to `send`.
#[derive(Debug, Serialize)]
pub struct Delivered {
    action: &'static str,
    /// Connections reached.
    pub delivered: usize,
}

/// Sends `data` to every authenticated connection in the sender's tenant scope.
#[ws_action("broadcast")]
pub async fn broadcast(ctx: Ctx, msg: Broadcast) -> Result<(), WsError> {
    let from = ctx.require_user()?;
    ctx.connections()
        .broadcast_in(&ctx.scope(), &ChatMessage::new(from, &msg.data))
        .await?;
    Ok(())
}

/// Sends `data` to every device of user `to` in the sender's tenant scope.
#[ws_action("send")]
pub async fn send(ctx: Ctx, msg: Send) -> Result<Delivered, WsError> {
    let from = ctx.require_user()?;
    let report = ctx
        .connections()
        .send_to_user_in(&msg.to, &ctx.scope(), &ChatMessage::new(from, &msg.data))
        .await?;
    Ok(Delivered {
        action: "send",
        delivered: report.delivered,
    })
}

/// The chat app with its actions registered, configured from the environment and from
/// `venturekit.toml` (embedded, so Lambda and the local server read the same settings).
pub fn app() -> Result<App, venturekit_ws::Error> {
    App::from_env()?
        .name("chat")
        .actions(actions![broadcast, send])
        .deploy_config(
            "examples/chat/venturekit.toml",
            include_str!("../venturekit.toml"),
        )
}
