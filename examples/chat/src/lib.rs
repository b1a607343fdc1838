//! The venturekit-ws reference app: a multi-tenant chat.
//!
//! - `{"action":"broadcast","data":X}`: every authenticated connection in the sender's
//!   tenant scope (sender included) receives `{"action":"message","from":…,"data":X}`; the
//!   message is recorded in the scope's history.
//! - `{"action":"send","to":"<userId>","data":X}`: every connection of that user in the
//!   sender's tenant scope receives the message; the sender gets
//!   `{"action":"send","delivered":N}`.
//! - `{"action":"history"}`: `{"action":"history","messages":[{"from","data","at"},…]}`, the
//!   last 50 broadcasts of the caller's scope, oldest first (app state: [`History`]).
//! - `{"action":"kick","userId":U}` (role `admin`): every connection of `U` in the caller's
//!   scope gets `{"action":"kicked","by":<admin>}` and is closed; the reply is
//!   `{"action":"kick","closed":N}`.
//! - Rooms: `{"action":"vk:join","topic":"room:42","meta":{…}}` joins a room of the caller's
//!   tenant, with presence (`vk:presence_state`, `vk:presence_diff`);
//!   `{"action":"say","room":"room:42","data":X}` publishes
//!   `{"action":"message","from":U,"room":"room:42","data":X}` to the room's members and
//!   answers `{"action":"say","delivered":N}`; saying into a room not joined is `forbidden`.
//! - When an authenticated connection goes away for any reason, the other authenticated
//!   connections of its scope receive `{"action":"left","userId":U,"reason":R}` (a
//!   disconnect hook).
//!
//! The built-in `auth` and `ping` come with the framework.

pub mod history;

pub use history::{Entry, History, HistoryStore, MemoryHistory};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use venturekit_ws::deploy::AppTable;
use venturekit_ws::messaging::Scope;
use venturekit_ws::{
    App, Connection, Ctx, DisconnectReason, HookCtx, State, TopicRule, WsError, actions, ws_action,
};

/// `{"action":"broadcast","data":X}`.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "contract", derive(schemars::JsonSchema))]
pub struct Broadcast {
    /// Any JSON value.
    pub data: Value,
}

/// `{"action":"send","to":"bob","data":X}`.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "contract", derive(schemars::JsonSchema))]
pub struct Send {
    /// The recipient's user id.
    pub to: String,
    /// Any JSON value.
    pub data: Value,
}

/// `{"action":"kick","userId":"bob"}`.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "contract", derive(schemars::JsonSchema))]
pub struct Kick {
    /// The user whose connections are closed.
    #[serde(rename = "userId")]
    pub user_id: String,
}

/// `{"action":"say","room":"room:42","data":X}`.
#[derive(Debug, Deserialize)]
#[cfg_attr(feature = "contract", derive(schemars::JsonSchema))]
pub struct Say {
    /// A room the caller has joined (`vk:join`).
    pub room: String,
    /// Any JSON value.
    pub data: Value,
}

/// What recipients receive: `{"action":"message","from":U,"data":X}`, plus `"room"` when
/// said in a room.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "contract", derive(schemars::JsonSchema))]
pub struct ChatMessage<'a> {
    #[cfg_attr(feature = "contract", schemars(extend("const" = "message")))]
    action: &'static str,
    from: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
    data: &'a Value,
}

impl<'a> ChatMessage<'a> {
    fn new(from: &'a str, data: &'a Value) -> Self {
        ChatMessage {
            action: "message",
            from,
            room: None,
            data,
        }
    }
}

/// What a kicked user's connections receive before they are closed.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "contract", derive(schemars::JsonSchema))]
pub struct KickedNotice<'a> {
    #[cfg_attr(feature = "contract", schemars(extend("const" = "kicked")))]
    action: &'static str,
    /// The admin who kicked.
    by: &'a str,
}

/// What the rest of the scope receives when an authenticated connection goes away.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "contract", derive(schemars::JsonSchema))]
pub struct LeftNotice<'a> {
    #[cfg_attr(feature = "contract", schemars(extend("const" = "left")))]
    action: &'static str,
    /// Who left.
    #[serde(rename = "userId")]
    user_id: &'a str,
    /// Why: `client`, `gone`, `expired` or `closed`.
    reason: DisconnectReason,
}

/// The reply to `send` and `say`.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "contract", derive(schemars::JsonSchema))]
pub struct Delivered {
    action: &'static str,
    /// Connections reached.
    pub delivered: usize,
}

/// The reply to `history`.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "contract", derive(schemars::JsonSchema))]
pub struct HistoryReply {
    #[cfg_attr(feature = "contract", schemars(extend("const" = "history")))]
    action: &'static str,
    /// The last broadcasts of the caller's scope, oldest first.
    pub messages: Vec<Entry>,
}

/// The reply to `kick`.
#[derive(Debug, Serialize)]
#[cfg_attr(feature = "contract", derive(schemars::JsonSchema))]
pub struct Kicked {
    #[cfg_attr(feature = "contract", schemars(extend("const" = "kick")))]
    action: &'static str,
    /// Connections closed.
    pub closed: usize,
}

