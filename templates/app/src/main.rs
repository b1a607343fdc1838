// mimalloc instead of the system allocator: the AWS SDK allocates a lot per call, and on
// Lambda this cuts the CPU per message by about 5 % (venturekit-ws's BENCHMARKS.md).
// Remove these two lines to use the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> Result<(), venturekit_ws::Error> {
    {{crate_name}}::app()?.run().await
}
