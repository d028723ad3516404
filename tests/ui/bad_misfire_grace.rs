#[kairos::task(schedule = "@hourly", misfire_grace = "30 seconds")]
async fn hourly() {}

fn main() {}
