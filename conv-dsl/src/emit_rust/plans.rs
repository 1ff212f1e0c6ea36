//! The plan-dependent items of a `conv!` module: `Packed`, `Workspace`, `forward` and
//! `forward_portable`, and the `kernels` they call.
//!
//! A model is lowered for two targets ([`PlanFor`]): 8-lane AVX2 kernels, and the same with the
//! AVX-512 hosts' wide tile and plane kernels, whose heuristic picks other tiles and kernels (the
//! plane kernel for small depthwise planes, tiles of 4 vectors). Where the two plans are equal
//! (most small models) the module holds one, as plain structs. Where they differ it holds both,
//! each in a module of its own (`avx2_plan`, `avx512_plan`), and the public `Packed` and
//! `Workspace` wrap the one `Packed::new` picks for the host — so a model packs and allocates one
//! plan, never both. Kernels equal in both plans are emitted once.
//!
//! The AVX-512 plan's own kernels are emitted in their AVX2 + FMA version only: the portable
//! versions were more than half of a model's build time (MobileNetV1's example: 7.2 s without any,
//! 15–17 s with both plans' on an AVX-512 AMD EPYC), and that plan only runs on CPUs with AVX2 and
//! FMA: its `Packed` holds the proof (`convgen::macro_support::Avx2Fma`),
//! made where `Packed::with_plan` detects them (elsewhere it packs the AVX2 plan), and
//! `forward_portable` runs it as `forward` does.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

use super::{kernel, packing_tokens, tensor_path, unsuffixed, x86};
use crate::ir::Function;
use crate::lower::{Arg, Plan};

/// Which of a model's plans: the one for AVX2 hosts (and the portable fallback), or the one for
/// hosts whose tile kernels run on AVX-512. Either is correct on any CPU with AVX2 and FMA (the
/// kernels it calls dispatch on the CPU at run time), each fastest where it is meant to run; the
/// AVX-512 plan is packed only on those (its own kernels have no portable version).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PlanFor {
    /// Lowered for [`super::TARGET`].
    Avx2,
    /// Lowered for [`super::WIDE_TARGET`].
    Avx512,
}

impl PlanFor {
    /// Both, the AVX2 plan first.
    pub const ALL: [PlanFor; 2] = [PlanFor::Avx2, PlanFor::Avx512];

    /// The target this plan is lowered for.
    pub fn target(self) -> crate::schedule::Target {
        match self {
            PlanFor::Avx2 => super::TARGET,
            PlanFor::Avx512 => super::WIDE_TARGET,
        }
    }
}

/// `Packed`, `Workspace`, `new_input`, `new_output`, `forward`, `forward_portable` and `kernels`
/// for the AVX2 plan and, where it differs, the AVX-512 one.
pub(super) fn items(avx2: &Plan, avx512: &Plan) -> TokenStream {
    let buffers = quote! {
        #[doc = " A zeroed input on the heap."]
        pub fn new_input() -> Box<[f32; INPUT_LEN]> {
            ::convgen::macro_support::zeroed()
        }

        #[doc = " A zeroed output on the heap."]
        pub fn new_output() -> Box<[f32; OUTPUT_LEN]> {
            ::convgen::macro_support::zeroed()
        }
    };
    let (items, kernels) = if avx2 == avx512 { one_plan(avx2) } else { two_plans(avx2, avx512) };
    quote! {
        #items
        #buffers
        #kernels
    }
}

/// The items of a model whose plans are equal, and its kernels: the plan's items are the public
/// ones; `with_plan` and `for_packed` have nothing to choose.
fn one_plan(plan: &Plan) -> (TokenStream, TokenStream) {
    let (distinct, kernel_of_step) = distinct_kernels([plan]);
    let items = plan_items(plan, &kernel_of_step[0], Visibility::Public);
    let items = quote! {
        #items

        impl Packed {
            #[doc = " Packs `params` for `plan`: this model has one plan for every host, so the same as [`Packed::new`]."]
            pub fn with_plan(params: &Params, plan: ::convgen::macro_support::PlanFor) -> Packed {
                let _ = plan;
                Packed::new(params)
            }
        }

        impl Workspace {
            #[doc = " Buffers for `packed`'s plan: this model has one plan, so the same as [`Workspace::new`]."]
            pub fn for_packed(packed: &Packed) -> Workspace {
                let _ = packed;
                Workspace::new()
            }
        }

        impl Default for Workspace {
            fn default() -> Workspace {
                Workspace::new()
            }
        }
    };
    (items, kernels(&distinct))
}

