use venturekit_ws::{Ctx, ws_action};

struct Chat;

impl Chat {
    #[ws_action("send")]
    async fn send(&self, _ctx: Ctx) {}
}

fn main() {}
