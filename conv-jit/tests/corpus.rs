//! Every model of the good corpus, lowered with several schedules, compiled and run by the JIT:
//! bit for bit the IR interpreter's output, and within tolerance of the reference interpreter's.

mod common;

use conv_dsl::compile_source;

#[test]
fn good_corpus_runs_like_the_interpreters() {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/good");
    let mut paths: Vec<_> = std::fs::read_dir(directory)
        .expect("the corpus directory exists")
        .map(|entry| entry.expect("the corpus directory is readable").path())
        .collect();
    paths.sort();
    assert!(paths.len() >= 10, "the good corpus has its models");
    let choices = common::standard_choices();
    for path in paths {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(&path).expect("corpus files are readable");
        let network = compile_source(&name, &text).expect("good corpus files check");
        // Symbolic dims: batch 2, spatial 11 (as in conv-dsl's lowering test).
        let shape = network.example_input_shape(2, 11);
        let started = std::time::Instant::now();
        if let Err(message) = common::check_network(&name, &network, &shape, 9, &choices) {
            panic!("{message}");
        }
        eprintln!("{name}: {:.2?}", started.elapsed());
    }
}
