use serde::{Deserialize, Serialize};
use venturekit_ws::{App, Config, Ctx, State, WsError, actions, ws_action};

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

#[derive(Deserialize)]
struct Join {
    room: String,
}

// State extractors, then the message; declared roles and scopes.
struct Db {
    name: &'static str,
}

#[ws_action("stateful", role = ["admin", "ops"], scope = "db:write")]
async fn stateful(ctx: Ctx, db: State<Db>, msg: Join) -> Result<String, WsError> {
    Ok(format!("{} {} {}", ctx.action(), db.name, msg.room))
}

#[ws_action("state_only", scope = ["a", "b"])]
async fn state_only(_ctx: Ctx, _db: State<Db>) {}

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
    let policies = actions![stateful, state_only];
    assert_eq!(policies[0].roles(), ["admin", "ops"]);
    assert_eq!(policies[0].scopes(), ["db:write"]);
    assert_eq!(policies[1].scopes(), ["a", "b"]);
    assert_eq!(policies[0].required_state().len(), 1);
    // Without the state the app refuses to start; with it, it builds.
    let app = App::new(Config::default()).actions(policies.clone());
    let err = app.dispatcher(venturekit_ws::Mode::Local).unwrap_err();
    assert!(err.to_string().contains("needs state of type"), "{err}");
    let app = App::new(Config::default())
        .state(Db { name: "main" })
        .actions(policies);
    assert!(app.dispatcher(venturekit_ws::Mode::Local).is_ok());
}
