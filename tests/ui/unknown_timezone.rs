#[kairos::task(schedule = "0 0 * * *", timezone = "Europe/Pariss")]
async fn daily() {}

fn main() {}
