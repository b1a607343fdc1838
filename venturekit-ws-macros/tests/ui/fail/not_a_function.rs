use venturekit_ws::ws_action;

#[ws_action("send")]
struct Send;

fn main() {}
