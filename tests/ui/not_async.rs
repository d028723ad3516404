#[kairos::task]
fn sync_emails() {}

fn main() {}
