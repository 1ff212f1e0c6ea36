//! Plan (loop IR) → Rust: the code generator of the `conv!` and `conv_file!` macros.
//!
//! A proc-macro crate can only export macros, so the emitter lives here, where it is an ordinary
//! function that unit and snapshot tests call; `conv-macros` only parses the invocation, calls
//! [`crate::compile_tokens_concrete`] and [`module`], and turns diagnostics into compile errors.
//!
//! [`module`] lowers a concrete network for [`TARGET`] (8 lanes, AVX2 kernels) and for
//! [`WIDE_TARGET`] (the same, where the tile and plane kernels run on AVX-512), and emits a module
//! with:
//!
//! - shape constants (`INPUT_SHAPE`, `INPUT_LEN`, `OUTPUT_SHAPE`, `OUTPUT_LEN`, `PARAMETERS`,
//!   `MACS`), the cost table `convgen check` prints (`COST_REPORT`), the model's text
//!   (`MODEL_SOURCE`) and its parameter tensors (`TENSORS`);
//! - `Params`: one field per layer (named as the layer), each with `weight` / `bias` fields — or
//!   `dw` / `pw` stages for a separable layer — in PyTorch's layouts, so `params.s.dw.weight` is
//!   the tensor PyTorch calls `s.dw.weight`; filled from a flat slice, a `convgen::Params`, a
//!   `.safetensors` file or PyTorch-like random values;
//! - `Packed`: the parameters re-laid out for the kernels ([`crate::lower::Packing`]), built once,
//!   for the plan of the host (`Packed::new`) or a given one (`Packed::with_plan`): where the two
//!   plans differ the module holds both ([`plans`]) and packs one;
//! - `Workspace`: heap buffers for the intermediate values (shared by values whose lifetimes do
//!   not overlap), reused across calls. Its buffers and `Packed`'s are
//!   `convgen::macro_support::Buffer`s, arrays whose large ones live on huge pages (as the JIT's);
//! - `forward(input, &packed, output, &mut workspace)` over fixed-size arrays, which allocates
//!   nothing; it runs the AVX2 + FMA version of every kernel when the CPU has both (detected at
//!   run time; the one `unsafe` of the expansion is that call) and `forward_portable` otherwise.
//!
//! Each distinct IR function becomes one `#[inline(always)]` Rust function generic over whether
//! multiply-adds are fused, and two thin `#[inline(never)]` wrappers: one compiled with
//! `#[target_feature(enable = "avx2,fma")]` (fused, so its results equal the IR interpreter's bit
//! for bit), one portable (`a * b + c`: `f32::mul_add` without FMA hardware is a library call) —
//! except the AVX-512 plan's own functions, which have the AVX2 + FMA wrapper only ([`plans`]).
//! Identical functions (MobileNet's repeated blocks) are emitted once.
//!
//! Unroll policy: the emitter unrolls nothing and keeps every IR loop a Rust `for` loop. What is
//! unrolled is what the IR already unrolls — kernel windows (taps), register tiles (pixels ×
//! channel vectors) and the border positions of each axis — so the code size of a layer grows
//! with `taps × tile` per region, not with its spatial size or channel counts.

use std::cell::{Cell, RefCell};

use proc_macro2::{Ident, Literal, TokenStream};
use quote::{format_ident, quote};

use crate::ast::{DimLit, Program, Statement};
use crate::bind::bind;
use crate::cost;
use crate::diagnostic::Diagnostic;
use crate::dim::fmt_shape;
use crate::error::Error;
use crate::ir::{BufferId, Function, Index, LoopVar, PlaneDepth, Stmt, TileActivation, Value};
use crate::lower::{self, Packing, Plan};
use crate::schedule::Target;
use crate::spec::{Activation, Layout, Network, Op};

/// The target the macro lowers for: 8 lanes, the width of the AVX2 version, with the tile
/// kernels: dense layers (and depthwise ones with large windows) call the JIT's AVX2 + FMA tile
/// kernels through `macro_support::tile` (`conv_jit::tile`, checked slices), the rest is inline
/// 8-lane code. MobileNetV1's `forward` took 28.6 ms with inline code only and 18.9 ms with the
/// shared kernels (same checksum), `cargo run --release --example macro_mobilenet` on the
/// development machine (AMD EPYC Zen 3); an inline Rust version of the tile took 32.7 ms.
pub const TARGET: Target = Target { microkernels: true, ..Target::AVX2 };

/// The target of the macro's second plan, for hosts whose tile and plane kernels run on AVX-512
/// (the JIT's `wide_microkernels` there): the heuristic then takes the plane kernel for small
/// depthwise planes and dense tiles of 4 vectors. Inline code stays 8-lane AVX2 code.
pub const WIDE_TARGET: Target = Target { wide_microkernels: true, ..TARGET };

mod plans;

pub use plans::PlanFor;

/// The head of the module to emit: `#[attributes] visibility mod name`, and extra items to put
/// inside it (`conv_file!` adds an `include_str!` of the model so that Cargo rebuilds on change).
#[derive(Clone, Debug)]
pub struct Header {
    /// Outer attributes (doc comments) given on the declaration.
    pub attributes: TokenStream,
    /// `pub`, `pub(crate)`, or nothing.
    pub visibility: TokenStream,
    /// The module's name.
    pub name: Ident,
    /// Items added inside the module as they are.
    pub items: TokenStream,
}

/// A diagnostic on every symbolic input dim except the channel dim (which the checker already
/// reports): the macro generates code for one concrete shape.
pub fn symbolic_dims(program: &Program) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    for statement in &program.statements {
        let Statement::Input(decl) = statement else {
            continue;
        };
        let rank = decl.dims.len();
        let channels_last = decl.layout.as_ref().is_some_and(|word| word.name == Layout::ChannelsLast.name(rank));
        let channel_axis = if channels_last { rank.saturating_sub(1) } else { 1 };
        for (axis, dim) in decl.dims.iter().enumerate() {
            if let DimLit::Symbol(symbol) = dim
                && axis != channel_axis
            {
                let role = if axis == 0 { "batch dim" } else { "dim" };
                let message = format!(
                    "{role} `{}` of input `{}` is symbolic, but the `conv!` macro generates code for one concrete shape: write its size (models with symbolic dims run on `convgen::CompiledModel`)",
                    symbol.name, decl.name.name
                );
                diagnostics.push(Diagnostic::new(symbol.span, message));
            }
        }
    }
    diagnostics
}