/// The items of a model with two plans, and their kernels: each plan in a module of its own, and
/// the public wrappers that dispatch on the plan packed.
fn two_plans(avx2: &Plan, avx512: &Plan) -> (TokenStream, TokenStream) {
    let (distinct, kernel_of_step) = distinct_kernels([avx2, avx512]);
    let avx2_items = plan_items(avx2, &kernel_of_step[0], Visibility::PlanModule);
    let avx512_items = avx2_only_plan_items(avx512, &kernel_of_step[1]);
    let x86 = x86();
    let dispatch = dispatch(avx2, avx512);
    let items = quote! {
        #dispatch

        #[doc = " The plan for AVX2 hosts."]
        mod avx2_plan {
            use super::*;
            #avx2_items
        }

        #[doc = " The plan for AVX-512 hosts."]
        #x86
        mod avx512_plan {
            use super::*;
            #avx512_items
        }
    };
    (items, kernels(&distinct))
}

/// A distinct function of the plans: the function (unnamed), the steps that call it, and whether
/// the AVX2 plan calls it (it needs a portable version).
type Distinct = (Function, Vec<String>, bool);

/// The distinct functions of every plan's steps (the AVX2 plan's first), and per plan the kernel
/// of each step.
fn distinct_kernels<const N: usize>(plans: [&Plan; N]) -> (Vec<Distinct>, Vec<Vec<usize>>) {
    let mut distinct: Vec<Distinct> = Vec::new();
    let mut kernel_of_step = Vec::new();
    for (index, plan) in plans.into_iter().enumerate() {
        let mut kernels = Vec::new();
        for step in &plan.steps {
            let anonymous = Function { name: String::new(), ..step.function.clone() };
            let position = match distinct.iter().position(|(function, _, _)| *function == anonymous) {
                Some(position) => position,
                None => {
                    distinct.push((anonymous, Vec::new(), index == 0));
                    distinct.len() - 1
                }
            };
            let label = match step.schedules_text() {
                Some(schedules) => format!("`{}` ({schedules})", step.layer),
                None => format!("`{}`", step.layer),
            };
            if !distinct[position].1.contains(&label) {
                distinct[position].1.push(label);
            }
            kernels.push(position);
        }
        kernel_of_step.push(kernels);
    }
    (distinct, kernel_of_step)
}

fn kernels(distinct: &[Distinct]) -> TokenStream {
    let kernels = distinct
        .iter()
        .enumerate()
        .map(|(index, (function, layers, portable))| kernel(index, function, layers, *portable));
    quote! {
        #[doc = " The kernels: each distinct loop-IR function of the plans, generic over fused multiply-adds, with an AVX2 + FMA and (if the AVX2 plan calls it) a portable entry, in a module of its own (rustc compiles modules in parallel: MobileNetV1's kernels in one module kept one core busy for most of the build)."]
        mod kernels {
            #[allow(unused_imports)]
            use ::convgen::macro_support::{
                PlaneDepth, PlaneShape, TileActivation, TileShape, add, fma, hardswish, leaky_relu, load, load_even, plane, relu, relu6, sigmoid, silu, splat, sub,
                store, tile, tile_fixed, transpose, window,
            };

            #(#kernels)*
        }
    }
}

/// Where a plan's items go: the module's public API (one plan), or a plan's own module.
#[derive(Clone, Copy, PartialEq)]
enum Visibility {
    Public,
    PlanModule,
}

impl Visibility {
    fn tokens(self) -> TokenStream {
        match self {
            Visibility::Public => quote!(pub),
            Visibility::PlanModule => quote!(pub(super)),
        }
    }
}

/// One plan's `Packed` (with `new`), `Workspace` (with `new`), `forward`, `forward_portable` and
/// `forward_avx2`, calling `kernels::k{kernel_of_step[i]}` for step `i`.
fn plan_items(plan: &Plan, kernel_of_step: &[usize], visibility: Visibility) -> TokenStream {
    let public = visibility.tokens();
    let packed = packed(plan, &public);
    let workspace = workspace(plan, &public);
    let forward = forward(plan, kernel_of_step, visibility);
    quote! {
        #packed
        #workspace
        #forward
    }
}

