//! Compile-time behaviour of `#[kairos::task]`: each misuse in `tests/ui/` fails with the
//! message in its `.stderr`, and `tests/ui/pass/` compiles and runs.
//!
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite`, then read every one.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
    t.pass("tests/ui/pass/*.rs");
}
