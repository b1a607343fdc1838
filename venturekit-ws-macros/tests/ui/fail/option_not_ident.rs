use venturekit_ws::{Ctx, ws_action};

#[ws_action("send", 5)]
async fn send(_ctx: Ctx) {}

fn main() {}
