use venturekit_ws::{Ctx, ws_action};

#[ws_action("kick", scope = [])]
async fn kick(_ctx: Ctx) {}

fn main() {}
