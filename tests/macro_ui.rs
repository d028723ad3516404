//! Compile-time behaviour of `#[kairos::task]`: each misuse in `tests/ui/` fails with the
//! message in its `.stderr`. (What the macro accepts is compiled and run in
//! `macro_task.rs`: with no case expected to pass, trybuild only type-checks its
//! dependencies instead of building them a second time.)
//!
//! Regenerate the `.stderr` files with `TRYBUILD=overwrite`, then read every one.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
