//! spec + binding + schedules → a [`Plan`]: the loop-IR functions of a whole network, the buffers
//! they run on, and how parameters are packed for them. One lowering, shared by every code generator.
//!
//! Internal values use one layout: channels last, channels padded with zeros to a multiple of the
//! target's lanes (`NHWC4` on Cranelift; `NWC`/`NDHWC` likewise for 1D/3D). Conversions from and to
//! the user's layout are the plan's first and last steps — none for a channels-last input or output
//! whose channels fill whole vectors, which the steps use in place. Padded channels hold values
//! that no real channel ever reads. Values whose lifetimes do not overlap share one buffer
//! (`buffers`).
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
//! all its channel blocks, for a depthwise one per tile and all its channel blocks. The kernel
//! stores `act(sum)` in the output itself where the activation is one it applies (none, relu,
//! relu6) and no `add` is fused; otherwise it leaves the sums in a scratch buffer (`sums`), from
//! which the IR stores them with the same fused epilogue. Its weights are packed as one
//! contiguous panel per block of output channels ([`Packing::Panels`]). [`crate::schedule::Order::Channels`] puts
//! the loops over channel blocks outside the pixel loops.
//!
//! One layer may skip the internal layout: an output layer that reads a channels-first model
//! input and nothing else reads is computed in the user's layout by `planar`
//! ([`Kernel::Planar`], depthwise or small groups), with no conversion step at either end — by
//! the plane microkernel ([`Kernel::Plane`], one [`Stmt::Plane`] per image) where the target has
//! microkernels and the layer's window is one the kernels exist for (a pointwise layer's 1×1 on
//! large planes). So may two: a depthwise layer of the channels-first input read only by the
//! pointwise output layer, where both take the plane kernels (`plane_pair`), with a
//! channels-first value between them.
//!
//! A depthwise stage whose large output only a pointwise stage reads is computed inside it, on
//! blocks of rows that stay in cache, by `fused` ([`Target::fusion`]): one step for both, the
//! same code for each stage as `stage` lowers it alone (its functions live in `stage`).

use std::ops::Range;

use crate::bind::{Binding, BoundConv};
use crate::error::Error;
use crate::ir::{Buffer, BufferId, Function, Index, LoopVar, Stmt, TRANSPOSE, Value};
use crate::schedule::{Kernel, Schedule, Target};
use crate::spec::{Activation, Conv, Layout, Network, Op, Source};

mod buffers;
mod fused;
mod planar;
mod stage;
pub mod winograd;

use stage::{Axis, Position, Segment, Split, StageParam, convolution};

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
    /// Internal buffers (zero-initialised), by length: each holds the values (layer outputs,
    /// scratch) of steps whose lifetimes do not overlap, one after the other (`buffers`).
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
    /// A 3×3 window `[out, in/groups, 3, 3]` → its Winograd transform `G g Gᵀ` (`winograd`), laid
    /// out `[point][group][panel][icg][ocg within the panel]`: per transformed point of the 16, the
    /// tile kernel's panels ([`Packing::Panels`] with one tap).
    Winograd {
        /// Groups.
        groups: u64,
        /// Input channels per group.
        in_per_group: u64,
        /// Output channels per group.
        out_per_group: u64,
        /// Output channels per panel.
        panel: u64,
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
    /// The schedules of the stages it computes, in order: one, two for a depthwise stage fused
    /// into a pointwise one, none for conversions and adds.
    pub schedules: Vec<Schedule>,
    /// The function.
    pub function: Function,
    /// What to pass for each of the function's buffers.
    pub args: Vec<Arg>,
    /// Set when the step is one of the parts a stage is split into for [`Target::threads`].
    pub part: Option<Part>,
}

impl Step {
    /// The schedules of its stages in their text form, joined by ` + `; none for a step without.
    pub fn schedules_text(&self) -> Option<String> {
        let texts: Vec<String> = self.schedules.iter().map(Schedule::to_string).collect();
        (!texts.is_empty()).then(|| texts.join(" + "))
    }
}

