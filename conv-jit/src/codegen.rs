//! Loop IR → CLIF: the checks that make generated code memory-safe, and the translation itself.
//!
//! [`check`] proves, before any code exists, that every access of a function stays inside its
//! buffer for every iteration of its loops (indices are affine in loop variables with constant
//! ranges, so the extremes are exact), and that every name it uses exists. [`build`] then emits one
//! CLIF function per IR function:
//!
//! - loop variables are block parameters (SSA values) of a loop header; loops test at the bottom,
//!   `brif done, exit, header(next)`, so that the back edge is the untaken branch, which keeps
//!   Cranelift's loop-invariant code motion working;
//! - accumulators are `Variable`s (registers, turned into SSA by the frontend);
//! - indices are i64 arithmetic on the buffer's base pointer, outermost loop first, so that the
//!   partial sums of outer loops are invariant in inner ones and hoisted; the constant part is the
//!   load's immediate offset;
//! - loads from buffers the function never stores to are `readonly notrap can_move` (pure for the
//!   optimiser); scalar accesses are also `aligned` (a `&[f32]` is 4-byte aligned), vector ones are
//!   not (a buffer's base is only 4-byte aligned, and x86 SSE faults on unaligned memory operands
//!   marked aligned);
//! - activations reproduce [`conv_dsl::spec::Activation::apply`], which the IR interpreter evaluates
//!   in f64 and rounds to f32: relu, relu6 and leaky relu are exact in f32 and computed lane-wise
//!   with compares and selects (the interpreter's NaN behaviour included); hardswish, sigmoid and
//!   silu are computed per lane in f64, `exp` being [`convgen_exp`], so the JIT's results are
//!   bit-identical to the interpreter's.
//!
//! [`keeps_order`] tells which functions Cranelift should compile without its e-graph pass.

use std::collections::HashMap;

use conv_dsl::ir::{self, BufferId, Index, Stmt, TRANSPOSE};
use conv_dsl::lower::Runs;
use conv_dsl::spec::Activation;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::types::{F32, F32X4, F64, I8X16, I64};
use cranelift_codegen::ir::{
    AbiParam, Block, BlockArg, ConstantData, Endianness, FuncRef, Function, InstBuilder, MemFlagsData, Signature,
    StackSlot, StackSlotData, StackSlotKind, Type, Value,
};
use cranelift_codegen::isa::{CallConv, TargetFrontendConfig};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};

use crate::Error;
use crate::microkernel::TILE_ARGS_WORDS;
use crate::plane::PLANE_ARGS_WORDS;

/// The name under which generated code calls [`convgen_exp`].
pub(crate) const EXP_SYMBOL: &str = "convgen_exp";

/// `e^x`, called by generated code for `sigmoid` and `silu` (Cranelift has no `exp` instruction).
/// In f64, like the interpreter, so that results are bit-identical.
pub(crate) extern "C" fn convgen_exp(x: f64) -> f64 {
    x.exp()
}

/// `a·b + c` rounded once: what Cranelift calls (as the libcall `fmaf`) for `fma` on an x86-64
/// without the FMA extension, lane by lane for vectors.
pub(crate) extern "C" fn convgen_fmaf(a: f32, b: f32, c: f32) -> f32 {
    #[cfg(test)]
    FMAF_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    a.mul_add(b, c)
}

/// How often generated code called [`convgen_fmaf`] (tests check that the libcall path runs).
#[cfg(test)]
pub(crate) static FMAF_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The f64 version of [`convgen_fmaf`] (libcall `fma`), registered so that no libcall can be left
/// unresolved; the code generator emits no f64 `fma`.
pub(crate) extern "C" fn convgen_fma(a: f64, b: f64, c: f64) -> f64 {
    a.mul_add(b, c)
}

/// The signature of every generated function: `extern "C" fn(args: *const *mut f32)`.
pub(crate) fn signature(pointer: Type, call_conv: CallConv) -> Signature {
    let mut signature = Signature::new(call_conv);
    signature.params.push(AbiParam::new(pointer));
    signature
}

/// The signature of [`convgen_exp`].
pub(crate) fn exp_signature(call_conv: CallConv) -> Signature {
    let mut signature = Signature::new(call_conv);
    signature.params.push(AbiParam::new(F64));
    signature.returns.push(AbiParam::new(F64));
    signature
}

/// What [`check`] found out about a function.
#[derive(Clone, Debug)]
pub(crate) struct Analysis {
    /// Per buffer: whether the function stores into it (in a loop that runs).
    pub stored: Vec<bool>,
    /// Whether it calls [`convgen_exp`].
    pub uses_exp: bool,
    /// The tile kernels it calls: `(depthwise, pixels, vectors)`, each once, in order of first use.
    pub tiles: Vec<(bool, u32, u32)>,
    /// The plane kernels it calls: `(kernel, stride, dilation)`, each once, in order of first use.
    pub planes: Vec<(u64, u64, u64)>,
}

/// A function generated code calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Import {
    /// [`convgen_exp`].
    Exp,
    /// The tile kernel for `(depthwise, pixels, vectors)` ([`crate::microkernel`]).
    Tile(bool, u32, u32),
    /// The plane kernel for `(kernel, stride, dilation)` ([`crate::plane`]).
    Plane(u64, u64, u64),
}

impl Import {
    /// Its symbol.
    pub fn symbol(self) -> String {
        match self {
            Import::Exp => EXP_SYMBOL.to_string(),
            Import::Tile(depthwise, pixels, vectors) => crate::microkernel::symbol(depthwise, pixels, vectors),
            Import::Plane(kernel, stride, dilation) => crate::plane::symbol(kernel, stride, dilation),
        }
    }