/// The AVX-512 plan's `Packed`, `Workspace` and `forward`, which runs the kernels' AVX2 + FMA
/// versions on the proof that the CPU has both (the only versions of its own kernels).
fn avx2_only_plan_items(plan: &Plan, kernel_of_step: &[usize]) -> TokenStream {
    let public = Visibility::PlanModule.tokens();
    let packed = packed(plan, &public);
    let workspace = workspace(plan, &public);
    let forward_avx2 = forward_avx2(plan, kernel_of_step);
    quote! {
        #packed
        #workspace

        #[doc = " Runs this plan with the AVX2 + FMA kernels, which `cpu` proves the CPU has."]
        #[allow(unsafe_code)]
        pub(super) fn forward(cpu: ::convgen::macro_support::Avx2Fma, input: &[f32; INPUT_LEN], params: &Packed, output: &mut [f32; OUTPUT_LEN], workspace: &mut Workspace) {
            let _ = cpu;
            // SAFETY: `forward_avx2` needs AVX2 and FMA, which `cpu` exists only where they were detected.
            unsafe { forward_avx2(input, params, output, workspace) };
        }

        #forward_avx2
    }
}

/// `forward_avx2`: `plan`'s steps calling the kernels' AVX2 + FMA entries (x86 and x86-64 only).
fn forward_avx2(plan: &Plan, kernel_of_step: &[usize]) -> TokenStream {
    let x86 = x86();
    let avx2_calls = calls(plan, kernel_of_step, "avx2");
    quote! {
        #[doc = " [`forward`] with the AVX2 + FMA kernels.\n\n # Safety\n\n The CPU must have AVX2 and FMA."]
        #x86
        #[target_feature(enable = "avx2,fma")]
        fn forward_avx2(input: &[f32; INPUT_LEN], params: &Packed, output: &mut [f32; OUTPUT_LEN], workspace: &mut Workspace) {
            #(#avx2_calls)*
        }
    }
}

