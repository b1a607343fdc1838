// A module named like an action function (`mod broadcast;` beside `async fn broadcast`)
// must not collide with what `#[ws_action]` generates.
use venturekit_ws::{Ctx, actions, ws_action};

mod broadcast {
    pub fn helper() -> u32 {
        7
    }
}

#[ws_action("broadcast")]
async fn broadcast(_ctx: Ctx) {
    let _ = broadcast::helper();
}

fn main() {
    let list = actions![broadcast];
    assert_eq!(list[0].name(), "broadcast");
}
