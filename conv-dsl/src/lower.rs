//! spec + binding + schedules → a [`Plan`]: the loop-IR functions of a whole network, the buffers
//! they run on, and how parameters are packed for them. One lowering, shared by every code generator.
//!
//! Internal values use one layout: channels last, channels padded with zeros to a multiple of the
//! target's lanes (`NHWC4` on Cranelift; `NWC`/`NDHWC` likewise for 1D/3D). Conversions from and to
//! the user's layout are the plan's first and last steps — none for a channels-last input or output
//! whose channels fill whole vectors, which the steps use in place. Padded channels hold finite
//! values that no real channel ever reads.
//!
//! A convolution stage is lowered as:
//!
//! ```text
//! for n:                                    (batch)
//!   for each region of the output (interior / border, per spatial axis):
//!     for od, oh:                           (loops in the interior, constants on a border)
//!       for each register tile of pixels along w:
//!         for each group g, block of output-channel vectors:
//!           acc[pixel][vector] = bias
//!           for input channel icg of the group:
//!             for every kernel tap that is inside the input (unrolled; pruned on borders):
//!               acc[pixel][vector] += input · packed weight
//!           store activation(acc)
//! ```
//!
//! The interior has no bounds checks: a border position's out-of-range taps are dropped when the
//! function is built.
//!
//! With a [`Kernel::Tile`] schedule the accumulation of a block is one [`Stmt::Tile`] instead —
//! for a dense layer one call per strip of a row's full tiles and one per border or tail tile and
//! all its channel blocks, for a depthwise one per tile and all its channel blocks — whose sums
//! the IR then stores with the same fused epilogue (from a scratch buffer, `sums`). Its weights are packed as one contiguous panel per block of output
//! channels ([`Packing::Panels`]). [`Order::Channels`] puts the loops over channel blocks outside
//! the pixel loops.
//!
//! One layer may skip the internal layout: a depthwise output layer that reads a channels-first
//! model input and nothing else reads is computed in the user's layout by `planar`
//! ([`Kernel::Planar`]), with no conversion step at either end.

use std::ops::Range;

use crate::bind::{Binding, BoundConv};
use crate::error::Error;
use crate::ir::{Acc, Buffer, BufferId, Function, Index, LoopVar, Stmt, TILE_LANES, TRANSPOSE, Tile, Value};
use crate::schedule::{Kernel, Order, Schedule, Target, channel_vectors};
use crate::spec::{Activation, Conv, Layout, Network, Op, Source};

mod planar;

/// A whole network, lowered for one concrete input shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// Channel padding of internal values (the target's lanes).
    pub lanes: u32,
    /// Elements of the user's input tensor.
    pub input_len: u64,
    /// Elements of the user's output tensor.
    pub output_len: u64,
    /// Logical output shape.
    pub output_shape: Vec<u64>,
    /// Internal value buffers (zero-initialised), by length.
    pub values: Vec<u64>,
    /// Packed parameter buffers.
    pub params: Vec<PackedParam>,
    /// The functions to call, in order.
    pub steps: Vec<Step>,
}

/// A parameter tensor re-laid out for the kernels.
#[derive(Clone, Debug, PartialEq)]
pub struct PackedParam {
    /// The PyTorch-style tensor it is packed from.
    pub source: String,
    /// Packed length in elements.
    pub len: u64,
    /// How.
    pub packing: Packing,
}

/// How a parameter tensor is packed.
#[derive(Clone, Debug, PartialEq)]
pub enum Packing {
    /// `[out]` → `[out padded to lanes]`.
    Bias {
        /// Real channels.
        channels: u64,
    },
    /// Depthwise `[c, 1, *k]` → `[taps][c padded]`.
    Depthwise {
        /// Channels.
        channels: u64,
        /// Padded channels.
        padded: u64,
        /// Kernel taps (prod of kernel).
        taps: u64,
    },
    /// `[out, in/groups, *k]` → `[group][panel][icg][tap][ocg within the panel]`: the tile
    /// kernel's layout, each block of output channels a contiguous panel of
    /// `in_per_group · taps · width` elements (`width` = `panel`, or what is left for the last
    /// panel of a group), so that a block's weights stream through the cache without conflicts.
    Panels {
        /// Groups.
        groups: u64,
        /// Input channels per group.
        in_per_group: u64,
        /// Output channels per group.
        out_per_group: u64,
        /// Output channels per panel.
        panel: u64,
        /// Kernel taps.
        taps: u64,
    },
    /// `[out, in/groups, *k]` → `[group][icg][tap][ocg padded]`.
    Dense {
        /// Groups.
        groups: u64,
        /// Input channels per group.
        in_per_group: u64,
        /// Output channels per group.
        out_per_group: u64,
        /// Output channels per group, padded to the vector width.
        out_per_group_padded: u64,
        /// Kernel taps.
        taps: u64,
    },
}

/// One function call of a plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The layer (or stage, or conversion) it computes.
    pub layer: String,
    /// The schedule it was lowered with (none for conversions and adds).
    pub schedule: Option<Schedule>,
    /// The function.
    pub function: Function,
    /// What to pass for each of the function's buffers.
    pub args: Vec<Arg>,
    /// Set when the step is one of the parts a stage is split into for [`Target::threads`].
    pub part: Option<Part>,
}

/// One of the consecutive steps a convolution stage is split into, which may run at the same
/// time: each computes a window of the stage's output (a range of images, or of positions along
/// the outermost spatial axis with more than one) and has its own scratch buffer; the other
/// buffers they share are only read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Part {
    /// Which part (`0..count`); the parts of a stage are consecutive steps, in order.
    pub index: u32,
    /// How many parts the stage has.
    pub count: u32,
    /// The argument passed as a window of its buffer (the output): the function's buffer there is
    /// elements `start..start + len` of it, `len` the function's declared length.
    pub window: usize,
    /// Where the window starts.
    pub start: u64,
}

/// A buffer passed to a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg {
    /// The user's input tensor.
    Input,
    /// The user's output tensor.
    Output,
    /// An internal value.
    Value(usize),
    /// A packed parameter.
    Param(usize),
}

impl Packing {
    /// Packs `data` (the PyTorch tensor) into a buffer of `len` elements.
    pub fn pack(&self, data: &[f32], len: u64) -> Vec<f32> {
        let mut packed = vec![0.0f32; len as usize];
        match *self {
            Packing::Bias { channels } => packed[..channels as usize].copy_from_slice(&data[..channels as usize]),
            Packing::Depthwise { channels, padded, taps } => {
                for c in 0..channels {
                    for tap in 0..taps {
                        // weight [c, 1, tap] → packed [tap, c]
                        packed[(tap * padded + c) as usize] = data[(c * taps + tap) as usize];
                    }
                }
            }
            Packing::Panels { groups, in_per_group, out_per_group, panel, taps } => {
                for g in 0..groups {
                    for ocg in 0..out_per_group {
                        let (first, within) = (ocg / panel * panel, ocg % panel);
                        let width = panel.min(out_per_group - first);
                        for icg in 0..in_per_group {
                            for tap in 0..taps {
                                // weight [g·opg + ocg, icg, tap] → packed [g, panel, icg, tap, within]
                                let from = (((g * out_per_group + ocg) * in_per_group + icg) * taps + tap) as usize;
                                let panel_start = (g * out_per_group + first) * in_per_group * taps;
                                let to = (panel_start + (icg * taps + tap) * width + within) as usize;
                                packed[to] = data[from];
                            }
                        }
                    }
                }
            }
            Packing::Dense { groups, in_per_group, out_per_group, out_per_group_padded, taps } => {
                for g in 0..groups {
                    for ocg in 0..out_per_group {
                        for icg in 0..in_per_group {
                            for tap in 0..taps {
                                // weight [g·opg + ocg, icg, tap] → packed [g, icg, tap, ocg]
                                let from = (((g * out_per_group + ocg) * in_per_group + icg) * taps + tap) as usize;
                                let to =
                                    (((g * in_per_group + icg) * taps + tap) * out_per_group_padded + ocg) as usize;
                                packed[to] = data[from];
                            }
                        }
                    }
                }
            }
        }
        packed
    }
}

