//! Text or tokens → [`crate::ast::Program`], with syn.
//!
//! The DSL is made of Rust tokens, so the same parser reads a `.conv` file at run time (through
//! `proc_macro2`'s own lexer, whose `span-locations` give line and column) and the body of a `conv!`
//! invocation at compile time. Parsing recovers at statement and entry boundaries, so every syntax
//! error in a model is reported in one pass, not only the first.
//!
//! This is the only module that sees syn types.

use std::str::FromStr;

use proc_macro2::{Delimiter, Group, TokenStream, TokenTree};
use syn::ext::IdentExt;
use syn::parse::{ParseStream, Parser};
use syn::{LitFloat, LitInt, Token};

use crate::ast::{DimLit, Entry, Ident, InputDecl, IntLit, LayerDecl, OutputDecl, Program, Statement, Value};
use crate::diagnostic::{Diagnostic, Span};

/// The largest model text accepted (bytes).
pub const MAX_SOURCE_BYTES: usize = 16 << 20;

/// How deep `[`, `(` and `{` may nest in a model (the grammar needs 3).
const MAX_NESTING: usize = 16;

/// The statement keywords.
pub const LAYER_KINDS: [&str; 5] = ["conv", "depthwise", "pointwise", "separable", "add"];

/// Parses model text. Returns the statements that parsed and a diagnostic for each that did not.
pub fn parse_str(source: &str) -> (Program, Vec<Diagnostic>) {
    if source.len() > MAX_SOURCE_BYTES {
        let message =
            format!("the model is {} bytes long; the limit is {} bytes (16 MiB)", source.len(), MAX_SOURCE_BYTES);
        return (Program::default(), vec![Diagnostic::new(Span::call_site(), message)]);
    }
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    match TokenStream::from_str(source) {
        Ok(tokens) => parse_tokens(tokens),
        Err(error) => {
            let message = "cannot split the model into tokens here: an unbalanced bracket, an unterminated \
                           comment or string, or a character that is not part of the DSL";
            (Program::default(), vec![Diagnostic::new(Span::new(error.span()), message)])
        }
    }
}

/// Parses a token stream (the body of `conv!`, or text already lexed).
pub fn parse_tokens(tokens: TokenStream) -> (Program, Vec<Diagnostic>) {
    let mut diagnostics = Vec::new();
    if let Some(span) = too_deep(&tokens) {
        let message = format!("brackets nest more than {MAX_NESTING} deep here");
        diagnostics.push(Diagnostic::new(span, message));
        return (Program::default(), diagnostics);
    }
    let mut program = Program::default();
    let mut pending: std::collections::VecDeque<Vec<TokenTree>> = split_statements(tokens).into();
    while let Some(statement) = pending.pop_front() {
        if !matches!(statement.first(), Some(TokenTree::Ident(_))) {
            // Junk where a statement should start: report it, then resynchronise at the next
            // statement keyword so that the statement after it is still parsed.
            let first = &statement[0];
            let message = format!(
                "expected a statement (`input`, `conv`, `depthwise`, `pointwise`, `separable`, `add` or `output`); found `{first}`"
            );
            diagnostics.push(Diagnostic::new(Span::new(first.span()), message));
            let restart = statement.iter().position(|token| {
                matches!(token, TokenTree::Ident(ident) if ident == "input" || ident == "output" || LAYER_KINDS.contains(&ident.to_string().as_str()))
            });
            if let Some(restart) = restart {
                pending.push_front(statement[restart..].to_vec());
            }
            continue;
        }
        let mut entry_diagnostics = Vec::new();
        let parsed = parse_with(|input| parse_statement(input, &mut entry_diagnostics), &statement, &mut diagnostics);
        diagnostics.append(&mut entry_diagnostics);
        if let Some(parsed) = parsed.or_else(|| damaged_statement(&statement)) {
            program.statements.push(parsed);
        }
    }
    diagnostics.sort_by_key(|diagnostic| diagnostic.span.location());
    (program, diagnostics)
}

