#[kairos::task(schedule = "0 0 * * *", interval_minutes = 15)]
async fn both() {}

fn main() {}