/// Lowers `network` bound to `binding` for `target`, with each stage's schedule from `schedule_for`
/// (given the stage name, e.g. `dw1` or `s.pw`) or [`Schedule::auto`].
pub fn lower(
    network: &Network,
    binding: &Binding,
    target: Target,
    schedule_for: &dyn Fn(&str) -> Option<Schedule>,
) -> Result<Plan, Error> {
    let lanes = target.lanes;
    let mut plan = Plan {
        lanes,
        input_len: binding.input.iter().product(),
        output_len: binding.layers[network.output].shape.iter().product(),
        output_shape: binding.layers[network.output].shape.clone(),
        values: Vec::new(),
        params: Vec::new(),
        steps: Vec::new(),
    };
    let internal_len = |shape: &[u64]| -> u64 {
        let channels = padded(shape[1], lanes);
        shape[0] * channels * shape[2..].iter().product::<u64>()
    };

    // The input, converted to the internal layout (its steps are inserted first at the end).
    plan.values.push(internal_len(&binding.input));
    // Per layer, the value holding it; none for the one layer written straight to the user's output.
    let mut layer_values: Vec<Option<usize>> = Vec::new();
    let value_of = |source: Source, layer_values: &[Option<usize>]| match source {
        Source::Input => 0,
        // A layer in the user's layout has no reader (`user_layout_layer`).
        Source::Layer(index) => layer_values[index].expect("a layer read by another has a value"),
    };

    let fusions = residual_fusions(network);
    let user_layout = user_layout_layer(network, &fusions);
    for (index, layer) in network.layers.iter().enumerate() {
        let bound_layer = &binding.layers[index];
        match &layer.op {
            Op::Add { .. } if fusions.iter().any(|fusion| fusion.add == index) => {
                // Computed by the convolution it was fused into, whose value this is.
                let fusion = fusions.iter().find(|fusion| fusion.add == index).expect("just found");
                layer_values.push(layer_values[fusion.conv]);
            }
            Op::Add { left, right, act } => {
                let len = internal_len(&bound_layer.shape);
                plan.values.push(len);
                let output = plan.values.len() - 1;
                plan.steps.push(Step {
                    layer: layer.name.clone(),
                    schedule: None,
                    function: add(&layer.name, len, lanes, *act),
                    args: vec![
                        Arg::Value(value_of(*left, &layer_values)),
                        Arg::Value(value_of(*right, &layer_values)),
                        Arg::Value(output),
                    ],
                    part: None,
                });
                layer_values.push(Some(output));
            }
            Op::Conv { source, .. } | Op::Separable { source, .. } => {
                let mut current = value_of(*source, &layer_values);
                let fusion = fusions.iter().find(|fusion| fusion.conv == index);
                let stages = layer.op.stages().len();
                let mut in_user_layout = false;
                for (stage, ((suffix, conv), bound)) in
                    layer.op.stages().into_iter().zip(&bound_layer.stages).enumerate()
                {
                    // Only the last stage's store carries the fused `add`.
                    let residual = fusion.filter(|_| stage + 1 == stages);
                    let name = format!("{}{suffix}", layer.name);
                    let schedule_error = |reason: String| Error::Schedule { layer: name.clone(), reason };
                    let planar = user_layout == Some(index);
                    let (rows, vectors) = planar::default_tile(conv);
                    let default_planar = Schedule::planar(lanes, rows, vectors);
                    let schedule = match schedule_for(&name) {
                        Some(schedule) => schedule,
                        None if planar && planar::worth(conv, bound, default_planar) => default_planar,
                        None => Schedule::auto(conv, bound, target),
                    };
                    schedule
                        .validate(conv)
                        .and_then(|()| {
                            if schedule.kernel == Kernel::Tile || lanes.is_multiple_of(schedule.lanes) {
                                Ok(())
                            } else {
                                Err(format!("lanes must divide the target's {lanes}"))
                            }
                        })
                        .map_err(schedule_error)?;
                    if schedule.kernel == Kernel::Planar {
                        if !planar {
                            return Err(schedule_error(PLANAR_ONLY.into()));
                        }
                        let (parts, packings) =
                            planar::planar(&name, conv, bound, schedule, target).map_err(schedule_error)?;
                        let mut args = vec![Arg::Input, Arg::Output];
                        for (kind, packing, len) in packings {
                            plan.params.push(PackedParam { source: format!("{name}.{kind}"), len, packing });
                            args.push(Arg::Param(plan.params.len() - 1));
                        }
                        push_parts(&mut plan.steps, &name, Some(schedule), parts, &args, || None);
                        in_user_layout = true;
                        continue;
                    }
                    plan.values.push(internal_len(&bound.output));
                    let output = plan.values.len() - 1;
                    // A dense tile-kernel stage reads a channels-first model input as it is: its
                    // kernel broadcasts one input element at a time, wherever the channels are.
                    let input_in_place = current == 0
                        && network.input.layout == Layout::ChannelsFirst
                        && schedule.kernel == Kernel::Tile
                        && !(conv.in_channels == conv.groups && conv.out_channels == conv.groups);
                    let act = residual.map(|fusion| fusion.act);
                    let (parts, packings, scratch) =
                        convolution(&name, conv, bound, schedule, target, act, input_in_place);
                    let source = if input_in_place { Arg::Input } else { Arg::Value(current) };
                    let mut args = vec![source, Arg::Value(output)];
                    for (kind, packing, len) in packings {
                        plan.params.push(PackedParam { source: format!("{name}.{kind}"), len, packing });
                        args.push(Arg::Param(plan.params.len() - 1));
                    }
                    if let Some(fusion) = residual {
                        args.push(Arg::Value(value_of(fusion.other, &layer_values)));
                    }
                    // Each part its own scratch buffer.
                    let values = &mut plan.values;
                    let scratch = || {
                        scratch.map(|len| {
                            values.push(len);
                            Arg::Value(values.len() - 1)
                        })
                    };
                    push_parts(&mut plan.steps, &name, Some(schedule), parts, &args, scratch);
                    current = output;
                }
                layer_values.push((!in_user_layout).then_some(current));
            }
        }
    }

    let output_shape = &binding.layers[network.output].shape;
    // A channels-last tensor whose channels fill whole vectors is already in the internal layout:
    // the steps use the user's buffer in place of the value (left empty), with no conversion —
    // the output only if no step reads it.
    let fits =
        |channels: u64| network.input.layout == Layout::ChannelsLast && channels.is_multiple_of(u64::from(lanes));
    if fits(binding.input[1]) {
        substitute(&mut plan.steps, Arg::Value(0), Arg::Input);
    }
    let mut output_value = layer_values[network.output];
    if let Some(value) = output_value.filter(|&value| fits(output_shape[1]) && only_written(&plan.steps, value)) {
        substitute(&mut plan.steps, Arg::Value(value), Arg::Output);
        plan.values[value] = 0;
        output_value = None;
    }
    // A conversion is split only next to a split stage: each part's elements then stay in the
    // cache of the core that computes (or computed) them — measured, a split conversion next to a
    // whole stage made dw3_d2_c64_56 2.3x slower on 2 threads, each core reading what the other wrote.
    let split_beside = |value: usize, position: usize| {
        let step = plan.steps.iter().find(|step| step.args.get(position) == Some(&Arg::Value(value)));
        if step.is_some_and(|step| step.part.is_some()) { target } else { Target { threads: 1, ..target } }
    };
    // The output is converted unless it was written in the user's layout; the input unless no
    // step reads its converted value (whose buffer is then empty).
    let to_internal = split_beside(0, 0);
    let to_user = output_value.map(|value| (value, split_beside(value, 1)));
    if let Some((output_value, to_user)) = to_user {
        push_parts(
            &mut plan.steps,
            &format!("{}.to_user", network.layers[network.output].name),
            None,
            convert(output_shape, network.input.layout, to_user, false),
            &[Arg::Value(output_value), Arg::Output],
            || None,
        );
    }
    if plan.steps.iter().any(|step| step.args.contains(&Arg::Value(0))) {
        let mut steps = Vec::new();
        push_parts(
            &mut steps,
            &format!("{}.to_internal", network.input.name),
            None,
            convert(&binding.input, network.input.layout, to_internal, true),
            &[Arg::Input, Arg::Value(0)],
            || None,
        );
        plan.steps.splice(0..0, steps);
    } else {
        plan.values[0] = 0;
    }
    Ok(plan)
}

/// Passes `to` wherever the steps pass `from`.
fn substitute(steps: &mut [Step], from: Arg, to: Arg) {
    for arg in steps.iter_mut().flat_map(|step| step.args.iter_mut()) {
        if *arg == from {
            *arg = to;
        }
    }
}

