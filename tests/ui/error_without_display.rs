#[derive(Debug)]
struct MyError;

#[kairos::task]
async fn fails() -> Result<u32, MyError> {
    Err(MyError)
}

fn main() {}
