//! Snapshots of the `conv!` expansion (formatted with prettyplease) for every model of the good
//! corpus; models with symbolic dims snapshot the macro's diagnostics instead. Each expansion must
//! also parse as a Rust file.
//!
//! Re-bless with `INSTA_UPDATE=always cargo test -p conv-dsl --test emit_rust` or `cargo insta review`.

use conv_dsl::emit_rust::{self, Header};
use proc_macro2::TokenStream;
use quote::format_ident;

fn header() -> Header {
    Header {
        attributes: TokenStream::new(),
        visibility: quote::quote!(pub),
        name: format_ident!("model"),
        items: TokenStream::new(),
    }
}

/// The expansion of `source` as formatted Rust, or the diagnostics the macro reports.
fn expansion(name: &str, source: &str) -> String {
    match conv_dsl::compile_source_concrete(name, source) {
        Ok(network) => {
            let tokens = emit_rust::module(&header(), &network, source).expect("a checked concrete model emits");
            let file: syn::File = syn::parse2(tokens).expect("the expansion is a Rust file");
            prettyplease::unparse(&file)
        }
        Err(error) => format!("diagnostics:\n{error}"),
    }
}

#[test]
fn good_corpus_expansions() {
    insta::glob!("../../tests/corpus/good", "*.conv", |path| {
        let source = std::fs::read_to_string(path).expect("corpus files are readable");
        let name = path.file_name().expect("a file").to_string_lossy().into_owned();
        insta::assert_snapshot!(expansion(&name, &source));
    });
}

#[test]
fn symbolic_dims_are_errors_on_their_tokens() {
    let error = conv_dsl::compile_source_concrete(
        "m.conv",
        "input x: [N, 8, H, 16];\nconv c(x) { out: 8, kernel: 3, groups: 3 }\n",
    )
    .unwrap_err();
    let conv_dsl::Error::Model { diagnostics, .. } = error else { panic!("diagnostics expected, got {error:?}") };
    let found: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found[0].starts_with("1:11: batch dim `N` of input `x` is symbolic"), "{found:#?}");
    assert!(found[1].starts_with("1:17: dim `H` of input `x` is symbolic"), "{found:#?}");
    assert!(found[2].starts_with("2:40: `groups: 3` does not divide"), "{found:#?}");
}

#[test]
fn identical_layers_share_one_kernel() {
    let source = "input x: [1, 8, 10, 10];\n\
                  depthwise a(x) { kernel: 3, pad: 1 }\n\
                  depthwise b(a) { kernel: 3, pad: 1 }\n\
                  depthwise c(b) { kernel: 3, pad: 1, act: relu }\n";
    let network = conv_dsl::compile_source("m.conv", source).unwrap();
    let text = emit_rust::module(&header(), &network, source).unwrap().to_string();
    // to_internal, a = b, c, to_user: four kernels for five steps.
    assert!(text.contains("fn k3 <"), "{text}");
    assert!(!text.contains("fn k4 <"), "{text}");
    assert!(text.contains("`a` (lanes=8,tile=4x1), `b` (lanes=8,tile=4x1)"), "{text}");
}

#[test]
fn the_stub_keeps_the_item_names() {
    let file: syn::File = syn::parse2(emit_rust::stub(&header())).expect("the stub is a Rust file");
    let text = prettyplease::unparse(&file);
    for item in ["INPUT_LEN", "OUTPUT_LEN", "struct Params", "struct Packed", "struct Workspace", "fn forward"] {
        assert!(text.contains(item), "{item} missing from\n{text}");
    }
}

/// A loop body that reads one buffer 128 times or more at one variable part (a grouped 3D
/// convolution's border regions) reads it through a window at constant offsets; smaller bodies
/// (a 2D depthwise layer's) read each element with its own checked index.
#[test]
fn large_loop_bodies_read_through_windows() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/corpus/good/layout_ndhwc.conv");
    let source = std::fs::read_to_string(path).expect("the corpus file is readable");
    let windowed = expansion("layout_ndhwc.conv", &source);
    assert!(windowed.contains("= window::<"), "{windowed}");
    assert!(windowed.contains("load(r"), "{windowed}");
    // (7 channels: the AVX2 plan gives 8 or more planes of 10 × 10 the transposed plane kernel.)
    let small = expansion("m.conv", "input x: [1, 7, 10, 10];\ndepthwise d(x) { kernel: 3, pad: 1 }\n");
    assert!(!small.contains("= window::<"), "{small}");
}
