use venturekit_ws::ws_action;

#[ws_action("send")]
async fn send(_ctx: String) {}

fn main() {}