/// A statement that failed to parse but whose keyword and name are readable: kept, marked damaged,
/// so that the layers using its name do not report it as unknown.
fn damaged_statement(tokens: &[TokenTree]) -> Option<Statement> {
    let (Some(TokenTree::Ident(keyword)), Some(TokenTree::Ident(name))) = (tokens.first(), tokens.get(1)) else {
        return None;
    };
    let keyword_text = keyword.to_string();
    let name = Ident { name: name.to_string(), span: Span::new(name.span()) };
    if keyword_text == "input" {
        let keyword = Span::new(keyword.span());
        return Some(Statement::Input(InputDecl {
            keyword,
            name,
            dims: Vec::new(),
            dims_span: keyword,
            layout: None,
            damaged: true,
        }));
    }
    if LAYER_KINDS.contains(&keyword_text.as_str()) {
        let kind = Ident { name: keyword_text, span: Span::new(keyword.span()) };
        let args_span = name.span;
        return Some(Statement::Layer(LayerDecl {
            kind,
            name,
            args: Vec::new(),
            args_span,
            entries: Vec::new(),
            damaged: true,
        }));
    }
    None
}

/// The span of the first group nested deeper than [`MAX_NESTING`], found without recursion (syn
/// builds its cursor recursively, so unbounded nesting must never reach it).
fn too_deep(tokens: &TokenStream) -> Option<Span> {
    let mut stack: Vec<proc_macro2::token_stream::IntoIter> = vec![tokens.clone().into_iter()];
    while let Some(top) = stack.last_mut() {
        match top.next() {
            Some(TokenTree::Group(group)) => {
                if stack.len() >= MAX_NESTING {
                    return Some(Span::new(group.span_open()));
                }
                stack.push(group.stream().into_iter());
            }
            Some(_) => {}
            None => {
                stack.pop();
            }
        }
    }
    None
}

