use venturekit_ws::{Ctx, ws_action};

#[ws_action("kick", role = "")]
async fn kick(_ctx: Ctx) {}

fn main() {}