    /// Its signature.
    pub fn signature(self, pointer: Type, call_conv: CallConv) -> Signature {
        match self {
            Import::Exp => exp_signature(call_conv),
            Import::Tile(..) | Import::Plane(..) => signature(pointer, call_conv),
        }
    }
}

/// Checks that `function` can be compiled to memory-safe code: lanes 1 or 4, every buffer,
/// accumulator and loop variable it names exists (loop variables only inside their loop), and every
/// access of every iteration lies inside its buffer's declared length. Loops that run 0 times are
/// never executed and not checked (the interpreter does not look into them either). With `runs`
/// (a part's window written in runs, [`Runs`]), every access of that buffer lies inside one run.
pub(crate) fn check(function: &ir::Function, runs: Option<(BufferId, Runs)>) -> Result<Analysis, Error> {
    if function.lanes != 1 && function.lanes != 4 {
        return Err(Error::Lanes { function: function.name.clone(), lanes: function.lanes });
    }
    let mut checker = Checker {
        function,
        runs,
        counts: vec![None; function.loop_vars as usize],
        analysis: Analysis {
            stored: vec![false; function.buffers.len()],
            uses_exp: false,
            tiles: Vec::new(),
            planes: Vec::new(),
        },
    };
    checker.block(&function.body)?;
    Ok(checker.analysis)
}

struct Checker<'a> {
    function: &'a ir::Function,
    /// The buffer that may be accessed only in runs, and its runs.
    runs: Option<(BufferId, Runs)>,
    /// Per loop variable: its trip count while inside its loop.
    counts: Vec<Option<u64>>,
    analysis: Analysis,
}

