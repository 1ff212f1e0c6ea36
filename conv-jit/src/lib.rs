//! convgen's Cranelift backend: compiles a lowered [`Plan`] to machine code at run time and runs it.
//!
//! ```
//! use conv_dsl::schedule::Target;
//! use conv_dsl::{Params, bind, compile_source, ir_interp, lower};
//!
//! let network = compile_source("block.conv", "
//!     input x: [1, 6, 7, 7];
//!     depthwise dw(x) { kernel: 3, pad: 1, act: relu6 }
//!     pointwise pw(dw) { out: 10, act: silu }
//! ").expect("the model is valid");
//! let binding = bind(&network, &[1, 6, 7, 7]).expect("the shape fits the model");
//! let plan = lower::lower(&network, &binding, Target::CRANELIFT_X86_64, &|_| None).expect("lowers");
//! let params = ir_interp::pack_params(&plan, &Params::random(&network, 7));
//! let input: Vec<f32> = (0..6 * 7 * 7).map(|i| (i % 13) as f32 / 6.5 - 1.0).collect();
//!
//! let compiled = conv_jit::compile(&plan).expect("compiles");
//! let output = compiled.run(&input, &params).expect("runs");
//! // Bit for bit what the IR interpreter computes.
//! assert_eq!(output, ir_interp::run_plan(&plan, &input, &params).unwrap());
//! // A buffer of the wrong length is an error, not a crash.
//! assert!(compiled.run(&input[1..], &params).is_err());
//! // The CLIF of a step, before optimisation.
//! let text = conv_jit::clif(&plan.steps[1].function).expect("a lowered function is valid");
//! assert!(text.contains(" = fma ") && text.contains("f32x4"));
//! ```
//!
//! Each [`conv_dsl::ir::Function`] of the plan becomes one Cranelift function
//! `extern "C" fn(args: *const *mut f32)` taking its buffers in [`conv_dsl::ir::Function::buffers`]
//! order. Results are bit-identical to [`conv_dsl::ir_interp::run_plan`] (the specification):
//! `Fma` is a fused multiply-add (the FMA instruction where the host has it, the libcall `fmaf`
//! otherwise), accumulation order is the IR's, and activations round as the interpreter does.
//!
//! Safety: before generating code, [`compile`] proves that every access of every function stays
//! inside its buffer's declared length (indices are affine in loops of constant trip count), and
//! [`CompiledPlan::run`] checks every buffer's length before each call. The crate's `unsafe` is
//! that call, the release of a plan's code when the plan is dropped, and the tile microkernels
//! that generated code calls for `Stmt::Tile` (the `microkernel` module: 256-bit AVX2 + FMA code,
//! which Cranelift cannot generate, reached only through accesses the same proof covers), and the
//! plane microkernels it calls for `Stmt::Plane` (the `plane` module, likewise).
#![deny(missing_docs)]
#![deny(unsafe_code)]

mod buffer;
mod codegen;
mod microkernel;
mod plane;

pub use buffer::AlignedBuffer;
pub use microkernel::{MAX_ISA_VARIABLE, TileShape, tile, tile_fixed};
pub use plane::{PlaneShape, plane};

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use conv_dsl::ir;
use conv_dsl::lower::{Arg, Part, Plan};
use conv_dsl::schedule::Target;
use cranelift_codegen::ir::{ExtFuncData, ExternalName, UserFuncName};
use cranelift_codegen::isa::OwnedTargetIsa;
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::FunctionBuilderContext;
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module, ModuleError, ModuleReloc, default_libcall_names};

