//! The `#[kairos::task]` attribute. PLACEHOLDER: the real implementation replaces this file.
use proc_macro::TokenStream;

/// Registers an async function as a kairos task.
#[proc_macro_attribute]
pub fn task(_attr: TokenStream, item: TokenStream) -> TokenStream {
    item
}