impl Checker<'_> {
    fn block(&mut self, body: &[Stmt]) -> Result<(), Error> {
        for stmt in body {
            match stmt {
                Stmt::Loop { var, count, body } => {
                    if *count == 0 {
                        continue;
                    }
                    let free = matches!(self.counts.get(var.0 as usize), Some(None));
                    if !free || *count > i64::MAX as u64 {
                        return Err(self.loop_variable(var.0));
                    }
                    self.counts[var.0 as usize] = Some(*count);
                    self.block(body)?;
                    self.counts[var.0 as usize] = None;
                }
                Stmt::Init { acc, value } => {
                    self.accumulator(*acc)?;
                    self.value(value)?;
                }
                Stmt::Fma { acc, a, b } => {
                    self.accumulator(*acc)?;
                    self.value(a)?;
                    self.value(b)?;
                }
                Stmt::Store { buffer, index, value } => {
                    self.access(*buffer, index, self.function.lanes)?;
                    self.analysis.stored[buffer.0 as usize] = true;
                    self.value(value)?;
                }
                Stmt::Tile(tile) => self.tile(tile)?,
                Stmt::Plane(plane) => self.plane(plane)?,
                Stmt::Transpose { from, from_index, from_stride, to, to_index, to_stride } => {
                    for row in 0..i64::from(TRANSPOSE) {
                        self.access(*from, &from_index.clone().plus_constant(row * from_stride), TRANSPOSE)?;
                        self.access(*to, &to_index.clone().plus_constant(row * to_stride), TRANSPOSE)?;
                    }
                    self.analysis.stored[to.0 as usize] = true;
                }
            }
        }
        Ok(())
    }

    /// A tile call: a shape a kernel exists for, its three buffers distinct, and every element it
    /// can touch ([`ir::Tile::extents`]) inside its buffer for every iteration.
    fn tile(&mut self, tile: &ir::Tile) -> Result<(), Error> {
        let shape = (tile.depthwise, tile.pixels, tile.vectors);
        let known = ir::tile_shape_exists(shape.1, shape.2);
        let distinct = tile.acc != tile.input
            && tile.acc != tile.weight
            && tile.bias.as_ref().is_none_or(|(bias, _)| *bias != tile.acc);
        if !known || !distinct {
            return Err(Error::Tile {
                function: self.function.name.clone(),
                reason: if known {
                    "its accumulators share a buffer with its input, weights or bias".to_string()
                } else {
                    format!("no kernel computes {}x{} tiles", shape.1, shape.2)
                },
            });
        }
        let bias_index = tile.bias.as_ref().map(|(_, index)| index);
        let indices = [Some(&tile.input_index), Some(&tile.weight_index), Some(&tile.acc_index), bias_index];
        for ((buffer, low, end), index) in
            tile.extents().into_iter().zip(indices).filter_map(|(extent, index)| extent.zip(index))
        {
            let width = u32::try_from(end - low).map_err(|_| Error::Tile {
                function: self.function.name.clone(),
                reason: "it spans more than 2^32 elements".to_string(),
            })?;
            match self.runs {
                // Sums stored into a window in runs: inside the window, and each pixel's
                // vectors inside one run.
                Some((runs_buffer, runs)) if runs_buffer == buffer && buffer == tile.acc => {
                    self.in_bounds(buffer, &index.clone().plus_constant(low), width)?;
                    let pixels = (u64::from(tile.pixels), tile.acc_pixel_stride);
                    let vectors = tile.vectors * ir::TILE_LANES;
                    self.in_runs(buffer, index, &[(tile.repeat, tile.acc_repeat_stride), pixels], vectors, runs)?;
                }
                _ => self.access(buffer, &index.clone().plus_constant(low), width)?,
            }
        }
        self.analysis.stored[tile.acc.0 as usize] = true;
        if !self.analysis.tiles.contains(&shape) {
            self.analysis.tiles.push(shape);
        }
        Ok(())
    }

    /// A plane call: a window a kernel exists for, groups of at least 1 plane, the output's buffer
    /// apart from the others, and every plane it names ([`ir::Plane::extents`]) inside its buffer
    /// for every iteration.
    fn plane(&mut self, plane: &ir::Plane) -> Result<(), Error> {
        let window = (plane.kernel, plane.stride, plane.dilation);
        let error = |reason: String| Error::Plane { function: self.function.name.clone(), reason };
        if !ir::plane_kernel_exists(window.0, window.1, window.2) {
            let (kernel, stride, dilation) = window;
            return Err(error(format!(
                "no kernel computes a {kernel}x{kernel} window with stride {stride} and dilation {dilation}"
            )));
        }
        if plane.group_inputs == 0 || plane.group_outputs == 0 {
            return Err(error("its groups have no planes".to_string()));
        }
        let counts = [plane.planes, plane.group_inputs, plane.group_outputs];
        let depth = plane.depth.values();
        let sizes =
            counts.iter().chain(&plane.input_size).chain(&plane.output_size).chain(&plane.padding).chain(&depth);
        if sizes.into_iter().any(|&size| size > i64::MAX as u64) {
            return Err(error("its sizes do not fit in 64-bit signed integers".to_string()));
        }
        let distinct = plane.output != plane.input
            && plane.output != plane.weight
            && plane.bias.as_ref().is_none_or(|(bias, _)| *bias != plane.output);
        if !distinct {
            return Err(error("its output shares a buffer with its input, weights or bias".to_string()));
        }
        let bias_index = plane.bias.as_ref().map(|(_, index)| index);
        let indices = [Some(&plane.input_index), Some(&plane.weight_index), Some(&plane.output_index), bias_index];
        for ((buffer, low, end), index) in
            plane.extents().into_iter().zip(indices).filter_map(|(extent, index)| extent.zip(index))
        {
            let width = u32::try_from(end - low).map_err(|_| error("it spans more than 2^32 elements".to_string()))?;
            self.access(buffer, &index.clone().plus_constant(low), width)?;
        }
        self.analysis.stored[plane.output.0 as usize] = true;
        if !self.analysis.planes.contains(&window) {
            self.analysis.planes.push(window);
        }
        Ok(())
    }

    fn value(&mut self, value: &ir::Value) -> Result<(), Error> {
        match value {
            ir::Value::Acc(acc) => self.accumulator(*acc),
            ir::Value::Load { buffer, index } => self.access(*buffer, index, self.function.lanes),
            ir::Value::LoadEven { buffer, index } => self.access(*buffer, index, 2 * self.function.lanes - 1),
            ir::Value::Splat { buffer, index } => self.access(*buffer, index, 1),
            ir::Value::Zero => Ok(()),
            ir::Value::Add(a, b) | ir::Value::Sub(a, b) => {
                self.value(a)?;
                self.value(b)
            }
            ir::Value::Activate(act, inner) => {
                if matches!(act, Activation::Sigmoid | Activation::Silu) {
                    self.analysis.uses_exp = true;
                }
                self.value(inner)
            }
        }
    }

    fn accumulator(&self, acc: ir::Acc) -> Result<(), Error> {
        if acc.0 < self.function.accumulators {
            Ok(())
        } else {
            Err(Error::UnknownAccumulator {
                function: self.function.name.clone(),
                acc: acc.0,
                accumulators: self.function.accumulators,
            })
        }
    }

    fn loop_variable(&self, var: u32) -> Error {
        Error::LoopVariable { function: self.function.name.clone(), var }
    }

    /// Checks `buffer[index .. index + width]` for every value of the enclosing loop variables:
    /// inside the buffer and, in a window in runs, inside one run.
    fn access(&self, buffer: BufferId, index: &Index, width: u32) -> Result<(), Error> {
        self.in_bounds(buffer, index, width)?;
        match self.runs {
            Some((runs_buffer, runs)) if runs_buffer == buffer => self.in_runs(buffer, index, &[], width, runs),
            _ => Ok(()),
        }
    }

    /// Checks `buffer[index .. index + width]` inside the buffer for every value of the enclosing
    /// loop variables.
    fn in_bounds(&self, buffer: BufferId, index: &Index, width: u32) -> Result<(), Error> {
        let declared = self.function.buffers.get(buffer.0 as usize).ok_or_else(|| Error::UnknownBuffer {
            function: self.function.name.clone(),
            buffer: buffer.0,
            buffers: self.function.buffers.len(),
        })?;
        // An affine function over a box takes its extremes at corners: each term contributes
        // between 0 and coefficient·(count − 1). i128 cannot overflow here (|terms| < 2^63 each,
        // far fewer than 2^64 of them).
        let (mut low, mut high) = (i128::from(index.offset), i128::from(index.offset));
        for &(var, coefficient) in &index.terms {
            let count = self.counts.get(var.0 as usize).copied().flatten().ok_or_else(|| self.loop_variable(var.0))?;
            let last = i128::from(coefficient) * (i128::from(count) - 1);
            low += last.min(0);
            high += last.max(0);
        }
        let end = high + i128::from(width);
        if low < 0 || end > i128::from(declared.len) {
            return Err(Error::OutOfBounds {
                function: self.function.name.clone(),
                buffer: declared.name.clone(),
                start: low,
                end,
                len: declared.len,
            });
        }
        Ok(())
    }

    /// Checks that `buffer[index .. index + width]` lies inside one of `runs` for every value of the loop
    /// variables (`access` checked it lies inside the buffer). The index is `stride · run + within`:
    /// terms whose coefficient is a multiple of the stride (and the offset's quotient) move between
    /// runs, the others (and the offset's remainder) make up `within`, whose extremes must keep the
    /// access inside a run, `0 ≤ within` and `within + width ≤ len`. Then `run` lies in
    /// `0..count` too, since `len ≤ stride` and the whole access lies in the window.
    ///
    /// `extra` are more terms, `(count, coefficient)`, of accesses a kernel makes from the index
    /// (a tile's pixels and repeats), each access `width` elements.
    fn in_runs(
        &self,
        buffer: BufferId,
        index: &Index,
        extra: &[(u64, i64)],
        width: u32,
        runs: Runs,
    ) -> Result<(), Error> {
        let stride = i128::from(runs.stride.max(1));
        let offset = i128::from(index.offset).rem_euclid(stride);
        let (mut low, mut high) = (offset, offset);
        let mut terms = Vec::with_capacity(index.terms.len() + extra.len());
        for &(var, coefficient) in &index.terms {
            let count = self.counts.get(var.0 as usize).copied().flatten().ok_or_else(|| self.loop_variable(var.0))?;
            terms.push((count, coefficient));
        }
        terms.extend(extra.iter().filter(|&&(count, _)| count > 0));
        for (count, coefficient) in terms {
            if i128::from(coefficient) % stride != 0 {
                let last = i128::from(coefficient) * (i128::from(count) - 1);
                low += last.min(0);
                high += last.max(0);
            }
        }
        let end = high + i128::from(width);
        if low < 0 || end > i128::from(runs.len) {
            let declared = &self.function.buffers[buffer.0 as usize];
            return Err(Error::OutsideRuns {
                function: self.function.name.clone(),
                buffer: declared.name.clone(),
                start: low,
                end,
                len: runs.len,
                stride: runs.stride,
            });
        }
        Ok(())
    }
}

