//! Random small layers, each lowered with several schedules, compiled and run by the JIT: bit for
//! bit the IR interpreter's output, and within tolerance of the reference interpreter's.
//!
//! The layers are generated as DSL text: rank 1–3, channels 1–9 (so vector tails of every length),
//! grouped and depthwise (with multiplier) convolutions, pointwise with groups and stride,
//! separable with its own `dw_act`, kernels 1–4, strides 1–3 (so stride may exceed the kernel),
//! dilation 1–2, padding up to 4 on a side (wider than the kernel; symmetric, asymmetric, `same`
//! and `valid`), channels-first and channels-last layouts, every activation, with or without bias,
//! and optionally a residual `add`. Input sizes are chosen so that no output is empty.

mod common;

use common::Choice;
use conv_dsl::schedule::{Order, Schedule, Target};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Cases: each compiles 4 plans of 3–6 functions and runs the interpreters once; 1,500 cases took
/// 11.6 s on the 2-core development machine at the test profile's opt-level 1, so 512 take about 4 s.
/// 512 random models × 4 schedules each: the JIT issue asks for at least 500 differential cases per
/// CI run.
const CASES: u32 = 512;

const ACTIVATIONS: [&str; 8] =
    ["none", "relu", "relu6", "leaky_relu(0.1)", "leaky_relu(2.5)", "hardswish", "silu", "sigmoid"];

/// How a layer writes its padding.
#[derive(Clone, Debug)]
enum Pad {
    Uniform(usize),
    PerAxis(Vec<usize>),
    Pairs(Vec<[usize; 2]>),
    Same,
    Valid,
}

/// The spatial hyper-parameters of a layer.
#[derive(Clone, Debug)]
struct Geometry {
    kernel: Vec<usize>,
    stride: Vec<usize>,
    dilation: Vec<usize>,
    pad: Pad,
}

impl Geometry {
    /// The smallest input size on `axis` with a non-empty output.
    fn min_input(&self, axis: usize) -> usize {
        let effective = self.dilation[axis] * (self.kernel[axis] - 1) + 1;
        let pads = match &self.pad {
            Pad::Uniform(pad) => 2 * pad,
            Pad::PerAxis(pads) => 2 * pads[axis],
            Pad::Pairs(pairs) => pairs[axis][0] + pairs[axis][1],
            Pad::Same => return 1,
            Pad::Valid => 0,
        };
        effective.saturating_sub(pads).max(1)
    }

    /// `kernel: …, stride: …, dilation: …, pad: …`
    fn keys(&self) -> String {
        let pad = match &self.pad {
            Pad::Uniform(pad) => pad.to_string(),
            Pad::PerAxis(pads) => list(pads),
            Pad::Pairs(pairs) => {
                let pairs: Vec<String> = pairs.iter().map(|[before, after]| format!("[{before}, {after}]")).collect();
                format!("[{}]", pairs.join(", "))
            }
            Pad::Same => "same".into(),
            Pad::Valid => "valid".into(),
        };
        format!(
            "kernel: {}, stride: {}, dilation: {}, pad: {pad}",
            list(&self.kernel),
            list(&self.stride),
            list(&self.dilation)
        )
    }
}

fn list(values: &[usize]) -> String {
    let values: Vec<String> = values.iter().map(ToString::to_string).collect();
    format!("[{}]", values.join(", "))
}

/// The layer under test.
#[derive(Clone, Debug)]
enum Kind {
    Conv { groups: usize, in_per_group: usize, out_per_group: usize },
    Depthwise { channels: usize, multiplier: usize },
    Pointwise { groups: usize, in_per_group: usize, out_per_group: usize },
    Separable { channels: usize, multiplier: usize, out: usize, dw_act: &'static str },
}

impl Kind {
    fn in_channels(&self) -> usize {
        match *self {
            Kind::Conv { groups, in_per_group, .. } | Kind::Pointwise { groups, in_per_group, .. } => {
                groups * in_per_group
            }
            Kind::Depthwise { channels, .. } | Kind::Separable { channels, .. } => channels,
        }
    }

    fn out_channels(&self) -> usize {
        match *self {
            Kind::Conv { groups, out_per_group, .. } | Kind::Pointwise { groups, out_per_group, .. } => {
                groups * out_per_group
            }
            Kind::Depthwise { channels, multiplier } => channels * multiplier,
            Kind::Separable { out, .. } => out,
        }
    }
}

#[derive(Clone, Debug)]
struct Case {
    kind: Kind,
    geometry: Geometry,
    batch: usize,
    spatial: Vec<usize>,
    channels_last: bool,
    bias: bool,
    act: &'static str,
    /// `pointwise t(l) { out: C }; add r(t, l) { act }`
    residual: Option<&'static str>,
    /// Two forced schedules besides the heuristics.
    schedules: [Schedule; 2],
    seed: u64,
}

impl Case {
    fn rank(&self) -> usize {
        self.spatial.len()
    }

