#[kairos::task(schedule = "30 2 * * *", timezone = "Europe/Paris", dst = "debain")]
async fn nightly() {}

fn main() {}
