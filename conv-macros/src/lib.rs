//! The `conv!` and `conv_file!` proc macros of convgen: a model in the DSL becomes a module of plain
//! Rust specialised to its shapes. Use them through the facade crate, `convgen::conv!` and
//! `convgen::conv_file!`: the expansion refers to `::convgen::macro_support`.
//!
//! ```text
//! convgen::conv! {
//!     pub mod block {
//!         input x: [1, 32, 56, 56];
//!         depthwise dw(x) { kernel: 3, pad: 1, act: relu6 }
//!         pointwise pw(dw) { out: 64, act: relu6 }
//!     }
//! }
//! convgen::conv_file!(pub mod mobilenet = "models/mobilenet_v1.conv"); // relative to the crate
//! ```
//!
//! This crate is glue: it parses the declaration, checks the model with the same front end as
//! `convgen check` ([`conv_dsl::compile_tokens_concrete`], [`conv_dsl::compile_source_concrete`]),
//! and emits [`conv_dsl::emit_rust::module`]. Every problem of a model becomes a compile error on
//! its token (for `conv_file!`, on the path literal, with the file's `path:line:col`), and the
//! declared module is still emitted as a stub ([`conv_dsl::emit_rust::stub`]) so that code using
//! it shows no follow-on errors.
#![deny(missing_docs)]

use std::path::Path;

use conv_dsl::emit_rust::{self, Header};
use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::{ToTokens, quote};
use syn::parse::{Parse, ParseStream};
use syn::{Attribute, Ident, LitStr, Token, Visibility, braced};

/// A module generated from a model written inline:
/// `conv! { pub mod NAME { input x: [1, 3, 32, 32]; conv c(x) { out: 8, kernel: 3 } } }`.
///
/// The module has shape constants, `Params` (PyTorch names and layouts), `Packed`, `Workspace`
/// and `forward(&input, &packed, &mut output, &mut workspace)` over fixed-size arrays.
#[proc_macro]
pub fn conv(input: TokenStream) -> TokenStream {
    let declaration = match syn::parse2::<InlineDeclaration>(input.into()) {
        Ok(declaration) => declaration,
        Err(error) => return error.to_compile_error().into(),
    };
    let header = declaration.head.header(TokenStream2::new());
    let model_source = declaration.body.to_string();
    match conv_dsl::compile_tokens_concrete(declaration.body) {
        Ok(network) => expand(&header, &network, &model_source),
        Err(diagnostics) => {
            let errors = diagnostics
                .iter()
                .map(|diagnostic| syn::Error::new(diagnostic.span.raw(), &diagnostic.message).to_compile_error());
            let stub = emit_rust::stub(&header);
            quote!(#(#errors)* #stub).into()
        }
    }
}

/// A module generated from a model file, its path relative to the crate's directory
/// (`CARGO_MANIFEST_DIR`): `conv_file!(pub mod NAME = "models/net.conv");`. Cargo rebuilds the
/// crate when the file changes. Problems in the file are reported on the path, with the file's
/// line and column.
#[proc_macro]
pub fn conv_file(input: TokenStream) -> TokenStream {
    let declaration = match syn::parse2::<FileDeclaration>(input.into()) {
        Ok(declaration) => declaration,
        Err(error) => return error.to_compile_error().into(),
    };
    let relative = declaration.path.value();
    let path_span = declaration.path.span();
    let Ok(directory) = std::env::var("CARGO_MANIFEST_DIR") else {
        let error = syn::Error::new(path_span, "`CARGO_MANIFEST_DIR` is not set: build with Cargo").to_compile_error();
        let stub = emit_rust::stub(&declaration.head.header(TokenStream2::new()));
        return quote!(#error #stub).into();
    };
    let path = Path::new(&directory).join(&relative);
    // `include_str!` of the absolute path makes Cargo track the file (the constant is unused).
    let tracking = match path.to_str() {
        Some(absolute) if path.is_file() => quote!(
            const _: &str = include_str!(#absolute);
        ),
        _ => TokenStream2::new(),
    };
    let header = declaration.head.header(tracking);
    let source = match std::fs::read_to_string(&path) {
        Ok(source) => source,
        Err(error) => {
            let message = format!(
                "cannot read the model file `{relative}` (relative to the crate's `CARGO_MANIFEST_DIR`): {error}"
            );
            let error = syn::Error::new(path_span, message).to_compile_error();
            let stub = emit_rust::stub(&header);
            return quote!(#error #stub).into();
        }
    };
    // proc_macro2's own spans give the file's lines and columns (and may be released afterwards,
    // which the compiler's spans may not); no span outlives this call.
    proc_macro2::fallback::force();
    let result = conv_dsl::compile_source_concrete(&relative, &source);
    proc_macro2::fallback::unforce();
    match result {
        Ok(network) => expand(&header, &network, &source),
        Err(conv_dsl::Error::Model { diagnostics, .. }) => {
            let errors = diagnostics.iter().map(|diagnostic| {
                let rendered = conv_dsl::diagnostic::render(&relative, &source, std::slice::from_ref(diagnostic));
                let message = rendered.strip_prefix("error: ").unwrap_or(&rendered).trim_end();
                syn::Error::new(path_span, message).to_compile_error()
            });
            let stub = emit_rust::stub(&header);
            quote!(#(#errors)* #stub).into()
        }
        Err(other) => {
            let error = syn::Error::new(path_span, format!("{relative}: {other}")).to_compile_error();
            let stub = emit_rust::stub(&header);
            quote!(#error #stub).into()
        }
    }
}

fn expand(header: &Header, network: &conv_dsl::Network, model_source: &str) -> TokenStream {
    match emit_rust::module(header, network, model_source) {
        Ok(tokens) => tokens.into(),
        Err(error) => {
            let error = syn::Error::new(Span::call_site(), error.to_string()).to_compile_error();
            let stub = emit_rust::stub(header);
            quote!(#error #stub).into()
        }
    }
}

/// `#[attrs] pub mod NAME`.
struct Head {
    attributes: Vec<Attribute>,
    visibility: Visibility,
    name: Ident,
}

impl Head {
    fn header(&self, items: TokenStream2) -> Header {
        let attributes = &self.attributes;
        Header {
            attributes: quote!(#(#attributes)*),
            visibility: self.visibility.to_token_stream(),
            name: self.name.clone(),
            items,
        }
    }
}

impl Parse for Head {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let attributes = input.call(Attribute::parse_outer)?;
        let visibility = input.parse()?;
        input.parse::<Token![mod]>()?;
        let name = input.parse()?;
        Ok(Head { attributes, visibility, name })
    }
}

/// `pub mod NAME { DSL }`.
struct InlineDeclaration {
    head: Head,
    body: TokenStream2,
}

impl Parse for InlineDeclaration {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let head = input.parse()?;
        let content;
        braced!(content in input);
        let body = content.parse()?;
        Ok(InlineDeclaration { head, body })
    }
}

/// `pub mod NAME = "path";`.
struct FileDeclaration {
    head: Head,
    path: LitStr,
}

impl Parse for FileDeclaration {
    fn parse(input: ParseStream) -> syn::Result<Self> {
        let head = input.parse()?;
        input.parse::<Token![=]>()?;
        let path = input.parse()?;
        if input.peek(Token![;]) {
            input.parse::<Token![;]>()?;
        }
        Ok(FileDeclaration { head, path })
    }
}