/// The plan the macro emits for `network` (whose input dims must all be concrete) and `host`.
pub fn plan(network: &Network, host: PlanFor) -> Result<Plan, Error> {
    let shape = concrete_input_shape(network)?;
    let binding = bind(network, &shape)?;
    lower::lower(network, &binding, host.target(), &|_| None)
}

/// The module for `network`. `model_source` is the model's text, kept as `MODEL_SOURCE`.
pub fn module(header: &Header, network: &Network, model_source: &str) -> Result<TokenStream, Error> {
    let input_shape = concrete_input_shape(network)?;
    let binding = bind(network, &input_shape)?;
    let plan = lower::lower(network, &binding, TARGET, &|_| None)?;
    let wide_plan = lower::lower(network, &binding, WIDE_TARGET, &|_| None)?;
    let layout = network.input.layout;
    let rank = input_shape.len();
    let output_shape = layout.order(&binding.layers[network.output].shape);
    let report = cost::report(network);
    let tensors = network.parameters();

    let Header { attributes, visibility, name, items } = header;
    let doc = format!(
        " A convolution network generated by `convgen::conv!`: input `{}` {} ({}) → output `{}` {}; {} parameters, {} multiply-adds. Run it with [`forward`].",
        network.input.name,
        fmt_shape(&input_shape),
        layout.name(rank),
        network.layers[network.output].name,
        fmt_shape(&output_shape),
        report.total_params(),
        report.total_macs().unwrap_or(0),
    );
    let constants = constants(network, &plan, &input_shape, &output_shape, &report, model_source);
    let params = params(network, &tensors);
    let plan_items = plans::items(&plan, &wide_plan);

    Ok(quote! {
        #attributes
        #[doc = #doc]
        #visibility mod #name {
            #![allow(clippy::all, clippy::pedantic, unused_qualifications)]
            #items
            #constants
            #params
            #plan_items
        }
    })
}

/// The module emitted when the model has errors: the same item names with permissive types, so
/// that code using the module reports no follow-on errors (the compile errors are emitted with it).
pub fn stub(header: &Header) -> TokenStream {
    let Header { attributes, visibility, name, items } = header;
    quote! {
        #attributes
        #[doc = " A stub: the model has errors (reported on its tokens)."]
        #visibility mod #name {
            #![allow(dead_code, unused_variables, missing_docs, clippy::all)]
            #items
            pub const INPUT_SHAPE: &[usize] = &[];
            pub const INPUT_LEN: usize = 0;
            pub const OUTPUT_SHAPE: &[usize] = &[];
            pub const OUTPUT_LEN: usize = 0;
            pub const PARAMETERS: usize = 0;
            pub const MACS: u64 = 0;
            pub const COST_REPORT: &str = "";
            pub const MODEL_SOURCE: &str = "";
            pub const TENSORS: &[::convgen::macro_support::TensorSpec] = &[];
            pub struct Params;
            impl Params {
                pub fn zeroed() -> Params { Params }
                pub fn from_flat(values: &[f32]) -> Result<Params, ::convgen::Error> { Ok(Params) }
                pub fn from_params(params: &::convgen::Params) -> Result<Params, ::convgen::Error> { Ok(Params) }
                pub fn from_safetensors(path: impl AsRef<::std::path::Path>) -> Result<Params, ::convgen::Error> {
                    Ok(Params)
                }
                pub fn random(seed: u64) -> Params { Params }
                pub fn to_params(&self) -> ::convgen::Params { ::convgen::Params::new() }
                pub fn pack(&self) -> Packed { Packed }
            }
            pub struct Packed;
            impl Packed {
                pub fn new(params: &Params) -> Packed { Packed }
                pub fn with_plan<P>(params: &Params, plan: P) -> Packed { Packed }
            }
            #[derive(Default)]
            pub struct Workspace;
            impl Workspace {
                pub fn new() -> Workspace { Workspace }
                pub fn for_packed(packed: &Packed) -> Workspace { Workspace }
            }
            pub fn new_input() -> Box<[f32]> { Box::new([]) }
            pub fn new_output() -> Box<[f32]> { Box::new([]) }
            pub fn forward<I, P, O, W>(input: I, params: P, output: O, workspace: W) {}
            pub fn forward_portable<I, P, O, W>(input: I, params: P, output: O, workspace: W) {}
        }
    }
}

fn concrete_input_shape(network: &Network) -> Result<Vec<u64>, Error> {
    let declared = network.input_shape_in_layout();
    declared.iter().map(|dim| dim.known()).collect::<Option<Vec<u64>>>().ok_or_else(|| Error::InputShape {
        name: network.input.name.clone(),
        expected: fmt_shape(&declared),
        found: "not concrete".to_string(),
        detail: ": the `conv!` macro needs every dim to be an integer".to_string(),
    })
}

fn unsuffixed(value: u64) -> Literal {
    Literal::u64_unsuffixed(value)
}

/// `value` as an f32 expression (a literal, or a constant for non-finite values).
fn f32_tokens(value: f32) -> TokenStream {
    if value.is_nan() {
        quote!(f32::NAN)
    } else if value.is_infinite() {
        if value > 0.0 { quote!(f32::INFINITY) } else { quote!(f32::NEG_INFINITY) }
    } else if value.is_sign_negative() {
        let magnitude = Literal::f32_suffixed(-value);
        quote!(-#magnitude)
    } else {
        let literal = Literal::f32_suffixed(value);
        quote!(#literal)
    }
}

/// Rust's keywords: names that need `r#` (or, for the few that cannot be raw, a `_` suffix).
const KEYWORDS: [&str; 51] = [
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for", "if", "impl", "in",
    "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "self", "Self", "static", "struct", "super",
    "trait", "true", "type", "unsafe", "use", "where", "while", "async", "await", "dyn", "abstract", "become", "box",
    "do", "final", "macro", "override", "priv", "typeof", "unsized", "virtual", "yield", "try",
];

/// A field or variable name for a DSL name.
fn field_ident(name: &str) -> Ident {
    match name {
        "self" | "Self" | "super" | "crate" | "_" => format_ident!("{name}_"),
        _ if KEYWORDS.contains(&name) || name == "gen" => Ident::new_raw(name, proc_macro2::Span::call_site()),
        _ => format_ident!("{name}"),
    }
}

/// `s_dw` → `SDw`.
fn camel_case(name: &str) -> String {
    let camel: String = name
        .split('_')
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map(|first| first.to_uppercase().chain(chars).collect::<String>()).unwrap_or_default()
        })
        .collect();
    if camel.is_empty() || KEYWORDS.contains(&camel.as_str()) { format!("{camel}_") } else { camel }
}

