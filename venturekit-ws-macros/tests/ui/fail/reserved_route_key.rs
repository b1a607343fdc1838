use venturekit_ws::{Ctx, ws_action};

#[ws_action("$connect")]
async fn on_connect(_ctx: Ctx) {}

fn main() {}