    fn source(&self) -> String {
        let rank = self.rank();
        let channels = self.kind.in_channels();
        let spatial: Vec<String> = self.spatial.iter().map(ToString::to_string).collect();
        let input = if self.channels_last {
            let layout = ["nwc", "nhwc", "ndhwc"][rank - 1];
            format!("input x: [{}, {}, {channels}] layout {layout};", self.batch, spatial.join(", "))
        } else {
            format!("input x: [{}, {channels}, {}];", self.batch, spatial.join(", "))
        };
        let (bias, act, keys) = (self.bias, self.act, self.geometry.keys());
        let layer = match &self.kind {
            Kind::Conv { groups, .. } => format!(
                "conv l(x) {{ out: {}, {keys}, groups: {groups}, bias: {bias}, act: {act} }}",
                self.kind.out_channels()
            ),
            Kind::Depthwise { multiplier, .. } => {
                format!("depthwise l(x) {{ {keys}, multiplier: {multiplier}, bias: {bias}, act: {act} }}")
            }
            Kind::Pointwise { groups, .. } => format!(
                "pointwise l(x) {{ out: {}, stride: {}, groups: {groups}, bias: {bias}, act: {act} }}",
                self.kind.out_channels(),
                list(&self.geometry.stride)
            ),
            Kind::Separable { multiplier, out, dw_act, .. } => format!(
                "separable l(x) {{ out: {out}, {keys}, multiplier: {multiplier}, bias: {bias}, dw_act: {dw_act}, act: {act} }}"
            ),
        };
        let residual = match self.residual {
            Some(act) => {
                format!("\npointwise t(l) {{ out: {} }}\nadd r(t, l) {{ act: {act} }}", self.kind.out_channels())
            }
            None => String::new(),
        };
        format!("{input}\n{layer}{residual}\n")
    }

    /// The input shape in the input's layout.
    fn shape(&self) -> Vec<u64> {
        let mut shape = vec![self.batch as u64];
        let spatial = self.spatial.iter().map(|&size| size as u64);
        if self.channels_last {
            shape.extend(spatial);
            shape.push(self.kind.in_channels() as u64);
        } else {
            shape.push(self.kind.in_channels() as u64);
            shape.extend(spatial);
        }
        shape
    }
}

fn activation() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(&ACTIVATIONS[..])
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        // 8 and 16 outputs per group: whole vectors for the tile kernels.
        (1usize..=3, 1usize..=4, prop_oneof![3 => 1usize..=5, 1 => Just(8), 1 => Just(16)])
            .prop_map(|(groups, in_per_group, out_per_group)| Kind::Conv { groups, in_per_group, out_per_group }),
        // 16 and 24 channels: strips of several channel blocks for the depthwise tile kernel.
        (prop_oneof![4 => 1usize..=9, 1 => Just(16), 1 => Just(24)], 1usize..=3)
            .prop_map(|(channels, multiplier)| Kind::Depthwise { channels, multiplier }),
        (1usize..=3, 1usize..=4, prop_oneof![4 => 1usize..=9, 1 => Just(16)])
            .prop_map(|(groups, in_per_group, out_per_group)| Kind::Pointwise { groups, in_per_group, out_per_group }),
        (1usize..=9, 1usize..=2, 1usize..=9, activation())
            .prop_map(|(channels, multiplier, out, dw_act)| { Kind::Separable { channels, multiplier, out, dw_act } }),
    ]
}

fn pad(rank: usize) -> impl Strategy<Value = Pad> {
    let size = || 0usize..=4;
    prop_oneof![
        size().prop_map(Pad::Uniform),
        proptest::collection::vec(size(), rank).prop_map(Pad::PerAxis),
        proptest::collection::vec((size(), size()).prop_map(|(before, after)| [before, after]), rank)
            .prop_map(Pad::Pairs),
        Just(Pad::Same),
        Just(Pad::Valid),
    ]
}

