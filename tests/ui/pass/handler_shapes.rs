use serde::{Deserialize, Serialize};
use venturekit_ws::{App, Config, Ctx, WsError, actions, ws_action};

#[derive(Deserialize)]
struct Send {
    to: String,
    data: serde_json::Value,
}

#[derive(Serialize)]
struct Sent {
    delivered: usize,
}

// Context and message, typed reply.
#[ws_action("send")]
async fn send(ctx: Ctx, msg: Send) -> Result<Sent, WsError> {
    let _ = (ctx.connection_id(), msg.to, msg.data);
    Ok(Sent { delivered: 1 })
}

// Context only, `impl Serialize` reply, public.
#[ws_action("hello", public)]
async fn hello(_ctx: Ctx) -> Result<impl Serialize, WsError> {
    Ok(serde_json::json!({ "action": "hello" }))
}

// No arguments, no reply.
#[ws_action("noop")]
async fn noop() {}

// Message without reply, with a trailing comma in the attribute.
#[ws_action("log", public,)]
async fn log(_ctx: Ctx, msg: serde_json::Value) {
    let _ = msg;
}

// Any std error converts with `?` (it becomes `internal`).
#[ws_action("parse")]
async fn parse(_ctx: Ctx, msg: Send) -> Result<(), std::num::ParseIntError> {
    let _n: i32 = msg.to.parse()?;
    Ok(())
}

// Optional replies: `None` sends nothing.
#[ws_action("maybe")]
async fn maybe(_ctx: Ctx) -> Result<Option<Sent>, WsError> {
    Ok(None)
}

mod admin {
    use venturekit_ws::{Ctx, WsError, ws_action};

    /// Public items keep their docs; the generated type is hidden.
    #[ws_action("admin.kick")]
    pub async fn kick(ctx: Ctx) -> Result<(), WsError> {
        ctx.require_user()?;
        Ok(())
    }
}

fn main() {
    // The functions stay ordinary, callable functions.
    let _callable = send;
    let _also = admin::kick;
    let list = actions![send, hello, noop, log, parse, maybe, admin::kick];
    assert_eq!(list.len(), 7);
    assert_eq!(list[0].name(), "send");
    assert!(list[1].is_public());
    assert!(!list[0].is_public());
    let empty = actions![];
    assert!(empty.is_empty());
    let _app = App::new(Config::default()).actions(list);
}