/// The fewest multiply-adds in one straight run of statements (a loop body, not counting nested
/// loops) for which a function is compiled with `opt_level=none`, in the IR's order.
///
/// Cranelift's e-graph pass places every pure instruction where it is first needed, working back
/// from the block's end: in a long unrolled body whose accumulators share operands (an input
/// vector read by several output channels' sums), it computes each accumulator's whole chain of
/// multiply-adds in turn, so every shared operand is live from the first chain to the last and
/// spills. In the IR's order each operand is used as soon as it is loaded. Measured on an AMD
/// EPYC Zen 4 (`convgen bench`, medians, each model with both settings in turn): g3_c128_g32_56
/// (planar, 72 multiply-adds per input channel) 0.71 ms without the pass against 1.44 ms with it,
/// dw5_s1_c240_28 on pure Cranelift code (`CONVGEN_MAX_ISA=portable`, 100 per tile) 0.38–0.41
/// against 0.67 ms, dw3_s1_c144_56 (planar, 36 per tile) 0.195 against 0.215 ms; but
/// pw_64to64_56 on pure Cranelift code (8 per input channel, a short loop body whose invariants
/// the pass hoists) 1.05–1.09 ms against 0.75 ms. Compiling without the pass is also ~40% faster.
pub(crate) const ORDERED_MIN_FMAS: usize = 24;

/// Whether `function` is compiled without the e-graph pass (`opt_level=none`), keeping the IR's
/// order: when a straight run of its statements has at least [`ORDERED_MIN_FMAS`] multiply-adds.
pub(crate) fn keeps_order(function: &ir::Function) -> bool {
    fn longest_run(body: &[Stmt]) -> usize {
        let here = body.iter().filter(|stmt| matches!(stmt, Stmt::Fma { .. })).count();
        let nested = body.iter().filter_map(|stmt| match stmt {
            Stmt::Loop { body, .. } => Some(longest_run(body)),
            _ => None,
        });
        nested.fold(here, usize::max)
    }
    longest_run(&function.body) >= ORDERED_MIN_FMAS
}