/// Splits the top level into statements: each ends after a `;` or after a `{…}` group (a layer's
/// body, which may be followed by an optional `;`).
fn split_statements(tokens: TokenStream) -> Vec<Vec<TokenTree>> {
    let mut statements = Vec::new();
    let mut current: Vec<TokenTree> = Vec::new();
    for token in tokens {
        let ends_statement = match &token {
            TokenTree::Punct(punct) => punct.as_char() == ';',
            TokenTree::Group(group) => group.delimiter() == Delimiter::Brace,
            _ => false,
        };
        let is_semicolon = matches!(&token, TokenTree::Punct(punct) if punct.as_char() == ';');
        if is_semicolon && current.is_empty() {
            continue; // `};` or a stray `;`: an empty statement.
        }
        current.push(token);
        if ends_statement {
            statements.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        statements.push(current);
    }
    statements
}

/// Runs a syn parser over `tokens`, turning every syn error into a diagnostic. An "unexpected end of
/// input" error points at the last token rather than at the (meaningless) call site.
fn parse_with<T>(
    parser: impl FnOnce(ParseStream) -> syn::Result<T>,
    tokens: &[TokenTree],
    diagnostics: &mut Vec<Diagnostic>,
) -> Option<T> {
    let stream: TokenStream = tokens.iter().cloned().collect();
    match parser.parse2(stream) {
        Ok(value) => Some(value),
        Err(error) => {
            let last = tokens.last().map(|token| token.span());
            for single in error {
                let message = single.to_string();
                let span = match (message.starts_with("unexpected end of input"), last) {
                    (true, Some(last)) => Span::new(last),
                    _ => Span::new(single.span()),
                };
                let message = message.replace("unexpected end of input, ", "unexpected end of statement, ");
                diagnostics.push(Diagnostic::new(span, message));
            }
            None
        }
    }
}

/// One statement. Errors inside a layer's body go to `diagnostics` and leave the layer in the
/// program, marked damaged, so that later layers can still refer to it.
fn parse_statement(input: ParseStream, diagnostics: &mut Vec<Diagnostic>) -> syn::Result<Statement> {
    let keyword = input.call(syn::Ident::parse_any)?;
    let word = keyword.to_string();
    let statement = match word.as_str() {
        "input" => Statement::Input(parse_input(input, &keyword)?),
        "output" => {
            let name = ident(input)?;
            input.parse::<Token![;]>()?;
            Statement::Output(OutputDecl { keyword: Span::new(keyword.span()), name })
        }
        kind if LAYER_KINDS.contains(&kind) => Statement::Layer(parse_layer(input, &keyword, diagnostics)?),
        other => {
            return Err(syn::Error::new(
                keyword.span(),
                format!(
                    "unknown statement `{other}`; expected `input`, `conv`, `depthwise`, `pointwise`, \
                     `separable`, `add` or `output`"
                ),
            ));
        }
    };
    if !input.is_empty() {
        return Err(input.error("expected the end of the statement"));
    }
    Ok(statement)
}

fn parse_input(input: ParseStream, keyword: &syn::Ident) -> syn::Result<InputDecl> {
    let name = ident(input)?;
    input.parse::<Token![:]>()?;
    let content;
    let bracket = syn::bracketed!(content in input);
    let mut dims = Vec::new();
    while !content.is_empty() {
        let dim = if content.peek(syn::Ident) {
            DimLit::Symbol(ident(&content)?)
        } else if content.peek(LitInt) || content.peek(Token![-]) {
            DimLit::Int(int_literal(&content)?)
        } else {
            return Err(content.error("expected a dim: an integer or a symbolic name such as `N`"));
        };
        dims.push(dim);
        if content.is_empty() {
            break;
        }
        content.parse::<Token![,]>()?;
    }
    let layout = if input.peek(syn::Ident) {
        let word = input.call(syn::Ident::parse_any)?;
        if word != "layout" {
            return Err(syn::Error::new(word.span(), "expected `layout` or `;`"));
        }
        Some(ident(input)?)
    } else {
        None
    };
    input.parse::<Token![;]>()?;
    Ok(InputDecl {
        keyword: Span::new(keyword.span()),
        name,
        dims,
        dims_span: Span::new(bracket.span.join()),
        layout,
        damaged: false,
    })
}

fn parse_layer(input: ParseStream, keyword: &syn::Ident, diagnostics: &mut Vec<Diagnostic>) -> syn::Result<LayerDecl> {
    let kind = Ident { name: keyword.to_string(), span: Span::new(keyword.span()) };
    let name = ident(input)?;
    let content;
    let paren = syn::parenthesized!(content in input);
    let mut args = Vec::new();
    while !content.is_empty() {
        args.push(ident(&content)?);
        if content.is_empty() {
            break;
        }
        content.parse::<Token![,]>()?;
    }
    let mut entries = Vec::new();
    let mut damaged = false;
    if input.peek(syn::token::Brace) {
        let body: Group = input.parse()?;
        let before = diagnostics.len();
        entries = parse_entries(body, diagnostics);
        damaged = diagnostics.len() > before;
    }
    if input.peek(Token![;]) {
        input.parse::<Token![;]>()?;
    }
    Ok(LayerDecl { kind, name, args, args_span: Span::new(paren.span.join()), entries, damaged })
}

/// The `{ key: value, … }` body. Each entry is parsed on its own so that one bad entry does not hide
/// the others; the entries that parse are returned, an error for each that does not is recorded.
fn parse_entries(body: Group, diagnostics: &mut Vec<Diagnostic>) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut pieces: Vec<Vec<TokenTree>> = vec![Vec::new()];
    for token in body.stream() {
        match &token {
            TokenTree::Punct(punct) if punct.as_char() == ',' => {
                if pieces.last().is_some_and(Vec::is_empty) {
                    diagnostics.push(Diagnostic::new(Span::new(punct.span()), "expected `key: value` before `,`"));
                }
                pieces.push(Vec::new());
            }
            _ => pieces.last_mut().expect("pieces starts non-empty and only grows").push(token),
        }
    }
    for piece in pieces.into_iter().filter(|piece| !piece.is_empty()) {
        if let Some(entry) = parse_with(parse_entry, &piece, diagnostics) {
            entries.push(entry);
        }
    }
    entries
}

