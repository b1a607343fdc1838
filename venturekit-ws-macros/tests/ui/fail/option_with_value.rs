use venturekit_ws::{Ctx, ws_action};

#[ws_action("send", public = true)]
async fn send(_ctx: Ctx) {}

fn main() {}
