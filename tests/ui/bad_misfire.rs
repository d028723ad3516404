#[kairos::task(interval_minutes = 5, misfire = "runonce")]
async fn sync_emails() {}

fn main() {}