/// Whether every step that takes value `value` writes it (none reads it).
fn only_written(steps: &[Step], value: usize) -> bool {
    steps.iter().all(|step| {
        step.args.iter().zip(&step.function.buffers).all(|(arg, buffer)| *arg != Arg::Value(value) || buffer.writes)
    })
}

/// Why a [`Kernel::Planar`] schedule was refused for a stage that is not where it can run.
const PLANAR_ONLY: &str = "kernel=planar computes in the user's channels-first layout: only a one-stage \
    depthwise layer that reads the model's input and is its output, used by no other layer, can";

/// The layer that may be computed in the user's layout ([`Kernel::Planar`]), reading the user's
/// input and writing the user's output with no conversion: the output layer, when it is a
/// one-stage convolution of a channels-first model input, read by no other layer and with no `add`
/// fused into it.
fn user_layout_layer(network: &Network, fusions: &[ResidualFusion]) -> Option<usize> {
    let output = network.output;
    let reads_input = matches!(network.layers[output].op, Op::Conv { source: Source::Input, .. });
    let read_by_others = network.layers.iter().any(|layer| layer.op.sources().contains(&Source::Layer(output)));
    let fused = fusions.iter().any(|fusion| fusion.conv == output);
    (network.input.layout == Layout::ChannelsFirst && reads_input && !read_by_others && !fused).then_some(output)
}

/// Pushes the steps of a stage or conversion: one function, or its parts (each writing a window of
/// argument 1), each passed `args` and then the argument `own` gives it, if any.
fn push_parts(
    steps: &mut Vec<Step>,
    layer: &str,
    schedule: Option<Schedule>,
    parts: Vec<Split>,
    args: &[Arg],
    mut own: impl FnMut() -> Option<Arg>,
) {
    let count = parts.len() as u32;
    for (index, (function, window)) in (0..count).zip(parts) {
        let part = window.map(|start| Part { index, count, window: 1, start });
        let args = args.iter().copied().chain(own()).collect();
        steps.push(Step { layer: layer.to_string(), schedule, function, args, part });
    }
}

/// An `add` computed in the store of the convolution that produces one of its operands.
#[derive(Clone, Copy, Debug)]
struct ResidualFusion {
    /// The convolution layer (its last stage stores `act(conv + other)`).
    conv: usize,
    /// The `add` layer, which then needs no step of its own.
    add: usize,
    /// The add's other operand.
    other: Source,
    /// The add's activation.
    act: Activation,
}

/// The `add` layers that can be fused into a convolution's store: one operand is a convolution
/// (or separable) layer used by nothing else — not another layer, not the output — and the other
/// operand is already computed when that convolution runs (the input or an earlier layer).
fn residual_fusions(network: &Network) -> Vec<ResidualFusion> {
    let mut uses = vec![0usize; network.layers.len()];
    for layer in &network.layers {
        for source in layer.op.sources() {
            if let Source::Layer(index) = source {
                uses[index] += 1;
            }
        }
    }
    uses[network.output] += 1;
    let mut fusions: Vec<ResidualFusion> = Vec::new();
    for (add, layer) in network.layers.iter().enumerate() {
        let Op::Add { left, right, act } = &layer.op else { continue };
        for (conv_source, other) in [(*left, *right), (*right, *left)] {
            let Source::Layer(conv) = conv_source else { continue };
            let is_conv = !network.layers[conv].op.stages().is_empty();
            let ready = match other {
                Source::Input => true,
                Source::Layer(earlier) => earlier < conv,
            };
            if is_conv && uses[conv] == 1 && ready && !fusions.iter().any(|fusion| fusion.conv == conv) {
                fusions.push(ResidualFusion { conv, add, other, act: *act });
                break;
            }
        }
    }
    fusions
}

/// `value` rounded up to a multiple of `lanes`.
pub fn padded(value: u64, lanes: u32) -> u64 {
    value.div_ceil(u64::from(lanes)) * u64::from(lanes)
}

/// Names `function` (lanes, buffers and body built) for part `part.0` of `part.1` of stage
/// `name` and, when there are several, rebases its output (buffer 1) to `window`.
fn as_part(name: &str, mut function: Function, (part, count): (u64, u64), window: &Range<u64>) -> Split {
    if count == 1 {
        function.name = name.to_string();
        return (function, None);
    }
    function.name = format!("{name}.part{part}");
    function.rebase(BufferId(1), window.start, window.end - window.start);
    (function, Some(window.start))
}

/// Allocates loop variables and accumulators while a function is built.
#[derive(Default)]
struct Builder {
    loop_vars: u32,
    accumulators: u32,
}

impl Builder {
    /// The function of `body`, with the loop variables and accumulators it used (unnamed).
    fn function(&self, lanes: u32, buffers: Vec<Buffer>, body: Vec<Stmt>) -> Function {
        Function {
            name: String::new(),
            lanes,
            buffers,
            body,
            accumulators: self.accumulators,
            loop_vars: self.loop_vars,
        }
    }

    fn var(&mut self) -> LoopVar {
        self.loop_vars += 1;
        LoopVar(self.loop_vars - 1)
    }

    /// `for var in 0..count { body(var) }`, or `body(0)` inline when `count` is 1.
    fn repeat(&mut self, count: u64, body: impl FnOnce(&mut Self, Index) -> Vec<Stmt>) -> Vec<Stmt> {
        if count == 1 {
            return body(self, Index::constant(0));
        }
        let var = self.var();
        let inner = body(self, Index::var(var, 1));
        vec![Stmt::Loop { var, count, body: inner }]
    }
}

/// Positions per block of a channels-first conversion (a transpose): 64 positions × up to a few
/// hundred channels stay within L1/L2 on both sides.
const CONVERT_BLOCK: u64 = 64;

/// Layout conversion between the user's layout and the internal padded channels-last one.
/// `to_internal` reads the user's tensor; otherwise it writes it.
///
/// Channels-first (a transpose): blocks of [`CONVERT_BLOCK`] positions, each moved as
/// [`TRANSPOSE`]×[`TRANSPOSE`] blocks of channels × positions ([`Stmt::Transpose`]) and element by
/// element where channels or positions do not fill a block. Channels-last without channel padding:
/// one vector copy; with padding, element by element.
fn convert(logical: &[u64], layout: Layout, target: Target, to_internal: bool) -> Vec<Split> {
    let lanes = target.lanes;
    let (batch, channels) = (logical[0], logical[1]);
    let positions: u64 = logical[2..].iter().product();
    let padded_channels = padded(channels, lanes);
    let size = u64::from(TRANSPOSE);
    // Split into parts along images, else along what keeps the destination's windows contiguous:
    // positions (channels-last destination, in blocks of whole transposes) or channels (a
    // channels-first user tensor, in quads).
    let threads = u64::from(target.threads.max(1));
    let elements = batch * channels * positions;
    // The split axis: its extent, the unit its ranges are multiples of, and the destination's
    // elements per position along it (the windows are contiguous: it is the outermost axis split).
    let destination_image = if to_internal { padded_channels * positions } else { channels * positions };
    let (axis, extent, unit, stride) = if batch > 1 {
        (0, batch, 1, destination_image)
    } else if !to_internal && layout == Layout::ChannelsFirst {
        (1, channels, size, positions)
    } else {
        (2, positions, CONVERT_BLOCK, if to_internal { padded_channels } else { channels })
    };
    let worth = elements.saturating_mul(CONVERT_WORK) >= target.part_macs.saturating_mul(threads);
    let count = part_count(worth, threads, extent.div_ceil(unit));
    (0..count)
        .map(|part| {
            let range = part_range(extent, unit, count, part);
            let (start, end) = (range.start * stride, range.end * stride);
            let mut region = ConvertRegion { batch: 0..batch, channels: 0..channels, positions: 0..positions };
            match axis {
                0 => region.batch = range,
                1 => region.channels = range,
                _ => region.positions = range,
            }
            let mut function = convert_region(logical, layout, lanes, to_internal, &region);
            if count == 1 {
                return (function, None);
            }
            function.name = format!("{}.part{part}", function.name);
            function.rebase(BufferId(1), start, end - start);
            (function, Some(start))
        })
        .collect()
}

/// How many parts a split of `units` units makes: `threads` of them when the work is `worth` it,
/// no more than there are units, at least 1.
fn part_count(worth: bool, threads: u64, units: u64) -> u64 {
    if worth { threads.min(units).max(1) } else { 1 }
}

