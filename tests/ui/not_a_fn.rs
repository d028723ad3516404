#[kairos::task]
struct NotATask;

fn main() {}
