//! The front end never panics on model text, whatever the text.
//!
//! `compile_source` is fed arbitrary strings, "token soup" drawn from DSL-ish fragments,
//! grammar-shaped random models and mutations of the valid corpus (`tests/corpus/good/`). Whatever
//! it is given it returns: `Ok` with a network whose parameters, binding, cost report and canonical
//! text can all be made, or `Err(Error::Model)` with at least one diagnostic, each on a line of the
//! text.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;

use conv_dsl::{Dim, Error, Network, Params};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// About 256 cases per property; no regression files written into the source tree.
fn config() -> ProptestConfig {
    ProptestConfig { cases: 256, failure_persistence: None, max_shrink_iters: 2048, ..ProptestConfig::default() }
}

/// The most parameter values a test will allocate with `Params::random` (4 MiB of f32).
const MAX_RANDOM_PARAMETERS: u128 = 1 << 20;

/// Compiles `text` and checks the property. Returns whether the text compiled.
fn compiles_or_reports(text: &str) -> Result<bool, TestCaseError> {
    // Parsing alone must not panic either, and a parsed program must print.
    if let Ok(program) = conv_dsl::parse_source("fuzz.conv", text) {
        let _ = program.to_string();
    }
    let line_count = text.lines().count();
    match conv_dsl::compile_source("fuzz.conv", text) {
        Ok(network) => {
            exercise(&network)?;
            Ok(true)
        }
        Err(Error::Model { diagnostics, rendered }) => {
            prop_assert!(!diagnostics.is_empty(), "an error with no diagnostics for {text:?}");
            for diagnostic in &diagnostics {
                let start = diagnostic.location.start;
                prop_assert!(
                    (1..=line_count + 1).contains(&start.line) && start.column >= 1,
                    "diagnostic `{diagnostic}` is outside the text's {line_count} lines: {text:?}"
                );
                prop_assert!(
                    !diagnostic.message.is_empty(),
                    "an empty message at {} for {text:?}",
                    diagnostic.location
                );
            }
            prop_assert!(rendered.starts_with("error: "), "rendered: {rendered:?}");
            let arrows = rendered.lines().filter(|line| line.starts_with(" --> fuzz.conv:")).count();
            prop_assert_eq!(arrows, diagnostics.len(), "one ` --> ` line per diagnostic in {:?}", rendered);
            Ok(false)
        }
        Err(other) => {
            Err(TestCaseError::fail(format!("compile_source returned a non-model error `{other}` for {text:?}")))
        }
    }
}