/// Inline schedules of 1 or 4 lanes, tile-kernel and planar ones (a layer they do not fit runs a
/// scalar schedule of the same tile instead: `common::check_network`), with either loop order.
fn schedule() -> impl Strategy<Value = Schedule> {
    let tile = prop_oneof![
        3 => (prop_oneof![Just(1u32), Just(4u32)], 1u32..=5, 1u32..=4)
            .prop_map(|(lanes, tile_width, tile_channels)| Schedule::new(lanes, tile_width, tile_channels)),
        1 => (1u32..=6, 1u32..=2).prop_map(|(tile_width, tile_channels)| Schedule::tile_kernel(tile_width, tile_channels)),
        1 => (1u32..=4, 1u32..=2).prop_map(|(rows, vectors)| Schedule::planar(4, rows, vectors)),
    ];
    (tile, any::<bool>()).prop_map(|(schedule, channels_outer)| Schedule {
        order: if channels_outer { Order::Channels } else { Order::Pixels },
        ..schedule
    })
}

fn case() -> impl Strategy<Value = Case> {
    (1usize..=3)
        .prop_flat_map(|rank| {
            let axes = move |values: std::ops::RangeInclusive<usize>| proptest::collection::vec(values, rank);
            let geometry = (axes(1..=4), axes(1..=3), axes(1..=2), pad(rank))
                .prop_map(|(kernel, stride, dilation, pad)| Geometry { kernel, stride, dilation, pad });
            (geometry, kind())
        })
        .prop_map(|(mut geometry, kind)| {
            if let Kind::Pointwise { .. } = kind {
                // Only the stride applies to a pointwise layer.
                let rank = geometry.kernel.len();
                geometry = Geometry { kernel: vec![1; rank], dilation: vec![1; rank], pad: Pad::Valid, ..geometry };
            }
            (geometry, kind)
        })
        .prop_flat_map(|(geometry, kind)| {
            // Small sizes keep rank 3 cheap: from the smallest non-empty size up to 2 or 4 more.
            let extra = if geometry.kernel.len() == 3 { 2 } else { 4 };
            let spatial: Vec<_> = (0..geometry.kernel.len())
                .map(|axis| geometry.min_input(axis)..=geometry.min_input(axis) + extra)
                .collect();
            (
                Just(geometry),
                Just(kind),
                spatial,
                1usize..=2,
                any::<bool>(),
                any::<bool>(),
                activation(),
                proptest::option::of(activation()),
                [schedule(), schedule()],
                any::<u64>(),
            )
        })
        .prop_map(|(geometry, kind, spatial, batch, channels_last, bias, act, residual, schedules, seed)| Case {
            kind,
            geometry,
            batch,
            spatial,
            channels_last,
            bias,
            act,
            residual,
            schedules,
            seed,
        })
}

/// Depthwise layers (any multiplier) and grouped ones (any group sizes), channels-first, stride 1
/// or 2 along w, with rows long enough for [`Kernel::Planar`]'s vectors of 4 — and two planar
/// schedules (rows × vectors up to 8, 1 or 4 lanes; a grouped tile takes up to 4 output channels).
/// Depthwise 2D layers (any multiplier) and grouped ones (any group sizes) of a channels-first
/// input with a window a plane kernel
/// exists for (3×3 with stride 1 or 2 or dilation 2, 5×5 with stride 1 or 2, 1×1 unpadded, also
/// pointwise: one group of up to 20 inputs and outputs; separable layers, whose 1×1 stage follows
/// in the user's layout), any padding, rows of
/// 1 to 41 outputs (shorter than a vector of 8, between 8 and 16, longer: tails of every kind),
/// 1 to 7 rows (fewer than a block of 4 too), an activation the kernels apply.
fn plane_case() -> impl Strategy<Value = Case> {
    let windows = vec![(3usize, 1usize, 1usize), (3, 2, 1), (3, 1, 2), (5, 1, 1), (5, 2, 1), (1, 1, 1)];
    (proptest::sample::select(windows), pad(2))
        .prop_map(|((kernel, stride, dilation), pad)| Geometry {
            kernel: vec![kernel; 2],
            stride: vec![stride; 2],
            dilation: vec![dilation; 2],
            pad: if kernel == 1 { Pad::Valid } else { pad },
        })
        .prop_flat_map(|geometry| {
            let least = |axis: usize| geometry.min_input(axis);
            let (rows, row) =
                (least(0)..=least(0) + 6 * geometry.stride[0], least(1)..=least(1) + 40 * geometry.stride[1]);
            let depthwise =
                (1usize..=9, 1usize..=3).prop_map(|(channels, multiplier)| Kind::Depthwise { channels, multiplier });
            let grouped = (1usize..=3, 1usize..=5, 1usize..=6)
                .prop_map(|(groups, in_per_group, out_per_group)| Kind::Conv { groups, in_per_group, out_per_group });
            let pointwise = (1usize..=20, 1usize..=20).prop_map(|(in_per_group, out_per_group)| Kind::Conv {
                groups: 1,
                in_per_group,
                out_per_group,
            });
            // A separable layer: both stages on the plane kernels, a channels-first value between.
            let separable = (1usize..=6, 1usize..=2, 1usize..=12, proptest::sample::select(&ACTIVATIONS[..3]))
                .prop_map(|(channels, multiplier, out, dw_act)| Kind::Separable { channels, multiplier, out, dw_act });
            let kind = if geometry.kernel[0] == 1 {
                prop_oneof![pointwise, grouped].boxed()
            } else {
                prop_oneof![depthwise, grouped, separable].boxed()
            };
            let act = proptest::sample::select(&ACTIVATIONS[..3]);
            (Just(geometry), kind, vec![rows, row], 1usize..=2, any::<bool>(), act, any::<u64>())
        })
        .prop_map(|(geometry, kind, spatial, batch, bias, act, seed)| Case {
            kind,
            geometry,
            batch,
            spatial,
            channels_last: false,
            bias,
            act,
            residual: None,
            schedules: [Schedule::plane(), Schedule::plane()],
            seed,
        })
}

