#[kairos::task(schedule = "0 25 * * *")]
async fn nightly() {}

fn main() {}