/// Part `part` of `count` near-equal ranges of `0..extent`, each starting at a multiple of `unit`.
fn part_range(extent: u64, unit: u64, count: u64, part: u64) -> Range<u64> {
    let units = extent.div_ceil(unit);
    (units * part / count * unit).min(extent)..(units * (part + 1) / count * unit).min(extent)
}

/// A layout conversion's work is memory traffic: an element moved counts as this many
/// multiply-adds against [`Target::part_macs`].
const CONVERT_WORK: u64 = 16;

/// The images, channels and positions one conversion function moves.
struct ConvertRegion {
    batch: Range<u64>,
    channels: Range<u64>,
    positions: Range<u64>,
}

/// The conversion of `region` (see [`convert`]); `channels.start` is a multiple of
/// [`TRANSPOSE`] and `positions.start` one of [`CONVERT_BLOCK`] (or the region is everything).
fn convert_region(logical: &[u64], layout: Layout, lanes: u32, to_internal: bool, region: &ConvertRegion) -> Function {
    let (batch, channels) = (logical[0], logical[1]);
    let positions: u64 = logical[2..].iter().product();
    let padded_channels = padded(channels, lanes);
    let user_len = batch * channels * positions;
    let internal_len = batch * padded_channels * positions;
    let mut builder = Builder::default();
    let (user, internal) = if to_internal { (BufferId(0), BufferId(1)) } else { (BufferId(1), BufferId(0)) };
    // user[n, c, p] (or [n, p, c]) and internal[n, p, c padded].
    let user_index = |n: &Index, c: &Index, p: &Index| -> Index {
        let n = n.clone().times((channels * positions) as i64);
        match layout {
            Layout::ChannelsFirst => n.plus(&c.clone().times(positions as i64)).plus(p),
            Layout::ChannelsLast => n.plus(&p.clone().times(channels as i64)).plus(c),
        }
    };
    let internal_index = |n: &Index, c: &Index, p: &Index| -> Index {
        n.clone().times((padded_channels * positions) as i64).plus(&p.clone().times(padded_channels as i64)).plus(c)
    };
    let (source, destination) = if to_internal { (user, internal) } else { (internal, user) };
    // One element (or, in a vector copy, one vector) from `source` to `destination`.
    let element = |n: &Index, c: &Index, p: &Index| -> Stmt {
        let (user_index, internal_index) = (user_index(n, c, p), internal_index(n, c, p));
        let (from, to) = if to_internal { (user_index, internal_index) } else { (internal_index, user_index) };
        Stmt::Store { buffer: destination, index: to, value: Value::Load { buffer: source, index: from } }
    };
    // The block of channels c..c+4 × positions p..p+4: rows are channels in the user's tensor
    // (stride `positions`) and positions in the internal one (stride `padded_channels`).
    let block = |n: &Index, c: &Index, p: &Index| -> Stmt {
        let (user_index, internal_index) = (user_index(n, c, p), internal_index(n, c, p));
        let (user_rows, internal_rows) = (positions as i64, padded_channels as i64);
        let ((from_index, from_stride), (to_index, to_stride)) = if to_internal {
            ((user_index, user_rows), (internal_index, internal_rows))
        } else {
            ((internal_index, internal_rows), (user_index, user_rows))
        };
        Stmt::Transpose { from: source, from_index, from_stride, to: destination, to_index, to_stride }
    };
    let size = u64::from(TRANSPOSE);
    let vector_copy = layout == Layout::ChannelsLast && padded_channels == channels;
    let (first_position, region_positions) = (region.positions.start, region.positions.end - region.positions.start);
    let (first_channel, region_channels) = (region.channels.start, region.channels.end - region.channels.start);
    let body = builder.repeat(region.batch.end - region.batch.start, |builder, n| {
        let n = n.plus_constant(region.batch.start as i64);
        match layout {
            // Both sides are channels-last and equal: a copy (a region is whole positions).
            Layout::ChannelsLast if vector_copy => {
                builder.repeat(region_positions * channels / u64::from(lanes), |_, v| {
                    let index = n
                        .clone()
                        .times((channels * positions) as i64)
                        .plus(&v.times(i64::from(lanes)))
                        .plus_constant((first_position * channels) as i64);
                    vec![Stmt::Store {
                        buffer: destination,
                        index: index.clone(),
                        value: Value::Load { buffer: source, index },
                    }]
                })
            }
            // The inner loop is contiguous on both sides.
            Layout::ChannelsLast => builder.repeat(region_positions, |builder, p| {
                let p = p.plus_constant(first_position as i64);
                builder.repeat(region_channels, |_, c| vec![element(&n, &c.plus_constant(first_channel as i64), &p)])
            }),
            // A transpose: blocks of CONVERT_BLOCK positions × the region's channels, so that both
            // the user's rows and the internal pixels a block touches stay in cache.
            Layout::ChannelsFirst => {
                let full_channels = region_channels / size * size;
                // Positions start..start+count (count ≤ CONVERT_BLOCK) of the region's channels.
                let span = |builder: &mut Builder, start: Index, count: u64| -> Vec<Stmt> {
                    let mut body = Vec::new();
                    let quads = count / size;
                    let channel = |c: Index| c.plus_constant(first_channel as i64);
                    if full_channels > 0 && quads > 0 {
                        body.extend(builder.repeat(full_channels / size, |builder, c| {
                            builder.repeat(quads, |_, q| {
                                let p = start.clone().plus(&q.times(size as i64));
                                vec![block(&n, &channel(c.clone().times(size as i64)), &p)]
                            })
                        }));
                    }
                    if full_channels > 0 && !count.is_multiple_of(size) {
                        body.extend(builder.repeat(full_channels, |builder, c| {
                            builder.repeat(count % size, |_, within| {
                                let p = start.clone().plus_constant((quads * size) as i64).plus(&within);
                                vec![element(&n, &channel(c.clone()), &p)]
                            })
                        }));
                    }
                    if region_channels > full_channels {
                        body.extend(builder.repeat(region_channels - full_channels, |builder, c| {
                            builder.repeat(count, |_, within| {
                                let c = channel(c.plus_constant(full_channels as i64));
                                vec![element(&n, &c, &start.clone().plus(&within))]
                            })
                        }));
                    }
                    body
                };
                let blocks = region_positions / CONVERT_BLOCK;
                let rest = region_positions % CONVERT_BLOCK;
                let mut body = Vec::new();
                if blocks > 0 {
                    body.extend(builder.repeat(blocks, |builder, block| {
                        span(
                            builder,
                            block.times(CONVERT_BLOCK as i64).plus_constant(first_position as i64),
                            CONVERT_BLOCK,
                        )
                    }));
                }
                if rest > 0 {
                    let start = Index::constant((first_position + blocks * CONVERT_BLOCK) as i64);
                    body.extend(span(builder, start, rest));
                }
                body
            }
        }
    });
    let user_buffer = Buffer { name: "user".into(), len: user_len, writes: !to_internal };
    let internal_buffer = Buffer { name: "internal".into(), len: internal_len, writes: to_internal };
    let buffers = if to_internal { vec![user_buffer, internal_buffer] } else { vec![internal_buffer, user_buffer] };
    Function {
        name: if to_internal { "to_internal".into() } else { "to_user".into() },
        lanes: if vector_copy { lanes } else { 1 },
        buffers,
        body,
        accumulators: 0,
        loop_vars: builder.loop_vars,
    }
}

/// `out = act(a + b)` over whole padded buffers.
fn add(name: &str, len: u64, lanes: u32, act: Activation) -> Function {
    let mut builder = Builder::default();
    let body = builder.repeat(len / u64::from(lanes), |_, i| {
        let index = i.times(i64::from(lanes));
        let sum = Value::Add(
            Box::new(Value::Load { buffer: BufferId(0), index: index.clone() }),
            Box::new(Value::Load { buffer: BufferId(1), index: index.clone() }),
        );
        vec![Stmt::Store { buffer: BufferId(2), index, value: activate(act, sum) }]
    });
    Function {
        name: name.to_string(),
        lanes,
        buffers: vec![
            Buffer { name: "a".into(), len, writes: false },
            Buffer { name: "b".into(), len, writes: false },
            Buffer { name: "out".into(), len, writes: true },
        ],
        body,
        accumulators: 0,
        loop_vars: builder.loop_vars,
    }
}

fn activate(act: Activation, value: Value) -> Value {
    match act {
        Activation::None => value,
        act => Value::Activate(act, Box::new(value)),
    }
}

/// One segment of an output axis: a run of interior positions (no tap out of range) or a single
/// border position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Segment {
    Interior { start: u64, count: u64 },
    Border(u64),
}

