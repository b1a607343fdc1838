//! `cargo run -p chat` serves the chat locally; `cargo run -p chat -- token --sub alice`
//! prints a dev token; with `AWS_LAMBDA_RUNTIME_API` set it runs on Lambda.

// mimalloc instead of the system allocator: the AWS SDK allocates a lot per call, and on
// Lambda this cuts the CPU per message by about 5 % (BENCHMARKS.md). Remove these two
// lines to use the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), venturekit_ws::Error> {
    chat::app()?.run().await
}
