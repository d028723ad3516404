//! Everything the macro accepts, with no imports but `kairos`, `serde` and `anyhow`.

use kairos::{FailedRun, TaskContext};

#[derive(serde::Serialize)]
struct Report {
    pages: u32,
}

#[kairos::task(name = "sync_emails", interval_minutes = 15, max_retries = 3, misfire = "skip",
               misfire_grace = "0s", overlap = "replace")]
async fn sync_emails(ctx: TaskContext) -> anyhow::Result<()> {
    let _ = ctx.attempt();
    Ok(())
}

#[kairos::task(name = "daily_report", schedule = "0 0 * * *", timezone = "Asia/Shanghai", max_instances = 1,
               misfire = "catch_up", max_catch_up = 24, misfire_grace = "5m", overlap = "queue",
               dst = "both")]
async fn daily_report() -> anyhow::Result<()> {
    Ok(())
}

#[kairos::task(name = "process_document", timeout = "30m", max_retries = 5,
               retry_delay = "10m", priority = -1, max_instances = 2, queue = "docs",
               on_failure = notify_admin)]
async fn process_document(ctx: TaskContext, doc_id: String, pages: Option<u32>) -> anyhow::Result<Report> {
    let _ = (ctx, doc_id);
    Ok(Report { pages: pages.unwrap_or(1) })
}

async fn notify_admin(run: FailedRun) {
    let _ = run.error;
}

#[kairos::task(schedule = "@hourly")]
async fn borrowed_context(ctx: &kairos::TaskContext, mut count: u64) -> u64 {
    count += u64::from(ctx.attempt());
    count
}

mod nested {
    #[kairos::task]
    pub async fn plain() -> &'static str {
        "done"
    }
}

fn main() {
    let registry = kairos::Registry::from_inventory().unwrap();
    assert_eq!(
        registry.names(),
        ["borrowed_context", "daily_report", "plain", "process_document", "sync_emails"]
    );
    let _ = nested::plain();
}
