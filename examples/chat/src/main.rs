//! `cargo run -p chat` serves the chat locally; `cargo run -p chat -- token --sub alice`
//! prints a dev token; with `AWS_LAMBDA_RUNTIME_API` set it runs on Lambda.

#[tokio::main]
async fn main() -> Result<(), venturekit_ws::Error> {
    chat::app()?.run().await
}
