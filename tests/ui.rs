//! Compile-fail tests of the `conv!` and `conv_file!` diagnostics, one file per diagnostic in
//! `tests/ui/`: each `.stderr` shows the message on its token (for `conv_file!`, on the path, with
//! the file's line and column) and no follow-on errors, since the declared module is still emitted
//! as a stub.
//!
//! Re-bless with `TRYBUILD=overwrite cargo test --test ui`, then read every changed `.stderr`.

#[test]
fn macro_diagnostics() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
}
