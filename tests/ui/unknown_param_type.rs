// A typo in a parameter's type is reported once, at the type.
#[kairos::task]
async fn process(doc_id: DocId) {}

fn main() {}