fn parse_entry(input: ParseStream) -> syn::Result<Entry> {
    let key = input.call(syn::Ident::parse_any)?;
    input.parse::<Token![:]>()?;
    let value = parse_value(input)?;
    if !input.is_empty() {
        return Err(input.error("expected `,` between entries"));
    }
    Ok(Entry { key: Ident { name: key.to_string(), span: Span::new(key.span()) }, value })
}

fn parse_value(input: ParseStream) -> syn::Result<Value> {
    if input.peek(syn::token::Bracket) {
        let content;
        let bracket = syn::bracketed!(content in input);
        let mut items = Vec::new();
        while !content.is_empty() {
            items.push(parse_value(&content)?);
            if content.is_empty() {
                break;
            }
            content.parse::<Token![,]>()?;
        }
        return Ok(Value::List { items, span: Span::new(bracket.span.join()) });
    }
    if input.peek(LitFloat) || (input.peek(Token![-]) && input.peek2(LitFloat)) {
        let minus = input.parse::<Option<Token![-]>>()?;
        let literal: LitFloat = input.parse()?;
        let magnitude: f64 = literal.base10_parse()?;
        let (value, text, span) = match minus {
            Some(minus) => (-magnitude, format!("-{literal}"), Span::new(minus.span).join(Span::new(literal.span()))),
            None => (magnitude, literal.to_string(), Span::new(literal.span())),
        };
        return Ok(Value::Float { value, text, span });
    }
    if input.peek(LitInt) || input.peek(Token![-]) {
        return Ok(Value::Int(int_literal(input)?));
    }
    if input.peek(syn::Ident::peek_any) {
        let word = input.call(syn::Ident::parse_any)?;
        let name = Ident { name: word.to_string(), span: Span::new(word.span()) };
        if input.peek(syn::token::Paren) {
            let content;
            let paren = syn::parenthesized!(content in input);
            let mut args = Vec::new();
            while !content.is_empty() {
                args.push(parse_value(&content)?);
                if content.is_empty() {
                    break;
                }
                content.parse::<Token![,]>()?;
            }
            return Ok(Value::Call { name, args, span: Span::new(paren.span.join()) });
        }
        return Ok(Value::Word(name));
    }
    Err(input.error("expected a value: an integer, a list such as `[1, 7]`, or a word such as `same` or `relu`"))
}

/// `-`? integer literal. A literal too large for `i64` is kept (value `None`) for the checker to report.
fn int_literal(input: ParseStream) -> syn::Result<IntLit> {
    let minus = input.parse::<Option<Token![-]>>()?;
    let literal: LitInt = input.parse()?;
    if !literal.suffix().is_empty() {
        return Err(syn::Error::new(
            literal.span(),
            format!("unexpected suffix `{}` on the integer `{literal}`", literal.suffix()),
        ));
    }
    let magnitude = literal.base10_digits().parse::<i64>().ok();
    let (value, text, span) = match minus {
        Some(minus) => (
            magnitude.map(|magnitude| -magnitude),
            format!("-{}", literal.base10_digits()),
            Span::new(minus.span).join(Span::new(literal.span())),
        ),
        None => (magnitude, literal.base10_digits().to_string(), Span::new(literal.span())),
    };
    Ok(IntLit { value, text, span })
}

/// A name: an identifier that is not a Rust keyword (names become Rust items in `conv!`).
fn ident(input: ParseStream) -> syn::Result<Ident> {
    let word: syn::Ident = input.parse()?;
    Ok(Ident { name: word.to_string(), span: Span::new(word.span()) })
}
