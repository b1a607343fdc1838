use venturekit_ws::{Ctx, ws_action};

#[ws_action("ping", public)]
async fn ping(_ctx: Ctx) {}

fn main() {}
