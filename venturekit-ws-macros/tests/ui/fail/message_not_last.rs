use venturekit_ws::{Ctx, State, ws_action};

struct Db;

#[ws_action("save")]
async fn save(_ctx: Ctx, _msg: String, _db: State<Db>) {}

fn main() {}
