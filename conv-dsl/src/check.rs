//! [`crate::ast::Program`] → [`crate::spec::Network`]: names, keys, values and shapes, every problem collected.
//!
//! The checker never stops at the first problem. A layer whose own keys are wrong, or that reads a
//! layer that is already wrong, gets an unknown shape: later layers that use it are still checked
//! for everything that does not depend on that shape, and no follow-on errors are invented.

use std::collections::HashMap;

use crate::ast::{DimLit, Entry, InputDecl, IntLit, LayerDecl, Program, Statement, Value};
use crate::diagnostic::{Diagnostic, Span};
use crate::dim::{Dim, fmt_shape};
use crate::spec::{
    Activation, Conv, ConvKind, Input, Layer, Layout, MAX_ELEMENTS, MAX_INT, Network, Op, Padding, Source,
};

/// Checks a parsed program. Returns the network when there is no problem at all (and no part of the
/// program was damaged by a syntax error), and every problem found.
pub fn check(program: &Program) -> (Option<Network>, Vec<Diagnostic>) {
    let mut checker = Checker::default();
    let network = checker.program(program);
    (network, checker.diagnostics)
}

const KINDS_KEYS: [(&str, &[&str]); 5] = [
    ("conv", &["out", "kernel", "stride", "pad", "dilation", "groups", "bias", "act"]),
    ("depthwise", &["kernel", "stride", "pad", "dilation", "multiplier", "bias", "act"]),
    ("pointwise", &["out", "stride", "groups", "bias", "act"]),
    ("separable", &["out", "kernel", "stride", "pad", "dilation", "multiplier", "bias", "act", "dw_act"]),
    ("add", &["act"]),
];

const ACTIVATIONS: &str = "`none`, `relu`, `relu6`, `leaky_relu(α)`, `hardswish`, `silu` or `sigmoid`";

#[derive(Default)]
struct Checker {
    diagnostics: Vec<Diagnostic>,
}

/// What the checker knows about a named value while checking.
struct Known {
    source: Source,
    /// `None` when the value is wrong already (its problem is reported).
    shape: Option<Vec<Dim>>,
}

impl Checker {
    fn error(&mut self, span: Span, message: impl Into<String>) {
        self.diagnostics.push(Diagnostic::new(span, message));
    }

    fn program(&mut self, program: &Program) -> Option<Network> {
        let inputs: Vec<&InputDecl> = program
            .statements
            .iter()
            .filter_map(|statement| match statement {
                Statement::Input(input) => Some(input),
                _ => None,
            })
            .collect();
        let layer_decls: Vec<&LayerDecl> = program
            .statements
            .iter()
            .filter_map(|statement| match statement {
                Statement::Layer(layer) => Some(layer),
                _ => None,
            })
            .collect();
        if program.statements.is_empty() {
            self.error(Span::call_site(), "empty program: a model needs an `input` statement and at least one layer");
            return None;
        }
        for extra in inputs.iter().skip(1) {
            let first = inputs[0].name.span.location();
            let message =
                format!("a model has one `input`; `{}` is a second one (the first is at {first})", extra.name.name);
            self.error(extra.keyword, message);
        }
        let Some(input_decl) = inputs.first() else {
            let span = layer_decls.first().map_or(Span::call_site(), |layer| layer.kind.span);
            self.error(span, "the model has no `input` statement, such as `input x: [1, 32, 56, 56];`");
            return None;
        };
        let input = self.input(input_decl);
        if layer_decls.is_empty() {
            let message = format!("the model has no layers: add at least one layer reading `{}`", input_decl.name.name);
            self.error(input_decl.name.span, message);
        }

        // Where every name is first defined, to tell "defined later" from "not defined".
        let mut first_definitions: HashMap<&str, Span> = HashMap::new();
        first_definitions.insert(&input_decl.name.name, input_decl.name.span);
        for layer in &layer_decls {
            first_definitions.entry(&layer.name.name).or_insert(layer.name.span);
        }

        let mut scope: HashMap<String, Known> = HashMap::new();
        let input_shape = input.as_ref().map(|input| input.shape.clone());
        scope.insert(input_decl.name.name.clone(), Known { source: Source::Input, shape: input_shape });
        let spatial_rank = input.as_ref().map(|input| input.shape.len() - 2);

        let mut layers: Vec<Option<Layer>> = Vec::new();
        for decl in &layer_decls {
            let layer = self.layer(decl, &scope, &first_definitions, spatial_rank);
            if let Some(previous) = scope.get(&decl.name.name) {
                let what = if previous.source == Source::Input { "the input" } else { "a layer" };
                let first = first_definitions[decl.name.name.as_str()].location();
                let message = format!("duplicate name `{}`: {what} already has this name (at {first})", decl.name.name);
                self.error(decl.name.span, message);
            } else {
                let shape = layer.as_ref().map(|layer| layer.shape.clone());
                scope.insert(decl.name.name.clone(), Known { source: Source::Layer(layers.len()), shape });
            }
            layers.push(layer);
        }

        let output = self.output(program, &scope, layers.len());
        let input = input?;
        let output = output?;
        let layers: Option<Vec<Layer>> = layers.into_iter().collect();
        let layers = layers?;
        if !self.diagnostics.is_empty() || layers.is_empty() {
            return None;
        }
        Some(Network { input, layers, output })
    }

