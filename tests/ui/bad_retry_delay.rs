#[kairos::task(retry_delay = "5 minutes")]
async fn flaky() {}

fn main() {}
