struct Region {
    code: String,
}

#[kairos::task]
async fn report(region: Region) -> String {
    region.code
}

fn main() {}
