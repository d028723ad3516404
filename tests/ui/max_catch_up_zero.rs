#[kairos::task(schedule = "@hourly", misfire = "catch_up", max_catch_up = 0)]
async fn hourly() {}

fn main() {}