/// One of the consecutive steps a convolution stage (or layout conversion) is split into, which
/// may run at the same time: each computes a window of the stage's output (a range of images, of
/// positions along the outermost spatial axis with more than one, or, in [`Runs`], of a dense
/// stage's output channels or a channels-first conversion's positions) and has its own scratch
/// buffer; the other buffers they share are only read.
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
    /// `None`: the part may write all of its window. `Some`: only these runs of it — the other
    /// parts' windows interleave with them (a channels-first output split by positions, a dense
    /// stage split by output channels).
    pub runs: Option<Runs>,
}

impl std::fmt::Display for Part {
    /// `part 1 of 2 from element 0`, and `, in 8 runs of 32 elements, 64 apart` for runs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "part {} of {} from element {}", self.index + 1, self.count, self.start)?;
        match self.runs {
            Some(runs) => write!(f, ", in {} runs of {} elements, {} apart", runs.count, runs.len, runs.stride),
            None => Ok(()),
        }
    }
}

/// Equally long, equally spaced runs of elements: `count` runs of `len` elements, `stride` apart,
/// the first at the start of a [`Part`]'s window (which ends where the last run ends:
/// `(count - 1) * stride + len` elements).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Runs {
    /// How many runs.
    pub count: u64,
    /// Elements in each run.
    pub len: u64,
    /// Elements from the start of one run to the start of the next (at least `len`).
    pub stride: u64,
}

impl Runs {
    /// The elements the runs span, first run's start to last run's end (saturating).
    pub fn span(&self) -> u64 {
        self.count.saturating_sub(1).saturating_mul(self.stride).saturating_add(self.len)
    }