    fn output(&mut self, program: &Program, scope: &HashMap<String, Known>, layer_count: usize) -> Option<usize> {
        let outputs: Vec<_> = program
            .statements
            .iter()
            .filter_map(|statement| match statement {
                Statement::Output(output) => Some(output),
                _ => None,
            })
            .collect();
        for extra in outputs.iter().skip(1) {
            let message = format!("a model has one `output`; `{}` is a second one", extra.name.name);
            self.error(extra.keyword, message);
        }
        let Some(output) = outputs.first() else {
            return layer_count.checked_sub(1);
        };
        match scope.get(&output.name.name) {
            None => {
                let message = format!("`output` names `{}`, which is not a layer of this model", output.name.name);
                self.error(output.name.span, message);
                None
            }
            Some(Known { source: Source::Input, .. }) => {
                let message = format!("`output` names the input `{}`; it must name a layer", output.name.name);
                self.error(output.name.span, message);
                None
            }
            Some(Known { source: Source::Layer(index), .. }) => Some(*index),
        }
    }

    fn input(&mut self, decl: &InputDecl) -> Option<Input> {
        if decl.damaged {
            return None;
        }
        let rank = decl.dims.len();
        if !(3..=5).contains(&rank) {
            let message = format!(
                "input `{}` has rank {rank}; expected 3, 4 or 5 dims (`[N, C, W]`, `[N, C, H, W]`, `[N, C, D, H, W]`)",
                decl.name.name
            );
            self.error(decl.dims_span, message);
            return None;
        }
        let layout = match &decl.layout {
            None => Some(Layout::ChannelsFirst),
            Some(word) => {
                let layout = [Layout::ChannelsFirst, Layout::ChannelsLast]
                    .into_iter()
                    .find(|layout| layout.name(rank) == word.name);
                if layout.is_none() {
                    let any_rank = [3, 4, 5].into_iter().find(|&other| {
                        [Layout::ChannelsFirst, Layout::ChannelsLast]
                            .iter()
                            .any(|layout| layout.name(other) == word.name)
                    });
                    let message = match any_rank {
                        Some(other) => format!(
                            "layout `{}` is for rank-{other} inputs, but `{}` has rank {rank}; use `{}` or `{}`",
                            word.name,
                            decl.name.name,
                            Layout::ChannelsFirst.name(rank),
                            Layout::ChannelsLast.name(rank)
                        ),
                        None => format!(
                            "unknown layout `{}`; a rank-{rank} input is `{}` (the default) or `{}`",
                            word.name,
                            Layout::ChannelsFirst.name(rank),
                            Layout::ChannelsLast.name(rank)
                        ),
                    };
                    self.error(word.span, message);
                }
                layout
            }
        };
        let channel_axis = match layout {
            Some(Layout::ChannelsLast) => rank - 1,
            _ => 1,
        };
        let mut ordered = Vec::new();
        for (axis, dim) in decl.dims.iter().enumerate() {
            match dim {
                DimLit::Int(literal) => ordered.push(self.int(literal, "a dim", 1).map(Dim::Known)),
                DimLit::Symbol(symbol) if axis == channel_axis => {
                    let message = format!(
                        "the channel dim of input `{}` must be an integer, not the symbol `{}`: channel counts are fixed when a model is compiled",
                        decl.name.name, symbol.name
                    );
                    self.error(symbol.span, message);
                    ordered.push(None);
                }
                DimLit::Symbol(symbol) => ordered.push(Some(Dim::Symbol(symbol.name.clone()))),
            }
        }
        let ordered: Vec<Dim> = ordered.into_iter().collect::<Option<_>>()?;
        let layout = layout?;
        let shape = layout.logical(&ordered);
        self.within_limit(decl.dims_span, &format!("input `{}`", decl.name.name), &ordered)?;
        Some(Input { name: decl.name.name.clone(), shape, layout })
    }

