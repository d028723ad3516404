// `max_catch_up` only means something when missed slots are caught up.
#[kairos::task(schedule = "@hourly", max_catch_up = 3)]
async fn no_policy() {}

#[kairos::task(schedule = "@hourly", misfire = "skip", max_catch_up = 3)]
async fn other_policy() {}

fn main() {}
