#[kairos::task(interval_minutes = "15", schedule = 5)]
async fn typed() {}

fn main() {}