/// Builds the CLIF of `source` into `function` (whose name and signature are set), importing
/// [`convgen_exp`] and the tile kernels it calls with `import`. `analysis` is [`check`]'s.
pub(crate) fn build(
    function: &mut Function,
    context: &mut FunctionBuilderContext,
    config: TargetFrontendConfig,
    source: &ir::Function,
    analysis: &Analysis,
    import: &mut dyn FnMut(&mut Function, Import) -> FuncRef,
) {
    let exp = analysis.uses_exp.then(|| import(function, Import::Exp));
    let tiles: HashMap<(bool, u32, u32), FuncRef> = analysis
        .tiles
        .iter()
        .map(|&(depthwise, pixels, vectors)| {
            ((depthwise, pixels, vectors), import(function, Import::Tile(depthwise, pixels, vectors)))
        })
        .collect();
    let planes: HashMap<(u64, u64, u64), FuncRef> = analysis
        .planes
        .iter()
        .map(|&(kernel, stride, dilation)| {
            ((kernel, stride, dilation), import(function, Import::Plane(kernel, stride, dilation)))
        })
        .collect();
    // One stack slot for the arguments of every kernel call, as large as the largest.
    let tile_args = (!tiles.is_empty() || !planes.is_empty()).then(|| {
        let words = TILE_ARGS_WORDS.max(PLANE_ARGS_WORDS);
        function.create_sized_stack_slot(StackSlotData::new(StackSlotKind::ExplicitSlot, words * 8, 3))
    });
    let pointer = config.pointer_type();
    let vector = if source.lanes == 4 { F32X4 } else { F32 };
    let mut builder = FunctionBuilder::new(function, context);
    let entry = builder.create_block();
    builder.append_block_params_for_function_params(entry);
    builder.switch_to_block(entry);
    builder.seal_block(entry);
    let args = builder.block_params(entry)[0];
    // The buffer pointers, from the argument array (read-only; unused ones are removed).
    let argument_flags = MemFlagsData::trusted().with_readonly().with_can_move();
    let pointer_bytes = i32::from(pointer.bytes() as u16);
    let bases: Vec<Value> = (0..source.buffers.len() as i32)
        .map(|position| builder.ins().load(pointer, argument_flags, args, position * pointer_bytes))
        .collect();
    let mut emitter = Emitter {
        builder,
        analysis,
        vector,
        bases,
        vars: vec![None; source.loop_vars as usize],
        addresses: vec![HashMap::new()],
        depth: 0,
        accumulators: Vec::new(),
        exp,
        tiles,
        planes,
        tile_args,
    };
    // Accumulators start at zero, as in the interpreter.
    for _ in 0..source.accumulators {
        let variable = emitter.builder.declare_var(vector);
        let zero = emitter.constant(vector, 0.0);
        emitter.builder.def_var(variable, zero);
        emitter.accumulators.push(variable);
    }
    emitter.block(&source.body);
    emitter.builder.ins().return_(&[]);
    emitter.builder.finalize(config);
}

/// A buffer and the variable terms of an index into it.
type AddressKey = (u32, Vec<(ir::LoopVar, i64)>);

struct Emitter<'a, 'b> {
    builder: FunctionBuilder<'b>,
    analysis: &'a Analysis,
    /// `f32` or `f32x4`.
    vector: Type,
    /// Base pointer of each buffer.
    bases: Vec<Value>,
    /// Per loop variable inside its loop: its value and the loop's depth (1 = outermost).
    vars: Vec<Option<(Value, usize)>>,
    /// Addresses computed so far, per loop nesting level (outermost first): the variable part of
    /// `buffer[index]` depends only on the buffer and the index's terms, so every access with the
    /// same terms reuses one computation, and only the constant offset differs. A level is
    /// dropped when its loop body ends: values defined inside a loop do not dominate the code
    /// after it, while values from enclosing levels dominate everything nested in them.
    addresses: Vec<HashMap<AddressKey, Value>>,
    depth: usize,
    accumulators: Vec<Variable>,
    exp: Option<FuncRef>,
    /// The tile kernels, by shape, the plane kernels, by window, and the stack slot their
    /// arguments go in.
    tiles: HashMap<(bool, u32, u32), FuncRef>,
    planes: HashMap<(u64, u64, u64), FuncRef>,
    tile_args: Option<StackSlot>,
}

impl Emitter<'_, '_> {
    fn block(&mut self, body: &[Stmt]) {
        for stmt in body {
            match stmt {
                Stmt::Loop { var, count, body } => self.emit_loop(var.0 as usize, *count, body),
                Stmt::Init { acc, value } => {
                    let value = self.value(value);
                    self.builder.def_var(self.accumulators[acc.0 as usize], value);
                }
                Stmt::Fma { acc, a, b } => {
                    let (a, b) = (self.value(a), self.value(b));
                    let variable = self.accumulators[acc.0 as usize];
                    let sum = self.builder.use_var(variable);
                    let sum = self.builder.ins().fma(a, b, sum);
                    self.builder.def_var(variable, sum);
                }
                Stmt::Store { buffer, index, value } => {
                    let value = self.value(value);
                    let (address, offset) = self.address(*buffer, index);
                    let flags = self.flags(*buffer, self.vector);
                    self.builder.ins().store(flags, value, address, offset);
                }
                Stmt::Tile(tile) => self.call_tile(tile),
                Stmt::Plane(plane) => self.call_plane(plane),
                Stmt::Transpose { from, from_index, from_stride, to, to_index, to_stride } => {
                    self.transpose((*from, from_index, *from_stride), (*to, to_index, *to_stride));
                }
            }
        }
    }

    /// A tile ([`Stmt::Tile`]): its [`crate::microkernel::TileArgs`] stored in the function's
    /// stack slot, then a call to the kernel for its shape.
    fn call_tile(&mut self, tile: &ir::Tile) {
        let kernel = self.tiles[&(tile.depthwise, tile.pixels, tile.vectors)];
        let pointers = self.kernel_pointers(
            (tile.input, &tile.input_index),
            (tile.weight, &tile.weight_index),
            tile.bias.as_ref().map(|(bias, index)| (*bias, index)),
            (tile.acc, &tile.acc_index),
        );
        let constants = [
            tile.pixel_stride,
            tile.repeat as i64,
            tile.repeat_input_stride,
            tile.repeat_weight_stride,
            tile.repeat_bias_stride,
            tile.reduce as i64,
            tile.reduce_input_stride,
            tile.reduce_weight_stride,
        ]
        .into_iter()
        .chain(tile.taps.map(|count| count as i64))
        .chain(tile.tap_input_strides)
        .chain(tile.tap_weight_strides)
        .chain([tile.acc_pixel_stride, tile.acc_repeat_stride, crate::microkernel::act_code(tile.act) as i64])
        .chain([i64::from(tile.prefetch)]);
        self.call_kernel(kernel, pointers, constants, TILE_ARGS_WORDS);
    }