fn planar_case() -> impl Strategy<Value = Case> {
    (1usize..=3)
        .prop_flat_map(|rank| {
            let axes = move |values: std::ops::RangeInclusive<usize>| proptest::collection::vec(values, rank);
            let geometry =
                (axes(1..=4), axes(1..=3), axes(1..=2), pad(rank)).prop_map(|(kernel, mut stride, dilation, pad)| {
                    let last = stride.last_mut().expect("rank ≥ 1");
                    *last = (*last).min(2);
                    Geometry { kernel, stride, dilation, pad }
                });
            let depthwise =
                (1usize..=9, 1usize..=3).prop_map(|(channels, multiplier)| Kind::Depthwise { channels, multiplier });
            let grouped = (1usize..=3, 1usize..=5, 1usize..=6)
                .prop_map(|(groups, in_per_group, out_per_group)| Kind::Conv { groups, in_per_group, out_per_group });
            (geometry, prop_oneof![depthwise, grouped])
        })
        .prop_flat_map(|(geometry, kind)| {
            let rank = geometry.kernel.len();
            // Rows with 9 to 17 output positions whose taps are all inside, so that vectors of 4
            // fit whatever the padding.
            let spatial: Vec<_> = (0..rank)
                .map(|axis| {
                    let window = geometry.dilation[axis] * (geometry.kernel[axis] - 1) + 1;
                    let least = geometry.min_input(axis);
                    let stride = geometry.stride[axis];
                    if axis + 1 == rank { window + 8 * stride..=window + 16 * stride } else { least..=least + 3 }
                })
                .collect();
            // Up to 8 accumulators: 2 × 4 is the default tile of large windows.
            let planar = (prop_oneof![Just(1u32), Just(4u32)], 1u32..=4, 1u32..=4)
                .prop_map(|(lanes, rows, vectors)| Schedule::planar(lanes, rows.min(8 / vectors), vectors));
            (
                Just(geometry),
                Just(kind),
                spatial,
                1usize..=2,
                any::<bool>(),
                activation(),
                [planar.clone(), planar],
                any::<u64>(),
            )
        })
        .prop_map(|(geometry, kind, spatial, batch, bias, act, schedules, seed)| Case {
            kind,
            geometry,
            batch,
            spatial,
            channels_last: false,
            bias,
            act,
            residual: None,
            schedules,
            seed,
        })
}

/// A depthwise → pointwise pair: `depthwise d(x) { … } pointwise p(d) { … }`, and where shapes
/// allow, `add r(p, x)`.
#[derive(Clone, Debug)]
struct PairCase {
    geometry: Geometry,
    channels: usize,
    multiplier: usize,
    out: usize,
    groups: usize,
    batch: usize,
    spatial: Vec<usize>,
    bias: bool,
    acts: [&'static str; 2],
    residual: Option<&'static str>,
    /// Depthwise outputs per block of rows.
    block: u64,
    schedule: Schedule,
    seed: u64,
}

impl PairCase {
    fn source(&self) -> String {
        let spatial: Vec<String> = self.spatial.iter().map(ToString::to_string).collect();
        let (keys, bias, [dw_act, pw_act]) = (self.geometry.keys(), self.bias, self.acts);
        let mut source = format!(
            "input x: [{}, {}, {}];\n\
             depthwise d(x) {{ {keys}, multiplier: {}, bias: {bias}, act: {dw_act} }}\n\
             pointwise p(d) {{ out: {}, groups: {}, bias: {bias}, act: {pw_act} }}\n",
            self.batch,
            self.channels,
            spatial.join(", "),
            self.multiplier,
            self.out,
            self.groups
        );
        if let Some(act) = self.residual {
            source.push_str(&format!("add r(p, x) {{ act: {act} }}\n"));
        }
        source
    }

