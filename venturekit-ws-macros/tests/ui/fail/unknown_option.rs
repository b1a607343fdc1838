use venturekit_ws::{Ctx, ws_action};

#[ws_action("send", secret)]
async fn send(_ctx: Ctx) {}

fn main() {}