    /// A plane statement ([`Stmt::Plane`]): its [`crate::plane::PlaneArgs`] stored in the
    /// function's stack slot, then a call to the kernel for its window.
    fn call_plane(&mut self, plane: &ir::Plane) {
        let kernel = self.planes[&(plane.kernel, plane.stride, plane.dilation)];
        let pointers = self.kernel_pointers(
            (plane.input, &plane.input_index),
            (plane.weight, &plane.weight_index),
            plane.bias.as_ref().map(|(bias, index)| (*bias, index)),
            (plane.output, &plane.output_index),
        );
        // `check` proved every count fits in an i64.
        let constants = [plane.planes, plane.group_inputs, plane.group_outputs]
            .into_iter()
            .chain(plane.input_size)
            .chain(plane.output_size)
            .chain(plane.padding)
            .map(|value| value as i64)
            .chain([crate::microkernel::act_code(plane.act) as i64])
            .chain(plane.depth.values().map(|value| value as i64));
        self.call_kernel(kernel, pointers, constants, PLANE_ARGS_WORDS);
    }

    /// The four pointers a kernel's arguments start with: input, weight, bias (null without one)
    /// and output, each at its statement's index.
    fn kernel_pointers(
        &mut self,
        input: (BufferId, &Index),
        weight: (BufferId, &Index),
        bias: Option<(BufferId, &Index)>,
        output: (BufferId, &Index),
    ) -> [Value; 4] {
        let pointer = |emitter: &mut Self, (buffer, index): (BufferId, &Index)| -> Value {
            let (address, offset) = emitter.address(buffer, index);
            emitter.builder.ins().iadd_imm_s(address, i64::from(offset))
        };
        let (input, weight) = (pointer(self, input), pointer(self, weight));
        let bias = match bias {
            Some(bias) => pointer(self, bias),
            None => self.builder.ins().iconst(I64, 0),
        };
        [input, weight, bias, pointer(self, output)]
    }

    /// Stores a kernel's `words` argument words (`pointers`, then `constants`) in the function's
    /// stack slot, 8 bytes each in order, and calls `kernel` with the slot's address.
    fn call_kernel(&mut self, kernel: FuncRef, pointers: [Value; 4], constants: impl Iterator<Item = i64>, words: u32) {
        let slot = self.tile_args.expect("check() records every function that calls a kernel");
        let constants: Vec<Value> = constants.map(|value| self.builder.ins().iconst(I64, value)).collect();
        debug_assert_eq!(pointers.len() + constants.len(), words as usize);
        for (position, word) in pointers.into_iter().chain(constants).enumerate() {
            self.builder.ins().stack_store(I64, word, slot, position as i32 * 8);
        }
        let args = self.builder.ins().stack_addr(I64, slot, 0);
        self.builder.ins().call(kernel, &[args]);
    }

    /// Every other element from `index` ([`ir::Value::LoadEven`]): with 4 lanes, elements 0..4 and
    /// 3..7 loaded as bytes and lanes 0, 2 of the first and 1, 3 of the second kept (one
    /// `shuffle`), so that nothing past element 6 is read.
    fn load_even(&mut self, buffer: BufferId, index: &Index) -> Value {
        let flags = self.flags(buffer, if self.vector == F32 { F32 } else { I8X16 });
        if self.vector == F32 {
            let (address, offset) = self.address(buffer, index);
            return self.builder.ins().load(F32, flags, address, offset);
        }
        let halves = [0, 3].map(|shift| {
            let (address, offset) = self.address(buffer, &index.clone().plus_constant(shift));
            self.builder.ins().load(I8X16, flags, address, offset)
        });
        // Bytes 0–15 are the first load's, 16–31 the second's: its elements 1 and 3 are 4 and 6.
        let mask: Vec<u8> =
            [0u8, 2, 5, 7].iter().flat_map(|&element| (0..4).map(move |byte| element * 4 + byte)).collect();
        let mask = self.builder.func.dfg.immediates.push(ConstantData::from(mask));
        let bytes = self.builder.ins().shuffle(halves[0], halves[1], mask);
        self.builder.ins().bitcast(self.vector, MemFlagsData::new().with_endianness(Endianness::Little), bytes)
    }

    /// A 4×4 transpose ([`Stmt::Transpose`]): four row loads, two rounds of interleaves (32-bit
    /// lanes, then 64-bit halves; x86-64 lowers each to one `punpck*`), four row stores. The rows
    /// are moved as bytes (`i8x16`), which is what `shuffle` takes; nothing is computed on them.
    fn transpose(&mut self, (from, from_index, from_stride): (BufferId, &Index, i64), to: (BufferId, &Index, i64)) {
        let rows: Vec<Value> = (0..i64::from(TRANSPOSE))
            .map(|row| {
                let (address, offset) = self.address(from, &from_index.clone().plus_constant(row * from_stride));
                let flags = self.flags(from, I8X16);
                self.builder.ins().load(I8X16, flags, address, offset)
            })
            .collect();
        // Byte masks for `shuffle(a, b)`: bytes 0–15 are a's, 16–31 b's.
        let interleave = |builder: &mut FunctionBuilder, a: Value, b: Value, element: u8, high: bool| -> Value {
            let half = if high { 8 } else { 0 };
            let mask: Vec<u8> = (0..16u8)
                .map(|byte| {
                    let (pair, within) = (byte / element, byte % element);
                    let source = if pair % 2 == 0 { 0 } else { 16 };
                    source + half + (pair / 2) * element + within
                })
                .collect();
            let mask = builder.func.dfg.immediates.push(ConstantData::from(mask));
            builder.ins().shuffle(a, b, mask)
        };
        // [r0.0 r1.0 r0.1 r1.1], [r0.2 r1.2 r0.3 r1.3], likewise for rows 2 and 3.
        let low01 = interleave(&mut self.builder, rows[0], rows[1], 4, false);
        let high01 = interleave(&mut self.builder, rows[0], rows[1], 4, true);
        let low23 = interleave(&mut self.builder, rows[2], rows[3], 4, false);
        let high23 = interleave(&mut self.builder, rows[2], rows[3], 4, true);
        let columns = [
            interleave(&mut self.builder, low01, low23, 8, false),
            interleave(&mut self.builder, low01, low23, 8, true),
            interleave(&mut self.builder, high01, high23, 8, false),
            interleave(&mut self.builder, high01, high23, 8, true),
        ];
        let (to, to_index, to_stride) = to;
        for (column, value) in columns.into_iter().enumerate() {
            let (address, offset) = self.address(to, &to_index.clone().plus_constant(column as i64 * to_stride));
            let flags = self.flags(to, I8X16);
            self.builder.ins().store(flags, value, address, offset);
        }
    }

