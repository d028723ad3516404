struct Report;

#[kairos::task]
async fn report() -> Report {
    Report
}

fn main() {}