    fn shape(&self) -> Vec<u64> {
        let mut shape = vec![self.batch as u64, self.channels as u64];
        shape.extend(self.spatial.iter().map(|&size| size as u64));
        shape
    }
}

fn pair_case() -> impl Strategy<Value = PairCase> {
    (1usize..=3)
        .prop_flat_map(|rank| {
            let axes = move |values: std::ops::RangeInclusive<usize>| proptest::collection::vec(values, rank);
            let geometry = (axes(2..=4), axes(1..=2), axes(1..=2), pad(rank))
                .prop_map(|(kernel, stride, dilation, pad)| Geometry { kernel, stride, dilation, pad });
            (geometry, prop_oneof![3 => 1usize..=9, 1 => Just(16)], prop_oneof![3 => Just(1usize), 1 => 2usize..=3])
        })
        .prop_flat_map(|(geometry, channels, multiplier)| {
            let extra = if geometry.kernel.len() == 3 { 3 } else { 6 };
            let spatial: Vec<_> = (0..geometry.kernel.len())
                .map(|axis| geometry.min_input(axis)..=geometry.min_input(axis) + extra)
                .collect();
            (
                Just(geometry),
                Just(channels),
                Just(multiplier),
                prop_oneof![1usize..=9, Just(8), Just(16)],
                prop_oneof![3 => Just(1usize), 1 => Just(2)],
                spatial,
                1usize..=2,
                (any::<bool>(), [activation(), activation()], proptest::option::of(activation())),
                prop_oneof![Just(8u64), Just(48), Just(200), Just(1 << 14)],
                schedule(),
                any::<u64>(),
            )
        })
        .prop_map(
            |(
                geometry,
                channels,
                multiplier,
                out,
                groups,
                spatial,
                batch,
                (bias, acts, residual),
                block,
                schedule,
                seed,
            )| {
                // Grouped only where both channel counts split; an `add` only where `p` has
                // `x`'s shape (stride 1, padding `same`, as many channels).
                let groups = if (channels * multiplier) % groups == 0 && out % groups == 0 { groups } else { 1 };
                let same_shape = geometry.stride.iter().all(|&stride| stride == 1) && matches!(geometry.pad, Pad::Same);
                let (out, residual) = match residual {
                    Some(act) if same_shape && channels % groups == 0 => (channels, Some(act)),
                    _ => (out, None),
                };
                PairCase {
                    geometry,
                    channels,
                    multiplier,
                    out,
                    groups,
                    batch,
                    spatial,
                    bias,
                    acts,
                    residual,
                    block,
                    schedule,
                    seed,
                }
            },
        )
}

/// A dense 3×3, stride-1 2D layer for [`Kernel::Winograd`]: 1–3 groups of 1–12 inputs (vector
/// tails) and 8, 16 or 24 outputs (strips of 1–3 vectors), any padding up to 4 on a side (tiles
/// wholly in the padding), sizes from the smallest non-empty to 9 more (odd ones: half tiles),
/// batch 1–2, either layout, any activation; with an `add` fused into its store (a 1×1 of the
/// input as the other operand, `same` padding).
#[derive(Clone, Debug)]
struct WinogradCase {
    groups: usize,
    in_per_group: usize,
    out_per_group: usize,
    pad: Pad,
    spatial: Vec<usize>,
    batch: usize,
    channels_last: bool,
    bias: bool,
    act: &'static str,
    residual: Option<&'static str>,
    schedule: Schedule,
    seed: u64,
}

impl WinogradCase {
    fn source(&self) -> String {
        let channels = self.groups * self.in_per_group;
        let out = self.groups * self.out_per_group;
        let [h, w] = [self.spatial[0], self.spatial[1]];
        let input = if self.channels_last {
            format!("input x: [{}, {h}, {w}, {channels}] layout nhwc;", self.batch)
        } else {
            format!("input x: [{}, {channels}, {h}, {w}];", self.batch)
        };
        let geometry = Geometry { kernel: vec![3; 2], stride: vec![1; 2], dilation: vec![1; 2], pad: self.pad.clone() };
        let (groups, bias, act, keys) = (self.groups, self.bias, self.act, geometry.keys());
        let layer = format!("conv l(x) {{ out: {out}, {keys}, groups: {groups}, bias: {bias}, act: {act} }}");
        match self.residual {
            Some(add_act) => {
                format!("{input}\npointwise p(x) {{ out: {out} }}\n{layer}\nadd r(l, p) {{ act: {add_act} }}\n")
            }
            None => format!("{input}\n{layer}\n"),
        }
    }