/// Everything that can go wrong when compiling or running a plan.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A function uses a vector width this backend does not generate.
    #[error("function `{function}` has {lanes} lanes; the cranelift backend generates 1 (f32) or 4 (f32x4)")]
    Lanes {
        /// The function.
        function: String,
        /// Its lanes.
        lanes: u32,
    },
    /// A tile statement no kernel can run.
    #[error("function `{function}` has a tile the tile kernels cannot run: {reason}")]
    Tile {
        /// The function.
        function: String,
        /// Why.
        reason: String,
    },
    /// A plane statement no kernel can run.
    #[error("function `{function}` has a plane statement the plane kernels cannot run: {reason}")]
    Plane {
        /// The function.
        function: String,
        /// Why.
        reason: String,
    },
    /// A function names a buffer it does not have.
    #[error("function `{function}` uses buffer {buffer}, but it has {buffers}")]
    UnknownBuffer {
        /// The function.
        function: String,
        /// The buffer's position.
        buffer: u32,
        /// How many buffers the function has.
        buffers: usize,
    },
    /// A function names an accumulator it does not have.
    #[error("function `{function}` uses accumulator `a{acc}`, but it has {accumulators}")]
    UnknownAccumulator {
        /// The function.
        function: String,
        /// The accumulator.
        acc: u32,
        /// How many the function declares.
        accumulators: u32,
    },
    /// A function uses a loop variable outside a loop over it, loops over a variable inside a
    /// loop over the same variable, or loops more than `i64::MAX` times.
    #[error("function `{function}` uses loop variable `i{var}` outside a loop over it, or loops over it twice")]
    LoopVariable {
        /// The function.
        function: String,
        /// The variable.
        var: u32,
    },
    /// An access of a function can fall outside its buffer (a lowering bug; no code is generated).
    #[error("function `{function}` can access `{buffer}[{start}..{end}]`, outside its {len} elements")]
    OutOfBounds {
        /// The function.
        function: String,
        /// The buffer.
        buffer: String,
        /// The lowest element accessed.
        start: i128,
        /// One past the highest.
        end: i128,
        /// The buffer's length.
        len: u64,
    },
    /// An access of a part to its window in runs can leave a run, where another part writes (a
    /// lowering bug; no code is generated).
    #[error(
        "function `{function}` can access elements {start}..{end} of a run of `{buffer}`, whose runs are {len} \
         elements every {stride}"
    )]
    OutsideRuns {
        /// The function.
        function: String,
        /// The buffer.
        buffer: String,
        /// The lowest element accessed, counted from the start of its run.
        start: i128,
        /// One past the highest.
        end: i128,
        /// Elements in a run.
        len: u64,
        /// Elements from one run's start to the next.
        stride: u64,
    },
    /// A plan step passes a different number of buffers than its function takes.
    #[error("step `{step}` passes {found} buffers to function `{function}`, which takes {expected}")]
    ArgumentCount {
        /// The step's layer.
        step: String,
        /// Its function.
        function: String,
        /// Buffers passed.
        found: usize,
        /// Buffers taken.
        expected: usize,
    },
    /// A plan step passes a value or parameter the plan does not have.
    #[error("step `{step}` passes {kind} {index}, but the plan has {count} of them")]
    UnknownArgument {
        /// The step's layer.
        step: String,
        /// `value` or `parameter`.
        kind: &'static str,
        /// Its index.
        index: usize,
        /// How many the plan has.
        count: usize,
    },
    /// A buffer passed to a function does not have the length the function was built for.
    #[error("step `{step}` passes {found} elements as `{buffer}` to function `{function}`, which takes {expected}")]
    BufferLength {
        /// The step's layer.
        step: String,
        /// Its function.
        function: String,
        /// The function's name for the buffer.
        buffer: String,
        /// Elements passed.
        found: u64,
        /// Elements taken.
        expected: u64,
    },
    /// The parts of a split stage do not form a group that can run at once (a lowering bug).
    #[error("step `{step}` is a part of a split stage, but {reason}")]
    Part {
        /// The step's layer.
        step: String,
        /// What is wrong.
        reason: String,
    },
    /// The output buffer does not have the plan's output length.
    #[error("the output buffer has {found} elements; the plan's output has {expected}")]
    OutputLength {
        /// Elements given.
        found: usize,
        /// Elements of the plan's output.
        expected: u64,
    },
    /// The input does not have the plan's input length.
    #[error("the input has {found} elements; the plan expects {expected}")]
    InputLength {
        /// Elements given.
        found: usize,
        /// The plan's input length.
        expected: u64,
    },
    /// A different number of packed parameter buffers than the plan has was given.
    #[error("{found} packed parameter buffers were given; the plan has {expected}")]
    ParamCount {
        /// Buffers given.
        found: usize,
        /// The plan's.
        expected: usize,
    },
    /// A packed parameter buffer does not have its packed length.
    #[error("packed parameter {index} (`{name}`) has {found} elements; the plan expects {expected}")]
    ParamLength {
        /// Its position in the plan's parameters.
        index: usize,
        /// The tensor it is packed from.
        name: String,
        /// Elements given.
        found: usize,
        /// Its packed length.
        expected: u64,
    },
    /// Cranelift does not support this host.
    #[error("cranelift does not support this host: {0}")]
    Host(&'static str),
    /// Cranelift has no backend for the target `clif` prints for.
    #[error("cranelift has no x86-64 backend in this build: {0}")]
    Isa(#[from] cranelift_codegen::isa::LookupError),
    /// A Cranelift setting was refused.
    #[error("cranelift setting: {0}")]
    Setting(#[from] settings::SetError),
    /// Cranelift could not build the target description.
    #[error("cranelift: {0}")]
    Codegen(#[from] cranelift_codegen::CodegenError),
    /// Cranelift failed to compile a function.
    #[error("cranelift could not compile function `{function}`: {source}")]
    Cranelift {
        /// The function.
        function: String,
        /// Why.
        source: cranelift_module::ModuleError,
    },
    /// Cranelift failed to link the compiled functions or to make their memory executable.
    #[error("cranelift could not load the compiled plan: {0}")]
    Load(#[source] cranelift_module::ModuleError),
    /// Cranelift's verifier rejected the CLIF of a function (a code-generator bug).
    #[error("cranelift's verifier rejected function `{function}`:\n{errors}")]
    Verifier {
        /// The function.
        function: String,
        /// The errors, shown against the CLIF.
        errors: String,
    },
}

/// A plan compiled to machine code. Cheap to run many times, from many threads at once.
///
/// Dropping a plan frees its machine code (`JITModule` itself frees nothing on drop, so
/// [`CompiledPlan`]'s `Drop` does it): a model that recompiles for new shapes and evicts old ones
/// does not grow without bound.
pub struct CompiledPlan {
    input_len: u64,
    output_len: u64,
    /// Length of each internal value buffer.
    values: Vec<u64>,
    /// Source name and packed length of each parameter buffer.
    params: Vec<(String, u64)>,
    /// Whether some step writes the user's input or a packed parameter (never, for plans from
    /// `lower`); those are then copied per run, as the interpreter does.
    input_written: bool,
    params_written: Vec<bool>,
    steps: Vec<CompiledStep>,
    /// Per value: whether a run starts it where the caller's output starts within a cache line
    /// ([`conv_dsl::follow::follow_output`]).
    follow_output: Vec<bool>,
    /// Value buffers of finished runs, reused by the next runs (at most
    /// [`WORKSPACE_POOL`] sets: one per concurrently running thread, typically).
    workspaces: Mutex<Vec<RunBuffers>>,
    /// Per step: its layer and how long building and compiling its function took.
    compile_times: Vec<(String, std::time::Duration)>,
    /// Owns the generated code. Reached only in `Drop` (to free it); otherwise only kept alive.
    /// `JITModule` is `Send` but not `Sync` (a `RefCell` symbol cache used only while linking), so the `Mutex` makes
    /// `CompiledPlan` `Sync` without `unsafe`.
    ///
    /// Why sharing is sound: after `finalize_definitions` the code and its relocated constants are
    /// never written again (the module is never touched after `compile`), generated functions keep
    /// no state between calls (accumulators live in registers or on the call's own stack), and the
    /// helpers they call (`convgen_exp`, `fmaf`, the tile kernels) keep no state either. Each run allocates its own buffers, so
    /// concurrent runs share only immutable code and the caller's read-only input and parameters.
    module: Mutex<Option<JITModule>>,
}

impl Drop for CompiledPlan {
    /// Frees the generated code. Besides `call` and the tile kernels (`microkernel`), this is
    /// the crate's only `unsafe`: Cranelift offers no safe way to release JIT memory, and the
    /// issue requires that replaced code be reclaimed.
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        let module = self.module.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        if let Some(module) = module {
            // SAFETY: `drop` has `&mut self`, so no `run` (which borrows `&self`) is executing any
            // of this module's functions, and the code addresses live only in `self.steps`, which
            // is dropped with `self`: no function pointer of this module is called afterwards.
            unsafe { module.free_memory() };
        }
    }
}

/// One run's buffers: the internal values (in `Plan::values` order).
type RunBuffers = Vec<AlignedBuffer>;

/// How many sets of run buffers a plan keeps for reuse.
const WORKSPACE_POOL: usize = 8;

/// One compiled function call of a plan.
struct CompiledStep {
    layer: String,
    function: String,
    /// The function's buffers (name, length) in call order.
    buffers: Vec<ir::Buffer>,
    /// Per buffer: whether the generated code stores into it.
    stored: Vec<bool>,
    args: Vec<Arg>,
    /// Set for a part of a split stage (run at once with the other parts).
    part: Option<Part>,
    /// The code's address (with its provenance exposed, so that `usize` keeps the plan `Send`).
    code: usize,
}

// `CompiledPlan` is shared between threads by reference (see `module`); errors cross threads too.
const _: fn() = || {
    fn send_sync<T: Send + Sync + 'static>() {}
    send_sync::<CompiledPlan>();
    send_sync::<Error>();
};

/// Code-generation choices that tests vary; [`compile`] uses the defaults.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Options {
    /// Use the host's instruction-set extensions (otherwise x86-64's baseline, SSE2).
    pub host_features: bool,
    /// Use the host's FMA instructions when it has them (otherwise the libcall `fmaf`).
    pub host_fma: bool,
    /// Run Cranelift's verifier on every function.
    pub verify: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options { host_features: true, host_fma: true, verify: cfg!(debug_assertions) }
    }
}

/// The target to lower plans for on this host: [`Target::CRANELIFT_X86_64`] (4 lanes), with the
/// tile microkernels where the host has AVX2 and FMA, wide ones where it also has AVX-512 (at
/// most the version [`MAX_ISA_VARIABLE`] allows), and the host's L2 cache size.
pub fn host_target() -> Target {
    let isa = microkernel::Isa::host();
    Target {
        microkernels: isa != microkernel::Isa::Portable,
        wide_microkernels: isa == microkernel::Isa::Avx512,
        l2_bytes: host_l2_bytes(),
        ..Target::CRANELIFT_X86_64
    }
}

/// The host's L2 cache per core ([`Target::l2_bytes`]), as CPUID tells it (the `cache-size`
/// crate: Intel's and AMD's leaves), read once; [`Target::L2_BYTES`] where it does not say.
fn host_l2_bytes() -> u64 {
    static BYTES: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *BYTES.get_or_init(|| cache_size::l2_cache_size().map_or(Target::L2_BYTES, |bytes| bytes as u64))
}

/// Compiles every step of `plan` for the host (Cranelift, `opt_level=speed`, or `none` for
/// functions with long unrolled runs of multiply-adds, `codegen::keeps_order`; the verifier runs
/// in debug builds). Fails, without generating code, if a function could access memory outside
/// its buffers or the plan passes buffers of the wrong lengths.
pub fn compile(plan: &Plan) -> Result<CompiledPlan, Error> {
    compile_with(plan, Options::default())
}

pub(crate) fn compile_with(plan: &Plan, options: Options) -> Result<CompiledPlan, Error> {
    // Check everything before generating any code.
    let mut analyses = Vec::with_capacity(plan.steps.len());
    let mut input_written = false;
    let mut params_written = vec![false; plan.params.len()];
    for step in &plan.steps {
        let function = &step.function;
        if step.args.len() != function.buffers.len() {
            return Err(Error::ArgumentCount {
                step: step.layer.clone(),
                function: function.name.clone(),
                found: step.args.len(),
                expected: function.buffers.len(),
            });
        }
        let runs = step.part.and_then(|part| part.runs.map(|runs| (ir::BufferId(part.window as u32), runs)));
        let analysis = codegen::check(function, runs)?;
        for (position, ((arg, declared), &stored)) in
            step.args.iter().zip(&function.buffers).zip(&analysis.stored).enumerate()
        {
            let len = match *arg {
                Arg::Input => plan.input_len,
                Arg::Output => plan.output_len,
                Arg::Value(index) => *plan.values.get(index).ok_or_else(|| Error::UnknownArgument {
                    step: step.layer.clone(),
                    kind: "value",
                    index,
                    count: plan.values.len(),
                })?,
                Arg::Param(index) => {
                    plan.params
                        .get(index)
                        .ok_or_else(|| Error::UnknownArgument {
                            step: step.layer.clone(),
                            kind: "parameter",
                            index,
                            count: plan.params.len(),
                        })?
                        .len
                }
            };
            // A part's window is `declared.len` elements of its buffer from `start`.
            let window = step.part.filter(|part| part.window == position);
            let fits = match window {
                Some(part) => part.start.checked_add(declared.len).is_some_and(|end| end <= len),
                None => len == declared.len,
            };
            if !fits {
                return Err(Error::BufferLength {
                    step: step.layer.clone(),
                    function: function.name.clone(),
                    buffer: declared.name.clone(),
                    found: len,
                    expected: declared.len,
                });
            }
            match *arg {
                Arg::Input => input_written |= stored,
                Arg::Param(index) => params_written[index] |= stored,
                Arg::Output | Arg::Value(_) => {}
            }
        }
        analyses.push(analysis);
    }

    check_parts(plan, &analyses)?;

    let isa = host_isa(options, false)?;
    // The target for functions that keep their order, built on first use.
    let mut ordered_isa: Option<OwnedTargetIsa> = None;
    let call_conv = isa.default_call_conv();
    let config = isa.frontend_config();
    let mut jit = JITBuilder::with_isa(isa, default_libcall_names());
    // Every symbol generated code can reference, so that linking never falls back to the process's
    // symbols or fails (an unresolved symbol panics inside `finalize_definitions`).
    jit.symbol(codegen::EXP_SYMBOL, codegen::convgen_exp as extern "C" fn(f64) -> f64 as *const u8);
    jit.symbol("fmaf", codegen::convgen_fmaf as extern "C" fn(f32, f32, f32) -> f32 as *const u8);
    jit.symbol("fma", codegen::convgen_fma as extern "C" fn(f64, f64, f64) -> f64 as *const u8);
    let kernels_isa = if options.host_features { microkernel::Isa::host() } else { microkernel::Isa::Portable };
    for (depthwise, pixels, vectors, kernel) in microkernel::kernels(kernels_isa) {
        jit.symbol(microkernel::symbol(depthwise, pixels, vectors), kernel as *const u8);
    }
    for ((kernel, stride, dilation), entry) in plane::kernels(kernels_isa) {
        jit.symbol(plane::symbol(kernel, stride, dilation), entry as *const u8);
    }
    let mut module = JITModule::new(jit);
    let signature = codegen::signature(config.pointer_type(), call_conv);
    let mut imports: HashMap<String, cranelift_module::FuncId> = HashMap::new();

    // One builder context and one codegen context for all functions.
    let mut builder_context = FunctionBuilderContext::new();
    let mut context = module.make_context();
    let mut ids = Vec::with_capacity(plan.steps.len());
    let mut compile_times = Vec::with_capacity(plan.steps.len());
    for (step, analysis) in plan.steps.iter().zip(&analyses) {
        let started = std::time::Instant::now();
        let cranelift = |source| Error::Cranelift { function: step.function.name.clone(), source };
        let id = module.declare_anonymous_function(&signature).map_err(cranelift)?;
        context.func.signature = signature.clone();
        context.func.name = UserFuncName::user(0, id.as_u32());
        let mut import = |function: &mut cranelift_codegen::ir::Function, import: codegen::Import| {
            let symbol = import.symbol();
            let id = match imports.get(&symbol) {
                Some(&id) => id,
                None => {
                    let signature = import.signature(config.pointer_type(), call_conv);
                    // Declaring an import of a registered symbol cannot fail: each name is declared
                    // once, always with the same signature.
                    let id = module.declare_function(&symbol, Linkage::Import, &signature).expect("a fresh import");
                    imports.insert(symbol, id);
                    id
                }
            };
            module.declare_func_in_func(id, function)
        };
        codegen::build(&mut context.func, &mut builder_context, config, &step.function, analysis, &mut import);
        if codegen::keeps_order(&step.function) {
            // The same as `define_function`, with the other target's flags.
            let codegen_error = |error: cranelift_codegen::CodegenError| cranelift(ModuleError::Compilation(error));
            if ordered_isa.is_none() {
                ordered_isa = Some(host_isa(options, true)?);
            }
            let ordered = ordered_isa.as_ref().expect("just built");
            context.compile(ordered.as_ref(), &mut Default::default()).map_err(|error| codegen_error(error.inner))?;
            let compiled = context.compiled_code().expect("just compiled");
            let relocs: Vec<ModuleReloc> = compiled
                .buffer
                .relocs()
                .iter()
                .map(|reloc| ModuleReloc::from_mach_reloc(reloc, &context.func, id))
                .collect();
            let (alignment, code) = (u64::from(compiled.buffer.alignment), compiled.code_buffer().to_vec());
            module.define_function_bytes(id, alignment, &code, &relocs).map_err(cranelift)?;
        } else {
            module.define_function(id, &mut context).map_err(cranelift)?;
        }
        module.clear_context(&mut context);
        ids.push(id);
        compile_times.push((step.layer.clone(), started.elapsed()));
    }
    module.finalize_definitions().map_err(Error::Load)?;

    let steps = plan
        .steps
        .iter()
        .zip(analyses)
        .zip(ids)
        .map(|((step, analysis), id)| CompiledStep {
            layer: step.layer.clone(),
            function: step.function.name.clone(),
            buffers: step.function.buffers.clone(),
            stored: analysis.stored,
            args: step.args.clone(),
            part: step.part,
            code: module.get_finalized_function(id).expose_provenance(),
        })
        .collect();
    Ok(CompiledPlan {
        input_len: plan.input_len,
        output_len: plan.output_len,
        values: plan.values.clone(),
        params: plan.params.iter().map(|param| (param.source.clone(), param.len)).collect(),
        input_written,
        params_written,
        steps,
        follow_output: conv_dsl::follow::follow_output(plan),
        compile_times,
        workspaces: Mutex::new(Vec::new()),
        module: Mutex::new(Some(module)),
    })
}

/// Checks that the parts of every split stage can run at the same time without a data race: they
/// are consecutive steps `0..count` of one layer whose windows of one output buffer are disjoint
/// and in order, and every other buffer a part writes is its own (no other part passes it), nor
/// the input or a parameter. `run` relies on this to hand each part its own slices.
fn check_parts(plan: &Plan, analyses: &[codegen::Analysis]) -> Result<(), Error> {
    let mut position = 0;
    while position < plan.steps.len() {
        let Some(first) = plan.steps[position].part else {
            position += 1;
            continue;
        };
        let count = first.count as usize;
        let fail = |reason: String| Error::Part { step: plan.steps[position].layer.clone(), reason };
        let Some(group) = plan.steps.get(position..position + count).filter(|_| count > 0) else {
            return Err(fail(format!("the plan has fewer than the {count} steps of its parts left")));
        };
        let window_arg = group[0].args.get(first.window).copied();
        let mut window_end = 0;
        for (index, step) in group.iter().enumerate() {
            let Some(part) = step.part.filter(|part| part.index as usize == index && part.count == first.count) else {
                return Err(fail(format!(
                    "step {} of its {count} parts is not part {index} of {count}",
                    position + index
                )));
            };
            if step.layer != group[0].layer {
                return Err(fail(format!("its parts compute layers `{}` and `{}`", group[0].layer, step.layer)));
            }
            if step.args.get(part.window).copied() != window_arg
                || !matches!(window_arg, Some(Arg::Output | Arg::Value(_)))
            {
                return Err(fail("its parts' windows are not of one output or value buffer".to_string()));
            }
            // Windows in runs interleave: their first runs must follow each other within one stride.
            let declared = step.function.buffers[part.window].len;
            if part.runs.map(|runs| (runs.count, runs.stride)) != first.runs.map(|runs| (runs.count, runs.stride)) {
                return Err(fail(format!("part {index}'s window is not in runs like part 0's")));
            }
            if part.runs.is_some_and(|runs| !runs.fit(declared)) {
                return Err(fail(format!(
                    "part {index}'s runs do not fit its window of {declared} elements (or overlap each other)"
                )));
            }
            if part.start < window_end {
                return Err(fail(format!("part {index}'s window starts at {}, inside the previous one", part.start)));
            }
            window_end = part.start + part.runs.map_or(declared, |runs| runs.len);
            if let Some(runs) = first.runs.filter(|runs| window_end > first.start + runs.stride) {
                return Err(fail(format!(
                    "part {index}'s runs end at {window_end}, past the {} elements between part 0's",
                    runs.stride
                )));
            }
            let stored = &analyses[position + index].stored;
            for (arg_position, (arg, &stored)) in step.args.iter().zip(stored).enumerate() {
                if arg_position == part.window {
                    continue;
                }
                let mut others = group.iter().enumerate().filter(|&(other, _)| other != index);
                let shared = Some(*arg) == window_arg
                    || others.any(|(_, other)| other.args.contains(arg))
                    || step.args.iter().filter(|candidate| *candidate == arg).count() > 1;
                if stored && (shared || !matches!(arg, Arg::Value(_))) {
                    return Err(fail(format!(
                        "part {index} writes its buffer `{}`, which is not its own",
                        step.function.buffers[arg_position].name
                    )));
                }
                if Some(*arg) == window_arg {
                    return Err(fail(format!(
                        "part {index} also reads its window's buffer as `{}`",
                        step.function.buffers[arg_position].name
                    )));
                }
            }
        }
        position += count;
    }
    Ok(())
}

/// The host's target: `opt_level=speed` (`none` if `ordered`: [`codegen::keeps_order`]),
/// absolute addresses (what `cranelift-jit` needs).
fn host_isa(options: Options, ordered: bool) -> Result<OwnedTargetIsa, Error> {
    let mut flags = settings::builder();
    flags.set("opt_level", if ordered { "none" } else { "speed" })?;
    flags.set("enable_verifier", if options.verify { "true" } else { "false" })?;
    flags.set("use_colocated_libcalls", "false")?;
    flags.set("is_pic", "false")?;
    let mut isa = cranelift_native::builder_with_options(options.host_features).map_err(Error::Host)?;
    if !options.host_fma {
        isa.set("has_fma", "false")?;
    }
    Ok(isa.finish(settings::Flags::new(flags))?)
}

impl CompiledPlan {
    /// Per step, in order: the layer it computes and how long translating it to CLIF and compiling
    /// it to machine code took (linking the whole plan, `finalize_definitions`, is not included).
    pub fn compile_times(&self) -> &[(String, std::time::Duration)] {
        &self.compile_times
    }

    /// Runs the plan, with the contract of [`conv_dsl::ir_interp::run_plan`]: `input` in the user's
    /// layout, parameters packed by [`conv_dsl::ir_interp::pack_params`] (or, faster to stream,
    /// into [`AlignedBuffer`]s, whose large ones are on huge pages:
    /// `pack_params_with(plan, params, AlignedBuffer::zeroed)`); the steps run in order, and the
    /// output comes back in the user's layout.
    pub fn run<P: AsRef<[f32]> + Sync>(&self, input: &[f32], packed_params: &[P]) -> Result<Vec<f32>, Error> {
        let mut output = vec![0.0f32; self.output_len as usize];
        self.run_into(input, packed_params, &mut output)?;
        Ok(output)
    }

    /// [`CompiledPlan::run`], writing the output into `output` (of the plan's output length) in
    /// place: the step that produces the output stores into it directly. Elements the plan does
    /// not store keep their values (plans from `lower` store every element of the output).
    ///
    /// Internal value buffers come from a pool kept by the plan, so repeated runs allocate nothing
    /// (a fresh allocation costs page faults on every call for large layers). A buffer from the
    /// pool holds the previous run's values; every element a step reads was written earlier in
    /// the same run, except padded channels, which hold finite values that no real channel reads.
    pub fn run_into<P: AsRef<[f32]> + Sync>(
        &self,
        input: &[f32],
        packed_params: &[P],
        output: &mut [f32],
    ) -> Result<(), Error> {
        self.execute(input, packed_params, output, None)
    }

    /// [`CompiledPlan::run_into`], timing every step: in order, the layer each step computes and
    /// how long it took (the parts of a split stage, which run at once, as one step).
    pub fn run_into_timed<P: AsRef<[f32]> + Sync>(
        &self,
        input: &[f32],
        packed_params: &[P],
        output: &mut [f32],
    ) -> Result<Vec<(String, std::time::Duration)>, Error> {
        let mut times = Vec::with_capacity(self.steps.len());
        self.execute(input, packed_params, output, Some(&mut times))?;
        Ok(times)
    }

    /// Runs the steps, pushing each one's layer and time onto `times` if given.
    fn execute<P: AsRef<[f32]> + Sync>(
        &self,
        input: &[f32],
        packed_params: &[P],
        output: &mut [f32],
        mut times: Option<&mut Vec<(String, std::time::Duration)>>,
    ) -> Result<(), Error> {
        if output.len() as u64 != self.output_len {
            return Err(Error::OutputLength { found: output.len(), expected: self.output_len });
        }
        if input.len() as u64 != self.input_len {
            return Err(Error::InputLength { found: input.len(), expected: self.input_len });
        }
        if packed_params.len() != self.params.len() {
            return Err(Error::ParamCount { found: packed_params.len(), expected: self.params.len() });
        }
        for (index, (given, (name, len))) in packed_params.iter().zip(&self.params).enumerate() {
            if given.as_ref().len() as u64 != *len {
                return Err(Error::ParamLength {
                    index,
                    name: name.clone(),
                    found: given.as_ref().len(),
                    expected: *len,
                });
            }
        }
        let pooled = self.workspaces.lock().unwrap_or_else(std::sync::PoisonError::into_inner).pop();
        let mut values = pooled.unwrap_or_else(|| {
            (self.values.iter().zip(&self.follow_output))
                .map(|(&len, &follows)| match follows {
                    true => AlignedBuffer::zeroed_movable(len as usize),
                    false => AlignedBuffer::zeroed(len as usize),
                })
                .collect()
        });
        for (value, _) in values.iter_mut().zip(&self.follow_output).filter(|(_, follows)| **follows) {
            value.follow(output);
        }
        // The caller's output is written in place by the step that produces it.
        let mut output = Some(output);
        // Read-only buffers are passed as they are; written ones are owned copies.
        let mut input_copy = self.input_written.then(|| AlignedBuffer::copied(input));
        let mut param_copies: Vec<Option<AlignedBuffer>> = self
            .params_written
            .iter()
            .zip(packed_params)
            .map(|(&written, param)| written.then(|| AlignedBuffer::copied(param.as_ref())))
            .collect();
        // With parts, the steps run on one of rayon's workers while the caller waits: each split
        // step's first part then runs on that worker and the others on the pool's other threads,
        // the same ones step after step, so that what a part computed stays in its core's cache
        // for the next step's part (measured, std3_64to64_56 on 2 threads: its output conversion
        // 0.062 ms against 0.092–0.104 with each split step sent to the pool from the caller).
        let mut run = || -> Result<(), Error> {
            let mut next = 0;
            while let Some(step) = self.steps.get(next) {
                // Only a timed run reads the clock.
                let started = times.is_some().then(std::time::Instant::now);
                let timed = |times: &mut Option<&mut Vec<_>>| {
                    if let (Some(times), Some(started)) = (times, started) {
                        times.push((step.layer.clone(), started.elapsed()));
                    }
                };
                if let Some(part) = step.part {
                    // `compile` checked that the group is whole.
                    let group = &self.steps[next..next + part.count as usize];
                    next += group.len();
                    let sources =
                        Sources { input, input_copy: &input_copy, params: packed_params, param_copies: &param_copies };
                    run_parts(group, &mut values, &mut output, &sources)?;
                    timed(&mut times);
                    continue;
                }
                next += 1;
                // Move each argument's buffer into the call and back afterwards; an argument passed
                // twice is passed as a copy the second time, whose writes are dropped (as in the
                // interpreter), so that no two arguments alias a written buffer.
                let mut slots: Vec<Slot<'_>> = Vec::with_capacity(step.args.len());
                for (position, arg) in step.args.iter().enumerate() {
                    if let Some(first) = step.args[..position].iter().position(|earlier| earlier == arg) {
                        let copy = AlignedBuffer::copied(slots[first].as_slice());
                        slots.push(Slot::Owned(copy));
                        continue;
                    }
                    slots.push(match *arg {
                        Arg::Input => match &mut input_copy {
                            Some(copy) => Slot::Owned(copy.take()),
                            None => Slot::Shared(input),
                        },
                        Arg::Output => Slot::Exclusive(output.take().expect("the output is back after every step")),
                        Arg::Value(index) => Slot::Owned(values[index].take()),
                        Arg::Param(index) => match &mut param_copies[index] {
                            Some(copy) => Slot::Owned(copy.take()),
                            None => Slot::Shared(packed_params[index].as_ref()),
                        },
                    });
                }
                let result = call(step, &mut slots);
                for (position, (arg, slot)) in step.args.iter().zip(slots).enumerate() {
                    if step.args[..position].contains(arg) {
                        continue;
                    }
                    match (*arg, slot) {
                        (Arg::Output, Slot::Exclusive(slice)) => output = Some(slice),
                        (Arg::Input, Slot::Owned(buffer)) => input_copy = Some(buffer),
                        (Arg::Value(index), Slot::Owned(buffer)) => values[index] = buffer,
                        (Arg::Param(index), Slot::Owned(buffer)) => param_copies[index] = Some(buffer),
                        _ => {}
                    }
                }
                // On failure the run's buffers are dropped, not pooled.
                result?;
                timed(&mut times);
            }
            Ok(())
        };
        match self.steps.iter().filter_map(|step| step.part).map(|part| part.count).max() {
            Some(parts) => {
                let done = AtomicBool::new(false);
                rayon::scope(|scope| {
                    let owner = rayon::current_thread_index();
                    let done = &done;
                    for _ in 1..parts {
                        scope.spawn(move |_| help(owner, done));
                    }
                    let result = run();
                    done.store(true, Ordering::Release);
                    result
                })?;
            }
            None => run()?,
        }
        let intact = values.iter().zip(&self.values).all(|(buffer, &len)| buffer.len() as u64 == len);
        if intact {
            let mut pool = self.workspaces.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if pool.len() < WORKSPACE_POOL {
                pool.push(values);
            }
        }
        Ok(())
    }
}

/// How long a helper of a run ([`help`]) waits for parts without finding any before it leaves.
const HELPER_IDLE: std::time::Duration = std::time::Duration::from_millis(10);

/// Keeps one of rayon's workers busy taking the run's parts (and any other work of the pool)
/// until the run is `done` (or nothing came for [`HELPER_IDLE`]), instead of going to sleep
/// between split steps: a worker idle for ~20 µs sleeps, and waking it took ~35 µs here (a join of
/// two 20 µs jobs 55 µs instead of 21), longer than many a split step's parts. Runs on the run's
/// own worker (`owner`, which takes its own parts) return at once; a helper never waits for
/// anything but `done`, so the run cannot wait on it.
fn help(owner: Option<usize>, done: &AtomicBool) {
    if rayon::current_thread_index() == owner {
        return;
    }
    let mut idle_since = std::time::Instant::now();
    while !done.load(Ordering::Acquire) {
        match rayon::yield_now() {
            Some(rayon::Yield::Executed) => idle_since = std::time::Instant::now(),
            Some(rayon::Yield::Idle) if idle_since.elapsed() < HELPER_IDLE => std::hint::spin_loop(),
            _ => return,
        }
    }
}

/// The read-only buffers of a run: the input and the parameters (or their copies, for a plan
/// whose steps write them).
struct Sources<'a, P> {
    input: &'a [f32],
    input_copy: &'a Option<AlignedBuffer>,
    params: &'a [P],
    param_copies: &'a [Option<AlignedBuffer>],
}

