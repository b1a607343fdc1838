//! The floor for cold-start comparisons: the smallest useful `lambda_runtime` function (it
//! answers every event with `{"statusCode":200}`), built with the same release profile.
//!
//! `vk-coldstart target/release/vk-floor 30` next to `vk-coldstart target/release/chat 30`
//! (see scripts/bench.sh) says how much of a cold start is the framework's.

#![allow(missing_docs)]

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::{Value, json};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|_: LambdaEvent<Value>| async {
        Ok::<_, Error>(json!({"statusCode": 200}))
    }))
    .await
}