    fn layer(
        &mut self,
        decl: &LayerDecl,
        scope: &HashMap<String, Known>,
        first_definitions: &HashMap<&str, Span>,
        spatial_rank: Option<usize>,
    ) -> Option<Layer> {
        if decl.damaged {
            return None;
        }
        let kind = decl.kind.name.as_str();
        let entries = self.entries(decl);

        let arity = if kind == "add" { 2 } else { 1 };
        let mut sources = Vec::new();
        for arg in &decl.args {
            match scope.get(&arg.name) {
                Some(known) => sources.push(Some((known.source, known.shape.clone()))),
                None => {
                    let message = match first_definitions.get(arg.name.as_str()) {
                        Some(later) => format!(
                            "`{}` is used before it is defined (at {}): a layer can only read the input and earlier layers",
                            arg.name,
                            later.location()
                        ),
                        None => format!("unknown name `{}`: no input or earlier layer has this name", arg.name),
                    };
                    self.error(arg.span, message);
                    sources.push(None);
                }
            }
        }
        if decl.args.len() != arity {
            let message = if kind == "add" {
                format!("`add` takes two values, as in `add {}(a, b)`; found {}", decl.name.name, decl.args.len())
            } else {
                format!("`{kind}` takes one value, as in `{kind} {}(x)`; found {}", decl.name.name, decl.args.len())
            };
            self.error(decl.args_span, message);
            return None;
        }
        let sources: Vec<(Source, Option<Vec<Dim>>)> = sources.into_iter().collect::<Option<_>>()?;

        let act = self.optional(&entries, "act", Activation::None, |checker, value| checker.activation(value));
        if kind == "add" {
            let (left, left_shape) = sources[0].clone();
            let (right, right_shape) = sources[1].clone();
            let (left_shape, right_shape) = (left_shape?, right_shape?);
            for (axis, (a, b)) in left_shape.iter().zip(&right_shape).enumerate() {
                if let (Some(a), Some(b)) = (a.known(), b.known())
                    && a != b
                {
                    let message = format!(
                        "`add` needs operands of one shape: `{}` is {} and `{}` is {} (dim {axis}: {a} vs {b})",
                        decl.args[0].name,
                        fmt_shape(&left_shape),
                        decl.args[1].name,
                        fmt_shape(&right_shape),
                    );
                    self.error(decl.args_span, message);
                    return None;
                }
            }
            return Some(Layer {
                name: decl.name.name.clone(),
                op: Op::Add { left, right, act: act? },
                shape: left_shape,
            });
        }

        let (source, input_shape) = sources[0].clone();
        let spatial_rank = spatial_rank?;
        let in_channels = input_shape.as_ref().and_then(|shape| shape[1].known());
        let ones = vec![1; spatial_rank];
        let out = match kind {
            "depthwise" => None,
            _ => self.required(&entries, "out", decl).and_then(|value| self.int_value(value, "out", 1)),
        };
        let kernel = match kind {
            "pointwise" => Some(ones.clone()),
            _ => self
                .required(&entries, "kernel", decl)
                .and_then(|value| self.per_axis(value, "kernel", spatial_rank, 1, decl)),
        };
        let stride = self.optional(&entries, "stride", ones.clone(), |checker, value| {
            checker.per_axis(value, "stride", spatial_rank, 1, decl)
        });
        let dilation = self.optional(&entries, "dilation", ones.clone(), |checker, value| {
            checker.per_axis(value, "dilation", spatial_rank, 1, decl)
        });
        let padding =
            self.optional(&entries, "pad", Padding::Explicit(vec![[0, 0]; spatial_rank]), |checker, value| {
                checker.padding(value, spatial_rank, decl)
            });
        let bias = self.optional(&entries, "bias", true, |checker, value| checker.boolean(value, "bias"));
        let multiplier =
            self.optional(&entries, "multiplier", 1, |checker, value| checker.int_value(value, "multiplier", 1));
        let groups = self.optional(&entries, "groups", 1, |checker, value| checker.int_value(value, "groups", 1));
        let dw_act = match entries.get("dw_act") {
            Some(entry) => self.activation(&entry.value).map(Some),
            None => Some(None),
        };

        let (kernel, stride, dilation, padding, bias, act, multiplier, groups, dw_act) =
            (kernel?, stride?, dilation?, padding?, bias?, act?, multiplier?, groups?, dw_act?);
        let in_channels = in_channels?;
        let input_shape = input_shape?;
        let base = Conv {
            kind: ConvKind::Standard,
            in_channels,
            out_channels: 0,
            groups: 1,
            kernel,
            stride,
            dilation,
            padding,
            bias,
            act,
        };
        let op = match kind {
            "conv" | "pointwise" => {
                let out = out?;
                let kind = if kind == "conv" { ConvKind::Standard } else { ConvKind::Pointwise };
                let groups_span = entries.get("groups").map(|entry| entry.value.span());
                if let Some(span) = groups_span {
                    if in_channels % groups != 0 {
                        let message = format!(
                            "`groups: {groups}` does not divide the input channels ({in_channels}) of layer `{}`",
                            decl.name.name
                        );
                        self.error(span, message);
                        return None;
                    }
                    if out % groups != 0 {
                        let message =
                            format!("`groups: {groups}` does not divide `out: {out}` of layer `{}`", decl.name.name);
                        self.error(span, message);
                        return None;
                    }
                }
                Op::Conv { source, conv: Conv { kind, out_channels: out, groups, ..base } }
            }
            "depthwise" => {
                let out_channels = self.multiply(in_channels, multiplier, &entries, decl)?;
                Op::Conv { source, conv: Conv { kind: ConvKind::Depthwise, out_channels, groups: in_channels, ..base } }
            }
            _ => {
                let out = out?;
                let middle = self.multiply(in_channels, multiplier, &entries, decl)?;
                let depthwise = Conv {
                    kind: ConvKind::Depthwise,
                    out_channels: middle,
                    groups: in_channels,
                    act: dw_act.unwrap_or(act),
                    ..base.clone()
                };
                let pointwise = Conv {
                    kind: ConvKind::Pointwise,
                    in_channels: middle,
                    out_channels: out,
                    groups: 1,
                    kernel: ones.clone(),
                    stride: ones.clone(),
                    dilation: ones.clone(),
                    padding: Padding::Explicit(vec![[0, 0]; spatial_rank]),
                    bias,
                    act,
                };
                Op::Separable { source, depthwise, pointwise }
            }
        };

        let mut shape = input_shape;
        for (suffix, conv) in op.stages() {
            let name = format!("{}{suffix}", decl.name.name);
            shape = self.conv_shape(conv, &shape, &name, &entries, decl)?;
            self.within_limit(
                decl.name.span,
                &format!("the weight of layer `{name}`"),
                &conv.weight_shape().into_iter().map(Dim::Known).collect::<Vec<_>>(),
            )?;
        }
        Some(Layer { name: decl.name.name.clone(), op, shape })
    }

