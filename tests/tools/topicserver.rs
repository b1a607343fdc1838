//! A local server for the topic benchmark: the chat's auth and limits, plus topics
//! `bench:*` clients may join (no presence, so joins cost one write each) and a `publish`
//! action: `{"action":"publish","topic":"bench:1","data":X}` sends
//! `{"action":"message","topic":…,"data":X}` to every member. Serves like `cargo run -p
//! chat` (VK_WS_LISTEN, VK_WS_JWT_SECRET) and prints the `ws://` address on stderr.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use serde::Deserialize;
use venturekit_ws::{App, Ctx, TopicRule, WsError, actions, ws_action};

#[derive(Deserialize)]
struct Publish {
    topic: String,
    data: serde_json::Value,
}

/// No reply (unless asked for with `ref`): the publisher hears only the message itself.
#[ws_action("publish")]
async fn publish(ctx: Ctx, msg: Publish) -> Result<(), WsError> {
    let out = serde_json::json!({"action": "message", "topic": msg.topic, "data": msg.data});
    ctx.publish(&msg.topic, &out).await?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), venturekit_ws::Error> {
    let mut config = venturekit_ws::Config::from_env()?;
    config.rate_limit_per_sec = 0;
    App::new(config)
        .name("vk-topicserver")
        .topic(TopicRule::new("bench:*"))
        .actions(actions![publish])
        .run()
        .await
}
