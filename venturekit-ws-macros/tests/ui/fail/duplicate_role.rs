use venturekit_ws::{Ctx, ws_action};

#[ws_action("kick", role = "a", role = "b")]
async fn kick(_ctx: Ctx) {}

fn main() {}
