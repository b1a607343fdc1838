// An action that is defined but never registered keeps rustc's `dead_code` warning.
#![deny(dead_code)]
use venturekit_ws::{Ctx, actions, ws_action};

#[ws_action("registered")]
async fn registered(_ctx: Ctx) {}

#[ws_action("forgotten")]
async fn forgotten(_ctx: Ctx) {}

fn main() {
    let _ = actions![registered];
}
