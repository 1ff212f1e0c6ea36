//! Corpus-driven snapshot tests of the front end.
//!
//! - `tests/corpus/bad/*.conv`: every file must fail to check; the rendered diagnostics are the
//!   snapshot (all problems of a file appear at once, each on its token).
//! - `tests/corpus/good/*.conv`, `examples/models/*.conv`, `benches/suite/*.conv`: every file must
//!   check; the canonical checked form and the cost table are the snapshot. The small good-corpus
//!   models also run through the reference interpreter.
//!
//! Re-bless with `INSTA_UPDATE=always cargo test --test corpus` or `cargo insta review`.

use std::path::Path;

use convgen::{Params, Tensor, compile_source, conv_dsl};

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

fn file_name(path: &Path) -> String {
    path.file_name().expect("glob yields files").to_string_lossy().into_owned()
}

/// The checked form and the cost table of a model that must be valid.
fn checked_text(path: &Path) -> String {
    let network = match compile_source(&file_name(path), &read(path)) {
        Ok(network) => network,
        Err(error) => panic!("{} must check, but:\n{error}", path.display()),
    };
    format!("{network}\n{}", convgen::cost_report(&network))
}

#[test]
fn bad_programs_report_every_problem() {
    insta::glob!("corpus/bad/*.conv", |path| {
        let text = read(path);
        let error = compile_source(&file_name(path), &text).expect_err("a bad program must not check");
        let conv_dsl::Error::Model { diagnostics, rendered } = error else {
            panic!("{}: expected diagnostics, got {error:?}", path.display());
        };
        assert!(!diagnostics.is_empty());
        for diagnostic in &diagnostics {
            assert!(
                diagnostic.location.start.line >= 1 && diagnostic.location.start.line <= text.lines().count().max(1)
            );
            let first = diagnostic.message.chars().next().expect("messages are not empty");
            assert!(!first.is_uppercase(), "messages are lowercase: {}", diagnostic.message);
        }
        insta::assert_snapshot!(rendered);
    });
}

#[test]
fn good_programs_check_to_canonical_form() {
    insta::glob!("corpus/good/*.conv", |path| {
        insta::assert_snapshot!(checked_text(path));
    });
}

#[test]
fn bundled_models_check_to_canonical_form() {
    insta::glob!("..", "examples/models/*.conv", |path| {
        insta::assert_snapshot!(checked_text(path));
    });
}

#[test]
fn benchmark_suite_checks_to_canonical_form() {
    insta::glob!("..", "benches/suite/*.conv", |path| {
        insta::assert_snapshot!(checked_text(path));
    });
}

/// Symbolic dims are bound to small sizes (`N` = 2, others 9) so that every good model runs.
#[test]
fn good_programs_run_in_the_interpreter() {
    insta::glob!("corpus/good/*.conv", |path| {
        let network = compile_source(&file_name(path), &read(path)).expect("good programs check");
        let shape = network.example_input_shape(2, 9);
        let binding = convgen::bind(&network, &shape).unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let elements: u64 = shape.iter().product();
        let mut rng = conv_dsl::random::SplitMix64::new(3);
        let data = (0..elements).map(|_| rng.symmetric()).collect();
        let input = Tensor::new(shape.iter().map(|&dim| dim as usize).collect(), data).expect("shape and data agree");
        let output = convgen::interp::run(&network, &input, &Params::random(&network, 5))
            .unwrap_or_else(|error| panic!("{}: {error}", path.display()));
        let expected = network.input.layout.order(&binding.layers[network.output].shape);
        let expected: Vec<usize> = expected.iter().map(|&dim| dim as usize).collect();
        assert_eq!(output.shape(), expected.as_slice(), "{}", path.display());
        assert!(output.data().iter().all(|value| value.is_finite()), "{}", path.display());
    });
}
