//! convgen's front end: the conv DSL, its checker, the checked network, the reference interpreter
//! and the cost model.
//!
//! The pipeline runs one way: text or tokens → [`syntax`] (syn) → [`ast`] (spanned) → [`check`]
//! (every problem collected) → [`spec`] (plain, validated layers) → [`bind`] (concrete shapes) →
//! [`interp`] (the oracle). Nothing after `syntax` sees syn types.
//!
//! ```
//! use conv_dsl::{Params, Tensor, compile_source, interp};
//!
//! let network = compile_source("block.conv", "
//!     input x: [1, 8, 6, 6];
//!     depthwise dw(x) { kernel: 3, pad: 1, act: relu6 }
//!     pointwise pw(dw) { out: 16 }
//! ").expect("the model is valid");
//! let params = Params::random(&network, 7);
//! let input = Tensor::new(vec![1, 8, 6, 6], vec![0.5; 8 * 36]).unwrap();
//! let output = interp::run(&network, &input, &params).unwrap();
//! assert_eq!(output.shape(), &[1, 16, 6, 6]);
//!
//! // Every problem is reported at once, each on its token.
//! let error = compile_source("bad.conv", "
//!     input x: [1, 32, 8, 8];
//!     conv c(x) { out: 64, kernel: 3, groups: 3 }
//!     pointwise p(y) { out: 8 }
//! ").unwrap_err();
//! assert!(error.to_string().contains("`groups: 3` does not divide the input channels (32)"));
//! assert!(error.to_string().contains("unknown name `y`"));
//! ```
#![deny(missing_docs)]

pub mod ast;
pub mod bind;
pub mod check;
pub mod cost;
pub mod diagnostic;
pub mod dim;
pub mod emit_rust;
pub mod error;
pub mod follow;
pub mod interp;
pub mod ir;
pub mod ir_interp;
pub mod lower;
pub mod params;
pub mod random;
pub mod schedule;
pub mod spec;
pub mod syntax;
pub mod tensor;

pub use bind::{Binding, bind};
pub use cost::{CostReport, report as cost_report};
pub use diagnostic::{Diagnostic, LocatedDiagnostic, Location, Span};
pub use dim::Dim;
pub use error::Error;
pub use params::Params;
pub use spec::{Activation, Conv, ConvKind, Layer, Layout, Network, Op, Padding, Source};
pub use tensor::Tensor;

/// Parses and checks a token stream (the body of `conv!`). On failure, every problem, parse and
/// check alike, in source order.
pub fn compile_tokens(tokens: proc_macro2::TokenStream) -> Result<Network, Vec<Diagnostic>> {
    let (program, parse_diagnostics) = syntax::parse_tokens(tokens);
    finish(program, parse_diagnostics)
}

/// Parses and checks a token stream for the `conv!` macro, which needs concrete shapes: like
/// [`compile_tokens`], and every symbolic input dim is also an error, on its token (see
/// [`emit_rust::symbolic_dims`]). Every problem is reported, in source order.
pub fn compile_tokens_concrete(tokens: proc_macro2::TokenStream) -> Result<Network, Vec<Diagnostic>> {
    let (program, mut parse_diagnostics) = syntax::parse_tokens(tokens);
    parse_diagnostics.extend(emit_rust::symbolic_dims(&program));
    finish(program, parse_diagnostics)
}

/// Parses and checks model text for `conv_file!`, which needs concrete shapes: like
/// [`compile_source`] (spans released afterwards included), and every symbolic input dim is also an
/// error.
///
/// Inside a procedural macro, call it between `proc_macro2::fallback::force()` and
/// `proc_macro2::fallback::unforce()`: with the compiler's spans, text parsed in a macro has no line
/// and column of its own and releasing spans panics; with `proc_macro2`'s own (fallback) spans both
/// work, and nothing returned holds a span.
pub fn compile_source_concrete(source_name: &str, source: &str) -> Result<Network, Error> {
    compile_text(source_name, source, emit_rust::symbolic_dims)
}

/// Parses and checks model text. `source_name` (a path, usually) is used in rendered messages.
///
/// Not for use inside a procedural macro (the macro uses [`compile_tokens`]): after checking, it
/// releases the span information `proc_macro2` keeps for every text parsed on this thread, which
/// would otherwise grow without bound in a long-running process (and wrap its 32-bit positions
/// after 4 GiB of text).
pub fn compile_source(source_name: &str, source: &str) -> Result<Network, Error> {
    compile_text(source_name, source, |_| Vec::new())
}

/// Parses text, adds `extra_checks`' diagnostics to the parser's, checks, renders any problems
/// against the text, and releases the thread's span table.
fn compile_text(
    source_name: &str,
    source: &str,
    extra_checks: impl FnOnce(&ast::Program) -> Vec<Diagnostic>,
) -> Result<Network, Error> {
    let (program, mut parse_diagnostics) = syntax::parse_str(source);
    parse_diagnostics.extend(extra_checks(&program));
    let result = finish(program, parse_diagnostics).map_err(|diagnostics| {
        let located: Vec<LocatedDiagnostic> = diagnostics.iter().map(Diagnostic::located).collect();
        let rendered = diagnostic::render(source_name, source, &located);
        Error::Model { diagnostics: located, rendered }
    });
    // Nothing returned holds a span any more (the network has none; diagnostics are located).
    proc_macro2::extra::invalidate_current_thread_spans();
    result
}

/// Parses model text without checking it (for `convgen inspect --emit ast`).
pub fn parse_source(source_name: &str, source: &str) -> Result<ast::Program, Error> {
    let (program, diagnostics) = syntax::parse_str(source);
    if diagnostics.is_empty() {
        return Ok(program);
    }
    let located: Vec<LocatedDiagnostic> = diagnostics.iter().map(Diagnostic::located).collect();
    let rendered = diagnostic::render(source_name, source, &located);
    Err(Error::Model { diagnostics: located, rendered })
}

fn finish(program: ast::Program, mut diagnostics: Vec<Diagnostic>) -> Result<Network, Vec<Diagnostic>> {
    if program.statements.is_empty() && !diagnostics.is_empty() {
        return Err(diagnostics); // nothing parsed (e.g. the text could not be split into tokens)
    }
    let (network, check_diagnostics) = check::check(&program);
    diagnostics.extend(check_diagnostics);
    diagnostics.sort_by_key(|diagnostic| diagnostic.span.location());
    match network {
        Some(network) if diagnostics.is_empty() => Ok(network),
        _ => Err(diagnostics),
    }
}