fn constants(
    network: &Network,
    plan: &Plan,
    input_shape: &[u64],
    output_shape: &[u64],
    report: &cost::CostReport,
    model_source: &str,
) -> TokenStream {
    let rank = unsuffixed(input_shape.len() as u64);
    let layout = network.input.layout.name(input_shape.len());
    let input_dims = input_shape.iter().map(|&dim| unsuffixed(dim));
    let output_dims = output_shape.iter().map(|&dim| unsuffixed(dim));
    let input_len = unsuffixed(plan.input_len);
    let output_len = unsuffixed(plan.output_len);
    let parameters = unsuffixed(report.total_params());
    let macs = Literal::u128_unsuffixed(report.total_macs().unwrap_or(0));
    let cost_report = report.to_string();
    let input_doc = format!(" The input `{}`'s shape, in its layout (`{layout}`).", network.input.name);
    let output_doc =
        format!(" The output `{}`'s shape, in the input's layout (`{layout}`).", network.layers[network.output].name);
    let specs = network.parameters().into_iter().map(|param| {
        let name = &param.name;
        let shape = param.shape.iter().map(|&dim| unsuffixed(dim));
        let fan_in = unsuffixed(param.fan_in);
        quote!(::convgen::macro_support::TensorSpec { name: #name, shape: &[#(#shape),*], fan_in: #fan_in })
    });
    quote! {
        #[doc = #input_doc]
        pub const INPUT_SHAPE: [usize; #rank] = [#(#input_dims),*];
        #[doc = " Elements of the input."]
        pub const INPUT_LEN: usize = #input_len;
        #[doc = #output_doc]
        pub const OUTPUT_SHAPE: [usize; #rank] = [#(#output_dims),*];
        #[doc = " Elements of the output."]
        pub const OUTPUT_LEN: usize = #output_len;
        #[doc = " Parameters (weights and biases) of the whole network."]
        pub const PARAMETERS: usize = #parameters;
        #[doc = " Multiply-accumulates of one forward pass."]
        pub const MACS: u64 = #macs;
        #[doc = " The per-layer cost table, as `convgen check` prints it."]
        pub const COST_REPORT: &str = #cost_report;
        #[doc = " The model's DSL text."]
        pub const MODEL_SOURCE: &str = #model_source;
        #[doc = " The parameter tensors, in order: PyTorch names and shapes (the order of `Params::from_flat`)."]
        pub const TENSORS: &[::convgen::macro_support::TensorSpec] = &[#(#specs),*];
    }
}

/// One convolution stage's parameters: its struct's fields and, per tensor, the field name.
struct StageFields {
    /// The struct, in `mod layers`.
    definition: TokenStream,
    /// Its type name.
    type_name: Ident,
    /// `(tensor name, field, length)`.
    tensors: Vec<(String, Ident, u64)>,
}

fn params(network: &Network, specs: &[crate::spec::ParamSpec]) -> TokenStream {
    let mut used_types: Vec<String> = Vec::new();
    let mut type_name = |base: String| -> Ident {
        let mut candidate = base.clone();
        let mut suffix = 2;
        while used_types.contains(&candidate) {
            candidate = format!("{base}{suffix}");
            suffix += 1;
        }
        used_types.push(candidate.clone());
        format_ident!("{candidate}")
    };
    let stage = |type_name: Ident, prefix: &str, conv: &crate::spec::Conv| -> StageFields {
        let mut fields = Vec::new();
        let mut tensors = Vec::new();
        for kind in ["weight", "bias"] {
            let tensor = format!("{prefix}.{kind}");
            let Some(spec) = specs.iter().find(|spec| spec.name == tensor) else {
                continue;
            };
            let field = format_ident!("{kind}");
            let len: u64 = spec.shape.iter().product();
            let len_literal = unsuffixed(len);
            let doc = format!(" `{tensor}` {} (PyTorch's layout, C order).", fmt_shape(&spec.shape));
            fields.push(quote!(#[doc = #doc] pub #field: ::std::boxed::Box<[f32; #len_literal]>,));
            tensors.push((tensor, field, len));
        }
        let doc = format!(" Parameters of `{prefix}`: {}.", conv.describe());
        let definition = quote! {
            #[doc = #doc]
            pub struct #type_name { #(#fields)* }
        };
        StageFields { definition, type_name, tensors }
    };

    let mut definitions = Vec::new();
    let mut fields = Vec::new();
    let mut initialisers = Vec::new();
    // Per tensor, in `Network::parameters` order: the path below `self` / `params`.
    let mut paths: Vec<(String, TokenStream)> = Vec::new();
    for layer in &network.layers {
        let field = field_ident(&layer.name);
        let base = camel_case(&layer.name);
        let zeroed = |stage: &StageFields| {
            let type_name = &stage.type_name;
            let names = stage.tensors.iter().map(|(_, field, _)| field);
            quote!(layers::#type_name { #(#names: ::convgen::macro_support::zeroed()),* })
        };
        match &layer.op {
            Op::Add { .. } => continue,
            Op::Conv { conv, .. } => {
                let stage = stage(type_name(base), &layer.name, conv);
                let type_name = &stage.type_name;
                let doc = format!(" Layer `{}`: {}.", layer.name, conv.describe());
                fields.push(quote!(#[doc = #doc] pub #field: layers::#type_name,));
                let init = zeroed(&stage);
                initialisers.push(quote!(#field: #init,));
                for (tensor, name, _) in &stage.tensors {
                    paths.push((tensor.clone(), quote!(#field.#name)));
                }
                definitions.push(stage.definition);
            }
            Op::Separable { depthwise, pointwise, .. } => {
                let outer = type_name(base.clone());
                let dw = stage(type_name(format!("{base}Dw")), &format!("{}.dw", layer.name), depthwise);
                let pw = stage(type_name(format!("{base}Pw")), &format!("{}.pw", layer.name), pointwise);
                let (dw_type, pw_type) = (&dw.type_name, &pw.type_name);
                let doc = format!(" Parameters of the separable layer `{}`: its two stages.", layer.name);
                definitions.push(quote! {
                    #[doc = #doc]
                    pub struct #outer {
                        #[doc = " The depthwise stage."]
                        pub dw: #dw_type,
                        #[doc = " The pointwise stage."]
                        pub pw: #pw_type,
                    }
                });
                let doc = format!(
                    " Layer `{}`: separable, {} then {}.",
                    layer.name,
                    depthwise.describe(),
                    pointwise.describe()
                );
                fields.push(quote!(#[doc = #doc] pub #field: layers::#outer,));
                let (dw_init, pw_init) = (zeroed(&dw), zeroed(&pw));
                initialisers.push(quote!(#field: layers::#outer { dw: #dw_init, pw: #pw_init },));
                for (tensor, name, _) in &dw.tensors {
                    paths.push((tensor.clone(), quote!(#field.dw.#name)));
                }
                for (tensor, name, _) in &pw.tensors {
                    paths.push((tensor.clone(), quote!(#field.pw.#name)));
                }
                definitions.push(dw.definition);
                definitions.push(pw.definition);
            }
        }
    }
    // `paths` follows the layers and stages in order, weight before bias: `Network::parameters`.
    debug_assert!(paths.iter().map(|(name, _)| name).eq(specs.iter().map(|spec| &spec.name)));
    let count = unsuffixed(paths.len() as u64);
    let shared = paths.iter().map(|(_, path)| quote!(&self.#path[..]));
    let exclusive = paths.iter().map(|(_, path)| quote!(&mut self.#path[..]));
    quote! {
        #[doc = " The network's parameters, by PyTorch name (`params.dw.weight` is `dw.weight`) and in PyTorch's layouts. Pack them once with [`Params::pack`] for [`forward`]."]
        pub struct Params { #(#fields)* }

        #[doc = " The types of [`Params`]' fields, one per layer (and per stage of a separable layer)."]
        pub mod layers {
            #(#definitions)*
        }

        impl Params {
            #[doc = " All zeros."]
            pub fn zeroed() -> Params {
                Params { #(#initialisers)* }
            }

            #[doc = " From every tensor of [`TENSORS`] in order, each in C order, concatenated."]
            pub fn from_flat(values: &[f32]) -> Result<Params, ::convgen::Error> {
                let mut params = Params::zeroed();
                ::convgen::macro_support::fill_from_flat(TENSORS, values, &mut params.tensors_mut())?;
                Ok(params)
            }

            #[doc = " From named tensors (exactly the model's names and shapes)."]
            pub fn from_params(params: &::convgen::Params) -> Result<Params, ::convgen::Error> {
                let mut result = Params::zeroed();
                ::convgen::macro_support::fill_from_params(TENSORS, params, &mut result.tensors_mut())?;
                Ok(result)
            }

            #[doc = " From a `.safetensors` file with PyTorch's names (f32), e.g. a `state_dict` saved with `safetensors.torch.save_file`."]
            pub fn from_safetensors(path: impl AsRef<::std::path::Path>) -> Result<Params, ::convgen::Error> {
                let mut result = Params::zeroed();
                ::convgen::macro_support::fill_from_safetensors(TENSORS, path.as_ref(), &mut result.tensors_mut())?;
                Ok(result)
            }

            #[doc = " PyTorch-like random parameters: the values `convgen::Params::random` gives for this model and seed."]
            pub fn random(seed: u64) -> Params {
                let mut params = Params::zeroed();
                ::convgen::macro_support::fill_random(TENSORS, seed, &mut params.tensors_mut());
                params
            }

            #[doc = " The tensors as a `convgen::Params` (for the interpreter or the JIT)."]
            pub fn to_params(&self) -> ::convgen::Params {
                ::convgen::macro_support::to_params(TENSORS, &self.tensors())
            }

            #[doc = " Every tensor's data, in the order of [`TENSORS`]."]
            pub fn tensors(&self) -> [&[f32]; #count] {
                [#(#shared),*]
            }

            #[doc = " Every tensor's data, writable, in the order of [`TENSORS`]."]
            pub fn tensors_mut(&mut self) -> [&mut [f32]; #count] {
                [#(#exclusive),*]
            }

            #[doc = " The parameters packed for [`forward`]."]
            pub fn pack(&self) -> Packed {
                Packed::new(self)
            }
        }
    }
}

fn packing_tokens(packing: &Packing) -> TokenStream {
    match *packing {
        Packing::Bias { channels } => {
            let channels = unsuffixed(channels);
            quote!(::convgen::macro_support::Packing::Bias { channels: #channels })
        }
        Packing::Depthwise { channels, padded, taps } => {
            let (channels, padded, taps) = (unsuffixed(channels), unsuffixed(padded), unsuffixed(taps));
            quote!(::convgen::macro_support::Packing::Depthwise { channels: #channels, padded: #padded, taps: #taps })
        }
        Packing::Panels { groups, in_per_group, out_per_group, panel, taps } => {
            let [groups, in_per_group, out_per_group, panel, taps] =
                [groups, in_per_group, out_per_group, panel, taps].map(unsuffixed);
            quote!(::convgen::macro_support::Packing::Panels {
                groups: #groups,
                in_per_group: #in_per_group,
                out_per_group: #out_per_group,
                panel: #panel,
                taps: #taps,
            })
        }
        Packing::Winograd { groups, in_per_group, out_per_group, panel } => {
            let [groups, in_per_group, out_per_group, panel] =
                [groups, in_per_group, out_per_group, panel].map(unsuffixed);
            quote!(::convgen::macro_support::Packing::Winograd {
                groups: #groups,
                in_per_group: #in_per_group,
                out_per_group: #out_per_group,
                panel: #panel,
            })
        }
        Packing::Dense { groups, in_per_group, out_per_group, out_per_group_padded, taps } => {
            let values = [groups, in_per_group, out_per_group, out_per_group_padded, taps].map(unsuffixed);
            let [groups, in_per_group, out_per_group, out_per_group_padded, taps] = values;
            quote!(::convgen::macro_support::Packing::Dense {
                groups: #groups,
                in_per_group: #in_per_group,
                out_per_group: #out_per_group,
                out_per_group_padded: #out_per_group_padded,
                taps: #taps
            })
        }
    }
}

/// The path of a parameter tensor below a `Params` value: `dw.weight` → `dw.weight`,
/// `s.dw.bias` → `s.dw.bias` (each part a field name).
fn tensor_path(tensor: &str) -> TokenStream {
    let parts: Vec<&str> = tensor.split('.').collect();
    let (layer, rest) = parts.split_first().expect("a tensor name has a layer part");
    let layer = field_ident(layer);
    let rest = rest.iter().map(|part| format_ident!("{part}"));
    quote!(#layer #(.#rest)*)
}

fn activation_tokens(act: TileActivation) -> TokenStream {
    match act {
        TileActivation::None => quote!(TileActivation::None),
        TileActivation::Relu => quote!(TileActivation::Relu),
        TileActivation::Relu6 => quote!(TileActivation::Relu6),
    }
}

/// The Rust name of a function's buffer (IR names are `in`, `out`, `w`, `b`, `a`, `res`, `user`, …),
/// kept apart from keywords and the names the emitter makes (`FMA`, `a0`, `i0`, `o0`, `r0`).
fn buffer_ident(name: &str) -> Ident {
    let generated = |prefix: char| {
        name.strip_prefix(prefix).is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()))
    };
    let clashes = KEYWORDS.contains(&name) || name == "FMA" || ['a', 'i', 'o', 'r'].into_iter().any(generated);
    if clashes { format_ident!("{name}_") } else { format_ident!("{name}") }
}

/// `#[cfg(…)]` for x86 and x86-64, where the AVX2 + FMA versions exist.
fn x86() -> TokenStream {
    quote!(#[cfg(any(target_arch = "x86", target_arch = "x86_64"))])
}

/// Kernel `index`: `function`'s generic body and its AVX2 + FMA entry, and a portable entry where
/// `portable` (else the module exists only where the AVX2 entry does: x86 and x86-64).
fn kernel(index: usize, function: &Function, layers: &[String], portable: bool) -> TokenStream {
    let body_name = format_ident!("k{index}");
    let avx2_name = format_ident!("k{index}_avx2");
    let portable_name = format_ident!("k{index}_portable");
    let names: Vec<Ident> = function.buffers.iter().map(|buffer| buffer_ident(&buffer.name)).collect();
    let params: Vec<TokenStream> = function
        .buffers
        .iter()
        .zip(&names)
        .map(|(buffer, name)| {
            let len = unsuffixed(buffer.len);
            if buffer.writes { quote!(#name: &mut [f32; #len]) } else { quote!(#name: &[f32; #len]) }
        })
        .collect();
    let lanes = unsuffixed(u64::from(function.lanes));
    let accumulators = (0..function.accumulators).map(|acc| format_ident!("a{acc}"));
    let read_only: Vec<bool> = function.buffers.iter().map(|buffer| !buffer.writes).collect();
    let emitter = Emitter {
        names: &names,
        read_only: &read_only,
        lanes: function.lanes,
        hoisted: RefCell::new(Vec::new()),
        windows: RefCell::new(Vec::new()),
        next_name: Cell::new(0),
    };
    let body = emitter.block(&function.body);
    let doc = format!(" {} (lanes {}).", layers.join(", "), function.lanes);
    let (cfg, portable_entry) = if portable {
        let entry = quote! {
            #[inline(never)]
            pub(in super::super) fn #portable_name(#(#params),*) {
                #body_name::<false>(#(#names),*)
            }
        };
        (quote!(), entry)
    } else {
        (x86(), quote!())
    };
    let x86 = x86();
    quote! {
        #[doc = #doc]
        #cfg
        pub(super) mod #body_name {
            use super::*;

            #[inline(always)]
            #[allow(unused_assignments, unused_mut, unused_variables)]
            fn #body_name<const FMA: bool>(#(#params),*) {
                #(let mut #accumulators = [0.0f32; #lanes];)*
                #body
            }

            #x86
            #[target_feature(enable = "avx2,fma")]
            #[inline(never)]
            pub(in super::super) fn #avx2_name(#(#params),*) {
                #body_name::<true>(#(#names),*)
            }

            #portable_entry
        }
    }
}

/// The variable part of an index (its `(var, coefficient)` terms) and the name it is bound to.
type Hoisted = (Vec<(LoopVar, i64)>, Ident);

/// A block's window of a read-only buffer: the buffer, the variable part of the indices it
/// serves, its name, and the constant offset of its first element from that variable part.
struct Window {
    buffer: BufferId,
    terms: Vec<(LoopVar, i64)>,
    name: Ident,
    /// The offsets of its first element and of the element after its last.
    start: i64,
    end: i64,
}

/// The fewest reads of one buffer at one variable part in one block that are read through a
/// window ([`Emitter`]). Below it the reads stay checked one by one: LLVM copes with them, and a
/// window costs each iteration its `black_box` (on MobileNetV1, whose largest planar blocks read
/// 36 elements per buffer, windows for every block of two or more reads made `forward` 5% slower,
/// 17.0 against 16.2 ms, 3 alternating runs of the example).
const WINDOW_MIN_READS: usize = 128;

/// Emits one function's statements.
///
/// The variable part of each index (`i0 * 486 + i2 * 162`) is computed once per block, as
/// `let oN = …;` at the top of the innermost loop that has all its variables, and each access adds
/// its constant: `load(w, o3 + 78)`. The Rust is shorter and LLVM starts with less to simplify.
///
/// The many reads of a read-only buffer that share a variable part in one block (at least
/// [`WINDOW_MIN_READS`]: the taps × tiles of a 3D layer's border regions, up to thousands) go
/// through one array reference of just the elements they span, `let rN = window::<SPAN>(in_, o0);`,
/// at constant offsets: `load(r2, 3193)`. The window's start passes through `black_box`, so that
/// LLVM sees each read as an opaque base plus a constant instead of one more affine function of
/// the loop variables to analyse: with an affine, checked index per read its loop analyses
/// (ScalarEvolution) grew faster than linearly with the reads of a loop, and the example
/// expanding the suite's 3D depthwise layer (2,073 multiply-adds over its border regions) had not
/// finished compiling after 13 minutes; with windows it takes 4–6 (`cargo build --release`).
struct Emitter<'a> {
    names: &'a [Ident],
    /// Per buffer: whether the function never writes it (only those are read through windows).
    read_only: &'a [bool],
    /// The function's lanes.
    lanes: u32,
    /// Per enclosing block, innermost last: the hoisted variable parts and their names.
    hoisted: RefCell<Vec<Vec<Hoisted>>>,
    /// Per enclosing block, innermost last: its windows.
    windows: RefCell<Vec<Vec<Window>>>,
    /// How many `oN` (and `rN`) names exist.
    next_name: Cell<u32>,
}

impl Emitter<'_> {
    fn block(&self, body: &[Stmt]) -> TokenStream {
        // The variable parts of the indices of this block's own statements, in order of appearance.
        let mut parts: Vec<Vec<(LoopVar, i64)>> = Vec::new();
        for stmt in body {
            let mut visit = |index: &Index| {
                let worth_hoisting = index.terms.iter().all(|&(_, coefficient)| coefficient > 0)
                    && (index.terms.len() > 1 || index.terms.first().is_some_and(|&(_, coefficient)| coefficient != 1));
                if worth_hoisting && !parts.contains(&index.terms) {
                    parts.push(index.terms.clone());
                }
            };
            match stmt {
                Stmt::Loop { .. } => {}
                Stmt::Init { value, .. } => indices(value, &mut visit),
                Stmt::Fma { a, b, .. } => {
                    indices(a, &mut visit);
                    indices(b, &mut visit);
                }
                Stmt::Store { index, value, .. } => {
                    visit(index);
                    indices(value, &mut visit);
                }
                Stmt::Transpose { from_index, to_index, .. } => {
                    visit(from_index);
                    visit(to_index);
                }
                Stmt::Tile(tile) => {
                    visit(&tile.input_index);
                    visit(&tile.weight_index);
                    visit(&tile.acc_index);
                    if let Some((_, index)) = &tile.bias {
                        visit(index);
                    }
                }
                Stmt::Plane(plane) => {
                    visit(&plane.input_index);
                    visit(&plane.weight_index);
                    visit(&plane.output_index);
                    if let Some((_, index)) = &plane.bias {
                        visit(index);
                    }
                }
            }
        }
        let mut lets = Vec::new();
        let mut names = Vec::new();
        for terms in parts {
            let name = format_ident!("o{}", self.next_name.get());
            self.next_name.set(self.next_name.get() + 1);
            let value = index_tokens(&Index { offset: 0, terms: terms.clone() });
            lets.push(quote!(let #name = #value;));
            names.push((terms, name));
        }
        self.hoisted.borrow_mut().push(names);
        let windows = self.windows_of(body);
        for window in &windows {
            let (buffer, name) = (&self.names[window.buffer.0 as usize], &window.name);
            let start = self.index(&Index { offset: window.start, terms: window.terms.clone() });
            let span = unsuffixed((window.end - window.start) as u64);
            lets.push(quote!(let #name = window::<#span>(#buffer, #start);));
        }
        self.windows.borrow_mut().push(windows);
        let statements: TokenStream = body.iter().map(|stmt| self.stmt(stmt)).collect();
        self.windows.borrow_mut().pop();
        self.hoisted.borrow_mut().pop();
        quote!(#(#lets)* #statements)
    }

    /// The reads of `body`'s own statements (not those of nested loops) of a read-only buffer at
    /// a hoisted variable part: `(buffer, index, elements read)`.
    fn reads(&self, body: &[Stmt]) -> Vec<(BufferId, Index, i64)> {
        let lanes = i64::from(self.lanes);
        let hoisted = self.hoisted.borrow();
        let known =
            |index: &Index| hoisted.last().is_some_and(|names| names.iter().any(|(terms, _)| *terms == index.terms));
        let mut reads = Vec::new();
        let mut visit = |value: &Value| {
            values(value, &mut |value| {
                let (buffer, index, width) = match value {
                    Value::Load { buffer, index } => (buffer, index, lanes),
                    Value::LoadEven { buffer, index } => (buffer, index, 2 * lanes - 1),
                    Value::Splat { buffer, index } => (buffer, index, 1),
                    _ => return,
                };
                if self.read_only[buffer.0 as usize] && known(index) {
                    reads.push((*buffer, index.clone(), width));
                }
            });
        };
        for stmt in body {
            match stmt {
                Stmt::Init { value, .. } | Stmt::Store { value, .. } => visit(value),
                Stmt::Fma { a, b, .. } => {
                    visit(a);
                    visit(b);
                }
                _ => {}
            }
        }
        reads
    }

    /// The windows of `body`: one per read-only buffer and hoisted variable part that at least
    /// [`WINDOW_MIN_READS`] of its reads share, from the lowest element they read to the highest.
    fn windows_of(&self, body: &[Stmt]) -> Vec<Window> {
        // Per buffer and variable part: its reads, and the extent of the elements they read.
        let mut groups: Vec<(Window, usize)> = Vec::new();
        for (buffer, index, width) in self.reads(body) {
            let (start, end) = (index.offset, index.offset + width);
            let same = |(window, _): &&mut (Window, usize)| window.buffer == buffer && window.terms == index.terms;
            if let Some((window, reads)) = groups.iter_mut().find(same) {
                (window.start, window.end, *reads) = (window.start.min(start), window.end.max(end), *reads + 1);
            } else {
                let window = Window { buffer, terms: index.terms, name: format_ident!("r"), start, end };
                groups.push((window, 1));
            }
        }
        let windows = groups.into_iter().filter(|&(_, reads)| reads >= WINDOW_MIN_READS);
        windows
            .map(|(window, _)| {
                let name = format_ident!("r{}", self.next_name.get());
                self.next_name.set(self.next_name.get() + 1);
                Window { name, ..window }
            })
            .collect()
    }

    /// A read of `buffer` at `index` through this block's window of it, if it has one:
    /// `(window, constant offset)`.
    fn windowed(&self, buffer: BufferId, index: &Index) -> Option<(Ident, Literal)> {
        let windows = self.windows.borrow();
        let window = windows.last()?.iter().find(|window| window.buffer == buffer && window.terms == index.terms)?;
        Some((window.name.clone(), unsuffixed((index.offset - window.start) as u64)))
    }

    /// `index`, using this block's hoisted variable part if it has one.
    fn index(&self, index: &Index) -> TokenStream {
        let hoisted = self.hoisted.borrow();
        let found = hoisted.last().and_then(|names| names.iter().find(|(terms, _)| *terms == index.terms));
        let Some((_, name)) = found else {
            return index_tokens(index);
        };
        match index.offset {
            0 => quote!(#name),
            offset if offset > 0 => {
                let offset = unsuffixed(offset as u64);
                quote!(#name + #offset)
            }
            offset => {
                let offset = unsuffixed(offset.unsigned_abs());
                quote!(#name - #offset)
            }
        }
    }

    fn stmt(&self, stmt: &Stmt) -> TokenStream {
        let lanes = &unsuffixed(u64::from(self.lanes));
        match stmt {
            Stmt::Loop { var, count, body } => {
                let var = format_ident!("i{}", var.0);
                let count = unsuffixed(*count);
                let body = self.block(body);
                quote!(for #var in 0..#count { #body })
            }
            Stmt::Init { acc, value } => {
                let acc = format_ident!("a{}", acc.0);
                let value = self.value(value);
                quote!(#acc = #value;)
            }
            Stmt::Fma { acc, a, b } => {
                let acc = format_ident!("a{}", acc.0);
                let (a, b) = (self.value(a), self.value(b));
                quote!(#acc = fma(FMA, #acc, #a, #b);)
            }
            Stmt::Store { buffer, index, value } => {
                let buffer = &self.names[buffer.0 as usize];
                let index = self.index(index);
                let value = self.value(value);
                quote!(store::<#lanes>(#buffer, #index, #value);)
            }
            Stmt::Tile(tile) => {
                let name = |buffer: BufferId| &self.names[buffer.0 as usize];
                let (input, weight, acc) = (name(tile.input), name(tile.weight), name(tile.acc));
                let (input_index, weight_index) = (self.index(&tile.input_index), self.index(&tile.weight_index));
                let acc_index = self.index(&tile.acc_index);
                let (pixels, vectors, depthwise) = (tile.pixels as usize, tile.vectors as usize, tile.depthwise);
                let signed = |value: i64| Literal::i64_unsuffixed(value);
                let (pixel_stride, reduce) = (signed(tile.pixel_stride), unsuffixed(tile.reduce));
                let (repeat, repeat_input) = (unsuffixed(tile.repeat), signed(tile.repeat_input_stride));
                let (repeat_weight, repeat_bias) = (signed(tile.repeat_weight_stride), signed(tile.repeat_bias_stride));
                let (reduce_input, reduce_weight) =
                    (signed(tile.reduce_input_stride), signed(tile.reduce_weight_stride));
                let bias = match &tile.bias {
                    Some((bias, index)) => {
                        let (bias, index) = (name(*bias), self.index(index));
                        quote!(Some((#bias, #index)))
                    }
                    None => quote!(None),
                };
                let taps = tile.taps.map(unsuffixed);
                let tap_input = tile.tap_input_strides.map(signed);
                let tap_weight = tile.tap_weight_strides.map(signed);
                let (acc_pixel, acc_repeat) = (signed(tile.acc_pixel_stride), signed(tile.acc_repeat_stride));
                let act = activation_tokens(tile.act);
                // A dense strip of a window, with one tap along d, takes the kernel whose strides
                // are constants (one instantiation per stride tuple). A pointwise strip gains
                // nothing from it (pw_64to64_56 ran 0.98–1.01× the strided kernel's speed) and
                // keeps the shared `tile`, which spares MobileNetV1's build 13 instantiations.
                let prefetch = tile.prefetch;
                let (callee, lead) = if !depthwise && tile.taps[0] == 1 && tile.taps[1] * tile.taps[2] > 1 {
                    let [_, th, tw] = taps.clone();
                    let [_, in_h, in_w] = tap_input.clone();
                    let [_, w_h, w_w] = tap_weight.clone();
                    let constants = [&pixel_stride, &reduce_input, &reduce_weight];
                    let callee = quote!(tile_fixed::<#pixels, #vectors, #({#constants}),*, #th, #tw, {#in_h}, {#in_w}, {#w_h}, {#w_w}>);
                    (callee, quote!(FMA,))
                } else {
                    (quote!(tile::<#pixels, #vectors>), quote!(FMA, #depthwise,))
                };
                quote! {
                    #callee(#lead (#input, #input_index), (#weight, #weight_index), #bias, (#acc, #acc_index), &TileShape {
                        pixel_stride: #pixel_stride,
                        repeat: #repeat,
                        repeat_input_stride: #repeat_input,
                        repeat_weight_stride: #repeat_weight,
                        repeat_bias_stride: #repeat_bias,
                        reduce: #reduce,
                        reduce_input_stride: #reduce_input,
                        reduce_weight_stride: #reduce_weight,
                        taps: [#(#taps),*],
                        tap_input_strides: [#(#tap_input),*],
                        tap_weight_strides: [#(#tap_weight),*],
                        acc_pixel_stride: #acc_pixel,
                        acc_repeat_stride: #acc_repeat,
                        act: #act,
                        prefetch: #prefetch,
                    });
                }
            }
            Stmt::Plane(plane) => {
                let name = |buffer: BufferId| &self.names[buffer.0 as usize];
                let (input, weight, output) = (name(plane.input), name(plane.weight), name(plane.output));
                let (input_index, weight_index) = (self.index(&plane.input_index), self.index(&plane.weight_index));
                let output_index = self.index(&plane.output_index);
                let bias = match &plane.bias {
                    Some((bias, index)) => {
                        let (bias, index) = (name(*bias), self.index(index));
                        quote!(Some((#bias, #index)))
                    }
                    None => quote!(None),
                };
                let planes = unsuffixed(plane.planes);
                let (group_inputs, group_outputs) = (unsuffixed(plane.group_inputs), unsuffixed(plane.group_outputs));
                let (input_size, output_size) = (plane.input_size.map(unsuffixed), plane.output_size.map(unsuffixed));
                let (kernel, stride, dilation) =
                    (unsuffixed(plane.kernel), unsuffixed(plane.stride), unsuffixed(plane.dilation));
                let padding = plane.padding.map(unsuffixed);
                let act = activation_tokens(plane.act);
                let depth = match plane.depth {
                    PlaneDepth::FLAT => quote!(PlaneDepth::FLAT),
                    depth => {
                        let [input, output, kernel, stride, dilation, pad] = depth.values().map(unsuffixed);
                        quote!(PlaneDepth { input: #input, output: #output, kernel: #kernel, stride: #stride, dilation: #dilation, pad: #pad })
                    }
                };
                quote! {
                    plane(FMA, (#input, #input_index), (#weight, #weight_index), #bias, (#output, #output_index), &PlaneShape {
                        planes: #planes,
                        group_inputs: #group_inputs,
                        group_outputs: #group_outputs,
                        input_size: [#(#input_size),*],
                        output_size: [#(#output_size),*],
                        kernel: #kernel,
                        stride: #stride,
                        dilation: #dilation,
                        padding: [#(#padding),*],
                        act: #act,
                        depth: #depth,
                    });
                }
            }
            Stmt::Transpose { from, from_index, from_stride, to, to_index, to_stride } => {
                let (from, to) = (&self.names[from.0 as usize], &self.names[to.0 as usize]);
                let (from_index, to_index) = (self.index(from_index), self.index(to_index));
                let (from_stride, to_stride) = (unsuffixed(*from_stride as u64), unsuffixed(*to_stride as u64));
                quote!(transpose(#from, #from_index, #from_stride, #to, #to_index, #to_stride);)
            }
        }
    }

    /// What a read of `buffer` at `index` names: its window and offset there, else the buffer and
    /// the index.
    fn read(&self, buffer: BufferId, index: &Index) -> (TokenStream, TokenStream) {
        match self.windowed(buffer, index) {
            Some((window, offset)) => (quote!(#window), quote!(#offset)),
            None => {
                let buffer = &self.names[buffer.0 as usize];
                (quote!(#buffer), self.index(index))
            }
        }
    }

    fn value(&self, value: &Value) -> TokenStream {
        let lanes = &unsuffixed(u64::from(self.lanes));
        match value {
            Value::Acc(acc) => {
                let acc = format_ident!("a{}", acc.0);
                quote!(#acc)
            }
            Value::Load { buffer, index } => {
                let (buffer, index) = self.read(*buffer, index);
                quote!(load(#buffer, #index))
            }
            Value::LoadEven { buffer, index } => {
                let (buffer, index) = self.read(*buffer, index);
                quote!(load_even(#buffer, #index))
            }
            Value::Splat { buffer, index } => {
                let (buffer, index) = self.read(*buffer, index);
                quote!(splat(#buffer, #index))
            }
            Value::Zero => quote!([0.0f32; #lanes]),
            Value::Add(a, b) => {
                let (a, b) = (self.value(a), self.value(b));
                quote!(add(#a, #b))
            }
            Value::Sub(a, b) => {
                let (a, b) = (self.value(a), self.value(b));
                quote!(sub(#a, #b))
            }
            Value::Activate(act, inner) => {
                let x = self.value(inner);
                match act {
                    Activation::None => x,
                    Activation::Relu => quote!(relu(#x)),
                    Activation::Relu6 => quote!(relu6(#x)),
                    Activation::LeakyRelu(alpha) => {
                        let alpha = f32_tokens(*alpha);
                        quote!(leaky_relu(#x, #alpha))
                    }
                    Activation::Hardswish => quote!(hardswish(#x)),
                    Activation::Silu => quote!(silu(#x)),
                    Activation::Sigmoid => quote!(sigmoid(#x)),
                }
            }
        }
    }
}

/// Calls `visit` on `value` and every value inside it.
fn values(value: &Value, visit: &mut impl FnMut(&Value)) {
    visit(value);
    match value {
        Value::Add(a, b) | Value::Sub(a, b) => {
            values(a, visit);
            values(b, visit);
        }
        Value::Activate(_, inner) => values(inner, visit),
        _ => {}
    }
}

/// Calls `visit` on every index `value` reads.
fn indices(value: &Value, visit: &mut impl FnMut(&Index)) {
    match value {
        Value::Load { index, .. } | Value::LoadEven { index, .. } | Value::Splat { index, .. } => visit(index),
        Value::Add(a, b) | Value::Sub(a, b) => {
            indices(a, visit);
            indices(b, visit);
        }
        Value::Activate(_, inner) => indices(inner, visit),
        Value::Acc(_) | Value::Zero => {}
    }
}

/// An affine index as a `usize` expression: the positive terms first, then the negative ones
/// subtracted, so that no partial sum goes below the (non-negative) final value.
fn index_tokens(index: &Index) -> TokenStream {
    let mut positive: Vec<TokenStream> = Vec::new();
    let mut negative: Vec<TokenStream> = Vec::new();
    for &(var, coefficient) in &index.terms {
        let var = format_ident!("i{}", var.0);
        let term = match coefficient.unsigned_abs() {
            1 => quote!(#var),
            magnitude => {
                let magnitude = unsuffixed(magnitude);
                quote!(#var * #magnitude)
            }
        };
        if coefficient > 0 { positive.push(term) } else { negative.push(term) }
    }
    if index.offset > 0 {
        let offset = unsuffixed(index.offset as u64);
        positive.push(quote!(#offset));
    } else if index.offset < 0 {
        let offset = unsuffixed(index.offset.unsigned_abs());
        negative.push(quote!(#offset));
    }
    if positive.is_empty() {
        positive.push(quote!(0));
    }
    quote!(#(#positive)+* #(- #negative)*)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_subtract_last() {
        let index = Index { offset: -64, terms: vec![(LoopVar(0), 256), (LoopVar(2), 8)] };
        assert_eq!(index_tokens(&index).to_string(), "i0 * 256 + i2 * 8 - 64");
        assert_eq!(index_tokens(&Index::constant(0)).to_string(), "0");
        assert_eq!(index_tokens(&Index::constant(12)).to_string(), "12");
        let index = Index { offset: 3, terms: vec![(LoopVar(1), 1), (LoopVar(4), -2)] };
        assert_eq!(index_tokens(&index).to_string(), "i1 + 3 - i4 * 2");
    }

    #[test]
    fn names_that_are_keywords_still_make_identifiers() {
        assert_eq!(field_ident("type").to_string(), "r#type");
        assert_eq!(field_ident("self").to_string(), "self_");
        assert_eq!(field_ident("dw1").to_string(), "dw1");
        assert_eq!(camel_case("s_dw"), "SDw");
        assert_eq!(camel_case("self"), "Self_");
        assert_eq!(buffer_ident("in").to_string(), "in_");
        assert_eq!(buffer_ident("a").to_string(), "a");
        assert_eq!(buffer_ident("a1").to_string(), "a1_");
        assert_eq!(buffer_ident("FMA").to_string(), "FMA_");
    }

    #[test]
    fn floats_are_literals_or_constants() {
        assert_eq!(f32_tokens(0.1).to_string(), "0.1f32");
        assert_eq!(f32_tokens(-0.5).to_string(), "- 0.5f32");
        assert_eq!(f32_tokens(f32::INFINITY).to_string(), "f32 :: INFINITY");
    }
}
