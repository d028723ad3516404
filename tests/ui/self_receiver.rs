struct Mailer;

impl Mailer {
    #[kairos::task]
    async fn sync(&self) {}
}

fn main() {}