/// The history key of a scope: the tenant, or `-` for tenant-less connections.
fn scope_key(tenant: Option<&str>) -> String {
    tenant.unwrap_or("-").to_owned()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Sends `data` to every authenticated connection in the sender's tenant scope, and
/// records it in the scope's history.
#[ws_action("broadcast")]
pub async fn broadcast(ctx: Ctx, history: State<History>, msg: Broadcast) -> Result<(), WsError> {
    let from = ctx.require_user()?;
    let entry = Entry {
        from: from.to_owned(),
        data: msg.data.clone(),
        at: now_ms(),
    };
    history.record(&scope_key(ctx.tenant_id()), entry).await?;
    ctx.broadcast(&ChatMessage::new(from, &msg.data)).await?;
    Ok(())
}

/// Sends `data` to every device of user `to` in the sender's tenant scope.
#[ws_action("send")]
pub async fn send(ctx: Ctx, msg: Send) -> Result<Delivered, WsError> {
    let from = ctx.require_user()?;
    let report = ctx
        .send_to_user(&msg.to, &ChatMessage::new(from, &msg.data))
        .await?;
    Ok(Delivered {
        action: "send",
        delivered: report.delivered,
    })
}

/// Publishes `data` to the members of a room the caller has joined.
#[ws_action("say")]
pub async fn say(ctx: Ctx, msg: Say) -> Result<Delivered, WsError> {
    let from = ctx.require_user()?;
    venturekit_ws::topics::check_name(&msg.room).map_err(WsError::bad_request)?;
    let out = ChatMessage {
        room: Some(&msg.room),
        ..ChatMessage::new(from, &msg.data)
    };
    let Some(report) = ctx.publish_as_member(&msg.room, &out).await? else {
        return Err(WsError::forbidden(format!(
            "join `{}` first: {{\"action\":\"vk:join\",\"topic\":\"{}\"}}",
            msg.room, msg.room
        )));
    };
    Ok(Delivered {
        action: "say",
        delivered: report.delivered,
    })
}

/// The last 50 broadcasts of the caller's scope, oldest first.
#[ws_action("history")]
pub async fn history(ctx: Ctx, history: State<History>) -> Result<HistoryReply, WsError> {
    let messages = history.last(&scope_key(ctx.tenant_id())).await?;
    Ok(HistoryReply {
        action: "history",
        messages,
    })
}

/// Closes every connection of a user in the caller's scope (admins only).
#[ws_action("kick", role = "admin")]
pub async fn kick(ctx: Ctx, msg: Kick) -> Result<Kicked, WsError> {
    let admin = ctx.require_user()?;
    let scope = ctx.scope();
    let everywhere = ctx.all_tenants();
    let targets = everywhere.get_by_user(&msg.user_id).await?;
    let notice = KickedNotice {
        action: "kicked",
        by: admin,
    };
    let mut closed = 0;
    for target in targets
        .iter()
        .filter(|t| t.authenticated && scope.contains(t))
    {
        // Best effort: a target that is already gone is closed (and removed) all the same.
        let _ = everywhere
            .post_to_connection(&target.connection_id, &notice)
            .await;
        everywhere.close(&target.connection_id).await?;
        closed += 1;
    }
    Ok(Kicked {
        action: "kick",
        closed,
    })
}

/// Tells the rest of the scope that an authenticated connection went away.
///
/// This is one broadcast per disconnect, so its cost grows with the scope: when N
/// connections of one scope close together, about N²/2 notices go out (on Lambda, each one a
/// management API post). Fine for a team chat; for large audiences, announce presence in
/// rooms instead (topics with presence cap their diffs at `max_presence` members).
pub async fn announce_leave(record: Connection, reason: DisconnectReason, ctx: HookCtx) {
    let (true, Some(user)) = (record.authenticated, record.user_id.as_deref()) else {
        return;
    };
    let notice = LeftNotice {
        action: "left",
        user_id: user,
        reason,
    };
    let scope = Scope::of_tenant(record.tenant_id.as_deref());
    if let Err(e) = ctx.all_tenants().broadcast_in(&scope, &notice).await {
        tracing::warn!(error = %e, "announcing a leave failed");
    }
}

/// The chat's actions, hooks and state on `app` (the test kit and tests build on this).
pub fn configure(app: App, history: History) -> App {
    let history_table = AppTable::new("HistoryTable", "CHAT_HISTORY_TABLE", "scope")
        .sort_key("at")
        .ttl("ttl")
        .allow(&["dynamodb:PutItem", "dynamodb:Query"]);
    #[cfg(feature = "contract")]
    let app = app
        .version(env!("CARGO_PKG_VERSION"))
        .server_message::<ChatMessage<'static>>("message")
        .server_message::<KickedNotice<'static>>("kicked")
        .server_message::<LeftNotice<'static>>("left");
    app.state(history)
        .app_table(history_table)
        .actions(actions![broadcast, send, history, kick, say])
        // Rooms: any authenticated user may join `room:<name>` in its tenant, with presence.
        .topic(TopicRule::new("room:*").presence())
        .on_disconnect(announce_leave)
}

/// The chat app with its actions registered, configured from the environment and from
/// `venturekit.toml` (embedded, so Lambda and the local server read the same settings).
pub fn app() -> Result<App, venturekit_ws::Error> {
    configure(App::from_env()?.name("chat"), History::from_env()?).deploy_config(
        "examples/chat/venturekit.toml",
        include_str!("../venturekit.toml"),
    )
}
