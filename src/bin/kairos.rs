//! The `kairos` admin CLI. It knows no tasks of its own: enqueueing checks names and
//! params against the catalogue the application's nodes publish in the database. An
//! application can embed the same CLI with its tasks compiled in by calling
//! `kairos::cli::run()`.

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // A bug must still end in one clear line, not a Rust backtrace, whatever
    // RUST_BACKTRACE says.
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("error: internal error{at}: {msg}; please report it");
        std::process::exit(101);
    }));
    kairos::cli::run().await;
}