/// Everything that can be done with a checked network without running it.
fn exercise(network: &Network) -> Result<(), TestCaseError> {
    let _ = network.to_string();
    for index in 0..network.layers.len() {
        let _ = network.layer_text(index);
    }
    let _ = conv_dsl::cost_report(network).to_string();

    let parameters = network.parameters();
    let values: u128 = parameters
        .iter()
        .map(|param| param.shape.iter().fold(1u128, |product, &dim| product.saturating_mul(u128::from(dim))))
        .fold(0u128, u128::saturating_add);
    if values <= MAX_RANDOM_PARAMETERS {
        let params = Params::random(network, 0);
        prop_assert_eq!(params.len(), parameters.len());
        if let Err(error) = params.validate(network) {
            return Err(TestCaseError::fail(format!("Params::random does not fit its own network: {error}")));
        }
    }

    let declared = network.input_shape_in_layout();
    let concrete: Option<Vec<u64>> = declared.iter().map(Dim::known).collect();
    match concrete {
        Some(shape) => {
            // The checker accepted the concrete shapes, so binding them must succeed and agree.
            let binding = conv_dsl::bind(network, &shape).map_err(|error| {
                TestCaseError::fail(format!(
                    "a checked concrete model does not bind its declared shape: {error}\n{network}"
                ))
            })?;
            let expected: Option<Vec<u64>> = network.layers[network.output].shape.iter().map(Dim::known).collect();
            prop_assert_eq!(Some(binding.layers[network.output].shape.clone()), expected, "{}", network);
        }
        None => {
            // Symbolic dims: bind them to a few sizes; errors (empty outputs…) are fine, panics are not.
            for size in [1u64, 7, 64] {
                let mut symbols: BTreeMap<&str, u64> = BTreeMap::new();
                let shape: Vec<u64> = declared
                    .iter()
                    .map(|dim| match dim {
                        Dim::Known(known) => *known,
                        Dim::Symbol(name) => {
                            let next = size + symbols.len() as u64;
                            *symbols.entry(name.as_str()).or_insert(next)
                        }
                        _ => size,
                    })
                    .collect();
                if let Ok(binding) = conv_dsl::bind(network, &shape) {
                    prop_assert_eq!(binding.layers[network.output].shape.len(), declared.len());
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// (a) arbitrary strings

proptest! {
    #![proptest_config(config())]

    #[test]
    fn arbitrary_unicode_strings(text in any::<String>()) {
        compiles_or_reports(&text)?;
    }

    #[test]
    fn arbitrary_printable_ascii(text in "[ -~\n\t]{0,400}") {
        compiles_or_reports(&text)?;
    }

    #[test]
    fn arbitrary_bytes_read_lossily(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        compiles_or_reports(&String::from_utf8_lossy(&bytes))?;
    }
}

// ---------------------------------------------------------------------------------------------
// (b) token soup

/// DSL-ish fragments, and some that are Rust tokens but not DSL (or not even Rust).
const FRAGMENTS: &[&str] = &[
    "input",
    "conv",
    "depthwise",
    "pointwise",
    "separable",
    "add",
    "output",
    "x",
    "y",
    "c1",
    "dw",
    "pw",
    "s",
    "r",
    "N",
    "H",
    "W",
    "D",
    "{",
    "}",
    "[",
    "]",
    "(",
    ")",
    ":",
    ",",
    ";",
    "0",
    "1",
    "2",
    "3",
    "8",
    "16",
    "-1",
    "-0",
    "2147483647",
    "2147483648",
    "-2147483648",
    "4294967296",
    "99999999999999999999999999999",
    "0.1",
    "-0.5",
    "1e400",
    "1.5e-3",
    "0x10",
    "1_000",
    "1u8",
    "3i64",
    "1f32",
    "same",
    "valid",
    "none",
    "relu",
    "relu6",
    "leaky_relu(",
    "leaky_relu",
    "hardswish",
    "silu",
    "sigmoid",
    "layout",
    "nchw",
    "nhwc",
    "ncw",
    "nwc",
    "ncdhw",
    "ndhwc",
    "out",
    "kernel",
    "stride",
    "pad",
    "dilation",
    "groups",
    "multiplier",
    "bias",
    "true",
    "false",
    "act",
    "dw_act",
    ".",
    "-",
    "+",
    "=",
    "=>",
    "::",
    "#",
    "!",
    "?",
    "@",
    "$",
    "&",
    "|",
    "'a",
    "'",
    "\"",
    "\"str\"",
    "b\"bytes\"",
    "r#\"raw\"#",
    "r#",
    "r#conv",
    "fn",
    "self",
    "Self",
    "_",
    "__",
    "é",
    "日本",
    "//",
    "// comment\n",
    "/*",
    "*/",
    "/* c */",
    "/** doc */",
    "///",
    "\n",
    "\r\n",
    "\t",
    "\u{feff}",
    "\u{0}",
    "\\",
];

fn fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => proptest::sample::select(FRAGMENTS).prop_map(str::to_string),
        1 => any::<i64>().prop_map(|number| number.to_string()),
        1 => any::<u128>().prop_map(|number| number.to_string()),
        1 => "[a-zA-Z_][a-zA-Z0-9_]{0,6}",
    ]
}

fn separator() -> impl Strategy<Value = &'static str> {
    prop_oneof![3 => Just(" "), 2 => Just(""), 1 => Just("\n")]
}

/// An optional valid first line, so that the soup after it reaches the checker more often.
fn prelude() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just(""),
        Just("input x: [1, 4, 8, 8];\n"),
        Just("input x: [N, 4, H, W];\n"),
        Just("input x: [1, 8, 4] layout nwc;\n"),
    ]
}