    /// `for var in 0..count { body }`: a header block with the variable as parameter, the test at
    /// the bottom (`count ≥ 1`), exit on the taken branch.
    fn emit_loop(&mut self, var: usize, count: u64, body: &[Stmt]) {
        self.depth += 1;
        self.addresses.push(HashMap::new());
        match count {
            0 => {}
            1 => {
                let zero = self.builder.ins().iconst(I64, 0);
                self.vars[var] = Some((zero, self.depth));
                self.block(body);
            }
            _ => {
                let header: Block = self.builder.create_block();
                let exit = self.builder.create_block();
                let counter = self.builder.append_block_param(header, I64);
                let zero = self.builder.ins().iconst(I64, 0);
                self.builder.ins().jump(header, &[BlockArg::Value(zero)]);
                self.builder.switch_to_block(header);
                self.vars[var] = Some((counter, self.depth));
                self.block(body);
                let next = self.builder.ins().iadd_imm_s(counter, 1);
                // `count` ≤ i64::MAX (checked).
                let done = self.builder.ins().icmp_imm_s(IntCC::Equal, next, count as i64);
                self.builder.ins().brif(done, exit, &[], header, &[BlockArg::Value(next)]);
                self.builder.seal_block(header);
                self.builder.switch_to_block(exit);
                self.builder.seal_block(exit);
            }
        }
        self.vars[var] = None;
        self.addresses.pop();
        self.depth -= 1;
    }

    fn value(&mut self, value: &ir::Value) -> Value {
        match value {
            ir::Value::Acc(acc) => self.builder.use_var(self.accumulators[acc.0 as usize]),
            ir::Value::Load { buffer, index } => {
                let (address, offset) = self.address(*buffer, index);
                let flags = self.flags(*buffer, self.vector);
                self.builder.ins().load(self.vector, flags, address, offset)
            }
            ir::Value::LoadEven { buffer, index } => self.load_even(*buffer, index),
            ir::Value::Splat { buffer, index } => {
                let (address, offset) = self.address(*buffer, index);
                let flags = self.flags(*buffer, F32);
                let element = self.builder.ins().load(F32, flags, address, offset);
                if self.vector == F32 { element } else { self.builder.ins().splat(self.vector, element) }
            }
            ir::Value::Zero => self.constant(self.vector, 0.0),
            ir::Value::Add(a, b) => {
                let (a, b) = (self.value(a), self.value(b));
                self.builder.ins().fadd(a, b)
            }
            ir::Value::Sub(a, b) => {
                let (a, b) = (self.value(a), self.value(b));
                self.builder.ins().fsub(a, b)
            }
            ir::Value::Activate(act, inner) => {
                let x = self.value(inner);
                self.activate(*act, x)
            }
        }
    }

    /// Memory flags of an access of type `ty` to `buffer`.
    fn flags(&self, buffer: BufferId, ty: Type) -> MemFlagsData {
        // In bounds (checked), so it cannot trap.
        let mut flags = MemFlagsData::new().with_notrap();
        if ty == F32 {
            flags = flags.with_aligned();
        }
        if !self.analysis.stored[buffer.0 as usize] {
            // Nothing writes the buffer while the function runs (arguments never alias a written
            // buffer), and every access is in bounds wherever it is moved to.
            flags = flags.with_readonly().with_can_move();
        }
        flags
    }

    /// The address of `buffer[index]` as (pointer, byte offset): `base + Σ 4·coefficient·var`,
    /// outermost loop first, plus `4·offset` as the memory access's immediate where it fits.
    fn address(&mut self, buffer: BufferId, index: &Index) -> (Value, i32) {
        let key = (buffer.0, index.terms.clone());
        let known = self.addresses.iter().rev().find_map(|level| level.get(&key).copied());
        let address = match known {
            Some(address) => address,
            None => {
                let address = self.variable_address(buffer, index);
                self.addresses.last_mut().expect("the function level is never popped").insert(key, address);
                address
            }
        };
        let bytes = index.offset.wrapping_mul(4);
        match i32::try_from(bytes) {
            Ok(offset) => (address, offset),
            Err(_) => (self.builder.ins().iadd_imm_s(address, bytes), 0),
        }
    }