    fn shape(&self) -> Vec<u64> {
        let channels = (self.groups * self.in_per_group) as u64;
        let [h, w] = [self.spatial[0] as u64, self.spatial[1] as u64];
        if self.channels_last {
            vec![self.batch as u64, h, w, channels]
        } else {
            vec![self.batch as u64, channels, h, w]
        }
    }
}

fn winograd_case() -> impl Strategy<Value = WinogradCase> {
    let residual = proptest::option::of(activation());
    (pad(2), residual)
        .prop_map(|(pad, residual)| if residual.is_some() { (Pad::Same, residual) } else { (pad, residual) })
        .prop_flat_map(|(pad, residual)| {
            let geometry = Geometry { kernel: vec![3; 2], stride: vec![1; 2], dilation: vec![1; 2], pad: pad.clone() };
            let spatial: Vec<_> = (0..2).map(|axis| geometry.min_input(axis)..=geometry.min_input(axis) + 9).collect();
            let tile = (1u32..=6, 1u32..=2).prop_map(|(pixels, vectors)| Schedule::winograd(pixels, vectors));
            (
                (1usize..=3, 1usize..=12, prop_oneof![Just(8usize), Just(16), Just(24)]),
                Just(pad),
                spatial,
                1usize..=2,
                any::<bool>(),
                any::<bool>(),
                activation(),
                Just(residual),
                tile,
                any::<u64>(),
            )
        })
        .prop_map(
            |(
                (groups, in_per_group, out_per_group),
                pad,
                spatial,
                batch,
                channels_last,
                bias,
                act,
                residual,
                schedule,
                seed,
            )| {
                WinogradCase {
                    groups,
                    in_per_group,
                    out_per_group,
                    pad,
                    spatial,
                    batch,
                    channels_last,
                    bias,
                    act,
                    residual,
                    schedule,
                    seed,
                }
            },
        )
}

/// Winograd stages with enough channels that a block holds only some of the tile rows (the
/// random cases' few channels fit every row in one block): 64 → 64 at 17×17, blocks of 3 tile rows
/// (two, then the rest of one, between the border rows); 128 → 128 at 9×33, blocks of one row;
/// each alone, in 2 parts, and grouped.
#[test]
fn winograd_blocks_of_tile_rows_run_like_the_interpreters() {
    let sources = [
        "input x: [1, 64, 17, 17];\nconv l(x) { out: 64, kernel: 3, pad: 1, act: relu }\n",
        "input x: [1, 128, 9, 33];\nconv l(x) { out: 128, kernel: 3, pad: 1 }\n",
        "input x: [1, 11, 19, 128] layout nhwc;\nconv l(x) { out: 64, kernel: 3, pad: [[2, 0], [1, 1]], groups: 2 }\n",
    ];
    for (seed, source) in sources.iter().enumerate() {
        let network = conv_dsl::compile_source("case.conv", source).expect("the model checks");
        let shape = network.example_input_shape(1, 1);
        let schedule = Schedule::winograd(6, 2);
        let with_kernels = Target { microkernels: true, ..Target::CRANELIFT_X86_64 };
        let choices = [
            Choice::for_stage("winograd", with_kernels, "l", schedule),
            Choice::for_stage("winograd, 2 parts", common::split(2), "l", schedule),
        ];
        if let Err(message) = common::check_network("blocks", &network, &shape, seed as u64, &choices) {
            panic!("{message}\n{source}");
        }
    }
}

/// Dense tile-kernel stages with at least 2 MiB of weights, whose row tails run with each chunk of
/// channel blocks (`Stage::strip_and_tail`; the random cases' weights are far smaller): a
/// pointwise 3200 → 168 at 7 × 7 (49 pixels: a tail of one; 21 vectors of 8 outputs: chunks of 4
/// blocks, a spare one and a last vector) and a 3 × 3 stride-2 256 → 256
/// at 9 × 16 (rows of 7 interior outputs) with an epilogue (leaky_relu: the sums go through the
/// scratch buffer), with narrow and wide tiles, and in 2 parts.
#[test]
fn tails_of_large_weights_run_like_the_interpreters() {
    let sources = [
        "input x: [1, 7, 7, 3200] layout nhwc;\npointwise l(x) { out: 168, act: relu }\n",
        "input x: [1, 256, 9, 16];\nconv l(x) { out: 256, kernel: 3, stride: 2, pad: 1, act: leaky_relu(0.1) }\n",
    ];
    for (seed, source) in sources.iter().enumerate() {
        let network = conv_dsl::compile_source("case.conv", source).expect("the model checks");
        let shape = network.example_input_shape(1, 1);
        let with_kernels = Target { microkernels: true, ..Target::CRANELIFT_X86_64 };
        let choices = [
            Choice::new("tile kernels", with_kernels, None),
            Choice::new("wide tile kernels", common::wide_tiles(Target::CRANELIFT_X86_64), None),
            Choice::new("tile kernels, 2 parts", Target { microkernels: true, ..common::split(2) }, None),
        ];
        // (Split in 2, such weights are cut by output channels: each part's blocks run their
        // tails one by one, as before.)
        for choice in &choices[..2] {
            let binding = conv_dsl::bind(&network, &shape).expect("the shape fits");
            let plan = conv_dsl::lower::lower(&network, &binding, choice.target, &|_| None).expect("lowers");
            let text = plan.steps.iter().map(|step| step.function.to_string()).collect::<String>();
            assert!(text.contains("repeat 4 ("), "{}: no tail over a chunk of 4 blocks\n{text}", choice.label);
        }
        if let Err(message) = common::check_network("tails", &network, &shape, seed as u64, &choices) {
            panic!("{message}\n{source}");
        }
    }
}

fn config() -> ProptestConfig {
    // No regression files: a failure prints the minimal case, and its DSL text, instead.
    ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(CASES) }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_layers_run_like_the_interpreters(case in case()) {
        let source = case.source();
        let network = conv_dsl::compile_source("case.conv", &source)
            .map_err(|error| TestCaseError::fail(format!("generated invalid DSL:\n{source}\n{error}")))?;
        let [first, second] = case.schedules;
        let choices = [
            Choice::new("auto/cranelift", Target::CRANELIFT_X86_64, None),
            Choice::new("auto/tile kernels", Target { microkernels: true, ..Target::CRANELIFT_X86_64 }, None),
            Choice::new("auto/scalar", Target::SCALAR, None),
            Choice::new(&format!("forced {first}"), Target::CRANELIFT_X86_64, Some(first)),
            Choice::new(&format!("forced {second}, 2 parts"), common::split(2), Some(second)),
            Choice::new("auto/wide tile kernels, 3 parts", common::wide_tiles(common::split(3)), None),
            Choice::new(&format!("forced {first}, fused"), common::fusing(Target::CRANELIFT_X86_64, 48), Some(first)),
        ];
        common::check_network("case", &network, &case.shape(), case.seed, &choices)
            .map_err(|message| TestCaseError::fail(format!("{message}\n{source}")))?;
    }