fn token_soup() -> impl Strategy<Value = String> {
    (prelude(), proptest::collection::vec((fragment(), separator()), 0..80)).prop_map(|(prelude, pieces)| {
        let mut text = prelude.to_string();
        for (fragment, separator) in pieces {
            text.push_str(&fragment);
            text.push_str(separator);
        }
        text
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn token_soup_never_panics(text in token_soup()) {
        compiles_or_reports(&text)?;
    }
}

// ---------------------------------------------------------------------------------------------
// grammar-shaped random models (reach the checker and, often, `Ok`)

fn small_or_wild() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => (0i64..=9).prop_map(|number| number.to_string()),
        1 => Just("16".to_string()),
        1 => prop_oneof![Just("-1"), Just("0"), Just("2147483647"), Just("2147483648"), Just("99999999999999999999")]
            .prop_map(str::to_string),
    ]
}

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => small_or_wild(),
        2 => proptest::collection::vec(small_or_wild(), 0..4).prop_map(|items| format!("[{}]", items.join(", "))),
        1 => proptest::collection::vec((small_or_wild(), small_or_wild()), 0..4)
            .prop_map(|pairs| format!("[{}]", pairs.iter().map(|(a, b)| format!("[{a}, {b}]")).collect::<Vec<_>>().join(", "))),
        2 => proptest::sample::select(&["same", "valid", "none", "relu", "relu6", "hardswish", "silu", "sigmoid", "true", "false", "leaky_relu(0.1)", "leaky_relu()", "leaky_relu(-2)", "bogus"][..])
            .prop_map(str::to_string),
    ]
}

fn entry() -> impl Strategy<Value = String> {
    let keys =
        &["out", "kernel", "stride", "pad", "dilation", "groups", "multiplier", "bias", "act", "dw_act", "colour"][..];
    (proptest::sample::select(keys), value()).prop_map(|(key, value)| format!("{key}: {value}"))
}

fn input_declaration() -> impl Strategy<Value = String> {
    let dim = prop_oneof![
        8 => (4u64..=12).prop_map(|dim| dim.to_string()),
        1 => proptest::sample::select(&["N", "H", "W", "1", "0", "-3", "2147483647"][..]).prop_map(str::to_string),
    ];
    let layout = prop_oneof![
        6 => Just(""),
        1 => proptest::sample::select(&[" layout nchw", " layout nhwc", " layout nwc", " layout ndhwc", " layout zz"][..]),
    ];
    (1u64..=8, proptest::collection::vec(dim, 1..4), layout)
        .prop_map(|(channels, spatial, layout)| format!("input x: [1, {channels}, {}]{layout};", spatial.join(", ")))
}

fn layer(index: usize) -> impl Strategy<Value = String> {
    let kinds = &["conv", "depthwise", "pointwise", "separable", "add"][..];
    let sources = (0..=index)
        .map(|earlier| if earlier == 0 { "x".to_string() } else { format!("l{earlier}") })
        .collect::<Vec<_>>();
    (
        proptest::sample::select(kinds),
        proptest::sample::select(sources.clone()),
        proptest::sample::select(sources),
        1u64..=8,
        1u64..=3,
        prop_oneof![2 => Just(Vec::new()), 1 => proptest::collection::vec(entry(), 1..3)],
    )
        .prop_map(move |(kind, first, second, out, kernel, extra)| {
            // The required keys with sane values (so that many models are valid), then random entries.
            let mut entries: Vec<String> = match kind {
                "conv" | "separable" => {
                    vec![format!("out: {out}"), format!("kernel: {kernel}"), "pad: same".to_string()]
                }
                "depthwise" => vec![format!("kernel: {kernel}"), "pad: same".to_string()],
                "pointwise" => vec![format!("out: {out}")],
                _ => Vec::new(),
            };
            entries.extend(extra);
            let args = if kind == "add" { format!("{first}, {second}") } else { first };
            format!("{kind} l{}({args}) {{ {} }}", index + 1, entries.join(", "))
        })
}

fn grammar_model() -> impl Strategy<Value = String> {
    (
        input_declaration(),
        (1usize..=4).prop_flat_map(|count| (0..count).map(layer).collect::<Vec<_>>()),
        proptest::option::weighted(0.25, 1usize..=5),
    )
        .prop_map(|(input, layers, output)| {
            let mut text = input;
            for layer in layers {
                text.push('\n');
                text.push_str(&layer);
            }
            if let Some(output) = output {
                text.push_str(&format!("\noutput l{output};"));
            }
            text.push('\n');
            text
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn grammar_shaped_models_never_panic(text in grammar_model()) {
        compiles_or_reports(&text)?;
    }
}

/// The grammar generator is only useful if it also produces valid models: with a fixed seed,
/// some of its cases must compile (so that the `Ok` half of the property is exercised).
#[test]
fn grammar_shaped_models_sometimes_compile() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::{RngAlgorithm, TestRng, TestRunner};
    let mut runner = TestRunner::new_with_rng(config(), TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]));
    let strategy = grammar_model();
    let mut compiled = 0;
    for _ in 0..256 {
        let text = strategy.new_tree(&mut runner).expect("a case").current();
        if compiles_or_reports(&text).unwrap_or_else(|error| panic!("{error}")) {
            compiled += 1;
        }
    }
    assert!(compiled >= 20, "only {compiled} of 256 grammar-shaped models compiled");
}

