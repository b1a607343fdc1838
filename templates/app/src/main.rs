#[tokio::main]
async fn main() -> Result<(), venturekit_ws::Error> {
    {{crate_name}}::app()?.run().await
}
