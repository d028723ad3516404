#[kairos::task("sync", max_retries = 3)]
async fn sync_emails() {}

fn main() {}
