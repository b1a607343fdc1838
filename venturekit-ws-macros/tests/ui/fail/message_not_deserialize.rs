use venturekit_ws::{Ctx, ws_action};

struct Send {
    _to: String,
}

#[ws_action("send")]
async fn send(_ctx: Ctx, _msg: Send) {}

fn main() {}