    /// A depthwise layer fused into the pointwise layer that reads it, on blocks of rows (of
    /// several sizes, so that blocks, their remainders and border rows all occur), with and
    /// without a residual `add` fused into the pointwise store: bit for bit the two layers
    /// computed apart, and within tolerance of the reference.
    #[test]
    fn fused_depthwise_pointwise_pairs_run_like_the_interpreters(case in pair_case()) {
        let source = case.source();
        let network = conv_dsl::compile_source("pair.conv", &source)
            .map_err(|error| TestCaseError::fail(format!("generated invalid DSL:\n{source}\n{error}")))?;
        let (block, schedule) = (case.block, case.schedule);
        let fused = common::fusing(Target::CRANELIFT_X86_64, block);
        if case.multiplier == 1 && case.groups == 1 {
            // Both stages take vectors of 4 lanes: the automatic schedules fuse them.
            let binding = conv_dsl::bind(&network, &case.shape()).map_err(|error| TestCaseError::fail(error.to_string()))?;
            let plan = conv_dsl::lower::lower(&network, &binding, fused, &|_| None)
                .map_err(|error| TestCaseError::fail(format!("{error}\n{source}")))?;
            prop_assert!(plan.steps.iter().any(|step| step.layer == "d+p"), "not fused:\n{}", source);
        }
        let choices = [
            Choice::new("apart", Target { fusion: conv_dsl::schedule::Fusion::OFF, ..Target::CRANELIFT_X86_64 }, None),
            Choice::new(&format!("fused in blocks of {block}"), fused, None),
            Choice::new("fused, tile kernels", common::fusing(common::wide_tiles(Target::CRANELIFT_X86_64), block), None),
            Choice::new("fused, 3 parts", common::fusing(common::split(3), block), None),
            Choice::new(&format!("fused, forced {schedule}"), fused, Some(schedule)),
        ];
        common::check_network("pair", &network, &case.shape(), case.seed, &choices)
            .map_err(|message| TestCaseError::fail(format!("{message}\n{source}")))?;
    }

