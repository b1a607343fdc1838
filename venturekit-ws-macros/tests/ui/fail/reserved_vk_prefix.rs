use venturekit_ws::{Ctx, ws_action};

#[ws_action("vk:join")]
async fn join(_ctx: Ctx) {}

fn main() {}
