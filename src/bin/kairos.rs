//! The `kairos` admin CLI. It knows no tasks of its own: enqueueing checks names against
//! the catalogue the application's nodes publish in the database. An application can
//! embed the same CLI with its tasks compiled in by calling `kairos::cli::run()`.

#[tokio::main(flavor = "current_thread")]
async fn main() {
    kairos::cli::run().await;
}