/// Runs the parts of a split stage at the same time, on rayon's pool: each gets its own window
/// of the output buffer (`split_at_mut`), its own written buffers, and shared borrows of the
/// rest. `check_parts` proved that this is every buffer any part writes.
fn run_parts<P: AsRef<[f32]> + Sync>(
    group: &[CompiledStep],
    values: &mut [AlignedBuffer],
    output: &mut Option<&mut [f32]>,
    sources: &Sources<'_, P>,
) -> Result<(), Error> {
    let first = group[0].part.expect("a group of parts");
    let window_arg = group[0].args[first.window];
    // The buffer the windows are cut from, moved out of the run for the call.
    let mut output_slice = None;
    let mut value_owner = None;
    match window_arg {
        Arg::Output => output_slice = output.take(),
        Arg::Value(index) => value_owner = Some(values[index].take()),
        Arg::Input | Arg::Param(_) => unreachable!("`check_parts` allows only output and value windows"),
    }
    // Each part's own written buffers, moved out of the run.
    let mut owned: Vec<Vec<(usize, AlignedBuffer)>> = group
        .iter()
        .map(|step| {
            let part = step.part.expect("a group of parts");
            (step.args.iter().zip(&step.stored).enumerate())
                .filter(|&(position, (_, &stored))| stored && position != part.window)
                .map(|(position, (arg, _))| match *arg {
                    Arg::Value(index) => (position, values[index].take()),
                    _ => unreachable!("`check_parts` allows only values as a part's own buffers"),
                })
                .collect()
        })
        .collect();
    let (results, returned) = {
        let whole: &mut [f32] = match (&mut output_slice, &mut value_owner) {
            (Some(slice), _) => slice,
            (None, Some(buffer)) => buffer,
            (None, None) => unreachable!("the output is back after every step"),
        };
        let shared: &[AlignedBuffer] = values;
        let windows = windows(group, whole)?;
        let mut jobs: Vec<(&CompiledStep, Vec<Slot<'_>>)> = Vec::with_capacity(group.len());
        for ((step, own), window) in group.iter().zip(&mut owned).zip(windows) {
            let part = step.part.expect("a group of parts");
            let mut window = Some(window);
            let slots = (step.args.iter().enumerate())
                .map(|(position, arg)| {
                    if position == part.window {
                        return window.take().expect("one window per part");
                    }
                    if let Some(at) = own.iter().position(|(owned_position, _)| *owned_position == position) {
                        return Slot::Owned(own[at].1.take());
                    }
                    Slot::Shared(match *arg {
                        Arg::Input => sources.input_copy.as_deref().unwrap_or(sources.input),
                        Arg::Param(index) => {
                            sources.param_copies[index].as_deref().unwrap_or(sources.params[index].as_ref())
                        }
                        Arg::Value(index) => &shared[index],
                        Arg::Output => unreachable!("only a window reaches the output"),
                    })
                })
                .collect();
            jobs.push((step, slots));
        }
        let results = run_jobs(&mut jobs);
        let mut returned: Vec<(usize, AlignedBuffer)> = Vec::new();
        for (step, slots) in jobs {
            for (position, slot) in slots.into_iter().enumerate() {
                if let (Arg::Value(index), Slot::Owned(buffer)) = (step.args[position], slot) {
                    returned.push((index, buffer));
                }
            }
        }
        (results, returned)
    };
    // Give the parts' own buffers and the window's buffer back to the run.
    for (index, buffer) in returned {
        values[index] = buffer;
    }
    if let (Arg::Value(index), Some(buffer)) = (window_arg, value_owner) {
        values[index] = buffer;
    }
    *output = output_slice.or(output.take());
    results.into_iter().collect()
}

/// Runs a split stage's parts at the same time: the first on this thread (the run's worker), the
/// others spawned to the pool, where the run's helpers ([`help`]) take them. Having finished its
/// own part, this thread waits for the others spinning, never sleeping: a rayon worker that waits
/// in a join sleeps after a few microseconds and wakes ~30 µs after the other part is done, so
/// every split step whose other part ended last lost that much. Measured on the Intel Xeon
/// (AVX-512, 2 cores) in MobileNetV1 on 2 threads, per split step: dw4 0.094 → 0.056 ms, pw4
/// 0.199 → 0.176, conv1 0.179 → 0.144, the parts themselves unchanged; the model 1.087×
/// (`convgen bench --threads 2`, old and new builds alternating, 8 pairs), MobileNetV2 1.09×.
fn run_jobs(jobs: &mut [(&CompiledStep, Vec<Slot<'_>>)]) -> Vec<Result<(), Error>> {
    /// Counts a spawned part as done when it ends, however it ends (a panic included: the
    /// waiting thread must not spin forever; the scope then passes the panic on).
    struct Finished<'a>(&'a AtomicUsize);
    impl Drop for Finished<'_> {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::Release);
        }
    }
    let mut results: Vec<Result<(), Error>> = jobs.iter().map(|_| Ok(())).collect();
    let Some(((first, first_slots), others)) = jobs.split_first_mut() else { return results };
    let (first_result, other_results) = results.split_first_mut().expect("a result per job");
    let running = AtomicUsize::new(others.len());
    rayon::scope(|scope| {
        let running = &running;
        for ((step, slots), result) in others.iter_mut().zip(other_results) {
            scope.spawn(move |_| {
                let _finished = Finished(running);
                *result = call(step, slots);
            });
        }
        *first_result = call(first, first_slots);
        // Spawned parts no helper took yet run here.
        while running.load(Ordering::Acquire) > 0 {
            if rayon::yield_now() != Some(rayon::Yield::Executed) {
                std::hint::spin_loop();
            }
        }
    });
    results
}