    /// Whether they are runs of a window of `window` elements: at least one, each no longer than
    /// the stride (so they do not overlap), together spanning the window exactly.
    pub fn fit(&self, window: u64) -> bool {
        self.count > 0 && self.len <= self.stride && self.span() == window
    }
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
    /// Packs `data` (the PyTorch tensor) into `packed`, a buffer of the packed length (the
    /// [`PackedParam::len`] of the plan's parameter), zeros where the packing pads; the caller
    /// chooses where the buffer lives ([`crate::ir_interp::pack_params_with`]).
    pub fn pack_into(&self, data: &[f32], packed: &mut [f32]) {
        packed.fill(0.0);
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
            Packing::Winograd { groups, in_per_group, out_per_group, panel } => {
                let point_len = groups * in_per_group * out_per_group;
                for g in 0..groups {
                    for ocg in 0..out_per_group {
                        let (first, within) = (ocg / panel * panel, ocg % panel);
                        let width = panel.min(out_per_group - first);
                        for icg in 0..in_per_group {
                            let from = (((g * out_per_group + ocg) * in_per_group + icg) * 9) as usize;
                            let transformed = winograd::transform_weights(&data[from..from + 9]);
                            let panel_start = (g * out_per_group + first) * in_per_group;
                            for (point, &value) in transformed.iter().enumerate() {
                                let to = point as u64 * point_len + panel_start + icg * width + within;
                                packed[to as usize] = value;
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
    // A stage's schedule: the caller's, else the plane kernel or the planar one where they apply
    // (and the planar one pays), else the heuristic's; checked against the stage.
    // `input_in_place`: the stage reads the model's channels-first input, which a dense tile-kernel
    // stage reads as it is (below).
    let schedule_of =
        |name: &str, conv: &Conv, bound: &BoundConv, planar: bool, input_in_place: bool| -> Result<Schedule, String> {
            let default_planar = planar::default_schedule(conv, bound, lanes);
            let schedule = match schedule_for(name) {
                Some(schedule) => schedule,
                None if planar && target.microkernels && planar::plane_pays(conv, bound, target) => Schedule::plane(),
                None if planar && planar::worth(conv, bound, default_planar) => default_planar,
                None => Schedule::auto(conv, bound, target, input_in_place),
            };
            schedule.validate(conv)?;
            if schedule.kernel == Kernel::Winograd && !winograd::scratch_fits(conv, bound, lanes) {
                return Err("kernel=winograd would need a scratch buffer of more than 2^31 elements for rows this \
                            long: use kernel=tile"
                    .into());
            }
            let own_lanes = !matches!(schedule.kernel, Kernel::Tile | Kernel::Winograd);
            if own_lanes && !lanes.is_multiple_of(schedule.lanes) {
                return Err(format!("lanes must divide the target's {lanes}"));
            }
            Ok(schedule)
        };
    // The stages of layer `index`: their names (`dw1`, `s.pw`), what they compute and their shapes.
    let stages_of = |index: usize| -> Vec<(String, &Conv, &BoundConv)> {
        let layer = &network.layers[index];
        let stages = layer.op.stages().into_iter().zip(&binding.layers[index].stages);
        stages.map(|((suffix, conv), bound)| (format!("{}{suffix}", layer.name), conv, bound)).collect()
    };
    let uses = uses(network);
    // The layers computed in the user's layout: the output layer where it may be, or a depthwise
    // and a pointwise stage where both take the plane kernels (`plane_pair`).
    let user_layout: Vec<usize> = match user_layout_layer(network, &fusions) {
        Some(output) => vec![output],
        None => plane_pair(network, &fusions, &uses)
            .filter(|layers| {
                layers.iter().flat_map(|&index| stages_of(index)).all(|(name, conv, bound)| {
                    let schedule = schedule_of(&name, conv, bound, true, false);
                    schedule.is_ok_and(|schedule| schedule.kernel == Kernel::Plane)
                })
            })
            .unwrap_or_default(),
    };
    // Per layer, the pointwise layer it is fused into, if any: a one-stage depthwise layer read only
    // by a pointwise one, which [`fused`] computes together on blocks of rows.
    let fused_into: Vec<Option<usize>> = (0..network.layers.len())
        .map(|first| {
            let reader = network.layers.iter().position(|layer| layer.op.sources().contains(&Source::Layer(first)))?;
            let (first_stages, second_stages) = (stages_of(first), stages_of(reader));
            let ([(first_name, conv, bound)], [(second_name, second_conv, second_bound)]) =
                (&first_stages[..], &second_stages[..])
            else {
                return None;
            };
            // Reading the input in place matters only to dense windows: neither piece is one.
            let schedule = schedule_of(first_name, conv, bound, false, false).ok()?;
            let second_schedule = schedule_of(second_name, second_conv, second_bound, false, false).ok()?;
            let first_piece = fused::Piece { name: first_name, conv, bound, schedule };
            let second_piece =
                fused::Piece { name: second_name, conv: second_conv, bound: second_bound, schedule: second_schedule };
            let alone = uses[first] == 1 && first != network.output && !user_layout.contains(&reader);
            (alone && fused::fusable(&first_piece, &second_piece, target)).then_some(reader)
        })
        .collect();
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
                    schedules: Vec::new(),
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
            Op::Conv { .. } | Op::Separable { .. } if fused_into[index].is_some() => {
                // Computed by the pointwise layer it is fused into ([`fused`]): it has no value.
                layer_values.push(None);
            }
            Op::Conv { source, .. } | Op::Separable { source, .. } => {
                let fusion = fusions.iter().find(|fusion| fusion.conv == index);
                let mut stages = stages_of(index);
                let mut source = *source;
                // A depthwise layer fused into this one runs as its first stage, on its input.
                if let Some(first) = fused_into.iter().position(|&second| second == Some(index)) {
                    source = network.layers[first].op.sources()[0];
                    stages.splice(0..0, stages_of(first));
                }
                let mut current = value_of(source, &layer_values);
                let mut in_user_layout = false;
                let mut position = 0;
                while position < stages.len() {
                    // Right after a split step the other threads are awake: split from less work.
                    let target =
                        if plan.steps.last().is_some_and(|step| step.part.is_some()) { target.warm() } else { target };
                    let (name, conv, bound) = &stages[position];
                    let (name, conv, bound) = (name.as_str(), *conv, *bound);
                    let schedule_error = |reason: String| Error::Schedule { layer: name.to_string(), reason };
                    let planar = user_layout.contains(&index);
                    let channels_first_input = current == 0 && network.input.layout == Layout::ChannelsFirst;
                    let schedule =
                        schedule_of(name, conv, bound, planar, channels_first_input).map_err(schedule_error)?;
                    let pair = stages.get(position + 1).map(|(second, conv, bound)| {
                        let second_schedule = schedule_of(second, conv, bound, false, false);
                        (second.as_str(), *conv, *bound, second_schedule)
                    });
                    // Only the last stage's store carries the fused `add`.
                    let residual = |stages_done: usize| fusion.filter(|_| position + stages_done == stages.len());
                    if let Some((second, second_conv, second_bound, Ok(second_schedule))) = pair {
                        let residual = residual(2);
                        let first = fused::Piece { name, conv, bound, schedule };
                        let second = fused::Piece {
                            name: second,
                            conv: second_conv,
                            bound: second_bound,
                            schedule: second_schedule,
                        };
                        if !planar && fused::fusable(&first, &second, target) {
                            let step_name = format!("{}+{}", first.name, second.name);
                            plan.values.push(internal_len(&second_bound.output));
                            let output = plan.values.len() - 1;
                            let (parts, params, scratch) =
                                fused::fused(&step_name, &first, &second, target, residual.map(|fusion| fusion.act));
                            let other = residual.map(|fusion| Arg::Value(value_of(fusion.other, &layer_values)));
                            let schedules = vec![schedule, second_schedule];
                            let buffers = (Arg::Value(current), Arg::Value(output), other);
                            push_stage(&mut plan, &step_name, schedules, parts, buffers, params, &scratch);
                            current = output;
                            position += 2;
                            continue;
                        }
                    }
                    if matches!(schedule.kernel, Kernel::Planar | Kernel::Plane) {
                        if !planar {
                            return Err(schedule_error(PLANAR_ONLY.into()));
                        }
                        let (parts, packings) =
                            planar::planar(name, conv, bound, schedule, target).map_err(schedule_error)?;
                        let params = named(name, packings);
                        // The model's input and output as they are; between the two layers of a
                        // plane pair, a value in the user's layout.
                        let input = if current == 0 { Arg::Input } else { Arg::Value(current) };
                        let output = if index == network.output && position + 1 == stages.len() {
                            in_user_layout = true;
                            Arg::Output
                        } else {
                            plan.values.push(bound.output.iter().product());
                            current = plan.values.len() - 1;
                            Arg::Value(current)
                        };
                        push_stage(&mut plan, name, vec![schedule], parts, (input, output, None), params, &[]);
                        position += 1;
                        continue;
                    }
                    let residual = residual(1);
                    plan.values.push(internal_len(&bound.output));
                    let output = plan.values.len() - 1;
                    // A dense tile-kernel stage reads a channels-first model input as it is: its
                    // kernel broadcasts one input element at a time, wherever the channels are.
                    let input_in_place =
                        channels_first_input && schedule.kernel == Kernel::Tile && !conv.is_depthwise();
                    let act = residual.map(|fusion| fusion.act);
                    let (parts, packings, scratch) = if schedule.kernel == Kernel::Winograd {
                        winograd::winograd(name, conv, bound, schedule, target, act)
                    } else {
                        let (parts, packings, scratch) =
                            convolution(name, conv, bound, schedule, target, act, input_in_place);
                        (parts, packings, scratch.into_iter().collect())
                    };
                    let source = if input_in_place { Arg::Input } else { Arg::Value(current) };
                    let other = residual.map(|fusion| Arg::Value(value_of(fusion.other, &layer_values)));
                    let buffers = (source, Arg::Value(output), other);
                    push_stage(&mut plan, name, vec![schedule], parts, buffers, named(name, packings), &scratch);
                    current = output;
                    position += 1;
                }
                layer_values.push((!in_user_layout).then_some(current));
            }
        }
    }

    let output_shape = &binding.layers[network.output].shape;
    // A channels-last tensor whose channels fill whole vectors is already in the internal layout:
    // the steps use the user's buffer in place of the value (which then gets no buffer:
    // `buffers::share` drops values no step takes), with no conversion — the output only if no
    // step reads it.
    let fits =
        |channels: u64| network.input.layout == Layout::ChannelsLast && channels.is_multiple_of(u64::from(lanes));
    if fits(binding.input[1]) {
        substitute(&mut plan.steps, Arg::Value(0), Arg::Input);
    }
    let mut output_value = layer_values[network.output];
    if let Some(value) = output_value.filter(|&value| fits(output_shape[1]) && only_written(&plan.steps, value)) {
        substitute(&mut plan.steps, Arg::Value(value), Arg::Output);
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
    // step reads its converted value (which then gets no buffer).
    let to_internal = split_beside(0, 0);
    let to_user = output_value.map(|value| (value, split_beside(value, 1)));
    if let Some((output_value, to_user)) = to_user {
        push_parts(
            &mut plan.steps,
            &format!("{}.to_user", network.layers[network.output].name),
            Vec::new(),
            convert(output_shape, network.input.layout, to_user, false),
            &[Arg::Value(output_value), Arg::Output],
            Vec::new,
        );
    }
    if plan.steps.iter().any(|step| step.args.contains(&Arg::Value(0))) {
        let mut steps = Vec::new();
        push_parts(
            &mut steps,
            &format!("{}.to_internal", network.input.name),
            Vec::new(),
            convert(&binding.input, network.input.layout, to_internal, true),
            &[Arg::Input, Arg::Value(0)],
            Vec::new,
        );
        plan.steps.splice(0..0, steps);
    }
    if plan.params.iter().map(|param| param.len * 4).sum::<u64>() >= target.l2_bytes {
        for step in &mut plan.steps {
            fetch_panels_ahead(&mut step.function.body);
        }
    }
    buffers::share(&mut plan);
    Ok(plan)
}

/// Marks every pointwise strip of pixels in `body` to fetch the next panel of weights while it
/// runs ([`crate::ir::Tile::prefetch`]): for a plan whose weights together fill a core's L2
/// cache, which then holds none of a stage's weights when its step starts, so that the first
/// group of tiles of each panel waited on memory. (A walk of its own: [`Function::visit`] only
/// reads.) Measured on the Intel Xeon (AVX-512, 2 MiB L2; `convgen bench
/// --steps`, with and without, alternating, 6 rounds): MobileNetV1's 7 × 7 pointwise layers
/// 1.18–1.22× as fast, its 14 × 14 ones 1.05×, the model 1.05× (8 rounds), MobileNetV2 1.02×.
/// A single layer whose weights fit stays unmarked: run after run they are in cache, and the
/// fetches cost 2–3% (pw_960to320_7, pw_384to64_14).
fn fetch_panels_ahead(body: &mut [Stmt]) {
    for stmt in body {
        match stmt {
            Stmt::Loop { body, .. } => fetch_panels_ahead(body),
            Stmt::Tile(tile) if !tile.depthwise && tile.taps == [1, 1, 1] && tile.repeat_weight_stride == 0 => {
                tile.prefetch = true;
            }
            _ => {}
        }
    }
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

/// Why a [`Kernel::Planar`] or [`Kernel::Plane`] schedule was refused for a stage that is not
/// where it can run.
const PLANAR_ONLY: &str = "kernel=planar and kernel=plane compute in the user's channels-first layout: only a one-stage \
    layer that reads the model's input and is its output, used by no other layer, can (or, each stage with kernel=plane, \
    such a separable layer, or a depthwise layer of the input and the pointwise output layer that alone reads it)";

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

/// The layers that may be computed in the user's layout, a depthwise stage then a pointwise one
/// (1×1, one group), if every stage takes the plane kernel ([`Kernel::Plane`], checked by the
/// caller): a `separable` output layer of the channels-first model input, or a one-stage
/// convolution of that input (a depthwise layer, say) read only by the pointwise output layer, in
/// that order. No `add` may be fused into the output. The value between the stages is channels-first:
/// neither end needs a conversion, and the depthwise stage is not fused into the pointwise one.
fn plane_pair(network: &Network, fusions: &[ResidualFusion], uses: &[usize]) -> Option<Vec<usize>> {
    let output = network.output;
    let fused = fusions.iter().any(|fusion| fusion.conv == output);
    if network.input.layout != Layout::ChannelsFirst || fused {
        return None;
    }
    match &network.layers[output].op {
        Op::Separable { source: Source::Input, pointwise, .. } if pointwise.is_dense_pointwise() => Some(vec![output]),
        Op::Conv { conv, source: Source::Layer(first) } if conv.is_dense_pointwise() && uses[*first] == 1 => {
            matches!(network.layers[*first].op, Op::Conv { source: Source::Input, .. }).then(|| vec![*first, output])
        }
        _ => None,
    }
}

/// Pushes the steps of a stage or conversion: one function, or its parts (each writing a window of
/// argument 1), each passed `args` and then the arguments `own` gives it (its scratch buffers).
fn push_parts(
    steps: &mut Vec<Step>,
    layer: &str,
    schedules: Vec<Schedule>,
    parts: Vec<Split>,
    args: &[Arg],
    mut own: impl FnMut() -> Vec<Arg>,
) {
    let count = parts.len() as u32;
    for (index, (function, window)) in (0..count).zip(parts) {
        let part = window.map(|(start, runs)| Part { index, count, window: 1, start, runs });
        let args = args.iter().copied().chain(own()).collect();
        steps.push(Step { layer: layer.to_string(), schedules: schedules.clone(), function, args, part });
    }
}

/// A packed parameter and the tensor it is packed from: `(source, packing, len)`.
type NamedParam = (String, Packing, u64);

/// A stage's packed parameters named after the stage `name` (`dw1.weight`).
fn named(name: &str, params: Vec<StageParam>) -> Vec<NamedParam> {
    params.into_iter().map(|(kind, packing, len)| (format!("{name}.{kind}"), packing, len)).collect()
}

/// Pushes the steps of a convolution stage (or fused pair of stages) and what they take: `parts`,
/// each passed its input, its output and the residual `add`'s other operand if any (`buffers`),
/// the packed `params` (added to the plan), and then scratch buffers of the `scratch` lengths, its
/// own (each part has its own).
fn push_stage(
    plan: &mut Plan,
    layer: &str,
    schedules: Vec<Schedule>,
    parts: Vec<Split>,
    (input, output, other): (Arg, Arg, Option<Arg>),
    params: Vec<NamedParam>,
    scratch: &[u64],
) {
    let mut args = vec![input, output];
    for (source, packing, len) in params {
        plan.params.push(PackedParam { source, len, packing });
        args.push(Arg::Param(plan.params.len() - 1));
    }
    args.extend(other);
    let values = &mut plan.values;
    let own = || {
        let lens = scratch.iter();
        lens.map(|&len| {
            values.push(len);
            Arg::Value(values.len() - 1)
        })
        .collect()
    };
    push_parts(&mut plan.steps, layer, schedules, parts, &args, own);
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
    let uses = uses(network);
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

/// How many times each layer is used: as an operand of another layer, and as the output.
fn uses(network: &Network) -> Vec<usize> {
    let mut uses = vec![0usize; network.layers.len()];
    for source in network.layers.iter().flat_map(|layer| layer.op.sources()) {
        if let Source::Layer(index) = source {
            uses[index] += 1;
        }
    }
    uses[network.output] += 1;
    uses
}

/// `value` rounded up to a multiple of `lanes`.
pub fn padded(value: u64, lanes: u32) -> u64 {
    value.div_ceil(u64::from(lanes)) * u64::from(lanes)
}

/// Names `function` (lanes, buffers and body built) for part `part.0` of `part.1` of stage
/// `name` and, when there are several, rebases its output (buffer 1) to `window` — or, given
/// `runs`, to the runs from `window.start`, each as long as `window`.
fn as_part(
    name: &str,
    mut function: Function,
    (part, count): (u64, u64),
    window: &Range<u64>,
    runs: Option<Runs>,
) -> Split {
    if count == 1 {
        function.name = name.to_string();
        return (function, None);
    }
    function.name = format!("{name}.part{part}");
    function.rebase(BufferId(1), window.start, runs.map_or(window.end - window.start, |runs| runs.span()));
    (function, Some((window.start, runs)))
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
    // Split into parts along images, else along positions (whole blocks; in runs, whole
    // transposes), as the stage next to it is split (by rows): each part then converts what its
    // core computed (or will compute). In a channels-first user tensor a part's positions are one
    // run per channel, between the other parts' runs: measured on std3_64to64_56's output at 2
    // threads, 0.062 ms, against 0.12 cut by channels (contiguous windows, half of each read from
    // the other core) and 0.056 on one thread.
    let threads = u64::from(target.threads.max(1));
    let elements = batch * channels * positions;
    // The split axis: its extent, the unit its ranges are multiples of, and the destination's
    // elements per position along it (or, in runs, between runs).
    let destination_image = if to_internal { padded_channels * positions } else { channels * positions };
    let in_runs = batch == 1 && !to_internal && layout == Layout::ChannelsFirst;
    let (axis, extent, unit, stride) = if batch > 1 {
        (0, batch, 1, destination_image)
    } else if in_runs {
        (2, positions, u64::from(TRANSPOSE), 1)
    } else {
        (2, positions, CONVERT_BLOCK, if to_internal { padded_channels } else { channels })
    };
    let worth = elements.saturating_mul(CONVERT_WORK) >= target.part_macs.saturating_mul(threads);
    let count = part_count(worth, threads, extent.div_ceil(unit));
    (0..count)
        .map(|part| {
            let range = part_range(extent, unit, count, part);
            let (start, end) = (range.start * stride, range.end * stride);
            let mut region = ConvertRegion { batch: 0..batch, positions: 0..positions };
            match axis {
                0 => region.batch = range,
                _ => region.positions = range,
            }
            let function = convert_region(logical, layout, lanes, to_internal, &region);
            let runs = in_runs.then_some(Runs { count: channels, len: end - start, stride: positions });
            as_part(&function.name.clone(), function, (part, count), &(start..end), runs)
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

/// The images and positions (of every channel) one conversion function moves.
struct ConvertRegion {
    batch: Range<u64>,
    positions: Range<u64>,
}

/// The conversion of `region` (see [`convert`]); `positions.start` is a multiple of
/// [`TRANSPOSE`] (or the region is everything).
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
                builder.repeat(channels, |_, c| vec![element(&n, &c, &p)])
            }),
            // A transpose: blocks of CONVERT_BLOCK positions × the region's channels, so that both
            // the user's rows and the internal pixels a block touches stay in cache.
            Layout::ChannelsFirst => {
                let full_channels = channels / size * size;
                // Positions start..start+count (count ≤ CONVERT_BLOCK) of the region's channels.
                let span = |builder: &mut Builder, start: Index, count: u64| -> Vec<Stmt> {
                    let mut body = Vec::new();
                    let quads = count / size;
                    if full_channels > 0 && quads > 0 {
                        body.extend(builder.repeat(full_channels / size, |builder, c| {
                            builder.repeat(quads, |_, q| {
                                let p = start.clone().plus(&q.times(size as i64));
                                vec![block(&n, &c.clone().times(size as i64), &p)]
                            })
                        }));
                    }
                    if full_channels > 0 && !count.is_multiple_of(size) {
                        body.extend(builder.repeat(full_channels, |builder, c| {
                            builder.repeat(count % size, |_, within| {
                                let p = start.clone().plus_constant((quads * size) as i64).plus(&within);
                                vec![element(&n, &c, &p)]
                            })
                        }));
                    }
                    if channels > full_channels {
                        body.extend(builder.repeat(channels - full_channels, |builder, c| {
                            builder.repeat(count, |_, within| {
                                let c = c.plus_constant(full_channels as i64);
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
