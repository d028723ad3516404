// Every problem is reported at once, and the function still exists: `main` compiles.
#[kairos::task(schedule = "* * *", max_instances = 0, priority = "high")]
fn sync_emails(_: u32) {}

fn main() {
    sync_emails(1);
}