// ---------------------------------------------------------------------------------------------
// (c) mutations of the valid corpus

/// The valid models of `tests/corpus/good/`, by name.
fn corpus() -> &'static [(String, String)] {
    static CORPUS: OnceLock<Vec<(String, String)>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/good");
        let mut files: Vec<(String, String)> = std::fs::read_dir(&folder)
            .unwrap_or_else(|error| panic!("reading {}: {error}", folder.display()))
            .map(|entry| entry.expect("a directory entry").path())
            .filter(|path| path.extension().is_some_and(|extension| extension == "conv"))
            .map(|path| {
                let text = std::fs::read_to_string(&path)
                    .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
                (path.file_name().unwrap().to_string_lossy().into_owned(), text)
            })
            .collect();
        files.sort();
        assert!(files.len() >= 5, "the good corpus has models: {files:?}");
        files
    })
}

#[test]
fn corpus_is_valid() {
    for (name, text) in corpus() {
        assert!(conv_dsl::compile_source(name, text).is_ok(), "{name} should compile");
        assert!(compiles_or_reports(text).unwrap_or_else(|error| panic!("{name}: {error}")), "{name}");
    }
}

/// Splits text into pieces: runs of identifier characters, runs of whitespace, and single other
/// characters. Concatenated, the pieces are the text.
fn pieces(text: &str) -> Vec<String> {
    #[derive(PartialEq)]
    enum Class {
        Word,
        Space,
        Other,
    }
    let class = |character: char| {
        if character.is_alphanumeric() || character == '_' {
            Class::Word
        } else if character.is_whitespace() {
            Class::Space
        } else {
            Class::Other
        }
    };
    let mut pieces: Vec<String> = Vec::new();
    let mut previous: Option<Class> = None;
    for character in text.chars() {
        let current = class(character);
        let joins = current != Class::Other && previous.as_ref() == Some(&current);
        if joins {
            pieces.last_mut().expect("a previous piece exists when the class repeats").push(character);
        } else {
            pieces.push(character.to_string());
        }
        previous = Some(current);
    }
    pieces
}

#[derive(Clone, Debug)]
enum Mutation {
    DeleteToken(usize),
    DuplicateToken(usize),
    ReplaceToken(usize, String),
    InsertToken(usize, String),
    DeleteChar(usize),
    DuplicateChar(usize),
    ReplaceChar(usize, char),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let position = any::<usize>();
    prop_oneof![
        position.prop_map(Mutation::DeleteToken),
        position.prop_map(Mutation::DuplicateToken),
        (position, fragment()).prop_map(|(at, token)| Mutation::ReplaceToken(at, token)),
        (position, fragment()).prop_map(|(at, token)| Mutation::InsertToken(at, token)),
        position.prop_map(Mutation::DeleteChar),
        position.prop_map(Mutation::DuplicateChar),
        (
            position,
            prop_oneof![
                any::<char>(),
                proptest::sample::select(
                    &['[', ']', '{', '}', '(', ')', ',', ';', ':', '-', '0', '9', '"', '\'', '/', '*', '\n'][..]
                )
            ]
        )
            .prop_map(|(at, character)| Mutation::ReplaceChar(at, character)),
    ]
}

