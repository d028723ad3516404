#[kairos::task(interval_minutes = 15, timezone = "Asia/Shanghai")]
async fn zoned() {}

fn main() {}
