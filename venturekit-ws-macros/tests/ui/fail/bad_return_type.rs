use venturekit_ws::{Ctx, ws_action};

#[ws_action("send")]
async fn send(_ctx: Ctx) -> u32 {
    7
}

fn main() {}