fn apply(text: &str, mutation: &Mutation) -> String {
    match mutation {
        Mutation::DeleteToken(at)
        | Mutation::DuplicateToken(at)
        | Mutation::ReplaceToken(at, _)
        | Mutation::InsertToken(at, _) => {
            let mut pieces = pieces(text);
            // Only non-whitespace pieces are targets (at most every piece is whitespace: then any).
            let targets: Vec<usize> = (0..pieces.len()).filter(|&index| !pieces[index].trim().is_empty()).collect();
            let targets = if targets.is_empty() { (0..pieces.len()).collect() } else { targets };
            if targets.is_empty() {
                return match mutation {
                    Mutation::ReplaceToken(_, token) | Mutation::InsertToken(_, token) => token.clone(),
                    _ => String::new(),
                };
            }
            let index = targets[at % targets.len()];
            match mutation {
                Mutation::DeleteToken(_) => {
                    pieces.remove(index);
                }
                Mutation::DuplicateToken(_) => {
                    let copy = pieces[index].clone();
                    pieces.insert(index, copy);
                }
                Mutation::ReplaceToken(_, token) => pieces[index] = token.clone(),
                Mutation::InsertToken(_, token) => pieces.insert(index, format!("{token} ")),
                _ => unreachable!("only token mutations reach this match"),
            }
            pieces.concat()
        }
        Mutation::DeleteChar(at) | Mutation::DuplicateChar(at) | Mutation::ReplaceChar(at, _) => {
            let mut characters: Vec<char> = text.chars().collect();
            if characters.is_empty() {
                return text.to_string();
            }
            let index = at % characters.len();
            match mutation {
                Mutation::DeleteChar(_) => {
                    characters.remove(index);
                }
                Mutation::DuplicateChar(_) => characters.insert(index, characters[index]),
                Mutation::ReplaceChar(_, character) => characters[index] = *character,
                _ => unreachable!("only character mutations reach this match"),
            }
            characters.into_iter().collect()
        }
    }
}

fn mutated_corpus() -> impl Strategy<Value = String> {
    (any::<usize>(), proptest::collection::vec(mutation(), 1..5)).prop_map(|(which, mutations)| {
        let corpus = corpus();
        let (_, text) = &corpus[which % corpus.len()];
        mutations.iter().fold(text.clone(), |text, mutation| apply(&text, mutation))
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn mutated_corpus_never_panics(text in mutated_corpus()) {
        compiles_or_reports(&text)?;
    }
}

#[test]
fn pieces_concatenate_to_the_text() {
    for (name, text) in corpus() {
        assert_eq!(&pieces(text).concat(), text, "{name}");
    }
    assert_eq!(
        pieces("conv c1(x) { out: 64 }"),
        ["conv", " ", "c1", "(", "x", ")", " ", "{", " ", "out", ":", " ", "64", " ", "}"]
    );
}

// ---------------------------------------------------------------------------------------------
// extreme values, exhaustively: every key of every layer kind at the edges of the integer limit

#[test]
fn extreme_values_never_panic() {
    let extremes = [
        "0",
        "1",
        "2",
        "-1",
        "65536",
        "2147483647",
        "2147483648",
        "-2147483648",
        "9223372036854775807",
        "9223372036854775808",
    ];
    let inputs = [
        "input x: [1, 4, 6, 6];",
        "input x: [2147483647, 1, 1, 1];",
        "input x: [1, 2147483647, 1];",
        "input x: [1, 1, 2147483647, 2147483647, 2147483647];",
        "input x: [N, 2147483647, H, W];",
        "input x: [N, 3, H];",
    ];
    let layers = [
        "conv l(x) { out: 4, kernel: 3, KEY: VALUE }",
        "depthwise l(x) { kernel: 3, KEY: VALUE }",
        "pointwise l(x) { out: 4, KEY: VALUE }",
        "separable l(x) { out: 4, kernel: 3, KEY: VALUE }",
        "conv l(x) { out: VALUE, kernel: VALUE, stride: VALUE, pad: VALUE, dilation: VALUE, KEY: VALUE }",
        "depthwise l(x) { kernel: VALUE, multiplier: VALUE, pad: same, dilation: VALUE, KEY: VALUE }",
        "conv l(x) { out: 4, kernel: [VALUE, 1], pad: [[VALUE, VALUE], [0, VALUE]], KEY: VALUE }",
    ];
    let keys = ["out", "kernel", "stride", "pad", "dilation", "groups", "multiplier"];
    let mut checked = 0;
    for input in inputs {
        for layer in layers {
            for key in keys {
                for value in extremes {
                    let text = format!("{input}\n{}\n", layer.replace("KEY", key).replace("VALUE", value));
                    compiles_or_reports(&text).unwrap_or_else(|error| panic!("{error}"));
                    // The same layer twice in a chain, with a residual add.
                    let chained = format!(
                        "{text}{}\nadd r(l, m);\n",
                        layer.replace("l(x)", "m(l)").replace("KEY", key).replace("VALUE", value)
                    );
                    compiles_or_reports(&chained).unwrap_or_else(|error| panic!("{error}"));
                    checked += 2;
                }
            }
        }
    }
    assert_eq!(checked, 2 * inputs.len() * layers.len() * keys.len() * extremes.len());
}
