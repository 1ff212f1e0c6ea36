//! The parsed program: what the user wrote, with a span on every token, before any checking.
//!
//! Nothing here is validated beyond the grammar: names may be unknown, keys misspelled, numbers
//! negative or too large. [`crate::check`] turns a [`Program`] into a [`crate::spec::Network`].

use std::fmt;

use crate::diagnostic::Span;

/// A whole model as parsed.
#[derive(Clone, Debug, Default)]
pub struct Program {
    /// The statements, in source order (statements that failed to parse are left out).
    pub statements: Vec<Statement>,
}

/// One statement.
#[derive(Clone, Debug)]
pub enum Statement {
    /// `input x: [1, 32, H, W] layout nhwc;`
    Input(InputDecl),
    /// `conv c1(x) { … }` and the other layer kinds.
    Layer(LayerDecl),
    /// `output r;`
    Output(OutputDecl),
}

/// A name with its span.
#[derive(Clone, Debug)]
pub struct Ident {
    /// The name as written.
    pub name: String,
    /// Where it was written.
    pub span: Span,
}

/// An integer literal (possibly negative).
#[derive(Clone, Debug)]
pub struct IntLit {
    /// The value, or `None` when the literal does not fit in an `i64`.
    pub value: Option<i64>,
    /// The literal as written (for messages).
    pub text: String,
    /// Where it was written (the `-` included).
    pub span: Span,
}

/// `input NAME: [dims] (layout L)?;`
#[derive(Clone, Debug)]
pub struct InputDecl {
    /// The `input` keyword.
    pub keyword: Span,
    /// The input's name.
    pub name: Ident,
    /// The dims in the order written (the layout's order).
    pub dims: Vec<DimLit>,
    /// The `[…]` list.
    pub dims_span: Span,
    /// The layout word after `layout`, if given.
    pub layout: Option<Ident>,
    /// The statement failed to parse (already reported): only its name is known.
    pub damaged: bool,
}

/// One dim of an input shape.
#[derive(Clone, Debug)]
pub enum DimLit {
    /// A concrete size.
    Int(IntLit),
    /// A symbolic size bound at run time.
    Symbol(Ident),
}

/// `KIND NAME(ARGS) { key: value, … }`
#[derive(Clone, Debug)]
pub struct LayerDecl {
    /// The kind keyword (`conv`, `depthwise`, `pointwise`, `separable`, `add`).
    pub kind: Ident,
    /// The layer's name.
    pub name: Ident,
    /// The names of the values it reads.
    pub args: Vec<Ident>,
    /// The `(…)` argument list.
    pub args_span: Span,
    /// The `key: value` entries in source order.
    pub entries: Vec<Entry>,
    /// Some entries failed to parse (already reported): the checker reports no missing keys for this
    /// layer and leaves its shape unknown, so that no follow-on errors appear.
    pub damaged: bool,
}

/// `key: value` inside a layer's braces.
#[derive(Clone, Debug)]
pub struct Entry {
    /// The key.
    pub key: Ident,
    /// The value.
    pub value: Value,
}

/// A value on the right of `key:`.
#[derive(Clone, Debug)]
pub enum Value {
    /// `3`, `-1`.
    Int(IntLit),
    /// `0.1`, `-0.5`.
    Float {
        /// The value as parsed.
        value: f64,
        /// The literal as written.
        text: String,
        /// Where it was written.
        span: Span,
    },
    /// A bare word: `same`, `relu`, `true`.
    Word(Ident),
    /// A word with arguments: `leaky_relu(0.1)`.
    Call {
        /// The function word.
        name: Ident,
        /// Its arguments.
        args: Vec<Value>,
        /// The `(…)` group.
        span: Span,
    },
    /// `[1, 7]`, `[[0, 1], [0, 1]]`.
    List {
        /// The elements.
        items: Vec<Value>,
        /// The `[…]` group.
        span: Span,
    },
}

impl Value {
    /// The span of the whole value.
    pub fn span(&self) -> Span {
        match self {
            Value::Int(literal) => literal.span,
            Value::Float { span, .. } | Value::List { span, .. } => *span,
            Value::Word(ident) => ident.span,
            Value::Call { name, span, .. } => name.span.join(*span),
        }
    }

    /// What kind of value this is, for "expected …, found …" messages.
    pub fn describe(&self) -> String {
        match self {
            Value::Int(literal) => format!("the integer `{}`", literal.text),
            Value::Float { text, .. } => format!("the number `{text}`"),
            Value::Word(ident) => format!("`{}`", ident.name),
            Value::Call { name, .. } => format!("`{}(…)`", name.name),
            Value::List { .. } => "a list".to_string(),
        }
    }
}

/// `output NAME;`
#[derive(Clone, Debug)]
pub struct OutputDecl {
    /// The `output` keyword.
    pub keyword: Span,
    /// The named value.
    pub name: Ident,
}

impl Statement {
    /// The name the statement declares or, for `output`, names.
    pub fn name(&self) -> &Ident {
        match self {
            Statement::Input(input) => &input.name,
            Statement::Layer(layer) => &layer.name,
            Statement::Output(output) => &output.name,
        }
    }
}

/// `inspect --emit ast`: one line per statement and entry, each with its `line:column`.
impl fmt::Display for Program {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for statement in &self.statements {
            write!(f, "{statement}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Statement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        {
            match self {
                Statement::Input(input) => {
                    let dims: Vec<String> = input
                        .dims
                        .iter()
                        .map(|dim| match dim {
                            DimLit::Int(literal) => literal.text.clone(),
                            DimLit::Symbol(ident) => ident.name.clone(),
                        })
                        .collect();
                    write!(f, "input {} @{}: [{}]", input.name.name, at(input.name.span), dims.join(", "))?;
                    if let Some(layout) = &input.layout {
                        write!(f, " layout {} @{}", layout.name, at(layout.span))?;
                    }
                    writeln!(f)?;
                }
                Statement::Layer(layer) => {
                    let args: Vec<String> =
                        layer.args.iter().map(|arg| format!("{} @{}", arg.name, at(arg.span))).collect();
                    writeln!(
                        f,
                        "{} {} @{}({})",
                        layer.kind.name,
                        layer.name.name,
                        at(layer.name.span),
                        args.join(", ")
                    )?;
                    for entry in &layer.entries {
                        writeln!(f, "    {} @{}: {}", entry.key.name, at(entry.key.span), entry.value)?;
                    }
                }
                Statement::Output(output) => {
                    writeln!(f, "output {} @{}", output.name.name, at(output.name.span))?;
                }
            }
        }
        Ok(())
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Int(literal) => write!(f, "{}", literal.text),
            Value::Float { text, .. } => write!(f, "{text}"),
            Value::Word(ident) => write!(f, "{}", ident.name),
            Value::Call { name, args, .. } => {
                write!(f, "{}(", name.name)?;
                write_list(f, args)?;
                write!(f, ")")
            }
            Value::List { items, .. } => {
                write!(f, "[")?;
                write_list(f, items)?;
                write!(f, "]")
            }
        }
    }
}

fn write_list(f: &mut fmt::Formatter<'_>, values: &[Value]) -> fmt::Result {
    for (index, value) in values.iter().enumerate() {
        if index > 0 {
            write!(f, ", ")?;
        }
        write!(f, "{value}")?;
    }
    Ok(())
}

fn at(span: Span) -> String {
    span.location().to_string()
}