/// A position along an axis: a loop-dependent index and, on a border, its constant value.
#[derive(Clone)]
struct Position {
    index: Index,
    border: Option<u64>,
}

/// Geometry of one spatial axis of a convolution.
#[derive(Clone, Copy, Debug)]
struct Axis {
    input: u64,
    output: u64,
    kernel: u64,
    stride: u64,
    dilation: u64,
    pad_before: u64,
}

impl Axis {
    /// The input coordinate of output `position` at `tap`, if it is inside the input.
    fn source(&self, position: u64, tap: u64) -> Option<u64> {
        (position * self.stride + tap * self.dilation).checked_sub(self.pad_before).filter(|&index| index < self.input)
    }

    /// Whether `tap` is inside the input for every position of a segment: the border position
    /// `border`, or (none) the interior, where every tap is.
    fn takes(&self, border: Option<u64>, tap: u64) -> bool {
        border.is_none_or(|position| self.source(position, tap).is_some())
    }

    /// Border positions, then one interior run, then border positions.
    fn segments(&self) -> Vec<Segment> {
        let is_interior = |position: u64| (0..self.kernel).all(|tap| self.source(position, tap).is_some());
        let first = (0..self.output).find(|&position| is_interior(position));
        let Some(first) = first else {
            return (0..self.output).map(Segment::Border).collect();
        };
        // Interior positions form one run: the condition is monotone on both ends.
        let last = (first..self.output).take_while(|&position| is_interior(position)).last().unwrap_or(first);
        let mut segments: Vec<Segment> = (0..first).map(Segment::Border).collect();
        segments.push(Segment::Interior { start: first, count: last - first + 1 });
        segments.extend((last + 1..self.output).map(Segment::Border));
        segments
    }

    /// [`Axis::segments`] restricted to the positions in `range`.
    fn segments_within(&self, range: &Range<u64>) -> Vec<Segment> {
        self.segments()
            .into_iter()
            .filter_map(|segment| match segment {
                Segment::Border(position) => range.contains(&position).then_some(segment),
                Segment::Interior { start, count } => {
                    let (first, end) = (start.max(range.start), (start + count).min(range.end));
                    (first < end).then(|| Segment::Interior { start: first, count: end - first })
                }
            })
            .collect()
    }
}

/// The part of a convolution's output one function computes: ranges of batch images and of
/// output positions along d, h and w (as the lowering sees them: a flattened 1×1 convolution has
/// its positions along w). [`Region::whole`] unless the stage is split into [`Part`]s.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Region {
    batch: Range<u64>,
    positions: [Range<u64>; 3],
}

/// A function and, for a [`Part`], where its window of the output starts.
type Split = (Function, Option<u64>);

