use kairos::TaskContext as Ctx;

#[kairos::task]
async fn report(c: Ctx) {
    let _ = c;
}

fn main() {}
