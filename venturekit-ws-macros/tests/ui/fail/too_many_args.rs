use venturekit_ws::{Ctx, ws_action};

#[ws_action("send")]
async fn send(_ctx: Ctx, _msg: String, _extra: u32) {}

fn main() {}
