//! The loop IR of every good-corpus model, lowered for Cranelift on x86-64 (4 lanes) with the
//! automatic schedules, as canonical text. Symbolic dims are bound to N = 1 and 9 for the others.
//!
//! Re-bless with `INSTA_UPDATE=always cargo test -p conv-dsl --test ir_snapshots`.

use conv_dsl::schedule::Target;
use conv_dsl::{bind, compile_source, lower};

#[test]
fn good_corpus_ir() {
    insta::glob!("../../tests/corpus/good", "*.conv", |path| {
        let text = std::fs::read_to_string(path).expect("corpus files are readable");
        let network = compile_source("model.conv", &text).expect("good corpus files check");
        let shape = network.example_input_shape(1, 9);
        let binding = bind(&network, &shape).expect("binds");
        let plan = lower::lower(&network, &binding, Target::CRANELIFT_X86_64, &|_| None).expect("lowers");
        let mut listing = format!("// input {shape:?}, {} steps\n", plan.steps.len());
        for step in &plan.steps {
            let schedule = step.schedules_text().map_or(String::new(), |schedules| format!(" ({schedules})"));
            listing.push_str(&format!("// step {}{schedule}\n{}", step.layer, step.function));
        }
        insta::assert_snapshot!(listing);
    });
}

/// A model lowered for 2 threads with every stage split (`part_macs: 0`): each step's parts and
/// where their windows of the output start.
#[test]
fn split_ir() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/good/separable.conv");
    let text = std::fs::read_to_string(path).expect("corpus files are readable");
    let network = compile_source("model.conv", &text).expect("good corpus files check");
    let shape = network.example_input_shape(1, 9);
    let binding = bind(&network, &shape).expect("binds");
    let target = Target { threads: 2, part_macs: 0, ..Target::CRANELIFT_X86_64 };
    let plan = lower::lower(&network, &binding, target, &|_| None).expect("lowers");
    let mut listing = format!("// input {shape:?}, {} steps\n", plan.steps.len());
    for step in &plan.steps {
        let part = step.part.map_or(String::new(), |part| format!(", {part}"));
        listing.push_str(&format!("// step {}{part}\n{}", step.layer, step.function));
    }
    insta::assert_snapshot!(listing);
}
