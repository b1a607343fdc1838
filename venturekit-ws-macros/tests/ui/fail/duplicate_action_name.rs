use venturekit_ws::{Ctx, actions, ws_action};

#[ws_action("send")]
async fn send(_ctx: Ctx) {}

#[ws_action("send")]
async fn send_again(_ctx: Ctx) {}

fn main() {
    let _ = actions![send, send_again];
}