    /// `in_channels × multiplier` for a depthwise stage, within the limits.
    fn multiply(
        &mut self,
        in_channels: u64,
        multiplier: u64,
        entries: &HashMap<&str, &Entry>,
        decl: &LayerDecl,
    ) -> Option<u64> {
        let product = in_channels.checked_mul(multiplier).filter(|&product| product <= MAX_INT);
        if product.is_none() {
            let span = entries.get("multiplier").map_or(decl.name.span, |entry| entry.value.span());
            let message = format!(
                "`multiplier: {multiplier}` times {in_channels} input channels is more than {MAX_INT} channels"
            );
            self.error(span, message);
        }
        product
    }

    /// The output shape of one convolution stage, reporting an empty output or an oversized tensor.
    fn conv_shape(
        &mut self,
        conv: &Conv,
        input_shape: &[Dim],
        name: &str,
        entries: &HashMap<&str, &Entry>,
        decl: &LayerDecl,
    ) -> Option<Vec<Dim>> {
        let spatial = &input_shape[2..];
        if let Some(known) = spatial.iter().map(Dim::known).collect::<Option<Vec<u64>>>()
            && let Err(empty) = conv.output_spatial(&known)
        {
            let span = entries.get("kernel").map_or(decl.name.span, |entry| entry.value.span());
            let axis = empty.axis;
            let message = format!(
                "the output of `{name}` would be empty: on spatial axis {axis} the effective kernel is {} \
                 (kernel {}, dilation {}) but the padded input is only {} (input {}, padding {})",
                empty.effective_kernel,
                conv.kernel[axis],
                conv.dilation[axis],
                empty.padded,
                known[axis],
                empty.padded - known[axis],
            );
            self.error(span, message);
            return None;
        }
        let mut shape = vec![input_shape[0].clone(), Dim::Known(conv.out_channels)];
        shape.extend(conv.output_dims(spatial));
        self.within_limit(decl.name.span, &format!("the output of `{name}`"), &shape)?;
        Some(shape)
    }

