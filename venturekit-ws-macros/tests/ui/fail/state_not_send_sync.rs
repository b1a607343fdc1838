// `State<T>` needs `T: Send + Sync` (handlers run on any thread). A handler needing state
// the app was not given is not a compile error but an error when the app starts.
use std::rc::Rc;
use venturekit_ws::{Ctx, State, ws_action};

struct NotShared(Rc<u8>);

#[ws_action("read")]
async fn read(_ctx: Ctx, _state: State<NotShared>) {}

fn main() {}
