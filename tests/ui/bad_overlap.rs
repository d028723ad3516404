#[kairos::task(interval_minutes = 5, overlap = "parallel")]
async fn sync_emails() {}

fn main() {}