    /// Reports a tensor with more than [`MAX_ELEMENTS`] elements (only when its shape is concrete).
    fn within_limit(&mut self, span: Span, what: &str, shape: &[Dim]) -> Option<()> {
        let Some(known) = shape.iter().map(Dim::known).collect::<Option<Vec<u64>>>() else {
            return Some(());
        };
        let elements = known.iter().try_fold(1u128, |product, &dim| product.checked_mul(u128::from(dim)));
        match elements {
            Some(elements) if elements <= u128::from(MAX_ELEMENTS) => Some(()),
            _ => {
                let count = elements.map_or("too many".to_string(), |elements| elements.to_string());
                let message = format!(
                    "{what} has shape {} with {count} elements; the limit is {MAX_ELEMENTS} (2^31) per tensor",
                    fmt_shape(&known)
                );
                self.error(span, message);
                None
            }
        }
    }

    /// Collects a layer's entries by key, reporting unknown and duplicate keys.
    fn entries<'a>(&mut self, decl: &'a LayerDecl) -> HashMap<&'a str, &'a Entry> {
        let kind = decl.kind.name.as_str();
        let allowed = KINDS_KEYS.iter().find(|(name, _)| *name == kind).map_or(&[][..], |(_, keys)| *keys);
        let has = |key: &str| decl.entries.iter().any(|entry| entry.key.name == key);
        let mut entries: HashMap<&str, &Entry> = HashMap::new();
        for entry in &decl.entries {
            let key = entry.key.name.as_str();
            if let Some(first) = entries.get(key) {
                let message = format!("duplicate key `{key}` (first given at {})", first.key.span.location());
                self.error(entry.key.span, message);
                continue;
            }
            if (key == "groups" && has("multiplier")) || (key == "multiplier" && has("groups")) {
                let first =
                    decl.entries.iter().find(|entry| entry.key.name == "groups" || entry.key.name == "multiplier");
                if first.is_some_and(|first| std::ptr::eq(first, entry)) {
                    continue; // reported once, on the second of the two
                }
                let message = "`multiplier` and `groups` cannot be combined: `multiplier` sets the filters per \
                               input channel of a depthwise convolution (groups = channels); a grouped `conv` sets `groups` and `out`";
                self.error(entry.key.span, message);
                continue;
            }
            if !allowed.contains(&key) {
                let message = unknown_key_message(kind, key, allowed);
                self.error(entry.key.span, message);
                continue;
            }
            entries.insert(key, entry);
        }
        entries
    }

    /// A key the layer must have. A key given but rejected (duplicate…) is already reported.
    fn required<'a>(&mut self, entries: &HashMap<&str, &'a Entry>, key: &str, decl: &LayerDecl) -> Option<&'a Value> {
        match entries.get(key) {
            Some(entry) => Some(&entry.value),
            None => {
                if !has_key(decl, key) {
                    let example = if key == "out" { "`out: 64`" } else { "`kernel: 3`" };
                    let message = format!("layer `{}` is missing `{key}` (for example {example})", decl.name.name);
                    self.error(decl.name.span, message);
                }
                None
            }
        }
    }

    fn optional<T>(
        &mut self,
        entries: &HashMap<&str, &Entry>,
        key: &str,
        default: T,
        parse: impl FnOnce(&mut Self, &Value) -> Option<T>,
    ) -> Option<T> {
        match entries.get(key) {
            Some(entry) => parse(self, &entry.value),
            None => Some(default),
        }
    }

    /// An integer in `min..=MAX_INT`.
    fn int(&mut self, literal: &IntLit, what: &str, min: i64) -> Option<u64> {
        match literal.value {
            Some(value) if value > MAX_INT as i64 => {}
            Some(value) if value < min => {
                let message = if min == 1 {
                    format!("{what} must be at least 1; found `{}`", literal.text)
                } else {
                    format!("{what} cannot be negative; found `{}`", literal.text)
                };
                self.error(literal.span, message);
                return None;
            }
            Some(value) => return Some(value as u64),
            None => {}
        }
        let message = format!("`{}` is too large: numbers in a model are at most {MAX_INT} (2^31 - 1)", literal.text);
        self.error(literal.span, message);
        None
    }

    fn int_value(&mut self, value: &Value, key: &str, min: i64) -> Option<u64> {
        match value {
            Value::Int(literal) => self.int(literal, &format!("`{key}`"), min),
            other => {
                let message = format!("`{key}` expects an integer; found {}", other.describe());
                self.error(other.span(), message);
                None
            }
        }
    }

    /// An integer for every spatial axis, or a list with one per axis.
    fn per_axis(&mut self, value: &Value, key: &str, rank: usize, min: i64, decl: &LayerDecl) -> Option<Vec<u64>> {
        match value {
            Value::Int(literal) => self.int(literal, &format!("`{key}`"), min).map(|size| vec![size; rank]),
            Value::List { items, span } => {
                if items.len() != rank {
                    let message = format!(
                        "`{key}` lists {} value{}, but `{}` is a conv{rank}d with {rank} spatial ax{}",
                        items.len(),
                        if items.len() == 1 { "" } else { "s" },
                        decl.name.name,
                        if rank == 1 { "is" } else { "es" }
                    );
                    self.error(*span, message);
                    return None;
                }
                let sizes: Vec<Option<u64>> = items.iter().map(|item| self.int_value(item, key, min)).collect();
                sizes.into_iter().collect()
            }
            other => {
                let message = format!(
                    "`{key}` expects an integer or a per-axis list such as `[1, 7]`; found {}",
                    other.describe()
                );
                self.error(other.span(), message);
                None
            }
        }
    }

    fn padding(&mut self, value: &Value, rank: usize, decl: &LayerDecl) -> Option<Padding> {
        match value {
            Value::Word(word) if word.name == "same" => Some(Padding::Same),
            Value::Word(word) if word.name == "valid" => Some(Padding::Explicit(vec![[0, 0]; rank])),
            Value::Int(literal) => self.int(literal, "`pad`", 0).map(|pad| Padding::Explicit(vec![[pad, pad]; rank])),
            Value::List { items, span } => {
                if items.len() != rank {
                    let message = format!(
                        "`pad` lists {} entr{}, but `{}` is a conv{rank}d with {rank} spatial ax{}",
                        items.len(),
                        if items.len() == 1 { "y" } else { "ies" },
                        decl.name.name,
                        if rank == 1 { "is" } else { "es" }
                    );
                    self.error(*span, message);
                    return None;
                }
                let mut pads = Vec::new();
                for item in items {
                    pads.push(match item {
                        Value::Int(literal) => self.int(literal, "`pad`", 0).map(|pad| [pad, pad]),
                        Value::List { items: pair, span } if pair.len() == 2 => {
                            let before = self.int_value(&pair[0], "pad", 0);
                            let after = self.int_value(&pair[1], "pad", 0);
                            before.zip(after).map(|(before, after)| [before, after])
                        }
                        Value::List { items: pair, span } => {
                            let message =
                                format!("a per-axis pad is `p` or `[before, after]`; found a list of {}", pair.len());
                            self.error(*span, message);
                            None
                        }
                        other => {
                            let message =
                                format!("a per-axis pad is `p` or `[before, after]`; found {}", other.describe());
                            self.error(other.span(), message);
                            None
                        }
                    });
                }
                pads.into_iter().collect::<Option<Vec<_>>>().map(Padding::Explicit)
            }
            other => {
                let message =
                    format!("`pad` expects an integer, a per-axis list, `same` or `valid`; found {}", other.describe());
                self.error(other.span(), message);
                None
            }
        }
    }

    fn boolean(&mut self, value: &Value, key: &str) -> Option<bool> {
        match value {
            Value::Word(word) if word.name == "true" => Some(true),
            Value::Word(word) if word.name == "false" => Some(false),
            other => {
                let message = format!("`{key}` expects `true` or `false`; found {}", other.describe());
                self.error(other.span(), message);
                None
            }
        }
    }

    fn activation(&mut self, value: &Value) -> Option<Activation> {
        let simple = |name: &str| match name {
            "none" => Some(Activation::None),
            "relu" => Some(Activation::Relu),
            "relu6" => Some(Activation::Relu6),
            "hardswish" => Some(Activation::Hardswish),
            "silu" => Some(Activation::Silu),
            "sigmoid" => Some(Activation::Sigmoid),
            _ => None,
        };
        match value {
            Value::Word(word) => {
                if let Some(act) = simple(&word.name) {
                    return Some(act);
                }
                let message = if word.name == "leaky_relu" {
                    "`leaky_relu` needs its slope, as in `leaky_relu(0.1)`".to_string()
                } else {
                    format!("unknown activation `{}`; expected {ACTIVATIONS}", word.name)
                };
                self.error(word.span, message);
                None
            }
            Value::Call { name, args, span } if name.name == "leaky_relu" => {
                let slope = match args.as_slice() {
                    [Value::Float { value, .. }] => Some(*value),
                    [Value::Int(IntLit { value: Some(value), .. })] => Some(*value as f64),
                    _ => None,
                };
                match slope {
                    Some(slope) if slope.is_finite() && slope.abs() <= 1e6 => Some(Activation::LeakyRelu(slope as f32)),
                    _ => {
                        let message = format!(
                            "`leaky_relu` takes one number, its slope for negative inputs, as in `leaky_relu(0.1)`; found {} argument{}",
                            args.len(),
                            if args.len() == 1 { " that is not a number of at most 1e6" } else { "s" }
                        );
                        self.error(*span, message);
                        None
                    }
                }
            }
            Value::Call { name, .. } if simple(&name.name).is_some() => {
                let message = format!("`{}` takes no arguments", name.name);
                self.error(value.span(), message);
                None
            }
            other => {
                let message = format!("`act` expects an activation ({ACTIVATIONS}); found {}", other.describe());
                self.error(other.span(), message);
                None
            }
        }
    }
}