fn packed(plan: &Plan, public: &TokenStream) -> TokenStream {
    let fields = plan.params.iter().enumerate().map(|(index, param)| {
        let field = format_ident!("p{index}");
        let len = unsuffixed(param.len);
        let doc = format!(" `{}`, packed: {:?}.", param.source, param.packing);
        quote!(#[doc = #doc] #field: ::convgen::macro_support::Buffer<#len>,)
    });
    let initialisers = plan.params.iter().enumerate().map(|(index, param)| {
        let field = format_ident!("p{index}");
        let packing = packing_tokens(&param.packing);
        let path = tensor_path(&param.source);
        quote!(#field: ::convgen::macro_support::Buffer::packed(&#packing, &params.#path[..]),)
    });
    quote! {
        #[doc = " The parameters re-laid out for the kernels (made by [`Params::pack`], once)."]
        #public struct Packed { #(#fields)* }

        impl Packed {
            #[doc = " Packs `params`."]
            #public fn new(params: &Params) -> Packed {
                Packed { #(#initialisers)* }
            }
        }
    }
}

fn workspace(plan: &Plan, public: &TokenStream) -> TokenStream {
    let fields = plan.values.iter().enumerate().map(|(index, &len)| {
        let field = format_ident!("v{index}");
        let len = unsuffixed(len);
        quote!(#field: ::convgen::macro_support::Buffer<#len>,)
    });
    let initialisers = crate::follow::follow_output(plan).into_iter().enumerate().map(|(index, follows)| {
        let field = format_ident!("v{index}");
        match follows {
            true => quote!(#field: ::convgen::macro_support::Buffer::zeroed_movable(),),
            false => quote!(#field: ::convgen::macro_support::Buffer::zeroed(),),
        }
    });
    let elements: u64 = plan.values.iter().sum();
    let doc = format!(
        " The intermediate values of [`forward`] ({elements} f32 in {} buffers, channels last and padded to {} lanes): allocate one with [`Workspace::new`] and reuse it.",
        plan.values.len(),
        plan.lanes
    );
    quote! {
        #[doc = #doc]
        #public struct Workspace { #(#fields)* }

        impl Workspace {
            #[doc = " Zeroed buffers."]
            #public fn new() -> Workspace {
                Workspace { #(#initialisers)* }
            }
        }
    }
}

/// The calls of `plan`'s steps to their kernels, each kernel's entry named `k{i}_{suffix}`, after
/// moving each value that follows the output to the output's place within a line
/// ([`crate::follow`]).
fn calls(plan: &Plan, kernel_of_step: &[usize], suffix: &str) -> Vec<TokenStream> {
    let follows = crate::follow::follow_output(plan).into_iter().enumerate().filter(|&(_, follows)| follows);
    let moves = follows.map(|(index, _)| {
        let field = format_ident!("v{index}");
        quote!(workspace.#field.follow(&output[..]);)
    });
    moves.chain(calls_of_steps(plan, kernel_of_step, suffix)).collect()
}

/// The calls of `plan`'s steps to their kernels ([`calls`]).
fn calls_of_steps(plan: &Plan, kernel_of_step: &[usize], suffix: &str) -> Vec<TokenStream> {
    plan.steps
        .iter()
        .zip(kernel_of_step)
        .map(|(step, &kernel)| {
            let (module, name) = (format_ident!("k{kernel}"), format_ident!("k{kernel}_{suffix}"));
            let args = step.args.iter().zip(&step.function.buffers).enumerate().map(|(position, (arg, buffer))| {
                let whole = match (*arg, buffer.writes) {
                    (Arg::Input, _) => quote!(input),
                    (Arg::Output, _) => quote!(output),
                    (Arg::Value(index), true) => {
                        let field = format_ident!("v{index}");
                        quote!(&mut *workspace.#field)
                    }
                    (Arg::Value(index), false) => {
                        let field = format_ident!("v{index}");
                        quote!(&*workspace.#field)
                    }
                    (Arg::Param(index), _) => {
                        let field = format_ident!("p{index}");
                        quote!(&*params.#field)
                    }
                };
                match step.part {
                    // A part of a stage writes a window of its output (the macro runs the parts
                    // one after the other).
                    Some(part) if part.window == position => {
                        let (start, end) = (part.start as usize, (part.start + buffer.len) as usize);
                        quote!((&mut (#whole)[#start..#end]).try_into().expect("a part's window has its length"))
                    }
                    _ => whole,
                }
            });
            quote!(kernels::#module::#name(#(#args),*);)
        })
        .collect()
}

/// The doc of the public `forward`.
fn forward_doc(plan: &Plan, plans: usize) -> String {
    let steps: Vec<String> = plan.steps.iter().map(|step| format!("`{}`", step.layer)).collect();
    let which = if plans == 1 {
        String::new()
    } else {
        " `params`' plan (the AVX-512 one where [`Packed::new`] found AVX-512 tile kernels, else the AVX2 one) with"
            .to_string()
    };
    format!(
        " Runs the network: `input` and `output` in the input's layout, C order. Allocates nothing. Steps{}: {}.\n\n Runs{which} the AVX2 + FMA version of the kernels when the CPU has both (detected at run time), else [`forward_portable`]. The AVX2 version's results equal the IR interpreter's bit for bit; the portable version rounds each multiply and add separately; both are within `1e-4·(1 + |y|)` of the reference interpreter on the tested models.",
        if plans == 1 { "" } else { " (of the AVX2 plan)" },
        steps.join(", ")
    )
}

fn forward(plan: &Plan, kernel_of_step: &[usize], visibility: Visibility) -> TokenStream {
    let x86 = x86();
    let forward_avx2 = forward_avx2(plan, kernel_of_step);
    let portable_calls = calls(plan, kernel_of_step, "portable");
    let public = visibility.tokens();
    let doc = match visibility {
        Visibility::Public => forward_doc(plan, 1),
        Visibility::PlanModule => " Runs this plan (as the model's `forward`).".to_string(),
    };
    quote! {
        #[doc = #doc]
        #[allow(unsafe_code)]
        #public fn forward(input: &[f32; INPUT_LEN], params: &Packed, output: &mut [f32; OUTPUT_LEN], workspace: &mut Workspace) {
            #x86
            if ::convgen::macro_support::avx2_fma_detected() {
                // SAFETY: `forward_avx2` needs AVX2 and FMA, which the CPU was just detected to have.
                unsafe { forward_avx2(input, params, output, workspace) };
                return;
            }
            forward_portable(input, params, output, workspace);
        }

        #[doc = " [`forward`] with the portable kernels (the baseline features of the target), whatever the CPU."]
        #public fn forward_portable(input: &[f32; INPUT_LEN], params: &Packed, output: &mut [f32; OUTPUT_LEN], workspace: &mut Workspace) {
            #(#portable_calls)*
        }

        #forward_avx2
    }
}

/// The public `Packed`, `Workspace`, `forward` and `forward_portable` of a model with two plans:
/// each wraps or calls the plan `Packed::new` picked for the host.
fn dispatch(avx2: &Plan, avx512: &Plan) -> TokenStream {
    let x86 = x86();
    let forward_doc = forward_doc(avx2, 2);
    let sizes: Vec<String> = [("AVX2", avx2), ("AVX-512", avx512)]
        .iter()
        .map(|(host, plan)| {
            let elements: u64 = plan.values.iter().sum();
            format!("{elements} f32 in {} buffers for the {host} plan", plan.values.len())
        })
        .collect();
    let workspace_doc = format!(
        " The intermediate values of [`forward`] ({}; channels last, padded to 8 lanes), for the plan of the parameters it is used with: allocate one with [`Workspace::new`] and reuse it.",
        sizes.join(", ")
    );
    let runs = |function: Ident| {
        quote! {
            match (&params.0, &mut workspace.0) {
                (PackedPlan::Avx2(params), WorkspacePlan::Avx2(workspace)) => avx2_plan::#function(input, params, output, workspace),
                #x86
                (PackedPlan::Avx512(params, cpu), WorkspacePlan::Avx512(workspace)) => avx512_plan::forward(*cpu, input, params, output, workspace),
                // A workspace made for the other plan: replaced by one for this plan (allocating),
                // then run.
                #[allow(unreachable_patterns)]
                _ => {
                    *workspace = Workspace::for_packed(params);
                    #function(input, params, output, workspace);
                }
            }
        }
    };
    let forward = runs(format_ident!("forward"));
    let forward_portable = runs(format_ident!("forward_portable"));
    quote! {
        #[doc = " The parameters re-laid out for the kernels of one of the model's two plans (made by [`Params::pack`], once)."]
        pub struct Packed(PackedPlan);

        enum PackedPlan {
            Avx2(avx2_plan::Packed),
            #x86
            Avx512(avx512_plan::Packed, ::convgen::macro_support::Avx2Fma),
        }

        impl Packed {
            #[doc = " Packs `params` for the plan of this host: the AVX-512 one where the tile kernels run on AVX-512 (at most the version `CONVGEN_MAX_ISA` allows), else the AVX2 one."]
            pub fn new(params: &Params) -> Packed {
                Packed::with_plan(params, ::convgen::macro_support::host_plan())
            }

            #[doc = " Packs `params` for `plan`: either runs on any host with AVX2 and FMA, each fastest where it is meant to; on a CPU without them, the AVX2 plan (whose portable kernels run anywhere)."]
            pub fn with_plan(params: &Params, plan: ::convgen::macro_support::PlanFor) -> Packed {
                #x86
                if let Some(cpu) = ::convgen::macro_support::avx512_plan_cpu(plan) {
                    return Packed(PackedPlan::Avx512(avx512_plan::Packed::new(params), cpu));
                }
                let _ = plan;
                Packed(PackedPlan::Avx2(avx2_plan::Packed::new(params)))
            }
        }

        #[doc = #workspace_doc]
        pub struct Workspace(WorkspacePlan);

        enum WorkspacePlan {
            Avx2(avx2_plan::Workspace),
            #x86
            Avx512(avx512_plan::Workspace),
        }

        impl Workspace {
            #[doc = " Zeroed buffers for the plan [`Packed::new`] picks on this host."]
            pub fn new() -> Workspace {
                #x86
                if ::convgen::macro_support::avx512_plan_cpu(::convgen::macro_support::host_plan()).is_some() {
                    return Workspace(WorkspacePlan::Avx512(avx512_plan::Workspace::new()));
                }
                Workspace(WorkspacePlan::Avx2(avx2_plan::Workspace::new()))
            }

            #[doc = " Zeroed buffers for `packed`'s plan."]
            pub fn for_packed(packed: &Packed) -> Workspace {
                match packed.0 {
                    PackedPlan::Avx2(_) => Workspace(WorkspacePlan::Avx2(avx2_plan::Workspace::new())),
                    #x86
                    PackedPlan::Avx512(..) => Workspace(WorkspacePlan::Avx512(avx512_plan::Workspace::new())),
                }
            }
        }

        impl Default for Workspace {
            fn default() -> Workspace {
                Workspace::new()
            }
        }

        #[doc = #forward_doc]
        pub fn forward(input: &[f32; INPUT_LEN], params: &Packed, output: &mut [f32; OUTPUT_LEN], workspace: &mut Workspace) {
            #forward
        }

        #[doc = " [`forward`] with the portable kernels (the baseline features of the target), whatever the CPU — for the AVX2 plan. The AVX-512 plan's own kernels exist only in their AVX2 + FMA version (it is packed only where the CPU has both): with its parameters this runs as [`forward`] does."]
        pub fn forward_portable(input: &[f32; INPUT_LEN], params: &Packed, output: &mut [f32; OUTPUT_LEN], workspace: &mut Workspace) {
            #forward_portable
        }
    }
}
