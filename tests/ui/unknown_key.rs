#[kairos::task(max_retry = 3)]
async fn typo() {}

fn main() {}
