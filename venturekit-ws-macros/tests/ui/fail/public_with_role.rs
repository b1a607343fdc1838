use venturekit_ws::{Ctx, ws_action};

#[ws_action("kick", public, role = "admin")]
async fn kick(_ctx: Ctx) {}

fn main() {}
