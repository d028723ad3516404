#[kairos::task(name = "a", max_retries = 1, name = "b")]
async fn twice() {}

fn main() {}
