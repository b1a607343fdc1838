use venturekit_ws::{Ctx, ws_action};

#[ws_action("send", public, public)]
async fn send(_ctx: Ctx) {}

fn main() {}
