use venturekit_ws::{Ctx, actions, ws_action};

#[ws_action("send")]
async fn send(_ctx: Ctx) {}

fn main() {
    let _ = actions![send, send];
}
