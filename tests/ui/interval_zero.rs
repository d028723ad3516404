#[kairos::task(interval_minutes = 0)]
async fn busy() {}

fn main() {}