/// The parts' windows of `whole`, in order: a slice of it each (`split_at_mut`), or, for windows
/// in runs (which interleave, so that no slice holds one part's window alone), the address of
/// each one's first element in `whole`, which the part's code then writes only in its runs.
fn windows<'a>(group: &[CompiledStep], whole: &'a mut [f32]) -> Result<Vec<Slot<'a>>, Error> {
    let parts = group.iter().map(|step| {
        let part = step.part.expect("a group of parts");
        (step, part, step.buffers[part.window].len)
    });
    if group[0].part.is_some_and(|part| part.runs.is_some()) {
        // Every window is inside `whole` (`compile` checked it against the plan's lengths; this
        // against the buffer's), and the parts' runs are disjoint (`check_parts`).
        // The length is read first: after `base` is taken, `whole` is not touched again.
        let whole_len = whole.len() as u64;
        let base = whole.as_mut_ptr();
        return parts
            .map(|(step, part, len)| match part.start.checked_add(len) {
                Some(end) if end <= whole_len => {
                    let address = base.wrapping_add(part.start as usize).expose_provenance();
                    Ok(Slot::Runs { address, len: len as usize })
                }
                _ => Err(Error::BufferLength {
                    step: step.layer.clone(),
                    function: step.function.clone(),
                    buffer: step.buffers[part.window].name.clone(),
                    found: whole_len,
                    expected: part.start.saturating_add(len),
                }),
            })
            .collect();
    }
    let mut rest = whole;
    let mut consumed = 0u64;
    let mut windows = Vec::with_capacity(group.len());
    for (_, part, len) in parts {
        // Windows are in order and disjoint (`check_parts`) and inside the buffer (`compile`).
        let (_, tail) = std::mem::take(&mut rest).split_at_mut((part.start - consumed) as usize);
        let (window, tail) = tail.split_at_mut(len as usize);
        rest = tail;
        consumed = part.start + len;
        windows.push(Slot::Exclusive(window));
    }
    Ok(windows)
}

