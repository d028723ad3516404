use std::rc::Rc;

#[kairos::task]
async fn holds_rc() {
    let shared = Rc::new(1);
    std::future::ready(()).await;
    let _ = shared;
}

fn main() {}
