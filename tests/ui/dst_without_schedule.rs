#[kairos::task(interval_minutes = 60, dst = "skip")]
async fn hourly() {}

fn main() {}