/// A buffer passed to one call: the caller's read-only input or parameters, a buffer of the run
/// (moved in and out), the caller's output, or a part's window in runs of one of those (see
/// [`windows`]; the buffer stays exclusively borrowed while the part runs).
enum Slot<'a> {
    Shared(&'a [f32]),
    Owned(AlignedBuffer),
    Exclusive(&'a mut [f32]),
    Runs { address: usize, len: usize },
}

impl Slot<'_> {
    /// Its elements, as a slice: for a buffer passed once to a step and then as a copy (never a
    /// window, which `check_parts` keeps from being passed twice).
    fn as_slice(&self) -> &[f32] {
        match self {
            Slot::Shared(slice) => slice,
            Slot::Owned(buffer) => buffer,
            Slot::Exclusive(slice) => slice,
            Slot::Runs { .. } => &[],
        }
    }

    /// How many elements the code may reach from its start.
    fn len(&self) -> usize {
        match self {
            Slot::Runs { len, .. } => *len,
            _ => self.as_slice().len(),
        }
    }

    /// A pointer the code may read through.
    fn as_ptr(&self) -> *mut f32 {
        match self {
            Slot::Runs { address, .. } => std::ptr::with_exposed_provenance_mut(*address),
            _ => self.as_slice().as_ptr().cast_mut(),
        }
    }

    /// A pointer the code may write through: an exclusive borrow or a window in runs, or (for a
    /// shared one, which `run` never passes to a writing step) an owned copy first.
    fn as_mut_ptr(&mut self) -> *mut f32 {
        if let Slot::Shared(slice) = self {
            *self = Slot::Owned(AlignedBuffer::copied(slice));
        }
        match self {
            Slot::Owned(buffer) => buffer.as_mut_ptr(),
            Slot::Exclusive(slice) => slice.as_mut_ptr(),
            Slot::Runs { address, .. } => std::ptr::with_exposed_provenance_mut(*address),
            Slot::Shared(_) => unreachable!("replaced by an owned copy just above"),
        }
    }
}

