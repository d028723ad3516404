#[kairos::task]
async fn generic<T: serde::de::DeserializeOwned>(value: T) {
    let _ = value;
}

fn main() {}