    /// `base + Σ 4·coefficient·var`, outermost loop first.
    fn variable_address(&mut self, buffer: BufferId, index: &Index) -> Value {
        let mut terms: Vec<(usize, Value, i64)> = index
            .terms
            .iter()
            .map(|&(var, coefficient)| {
                let (value, depth) =
                    self.vars[var.0 as usize].expect("check() proved every index variable is in scope");
                (depth, value, coefficient)
            })
            .collect();
        terms.sort_by_key(|&(depth, ..)| depth);
        let mut address = self.bases[buffer.0 as usize];
        for (_, value, coefficient) in terms {
            // Wrapping: the final address is in bounds (checked), partial sums may wrap.
            let scaled = self.builder.ins().imul_imm_s(value, coefficient.wrapping_mul(4));
            address = self.builder.ins().iadd(address, scaled);
        }
        address
    }

    /// `value` in every lane of `ty` (f32, f32x4 or f64).
    fn constant(&mut self, ty: Type, value: f64) -> Value {
        match ty {
            F64 => self.builder.ins().f64const(value),
            F32 => self.builder.ins().f32const(value as f32),
            _ => {
                let lane = self.builder.ins().f32const(value as f32);
                self.builder.ins().splat(ty, lane)
            }
        }
    }

    /// Lane-wise `if x <cc> y { if_true } else { if_false }`.
    fn select_where(&mut self, cc: FloatCC, x: Value, y: Value, if_true: Value, if_false: Value) -> Value {
        let condition = self.builder.ins().fcmp(cc, x, y);
        let ty = self.builder.func.dfg.value_type(x);
        if ty.is_vector() {
            let mask =
                self.builder.ins().bitcast(ty, MemFlagsData::new().with_endianness(Endianness::Little), condition);
            self.builder.ins().bitselect(mask, if_true, if_false)
        } else {
            self.builder.ins().select(condition, if_true, if_false)
        }
    }

    /// `f64::clamp(x, 0, 6)` (of f32 or f64 lanes): `if x < 0 { 0 }`, then `if x > 6 { 6 }`; NaN
    /// stays NaN.
    fn clamp_0_6(&mut self, x: Value) -> Value {
        let ty = self.builder.func.dfg.value_type(x);
        let zero = self.constant(ty, 0.0);
        let six = self.constant(ty, 6.0);
        let low = self.select_where(FloatCC::LessThan, x, zero, zero, x);
        self.select_where(FloatCC::GreaterThan, low, six, six, low)
    }

    /// [`Activation::apply`] lane-wise, with the interpreter's rounding.
    fn activate(&mut self, act: Activation, x: Value) -> Value {
        let ty = self.vector;
        match act {
            Activation::None => x,
            // `f64::max(x, 0)`: NaN gives 0.
            Activation::Relu => {
                let zero = self.constant(ty, 0.0);
                self.select_where(FloatCC::GreaterThan, x, zero, x, zero)
            }
            // Exact in f32: 0 and 6 are f32 values.
            Activation::Relu6 => self.clamp_0_6(x),
            // α·x of two f32 values is exact in f64, so rounding it once to f32 is the f32 product.
            Activation::LeakyRelu(alpha) => {
                let zero = self.constant(ty, 0.0);
                let alpha = self.constant(ty, f64::from(alpha));
                let scaled = self.builder.ins().fmul(alpha, x);
                self.select_where(FloatCC::GreaterThanOrEqual, x, zero, x, scaled)
            }
            Activation::Hardswish => self.per_lane_f64(x, |emitter, x| {
                // x · clamp(x + 3, 0, 6) / 6
                let three = emitter.constant(F64, 3.0);
                let shifted = emitter.builder.ins().fadd(x, three);
                let clamped = emitter.clamp_0_6(shifted);
                let product = emitter.builder.ins().fmul(x, clamped);
                let six = emitter.constant(F64, 6.0);
                emitter.builder.ins().fdiv(product, six)
            }),
            Activation::Sigmoid => self.per_lane_f64(x, |emitter, x| {
                // 1 / (1 + e^−x)
                let one = emitter.constant(F64, 1.0);
                let denominator = emitter.one_plus_exp_minus(x);
                emitter.builder.ins().fdiv(one, denominator)
            }),
            Activation::Silu => self.per_lane_f64(x, |emitter, x| {
                // x / (1 + e^−x)
                let denominator = emitter.one_plus_exp_minus(x);
                emitter.builder.ins().fdiv(x, denominator)
            }),
        }
    }

    /// `1 + e^−x` for an f64 `x`.
    fn one_plus_exp_minus(&mut self, x: Value) -> Value {
        let exp = self.exp.expect("check() records every function that activates with sigmoid or silu");
        let minus = self.builder.ins().fneg(x);
        let call = self.builder.ins().call(exp, &[minus]);
        let power = self.builder.inst_results(call)[0];
        let one = self.constant(F64, 1.0);
        self.builder.ins().fadd(one, power)
    }

    /// Applies `f` to each f32 lane of `x` promoted to f64, and rounds the results back to f32.
    fn per_lane_f64(&mut self, x: Value, mut f: impl FnMut(&mut Self, Value) -> Value) -> Value {
        let mut lane = |emitter: &mut Self, element: Value| {
            let wide = emitter.builder.ins().fpromote(F64, element);
            let result = f(emitter, wide);
            emitter.builder.ins().fdemote(F32, result)
        };
        if self.vector == F32 {
            return lane(self, x);
        }
        let mut result = x;
        for position in 0..self.vector.lane_count() as u8 {
            let element = self.builder.ins().extractlane(x, position);
            let value = lane(self, element);
            result = self.builder.ins().insertlane(result, value, position);
        }
        result
    }
}
