#[kairos::task(timeout = "30")]
async fn slow() {}

fn main() {}
