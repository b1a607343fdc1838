use venturekit_ws::{Ctx, ws_action};

#[ws_action("send")]
async unsafe fn send(_ctx: Ctx) {}

fn main() {}
