use venturekit_ws::{Ctx, ws_action};

#[ws_action("send")]
async fn send<M: serde::de::DeserializeOwned>(_ctx: Ctx, _msg: M) {}

fn main() {}
