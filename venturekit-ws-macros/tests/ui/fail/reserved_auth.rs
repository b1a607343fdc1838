use venturekit_ws::{Ctx, ws_action};

#[ws_action("auth")]
async fn my_auth(_ctx: Ctx) {}

fn main() {}