    /// The plane kernels on every window they exist for, with rows and planes of every size: a
    /// forced `kernel=plane` must lower (so the comparison tests it), and run like the
    /// interpreters, alone, in parts, and as the heuristic chooses on a target with microkernels.
    #[test]
    fn plane_kernels_run_like_the_interpreters(case in plane_case()) {
        let source = case.source();
        let network = conv_dsl::compile_source("case.conv", &source)
            .map_err(|error| TestCaseError::fail(format!("generated invalid DSL:\n{source}\n{error}")))?;
        let binding = conv_dsl::bind(&network, &case.shape()).map_err(|error| TestCaseError::fail(error.to_string()))?;
        let plan = conv_dsl::lower::lower(&network, &binding, Target::CRANELIFT_X86_64, &|_| Some(Schedule::plane()))
            .map_err(|error| TestCaseError::fail(format!("kernel=plane: {error}\n{source}")))?;
        prop_assert!(plan.steps.iter().all(|step| step.schedules == [Schedule::plane()]), "{source}");
        let with_kernels = common::wide_tiles(Target::CRANELIFT_X86_64);
        let choices = [
            Choice::new("auto, microkernels", with_kernels, None),
            Choice::new("forced plane", Target::CRANELIFT_X86_64, Some(Schedule::plane())),
            Choice::new("forced plane, 3 parts", common::split(3), Some(Schedule::plane())),
        ];
        common::check_network("case", &network, &case.shape(), case.seed, &choices)
            .map_err(|message| TestCaseError::fail(format!("{message}\n{source}")))?;
    }

    /// Winograd's F(2×2, 3×3) on dense 3×3 layers with tails of every kind: a forced
    /// `kernel=winograd` must lower (so the comparison tests it), and run bit for bit like the IR
    /// interpreter on its plan and within tolerance of the reference — alone, in parts (images, or
    /// tile rows), with the wide kernels' tiles, and as the heuristic chooses.
    #[test]
    fn winograd_layers_run_like_the_interpreters(case in winograd_case()) {
        let source = case.source();
        let network = conv_dsl::compile_source("case.conv", &source)
            .map_err(|error| TestCaseError::fail(format!("generated invalid DSL:\n{source}\n{error}")))?;
        let schedule = case.schedule;
        let with_kernels = Target { microkernels: true, ..Target::CRANELIFT_X86_64 };
        let choices = [
            Choice::new("auto, microkernels", with_kernels, None),
            Choice::for_stage(&format!("forced {schedule}"), with_kernels, "l", schedule),
            Choice::for_stage(&format!("forced {schedule}, 3 parts"), common::split(3), "l", schedule),
            Choice::for_stage("forced wide 3x4", common::wide_tiles(common::split(2)), "l", Schedule::winograd(3, 4)),
        ];
        common::check_network("case", &network, &case.shape(), case.seed, &choices)
            .map_err(|message| TestCaseError::fail(format!("{message}\n{source}")))?;
    }

    /// The planar lowering (the user's layout, vectors along w) on layers it can compute: it must
    /// lower with both schedules (so the comparison tests it, not a fallback), and run like the
    /// interpreters, alone and in parts.
    #[test]
    fn planar_layers_run_like_the_interpreters(case in planar_case()) {
        let source = case.source();
        let network = conv_dsl::compile_source("case.conv", &source)
            .map_err(|error| TestCaseError::fail(format!("generated invalid DSL:\n{source}\n{error}")))?;
        let binding = conv_dsl::bind(&network, &case.shape()).map_err(|error| TestCaseError::fail(error.to_string()))?;
        let [first, second] = case.schedules;
        for schedule in [first, second] {
            let plan = conv_dsl::lower::lower(&network, &binding, Target::CRANELIFT_X86_64, &|_| Some(schedule));
            let plan = plan.map_err(|error| TestCaseError::fail(format!("{schedule}: {error}\n{source}")))?;
            prop_assert!(plan.steps.iter().all(|step| step.args[..2] == [conv_dsl::lower::Arg::Input, conv_dsl::lower::Arg::Output]));
        }
        let choices = [
            Choice::new("auto/cranelift", Target::CRANELIFT_X86_64, None),
            Choice::new(&format!("forced {first}"), Target::CRANELIFT_X86_64, Some(first)),
            Choice::new(&format!("forced {second}, 3 parts"), common::split(3), Some(second)),
        ];
        common::check_network("case", &network, &case.shape(), case.seed, &choices)
            .map_err(|message| TestCaseError::fail(format!("{message}\n{source}")))?;
    }
}