fn has_key(decl: &LayerDecl, key: &str) -> bool {
    decl.entries.iter().any(|entry| entry.key.name == key)
}

fn unknown_key_message(kind: &str, key: &str, allowed: &[&str]) -> String {
    let specific = match (kind, key) {
        ("depthwise", "groups") => Some(
            "`depthwise` has one group per input channel, so it takes no `groups`; use `conv` with `groups` for a grouped convolution",
        ),
        ("depthwise", "out") => {
            Some("`depthwise` takes no `out`: its output channels are the input channels times `multiplier`")
        }
        ("pointwise", "kernel" | "pad" | "dilation") => {
            Some("`pointwise` is a 1x1 convolution without padding; use `conv` for a larger kernel or padding")
        }
        ("conv" | "pointwise", "multiplier") => {
            Some("`multiplier` is for `depthwise` and `separable`; a `conv` sets `out` (and `groups`)")
        }
        (_, "dw_act") => Some("`dw_act` is only for `separable` (the activation of its depthwise half)"),
        ("add", _) => Some("`add` takes only `act`"),
        ("separable", "groups") => Some(
            "`separable` is depthwise then pointwise and takes no `groups`; use `multiplier` for the depthwise half",
        ),
        _ => None,
    };
    if let Some(specific) = specific {
        return format!("unknown key `{key}` for `{kind}`: {specific}");
    }
    let suggestion = allowed
        .iter()
        .filter(|candidate| edit_distance(candidate, key) <= 2)
        .min_by_key(|candidate| edit_distance(candidate, key));
    let expected: Vec<String> = allowed.iter().map(|key| format!("`{key}`")).collect();
    match suggestion {
        Some(candidate) => format!("unknown key `{key}` for `{kind}`; did you mean `{candidate}`?"),
        None => format!("unknown key `{key}` for `{kind}`; expected one of {}", expected.join(", ")),
    }
}

/// Levenshtein distance, for "did you mean" hints on short keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::edit_distance;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("stride", "strides"), 1);
        assert_eq!(edit_distance("pad", "padding"), 4);
        assert_eq!(edit_distance("kernel", "kernel"), 0);
    }
}
