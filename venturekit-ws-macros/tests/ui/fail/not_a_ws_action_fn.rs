use venturekit_ws::{Ctx, actions};

// Forgot `#[ws_action("plain")]`.
async fn plain(_ctx: Ctx) {}

fn main() {
    let _ = actions![plain];
}
