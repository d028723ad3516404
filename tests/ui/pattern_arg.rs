#[kairos::task]
async fn pair((a, b): (u32, u32)) {
    let _ = a + b;
}

fn main() {}