/// A packed parameter of a convolution stage: `(kind, packing, len)` with kind `weight` or `bias`.
type StageParam = (&'static str, Packing, u64);

/// The functions of one convolution stage — one, or one per [`Part`] with the start of the part's
/// window of the output — the packed parameters they take after their input and output values,
/// and the length of the tile kernel's scratch buffer (their last argument) if they have one.
fn convolution(
    name: &str,
    conv: &Conv,
    bound: &BoundConv,
    schedule: Schedule,
    target: Target,
    residual: Option<Activation>,
    input_in_place: bool,
) -> (Vec<Split>, Vec<StageParam>, Option<u64>) {
    let (plan_lanes, threads) = (target.lanes, target.threads.max(1));
    let lanes = schedule.lanes;
    let rank = conv.kernel.len();
    let as_3d = |values: &[u64], fill: u64| -> [u64; 3] {
        let mut out = [fill; 3];
        out[3 - values.len()..].copy_from_slice(values);
        out
    };
    // A 1×1 convolution with stride 1 and no padding maps each pixel to the pixel at the same
    // place: its positions are one run (channels-last, they are consecutive), tiled as one long
    // row, so that a row's tail tile is paid once per image, not once per row (7×7 rows of 6-pixel
    // tiles would spend a seventh of their pixels in 1-pixel tiles). Each output still sums the
    // same terms in the same order.
    let flat = conv.kernel.iter().all(|&k| k == 1)
        && conv.stride.iter().all(|&s| s == 1)
        && bound.padding.iter().all(|&[before, after]| before == 0 && after == 0);
    let positions = |dims: &[u64]| [1, 1, dims.iter().product()];
    let (input3, output3) = if flat {
        (positions(&bound.input[2..]), positions(&bound.output[2..]))
    } else {
        (as_3d(&bound.input[2..], 1), as_3d(&bound.output[2..], 1))
    };
    let kernel3 = as_3d(&conv.kernel, 1);
    let stride3 = as_3d(&conv.stride, 1);
    let dilation3 = as_3d(&conv.dilation, 1);
    let pads: Vec<u64> = bound.padding.iter().map(|[before, _]| *before).collect();
    let pad3 = as_3d(&pads, 0);
    let axes: Vec<Axis> = (0..3)
        .map(|axis| Axis {
            input: input3[axis],
            output: output3[axis],
            kernel: kernel3[axis],
            stride: stride3[axis],
            dilation: dilation3[axis],
            pad_before: if axis < 3 - rank { 0 } else { pad3[axis] },
        })
        .collect();

    let batch = bound.input[0];
    let in_padded = padded(conv.in_channels, plan_lanes);
    let out_padded = padded(conv.out_channels, plan_lanes);
    let groups = conv.groups;
    let in_per_group = conv.in_channels / groups;
    let out_per_group = conv.out_channels / groups;
    let taps: u64 = conv.kernel.iter().product();
    let depthwise = in_per_group == 1 && out_per_group == 1;
    let vectors = channel_vectors(conv, lanes);

    // Packed parameters and their buffers: 0 input, 1 output, 2 weight, 3 bias.
    let (weight_packing, weight_len, out_per_group_padded) = if depthwise {
        let packing = Packing::Depthwise { channels: conv.out_channels, padded: out_padded, taps };
        (packing, taps * out_padded, 0)
    } else if schedule.kernel == Kernel::Tile {
        // Whole vectors per group (`Schedule::validate`): no padding.
        let panel = u64::from(schedule.tile_channels * TILE_LANES);
        let packing = Packing::Panels { groups, in_per_group, out_per_group, panel, taps };
        (packing, groups * in_per_group * taps * out_per_group, out_per_group)
    } else {
        let out_per_group_padded = if groups == 1 { padded(out_per_group, lanes) } else { out_per_group };
        let packing = Packing::Dense { groups, in_per_group, out_per_group, out_per_group_padded, taps };
        (packing, groups * in_per_group * taps * out_per_group_padded, out_per_group_padded)
    };
    let mut packings = vec![("weight", weight_packing, weight_len)];
    if conv.bias {
        packings.push(("bias", Packing::Bias { channels: conv.out_channels }, out_padded));
    }
    let (input, output, weight, bias) = (BufferId(0), BufferId(1), BufferId(2), BufferId(3));
    // The input: the internal layout, or (`input_in_place`, a dense tile-kernel stage) the user's
    // channels-first tensor as it is, its channels planes of the positions.
    debug_assert!(!input_in_place || (schedule.kernel == Kernel::Tile && !depthwise));
    let in_channels_stored = if input_in_place { conv.in_channels } else { in_padded };
    let in_len = batch * in_channels_stored * input3.iter().product::<u64>();
    let out_len = batch * out_padded * output3.iter().product::<u64>();
    let mut buffers = vec![
        Buffer { name: "in".into(), len: in_len, writes: false },
        Buffer { name: "out".into(), len: out_len, writes: true },
        Buffer { name: "w".into(), len: weight_len, writes: false },
    ];
    if conv.bias {
        buffers.push(Buffer { name: "b".into(), len: out_padded, writes: false });
    }
    // A fused residual `add`: the other operand, in the output's layout; its activation.
    let residual = residual.map(|act| {
        buffers.push(Buffer { name: "res".into(), len: out_len, writes: false });
        (BufferId(buffers.len() as u32 - 1), act)
    });
    // The tile kernel's sums, in memory between the kernel and the IR's epilogue.
    let scratch = (schedule.kernel == Kernel::Tile).then(|| {
        // The widest strip: every pixel of a row (dense), or every channel of a tile (depthwise).
        let pixels = output3[2].max(u64::from(schedule.tile_width));
        let row = pixels * u64::from(schedule.tile_channels * TILE_LANES);
        let len = row.max(u64::from(schedule.tile_width) * padded(conv.out_channels, TILE_LANES));
        buffers.push(Buffer { name: TILE_SCRATCH.into(), len, writes: true });
        BufferId(buffers.len() as u32 - 1)
    });

    // Element strides of the internal layouts: [n, d, h, w, c].
    let (in_strides, in_channel_stride) = if input_in_place {
        let plane = input3.iter().product::<u64>();
        ([conv.in_channels * plane, input3[1] * input3[2], input3[2], 1], plane)
    } else {
        let strides = [
            input3[0] * input3[1] * input3[2] * in_padded,
            input3[1] * input3[2] * in_padded,
            input3[2] * in_padded,
            in_padded,
        ];
        (strides, 1)
    };
    let out_strides = [
        output3[0] * output3[1] * output3[2] * out_padded,
        output3[1] * output3[2] * out_padded,
        output3[2] * out_padded,
        out_padded,
    ];

    // A stage with enough work is split into parts along the outermost of n, d, h, w with more
    // than one position: each part computes a contiguous window of the output.
    let extents = [batch, output3[0], output3[1], output3[2]];
    let macs = batch * output3.iter().product::<u64>() * conv.out_channels * in_per_group * taps;
    let split = (0..4).find(|&dim| extents[dim] > 1).unwrap_or(3);
    let worth = macs >= target.part_macs.saturating_mul(u64::from(threads));
    let count = part_count(worth, u64::from(threads), extents[split]);
    let regions: Vec<(Region, Range<u64>)> = (0..count)
        .map(|part| {
            let range = part_range(extents[split], 1, count, part);
            let window = range.start * out_strides[split]..range.end * out_strides[split];
            let mut region = Region { batch: 0..batch, positions: [0..output3[0], 0..output3[1], 0..output3[2]] };
            match split {
                0 => region.batch = range,
                dim => region.positions[dim - 1] = range,
            }
            (region, window)
        })
        .collect();
    let parts: Vec<Split> = regions
        .iter()
        .enumerate()
        .map(|(part, (region, window))| {
        let mut builder = Builder::default();
        let segments: Vec<Vec<Segment>> =
            axes.iter().zip(&region.positions).map(|(axis, range)| axis.segments_within(range)).collect();
        let tile_width = u64::from(schedule.tile_width);
        let tile_channels = u64::from(schedule.tile_channels);

        // The loops over pixels, around the tiles of every channel block — or, given `block` (group,
        // first vector, vectors), of that one block.
        let spatial = |builder: &mut Builder, block: Option<(Index, Index, u64)>| -> Vec<Stmt> {
            builder.repeat(region.batch.end - region.batch.start, |builder, n| {
                let n = n.plus_constant(region.batch.start as i64);
                let mut body = Vec::new();
                for segment_d in &segments[0] {
                    for segment_h in &segments[1] {
                        for segment_w in &segments[2] {
                            // Positions of d and h (one loop or one constant each); w is tiled below.
                            let positions =
                                |builder: &mut Builder,
                                 segment: Segment,
                                 inner: &mut dyn FnMut(&mut Builder, Position) -> Vec<Stmt>| {
                                    match segment {
                                        Segment::Border(position) => inner(
                                            builder,
                                            Position { index: Index::constant(position as i64), border: Some(position) },
                                        ),
                                        Segment::Interior { start, count } => builder.repeat(count, |builder, var| {
                                            inner(
                                                builder,
                                                Position { index: var.plus_constant(start as i64), border: None },
                                            )
                                        }),
                                    }
                                };
                            let n = n.clone();
                            body.extend(positions(builder, *segment_d, &mut |builder, d| {
                                let n = n.clone();
                                positions(builder, *segment_h, &mut |builder, h| {
                                    // Tiles along w: (first position index, tile width, border position).
                                    let mut tiles: Vec<Stmt> = Vec::new();
                                    // `repeat` tiles of `width` pixels from `w` (more than one only for
                                    // a tile kernel, which runs them all in one call).
                                    let emit_tiles = |builder: &mut Builder,
                                                      w: Position,
                                                      width: u64,
                                                      repeat: u64|
                                     -> Vec<Stmt> {
                                        tile(
                                            builder,
                                            &TileContext {
                                                conv,
                                                axes: &axes,
                                                n: &n,
                                                d: &d,
                                                h: &h,
                                                w: &w,
                                                width,
                                                in_strides,
                                                in_channel_stride,
                                                out_strides,
                                                depthwise,
                                                vectors,
                                                tile_channels,
                                                lanes,
                                                in_per_group,
                                                out_per_group_padded,
                                                taps,
                                                buffers: (input, output, weight, if conv.bias { Some(bias) } else { None }),
                                                residual,
                                                scratch,
                                                plan_lanes,
                                                block: block.clone(),
                                                repeat,
                                            },
                                        )
                                    };
                                    let emit_tile =
                                        |builder: &mut Builder, w: Position, width: u64| emit_tiles(builder, w, width, 1);
                                    match *segment_w {
                                        Segment::Border(position) => {
                                            tiles.extend(emit_tile(
                                                builder,
                                                Position {
                                                    index: Index::constant(position as i64),
                                                    border: Some(position),
                                                },
                                                1,
                                            ));
                                        }
                                        Segment::Interior { start, count } => {
                                            let full = count / tile_width;
                                            if full > 0 && scratch.is_some() && !depthwise {
                                                // A dense tile kernel's strip: all full tiles in one
                                                // call. (A depthwise one strips channel blocks.)
                                                let w = Position { index: Index::constant(start as i64), border: None };
                                                tiles.extend(emit_tiles(builder, w, tile_width, full));
                                            } else if full > 0 {
                                                tiles.extend(builder.repeat(full, |builder, var| {
                                                    let w = Position {
                                                        index: var.times(tile_width as i64).plus_constant(start as i64),
                                                        border: None,
                                                    };
                                                    emit_tile(builder, w, tile_width)
                                                }));
                                            }
                                            let rest = count % tile_width;
                                            if rest > 0 {
                                                let w = Position {
                                                    index: Index::constant((start + full * tile_width) as i64),
                                                    border: None,
                                                };
                                                tiles.extend(emit_tile(builder, w, rest));
                                            }
                                        }
                                    }
                                    tiles
                                })
                            }));
                        }
                    }
                }
                body
            })
        };
        let body = match schedule.order {
            Order::Pixels => spatial(&mut builder, None),
            // Each block of channel vectors over all pixels: its weights are read from memory once,
            // the input once per block.
            Order::Channels => {
                let groups = if depthwise { 1 } else { conv.groups };
                let (blocks, rest) = (vectors / tile_channels, vectors % tile_channels);
                builder.repeat(groups, |builder, g| {
                    let mut body = Vec::new();
                    if blocks > 0 {
                        body.extend(builder.repeat(blocks, |builder, b| {
                            spatial(builder, Some((g.clone(), b.times(tile_channels as i64), tile_channels)))
                        }));
                    }
                    if rest > 0 {
                        let first = Index::constant((blocks * tile_channels) as i64);
                        body.extend(spatial(builder, Some((g.clone(), first, rest))));
                    }
                    body
                })
            }
        };
        let lanes = if schedule.kernel == Kernel::Tile { plan_lanes } else { lanes };
        as_part(name, builder.function(lanes, buffers.clone(), body), (part as u64, count), window)
    })
    .collect();

    /// Everything one register tile needs.
    struct TileContext<'a> {
        conv: &'a Conv,
        axes: &'a [Axis],
        n: &'a Index,
        d: &'a Position,
        h: &'a Position,
        w: &'a Position,
        width: u64,
        in_strides: [u64; 4],
        /// Input elements between input channels: 1 in the internal layout.
        in_channel_stride: u64,
        out_strides: [u64; 4],
        depthwise: bool,
        vectors: u64,
        tile_channels: u64,
        lanes: u32,
        in_per_group: u64,
        out_per_group_padded: u64,
        taps: u64,
        buffers: (BufferId, BufferId, BufferId, Option<BufferId>),
        residual: Option<(BufferId, Activation)>,
        /// The tile kernel's accumulators (for a [`Kernel::Tile`] schedule).
        scratch: Option<BufferId>,
        plan_lanes: u32,
        /// The one channel block to compute (group, first vector, vectors); none: all of them.
        block: Option<(Index, Index, u64)>,
        /// Tiles of `width` pixels side by side (more than 1 only for a tile kernel's strip).
        repeat: u64,
    }

    /// One tile: `width` pixels along w (consecutive, in the same segment) × all channel blocks.
    fn tile(builder: &mut Builder, context: &TileContext) -> Vec<Stmt> {
        let TileContext { conv, depthwise, vectors, tile_channels, lanes, buffers, .. } = context;
        let (input, output, weight, bias) = *buffers;
        let lanes = i64::from(*lanes);
        if let Some((g, first_vector, count)) = &context.block {
            return channel_block(
                builder,
                context,
                g,
                first_vector.clone(),
                *count,
                (input, output, weight, bias),
                lanes,
            );
        }
        let groups = if *depthwise { 1 } else { conv.groups };
        let blocks = vectors / tile_channels;
        let rest = vectors % tile_channels;
        if let (Some(scratch), true) = (context.scratch, *depthwise) {
            // A depthwise tile kernel's strip: every full block of channels in one call, for these
            // pixels, whose input rows stay in cache across the blocks.
            let zero = Index::constant(0);
            let mut body = Vec::new();
            if blocks > 0 {
                body.extend(tile_block(builder, context, &zero, zero.clone(), *tile_channels, scratch, blocks));
            }
            if rest > 0 {
                let first = Index::constant((blocks * tile_channels) as i64);
                body.extend(tile_block(builder, context, &zero, first, rest, scratch, 1));
            }
            return body;
        }
        if let (Some(scratch), 1, true) = (context.scratch, context.repeat, blocks > 1) {
            // A dense tile kernel's single tile (a border or tail one, whose few pixels keep few
            // accumulators busy): every full block of output channels in one call, whose kernel
            // can then run several blocks at once.
            let zero = Index::constant(0);
            return builder.repeat(groups, |builder, g| {
                let mut body = tile_block(builder, context, &g, zero.clone(), *tile_channels, scratch, blocks);
                if rest > 0 {
                    let first = Index::constant((blocks * tile_channels) as i64);
                    body.extend(tile_block(builder, context, &g, first, rest, scratch, 1));
                }
                body
            });
        }
        let mut body = Vec::new();
        body.extend(builder.repeat(groups, |builder, g| {
            let mut body = Vec::new();
            let block = |builder: &mut Builder, first_vector: Index, count: u64| -> Vec<Stmt> {
                channel_block(builder, context, &g, first_vector, count, (input, output, weight, bias), lanes)
            };
            if blocks > 0 {
                body.extend(
                    builder.repeat(blocks, |builder, b| block(builder, b.times(*tile_channels as i64), *tile_channels)),
                );
            }
            if rest > 0 {
                body.extend(block(builder, Index::constant((blocks * tile_channels) as i64), rest));
            }
            body
        }));
        body
    }

    /// One block of `count` channel vectors starting at vector `first_vector` of group `g`, for the
    /// tile's pixels: init, accumulate, store.
    fn channel_block(
        builder: &mut Builder,
        context: &TileContext,
        g: &Index,
        first_vector: Index,
        count: u64,
        buffers: (BufferId, BufferId, BufferId, Option<BufferId>),
        lanes: i64,
    ) -> Vec<Stmt> {
        let TileContext {
            conv,
            axes,
            n,
            d,
            h,
            w,
            width,
            in_strides,
            out_strides,
            depthwise,
            in_per_group,
            out_per_group_padded,
            taps,
            residual,
            ..
        } = context;
        if let Some(scratch) = context.scratch {
            return tile_block(builder, context, g, first_vector, count, scratch, 1);
        }
        let (input, output, weight, bias) = buffers;
        let out_per_group = (conv.out_channels / conv.groups) as i64;
        let accumulator = |pixel: u64, vector: u64| Acc((pixel * count + vector) as u32);
        builder.accumulators = builder.accumulators.max((width * count) as u32);
        // Output channel of the first lane of vector v: g·opg + (first_vector + v)·lanes.
        let channel = |vector: u64| -> Index {
            let within = first_vector.clone().plus_constant(vector as i64).times(lanes);
            if *depthwise { within } else { g.clone().times(out_per_group).plus(&within) }
        };
        let out_index = |pixel: u64, vector: u64| -> Index {
            Index::clone(n)
                .times(out_strides[0] as i64)
                .plus(&d.index.clone().times(out_strides[1] as i64))
                .plus(&h.index.clone().times(out_strides[2] as i64))
                .plus(&w.index.clone().plus_constant(pixel as i64).times(out_strides[3] as i64))
                .plus(&channel(vector))
        };
        let mut body = Vec::new();
        for pixel in 0..*width {
            for vector in 0..count {
                let value = match bias {
                    Some(bias) => Value::Load { buffer: bias, index: channel(vector) },
                    None => Value::Zero,
                };
                body.push(Stmt::Init { acc: accumulator(pixel, vector), value });
            }
        }
        // The taps that are inside the input for every pixel of the tile (the tile lies in one
        // segment of each axis, so this is all of them in the interior).
        let kernel3 = [axes[0].kernel, axes[1].kernel, axes[2].kernel];
        let inside = |axis: usize, position: &Position, tap: u64| axes[axis].takes(position.border, tap);
        let accumulate = |icg: Index, body: &mut Vec<Stmt>| {
            for kd in 0..kernel3[0] {
                if !inside(0, d, kd) {
                    continue;
                }
                for kh in 0..kernel3[1] {
                    if !inside(1, h, kh) {
                        continue;
                    }
                    for kw in 0..kernel3[2] {
                        if !inside(2, w, kw) {
                            continue;
                        }
                        let tap = ((kd * kernel3[1] + kh) * kernel3[2] + kw) as i64;
                        // Input coordinate along an axis: position·stride + tap·dilation − pad.
                        let coordinate = |axis: usize, position: &Index, extra: u64, k: u64| -> Index {
                            position
                                .clone()
                                .plus_constant(extra as i64)
                                .times(axes[axis].stride as i64)
                                .plus_constant((k * axes[axis].dilation) as i64 - axes[axis].pad_before as i64)
                        };
                        for pixel in 0..*width {
                            let pixel_base = Index::clone(n)
                                .times(in_strides[0] as i64)
                                .plus(&coordinate(0, &d.index, 0, kd).times(in_strides[1] as i64))
                                .plus(&coordinate(1, &h.index, 0, kh).times(in_strides[2] as i64))
                                .plus(&coordinate(2, &w.index, pixel, kw).times(in_strides[3] as i64));
                            for vector in 0..count {
                                let (a, b) = if *depthwise {
                                    // in[…, c..c+lanes] · w[tap, c..c+lanes]
                                    let c = channel(vector);
                                    (
                                        Value::Load { buffer: input, index: pixel_base.clone().plus(&c) },
                                        Value::Load {
                                            buffer: weight,
                                            index: c.plus_constant(tap * out_strides[3] as i64),
                                        },
                                    )
                                } else {
                                    // splat in[…, g·ipg + icg] · w[g, icg, tap, ocg..ocg+lanes]
                                    let input_channel = g.clone().times(*in_per_group as i64).plus(&icg);
                                    let ocg = first_vector.clone().plus_constant(vector as i64).times(lanes);
                                    let weight_index = g
                                        .clone()
                                        .times(*in_per_group as i64)
                                        .plus(&icg)
                                        .times(*taps as i64)
                                        .plus_constant(tap)
                                        .times(*out_per_group_padded as i64)
                                        .plus(&ocg);
                                    (
                                        Value::Splat { buffer: input, index: pixel_base.clone().plus(&input_channel) },
                                        Value::Load { buffer: weight, index: weight_index },
                                    )
                                };
                                body.push(Stmt::Fma { acc: accumulator(pixel, vector), a, b });
                            }
                        }
                    }
                }
            }
        };
        if *depthwise {
            accumulate(Index::constant(0), &mut body);
        } else {
            let mut inner = Vec::new();
            let mut loop_body = |builder: &mut Builder| {
                if *in_per_group == 1 {
                    accumulate(Index::constant(0), &mut inner);
                } else {
                    let var = builder.var();
                    let mut looped = Vec::new();
                    accumulate(Index::var(var, 1), &mut looped);
                    inner.push(Stmt::Loop { var, count: *in_per_group, body: looped });
                }
            };
            loop_body(builder);
            body.extend(inner);
        }
        for pixel in 0..*width {
            for vector in 0..count {
                let index = out_index(pixel, vector);
                let mut value = activate(conv.act, Value::Acc(accumulator(pixel, vector)));
                if let Some((other, act)) = *residual {
                    // `add`: act(conv + other), stored once.
                    let other = Value::Load { buffer: other, index: index.clone() };
                    value = activate(act, Value::Add(Box::new(value), Box::new(other)));
                }
                body.push(Stmt::Store { buffer: output, index, value });
            }
        }
        body
    }

    /// One block of `count` vectors of [`TILE_LANES`] channels for the tile's pixels, by the tile
    /// kernel: it starts each sum at the bias, adds every product and leaves the sums in
    /// `scratch`; the epilogue stores `act(scratch)` (plus a residual) a vector of the plan's lanes
    /// at a time. (A kernel that read its initial sums from `scratch` would wait on the IR's
    /// 128-bit stores there: a 256-bit load cannot be forwarded from two stores.)
    fn tile_block(
        builder: &mut Builder,
        context: &TileContext,
        g: &Index,
        first_vector: Index,
        count: u64,
        scratch: BufferId,
        channel_repeat: u64,
    ) -> Vec<Stmt> {
        let TileContext {
            conv,
            axes,
            n,
            d,
            h,
            w,
            width,
            in_strides,
            in_channel_stride,
            out_strides,
            residual,
            plan_lanes,
            repeat,
            ..
        } = context;
        // A strip of `repeat` tiles of pixels (dense) or of `channel_repeat` blocks of `count`
        // vectors (depthwise): the sums of tile `t` start at `t · width · count · 8` in `scratch`.
        debug_assert!(*repeat == 1 || channel_repeat == 1, "a strip runs along pixels or channels");
        let block_channels = (count * u64::from(TILE_LANES)) as i64;
        let (input, output, weight, bias) = context.buffers;
        let tile_lanes = u64::from(TILE_LANES);
        let step = u64::from(*plan_lanes);
        let (in_per_group, out_per_group) = (conv.in_channels / conv.groups, conv.out_channels / conv.groups);
        // Output channel of lane `lane` of vector `vector`.
        let channel = |vector: u64, lane: u64| -> Index {
            let within = first_vector.clone().plus_constant(vector as i64).times(tile_lanes as i64);
            g.clone().times(out_per_group as i64).plus(&within).plus_constant(lane as i64)
        };
        // The sums of pixel `pixel` (of a strip of pixels) of channel block `block` (of a strip of
        // channel blocks) in the scratch buffer.
        let slot = |block: &Index, pixel: &Index, vector: u64, lane: u64| {
            block
                .clone()
                .times(*width as i64 * block_channels)
                .plus(&pixel.clone().times(block_channels))
                .plus_constant((vector * tile_lanes + lane) as i64)
        };
        let mut body = Vec::new();
        // The taps inside the input along each axis: a contiguous range (`first`, `count`) — all of
        // them except at a border position (the tile lies in one segment of each axis).
        let positions = [*d, *h, *w].map(Position::clone);
        let taps: [(u64, u64); 3] = std::array::from_fn(|axis| {
            let kernel = axes[axis].kernel;
            match positions[axis].border {
                None => (0, kernel),
                Some(position) => {
                    let inside: Vec<u64> =
                        (0..kernel).filter(|&tap| axes[axis].source(position, tap).is_some()).collect();
                    (inside.first().copied().unwrap_or(0), inside.len() as u64)
                }
            }
        });
        // A tile whose every tap falls outside the input (padding wider than the kernel) is the
        // bias alone: the kernel over no input channel.
        let empty = taps.iter().any(|&(_, count)| count == 0);
        let kernel3 = [axes[0].kernel, axes[1].kernel, axes[2].kernel];
        // Input coordinate of pixel 0 at the first inside tap: position·stride + tap·dilation − pad.
        let coordinate = |axis: usize| -> Index {
            positions[axis]
                .index
                .clone()
                .times(axes[axis].stride as i64)
                .plus_constant((taps[axis].0 * axes[axis].dilation) as i64 - axes[axis].pad_before as i64)
        };
        let depthwise = context.depthwise;
        // A depthwise tile reads its own channels; a dense one its group's input channels from 0.
        let first_input_channel = if depthwise { channel(0, 0) } else { g.clone().times(in_per_group as i64) };
        let input_index = Index::clone(n)
            .times(in_strides[0] as i64)
            .plus(&coordinate(0).times(in_strides[1] as i64))
            .plus(&coordinate(1).times(in_strides[2] as i64))
            .plus(&coordinate(2).times(in_strides[3] as i64))
            .plus(&first_input_channel.times(*in_channel_stride as i64));
        let taps_total = (kernel3[0] * kernel3[1] * kernel3[2]) as i64;
        let first_tap = ((taps[0].0 * kernel3[1] + taps[1].0) * kernel3[2] + taps[2].0) as i64;
        // Depthwise (Packing::Depthwise, [tap, c]): rows of all channels per tap. Dense
        // (Packing::Panels, [g, panel, icg, tap, within]): the block's panel (`count` vectors wide:
        // blocks are the panels) at icg 0.
        let (weight_index, row) = if depthwise {
            let row = out_strides[3] as i64;
            (channel(0, 0).plus_constant(first_tap * row), row)
        } else {
            let panel_width = (count * tile_lanes) as i64;
            let panel_start = g
                .clone()
                .times(out_per_group as i64)
                .plus(&first_vector.clone().times(tile_lanes as i64))
                .times(in_per_group as i64 * taps_total);
            (panel_start.plus_constant(first_tap * panel_width), panel_width)
        };
        let pixel_stride = (axes[2].stride * in_strides[3]) as i64;
        body.push(Stmt::Tile(Box::new(Tile {
            depthwise,
            pixels: *width as u32,
            repeat: *repeat * channel_repeat,
            // A strip of channel blocks: a depthwise block reads the next channels, a dense one the
            // same input channels (with the next panel of weights).
            repeat_input_stride: match (empty, channel_repeat > 1) {
                (true, _) => 0,
                (false, true) if depthwise => block_channels,
                (false, true) => 0,
                (false, false) => *width as i64 * pixel_stride,
            },
            repeat_weight_stride: match (channel_repeat > 1, depthwise) {
                (false, _) => 0,
                (true, true) => block_channels,
                (true, false) => block_channels * in_per_group as i64 * taps_total,
            },
            repeat_bias_stride: if channel_repeat > 1 && bias.is_some() { block_channels } else { 0 },
            vectors: count as u32,
            input,
            // (An empty tile reads no input: any index inside it will do.)
            input_index: if empty { Index::constant(0) } else { input_index },
            pixel_stride: if empty { 0 } else { pixel_stride },
            weight,
            weight_index,
            bias: bias.map(|bias| (bias, channel(0, 0))),
            acc: scratch,
            acc_index: Index::constant(0),
            reduce: if empty { 0 } else { in_per_group },
            reduce_input_stride: *in_channel_stride as i64,
            reduce_weight_stride: taps_total * row,
            taps: taps.map(|(_, count)| count.max(1)),
            tap_input_strides: std::array::from_fn(|axis| (axes[axis].dilation * in_strides[axis + 1]) as i64),
            tap_weight_strides: [(kernel3[1] * kernel3[2]) as i64 * row, kernel3[2] as i64 * row, row],
        })));
        // The epilogue, over every pixel and channel block of the strip (loops for a strip,
        // unrolled for one tile).
        body.extend(builder.repeat(channel_repeat, |builder, block| {
            builder.repeat(repeat * width, |_, pixel| {
                let mut body = Vec::new();
                for vector in 0..count {
                    for lane in (0..tile_lanes).step_by(step as usize) {
                        let index = Index::clone(n)
                            .times(out_strides[0] as i64)
                            .plus(&d.index.clone().times(out_strides[1] as i64))
                            .plus(&h.index.clone().times(out_strides[2] as i64))
                            .plus(&w.index.clone().plus(&pixel).times(out_strides[3] as i64))
                            .plus(&channel(vector, lane))
                            .plus(&block.clone().times(block_channels));
                        let sum = Value::Load { buffer: scratch, index: slot(&block, &pixel, vector, lane) };
                        let mut value = activate(conv.act, sum);
                        if let Some((other, act)) = *residual {
                            let other = Value::Load { buffer: other, index: index.clone() };
                            value = activate(act, Value::Add(Box::new(value), Box::new(other)));
                        }
                        body.push(Stmt::Store { buffer: output, index, value });
                    }
                }
                body
            })
        }));
        body
    }

    let scratch_len = scratch.map(|buffer| buffers[buffer.0 as usize].len);
    (parts, packings, scratch_len)
}

/// The name of a tile-kernel step's accumulator buffer.
const TILE_SCRATCH: &str = "sums";
