#[kairos::task(on_failure = notify)]
async fn flaky() {}

async fn notify(message: String) {
    let _ = message;
}

fn main() {}