/// Calls one step's generated code on `buffers` (one per function buffer, in order), after
/// checking each one's length against the length the function was compiled for.
#[allow(unsafe_code)]
fn call(step: &CompiledStep, buffers: &mut [Slot<'_>]) -> Result<(), Error> {
    if buffers.len() != step.buffers.len() {
        return Err(Error::ArgumentCount {
            step: step.layer.clone(),
            function: step.function.clone(),
            found: buffers.len(),
            expected: step.buffers.len(),
        });
    }
    for (buffer, declared) in buffers.iter().zip(&step.buffers) {
        if buffer.len() as u64 != declared.len {
            return Err(Error::BufferLength {
                step: step.layer.clone(),
                function: step.function.clone(),
                buffer: declared.name.clone(),
                found: buffer.len() as u64,
                expected: declared.len,
            });
        }
    }
    // Buffers the code stores into are passed from an exclusive borrow (copying a borrowed one,
    // which `run` never passes here); the others from a shared one.
    let pointers: Vec<*mut f32> = buffers
        .iter_mut()
        .zip(&step.stored)
        .map(|(buffer, &stored)| if stored { buffer.as_mut_ptr() } else { buffer.as_ptr() })
        .collect();
    let code: *const u8 = std::ptr::with_exposed_provenance(step.code);
    // # Safety
    //
    // - `code` is the address of a function that `compile` finalized in the `JITModule` owned by
    //   the plan that owns `step`, which is alive while `step` is borrowed and whose code memory
    //   is never freed nor written after finalizing. Its signature is `extern "C" fn(*const *mut
    //   f32)`: one pointer parameter, no results, the host's default calling convention, which
    //   is the C one.
    // - `pointers` has one pointer per buffer of the function (checked above), in order, each to
    //   the start of a live allocation of exactly the length the function was compiled for
    //   (checked above), which outlives the call (`buffers` is borrowed for all of it); or, for
    //   a part's window in runs, to its start inside a buffer that `run_parts` holds exclusively
    //   borrowed until every part has returned, with the function's length of it left from there
    //   (`windows` checked).
    // - The code accesses nothing else: `codegen::check` proved, before any code was generated,
    //   that every load and store of every iteration lies inside its buffer's declared length,
    //   and, for a window in runs, inside the part's runs.
    // - It writes only buffers whose `stored` flag is set; those pointers come from exclusive
    //   borrows of distinct slots (an owned `Vec` of the run, or the caller's `&mut` output),
    //   each its own allocation (`run` passes a repeated argument as a copy), so nothing else in
    //   `pointers` aliases them, and nothing else reads or writes them during the call; or from
    //   a window in runs, whose elements no other part reads or writes (`check_parts`: the
    //   parts' runs are disjoint, and none passes the window's buffer as another argument). The
    //   other buffers are only read, through shared borrows.
    // - The code cannot trap or unwind (in-bounds accesses, no integer division; the only calls
    //   are to `convgen_exp`, `fmaf` and the tile kernels, which cannot panic), and keeps no state, so concurrent
    //   calls on distinct buffers are independent.
    unsafe {
        let function = std::mem::transmute::<*const u8, unsafe extern "C" fn(*const *mut f32)>(code);
        function(pointers.as_ptr());
    }
    Ok(())
}

/// The CLIF text of `function` before optimisation, deterministic (for snapshots and
/// `convgen inspect --emit clif`). It is exactly what [`compile`] hands to Cranelift, except for
/// names: the function is `%name`, and `exp` is `%convgen_exp`; it is built for x86-64 (System V)
/// whatever the host, and checked by Cranelift's verifier.
pub fn clif(function: &ir::Function) -> Result<String, Error> {
    let mut flags = settings::builder();
    flags.set("enable_verifier", "true")?;
    let isa =
        cranelift_codegen::isa::lookup_by_name("x86_64-unknown-linux-gnu")?.finish(settings::Flags::new(flags))?;
    Ok(build_clif(function, isa.as_ref())?.display().to_string())
}

/// The machine code Cranelift generates for `function` on this host, as Cranelift's own
/// disassembly listing (its `VCode` text, with register allocation applied): what
/// `convgen inspect --emit asm` shows. For people, not for snapshots (it depends on the host).
pub fn disassembly(function: &ir::Function) -> Result<String, Error> {
    let isa = host_isa(Options::default(), codegen::keeps_order(function))?;
    let clif = build_clif(function, isa.as_ref())?;
    let mut context = cranelift_codegen::Context::for_function(clif);
    context.set_disasm(true);
    let compiled =
        context.compile(isa.as_ref(), &mut Default::default()).map_err(|error| Error::Codegen(error.inner))?;
    Ok(compiled.vcode.clone().unwrap_or_default())
}

/// The verified CLIF of `function` for `isa`, before optimisation.
fn build_clif(
    function: &ir::Function,
    isa: &dyn cranelift_codegen::isa::TargetIsa,
) -> Result<cranelift_codegen::ir::Function, Error> {
    let analysis = codegen::check(function, None)?;
    let config = isa.frontend_config();
    let call_conv = config.default_call_conv;
    let mut clif = cranelift_codegen::ir::Function::with_name_signature(
        UserFuncName::testcase(&function.name),
        codegen::signature(config.pointer_type(), call_conv),
    );
    codegen::build(&mut clif, &mut FunctionBuilderContext::new(), config, function, &analysis, &mut |clif, import| {
        let signature = clif.import_signature(import.signature(config.pointer_type(), call_conv));
        clif.import_function(ExtFuncData {
            name: ExternalName::testcase(import.symbol()),
            signature,
            colocated: false,
            patchable: false,
        })
    });
    cranelift_codegen::verify_function(&clif, isa).map_err(|errors| Error::Verifier {
        function: function.name.clone(),
        errors: cranelift_codegen::print_errors::pretty_verifier_error(&clif, None, errors),
    })?;
    Ok(clif)
}

impl fmt::Debug for CompiledPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledPlan")
            .field("input_len", &self.input_len)
            .field("output_len", &self.output_len)
            .field("values", &self.values)
            .field("steps", &self.steps.iter().map(|step| step.layer.as_str()).collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use conv_dsl::schedule::{Schedule, Target};
    use conv_dsl::{Params, bind, compile_source, ir_interp, lower};

    use super::{Options, compile_with};

    /// Every activation, vector and scalar code, depthwise, dense and `add` steps.
    const MODEL: &str = "
        input x: [2, 6, 7, 5];
        conv a(x)        { out: 8, kernel: 3, pad: 1, act: leaky_relu(0.1) }
        depthwise b(a)   { kernel: 3, stride: 2, pad: same, act: hardswish }
        pointwise c(b)   { out: 5, act: silu }
        conv d(c)        { out: 6, kernel: [2, 3], groups: 1, pad: [[1, 0], [1, 1]], act: relu6 }
        separable e(d)   { out: 6, kernel: 3, pad: 1, dw_act: relu, act: sigmoid }
        add f(e, d)      { act: relu }
    ";

    /// Compiles the model with `options` and checks it against the IR interpreter, bit for bit.
    fn check(options: Options) {
        let network = compile_source("model.conv", MODEL).expect("the model is valid");
        let binding = bind(&network, &[2, 6, 7, 5]).expect("binds");
        let params = Params::random(&network, 21);
        let mut rng = conv_dsl::random::SplitMix64::new(4);
        let input: Vec<f32> = (0..2 * 6 * 7 * 5).map(|_| rng.symmetric()).collect();
        // The heuristic with and without tile kernels (layer `a` has 8 outputs: a tile-kernel
        // layer), and a forced scalar schedule.
        let with_tiles = Target { microkernels: true, ..Target::CRANELIFT_X86_64 };
        let choices =
            [(Target::CRANELIFT_X86_64, None), (with_tiles, None), (with_tiles, Some(Schedule::new(1, 3, 2)))];
        for (target, forced) in choices {
            let plan = lower::lower(&network, &binding, target, &|_| forced).expect("lowers");
            let packed = ir_interp::pack_params(&plan, &params);
            let output = compile_with(&plan, options).expect("compiles").run(&input, &packed).expect("runs");
            let expected = ir_interp::run_plan(&plan, &input, &packed).expect("runs");
            assert_eq!(output, expected, "{options:?}, {forced:?}");
        }
    }

    fn fmaf_calls() -> usize {
        crate::codegen::FMAF_CALLS.load(std::sync::atomic::Ordering::Relaxed)
    }

    #[test]
    fn without_fma_instructions_the_libcall_fuses_the_same() {
        let before = fmaf_calls();
        check(Options { host_features: true, host_fma: false, verify: true });
        assert!(fmaf_calls() > before, "the code called `fmaf`");
    }

    #[test]
    fn the_x86_64_baseline_sse2_runs_the_same() {
        let before = fmaf_calls();
        let tiles_before = crate::microkernel::PORTABLE_CALLS.load(std::sync::atomic::Ordering::Relaxed);
        check(Options { host_features: false, host_fma: false, verify: true });
        assert!(fmaf_calls() > before, "the code called `fmaf`");
        let tiles = crate::microkernel::PORTABLE_CALLS.load(std::sync::atomic::Ordering::Relaxed);
        assert!(tiles > tiles_before, "the code called the portable tile kernels");
    }

    #[test]
    fn the_host_with_the_verifier_runs_the_same() {
        check(Options { host_features: true, host_fma: true, verify: true });
    }
}
