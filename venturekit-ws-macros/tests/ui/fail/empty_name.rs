use venturekit_ws::{Ctx, ws_action};

#[ws_action("")]
async fn send(_ctx: Ctx) {}

fn main() {}
