//! One convolution stage as loop IR: its geometry ([`Axis`], segments of interior and border
//! positions), its [`Stage`] (strides and buffers), the loops over its pixels, and its register
//! tiles — init, accumulate, store — inline or by the tile kernel ([`Stmt::Tile`]).

use std::ops::Range;

use super::{Builder, Packing, Runs, activate, as_part, padded, part_count, part_range};
use crate::bind::BoundConv;
use crate::ir::{Acc, Buffer, BufferId, Function, Index, Stmt, TILE_LANES, Tile, TileActivation, Value};
use crate::schedule::{Kernel, Order, Schedule, Target, channel_vectors};
use crate::spec::{Activation, Conv};

/// One segment of an output axis: a run of interior positions (no tap out of range) or a single
/// border position.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Segment {
    Interior { start: u64, count: u64 },
    Border(u64),
}

/// A position along an axis: a loop-dependent index and, on a border, its constant value.
#[derive(Clone)]
pub(super) struct Position {
    pub index: Index,
    pub border: Option<u64>,
}

/// Geometry of one spatial axis of a convolution.
#[derive(Clone, Copy, Debug)]
pub(super) struct Axis {
    pub input: u64,
    pub output: u64,
    pub kernel: u64,
    pub stride: u64,
    pub dilation: u64,
    pub pad_before: u64,
}

impl Axis {
    /// The input coordinate of output `position` at `tap`, if it is inside the input.
    pub fn source(&self, position: u64, tap: u64) -> Option<u64> {
        (position * self.stride + tap * self.dilation).checked_sub(self.pad_before).filter(|&index| index < self.input)
    }

    /// Whether `tap` is inside the input for every position of a segment: the border position
    /// `border`, or (none) the interior, where every tap is.
    pub fn takes(&self, border: Option<u64>, tap: u64) -> bool {
        border.is_none_or(|position| self.source(position, tap).is_some())
    }

    /// Border positions, then one interior run, then border positions.
    pub fn segments(&self) -> Vec<Segment> {
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
    pub fn segments_within(&self, range: &Range<u64>) -> Vec<Segment> {
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
pub(super) struct Region {
    pub batch: Range<u64>,
    pub positions: [Range<u64>; 3],
}

/// A function and, for a [`Part`], where its window of the output starts and the runs of it it
/// writes, if not all of it.
pub(super) type Split = (Function, Option<(u64, Option<Runs>)>);

/// A packed parameter of a convolution stage: `(kind, packing, len)` with kind `weight` or `bias`.
pub(super) type StageParam = (&'static str, Packing, u64);

/// What the tiles of one convolution stage read and write: its geometry, element strides,
/// buffers and schedule, wherever its input and output live (model values, or a fused stage's
/// block of rows).
pub(super) struct Stage<'a> {
    pub conv: &'a Conv,
    pub axes: [Axis; 3],
    /// Element strides of the input along n, d, h and w.
    pub in_strides: [u64; 4],
    /// Input elements between input channels: 1 in the internal layout.
    pub in_channel_stride: u64,
    /// Element strides of the output along n, d, h and w (its channels are consecutive).
    pub out_strides: [u64; 4],
    pub depthwise: bool,
    /// Vectors of output channels per group (all channels for a depthwise stage).
    pub vectors: u64,
    pub tile_width: u64,
    pub tile_channels: u64,
    /// The schedule's lanes.
    pub lanes: u32,
    pub in_per_group: u64,
    /// Output channels per group as the weights are packed ([`Packing::Dense`]).
    pub out_per_group_padded: u64,
    pub taps: u64,
    /// Input, output, weight and bias.
    pub buffers: (BufferId, BufferId, BufferId, Option<BufferId>),
    /// A fused `add`: the other operand, in the output's layout, and its activation.
    pub residual: Option<(BufferId, Activation)>,
    /// Where the tile kernel's sums go (for a [`Kernel::Tile`] schedule).
    pub sums: Option<Sums>,
    /// The plan's lanes (channel padding of internal values).
    pub plan_lanes: u32,
}

/// Where a [`Kernel::Tile`] stage's tile kernel puts its sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sums {
    /// Into the output, activated: for a stage whose activation the kernels apply themselves
    /// ([`TileActivation`]) and with no residual `add`.
    Output,
    /// Into this scratch buffer (`sums`), from which the IR's epilogue stores `act(sum)` (plus a
    /// residual) a vector of the plan's lanes at a time.
    Scratch(BufferId),
}

/// Whether a tile kernel stores `conv`'s results itself ([`Sums::Output`]): its activation is
/// one the kernels apply, and no residual `add` is fused into its store.
pub(super) fn kernel_stores(conv: &Conv, residual: bool) -> bool {
    !residual && TileActivation::of(conv.act).is_some()
}

/// The shape of a convolution stage as the lowering sees it: input, output, kernel, stride,
/// dilation and padding as 3D (d, h, w) axes. A pointwise stage ([`is_pointwise`]) maps each
/// pixel to the pixel at the same place, so its positions are one run along w (channels-last,
/// they are consecutive), tiled as one long row, so that a row's tail tile is paid once per image,
/// not once per row (7×7 rows of 6-pixel tiles would spend a seventh of their pixels in 1-pixel
/// tiles). Each output still sums the same terms in the same order.
pub(super) fn stage_axes(conv: &Conv, bound: &BoundConv) -> [Axis; 3] {
    let rank = conv.kernel.len();
    let as_3d = |values: &[u64], fill: u64| -> [u64; 3] {
        let mut out = [fill; 3];
        out[3 - values.len()..].copy_from_slice(values);
        out
    };
    let positions = |dims: &[u64]| [1, 1, dims.iter().product()];
    let (input3, output3) = if is_pointwise(conv, bound) {
        (positions(&bound.input[2..]), positions(&bound.output[2..]))
    } else {
        (as_3d(&bound.input[2..], 1), as_3d(&bound.output[2..], 1))
    };
    let (kernel3, stride3, dilation3) = (as_3d(&conv.kernel, 1), as_3d(&conv.stride, 1), as_3d(&conv.dilation, 1));
    let pads: Vec<u64> = bound.padding.iter().map(|[before, _]| *before).collect();
    let pad3 = as_3d(&pads, 0);
    std::array::from_fn(|axis| Axis {
        input: input3[axis],
        output: output3[axis],
        kernel: kernel3[axis],
        stride: stride3[axis],
        dilation: dilation3[axis],
        pad_before: if axis < 3 - rank { 0 } else { pad3[axis] },
    })
}

/// Whether `conv` is a 1×1 convolution with stride 1 and no padding: each output pixel reads the
/// input pixel at the same place.
pub(super) fn is_pointwise(conv: &Conv, bound: &BoundConv) -> bool {
    conv.kernel.iter().all(|&k| k == 1)
        && conv.stride.iter().all(|&s| s == 1)
        && bound.padding.iter().all(|&[before, after]| before == 0 && after == 0)
}

/// The packed parameters of a stage — `(kind, packing, len)`, the weight then the bias if any —
/// and the output channels per group the weights are packed with ([`Stage::out_per_group_padded`]).
pub(super) fn stage_params(conv: &Conv, schedule: Schedule, plan_lanes: u32) -> (Vec<StageParam>, u64) {
    let (groups, lanes) = (conv.groups, schedule.lanes);
    let (in_per_group, out_per_group) = (conv.in_channels / groups, conv.out_channels / groups);
    let taps: u64 = conv.kernel.iter().product();
    let out_padded = padded(conv.out_channels, plan_lanes);
    let (weight_packing, weight_len, out_per_group_padded) = if conv.is_depthwise() {
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
    (packings, out_per_group_padded)
}

/// The length of a [`Kernel::Tile`] stage's scratch buffer (`sums`) for strips of at most `pixels`
/// pixels: a dense strip is every full tile of a row, a depthwise one every channel of a tile.
pub(super) fn scratch_len(conv: &Conv, schedule: Schedule, pixels: u64) -> u64 {
    let pixels = pixels.max(u64::from(schedule.tile_width));
    let row = pixels * u64::from(schedule.tile_channels * TILE_LANES);
    row.max(u64::from(schedule.tile_width) * padded(conv.out_channels, TILE_LANES))
}

/// The lanes of the function that computes a stage with `schedule` on a plan of `plan_lanes`:
/// the schedule's, or the plan's where a tile kernel computes the sums (the epilogue's vectors).
pub(super) fn function_lanes(schedule: Schedule, plan_lanes: u32) -> u32 {
    if schedule.kernel == Kernel::Tile { plan_lanes } else { schedule.lanes }
}

/// Element strides along n, d, h, w of a tensor of `positions` (d, h, w) in the internal
/// channels-last layout with `channels` (padded) channels.
pub(super) fn internal_strides(positions: [u64; 3], channels: u64) -> [u64; 4] {
    [
        positions[0] * positions[1] * positions[2] * channels,
        positions[1] * positions[2] * channels,
        positions[2] * channels,
        channels,
    ]
}

impl<'a> Stage<'a> {
    /// The stage of `conv` with `schedule` on a plan of `plan_lanes`, whose `axes` are its
    /// geometry, reading and writing with `strides` (input, between input channels, output) the
    /// `buffers` (input, output, weight, bias), with a fused residual and where the tile
    /// kernels' `sums` go if it has them.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        conv: &'a Conv,
        schedule: Schedule,
        plan_lanes: u32,
        axes: [Axis; 3],
        (in_strides, in_channel_stride, out_strides): ([u64; 4], u64, [u64; 4]),
        buffers: (BufferId, BufferId, BufferId, Option<BufferId>),
        residual: Option<(BufferId, Activation)>,
        sums: Option<Sums>,
    ) -> Stage<'a> {
        let in_per_group = conv.in_channels / conv.groups;
        Stage {
            conv,
            axes,
            in_strides,
            in_channel_stride,
            out_strides,
            depthwise: conv.is_depthwise(),
            vectors: channel_vectors(conv, schedule.lanes),
            tile_width: u64::from(schedule.tile_width),
            tile_channels: u64::from(schedule.tile_channels),
            lanes: schedule.lanes,
            in_per_group,
            out_per_group_padded: stage_params(conv, schedule, plan_lanes).1,
            taps: conv.kernel.iter().product(),
            buffers,
            residual,
            sums,
            plan_lanes,
        }
    }

    /// The tiles of one output row segment: positions `segment_w` along w at (`n`, `d`, `h`),
    /// every channel block or (given `block`: group, first vector, vectors) that one. The output
    /// indices are shifted by `out_offset` (zero, except for a fused stage's block of rows).
    #[allow(clippy::too_many_arguments)]
    pub fn row(
        &self,
        builder: &mut Builder,
        n: &Index,
        d: &Position,
        h: &Position,
        segment_w: Segment,
        block: Option<&(Index, Index, u64)>,
        out_offset: &Index,
    ) -> Vec<Stmt> {
        // `repeat` tiles of `width` pixels from `w` (more than one only for a tile kernel, which
        // runs them all in one call).
        let emit_tiles = |builder: &mut Builder, w: Position, width: u64, repeat: u64| -> Vec<Stmt> {
            let context = TileContext { stage: self, n, d, h, w: &w, width, block: block.cloned(), repeat, out_offset };
            tile(builder, &context)
        };
        let tile_width = self.tile_width;
        match segment_w {
            Segment::Border(position) => {
                let w = Position { index: Index::constant(position as i64), border: Some(position) };
                emit_tiles(builder, w, 1, 1)
            }
            Segment::Interior { start, count } => {
                let mut tiles = Vec::new();
                let full = count / tile_width;
                let strip = full > 0 && self.sums.is_some() && !self.depthwise;
                if strip
                    && block.is_none()
                    && count % tile_width > 0
                    && self.weight_bytes() >= TAIL_WITH_BLOCKS_MIN_BYTES
                {
                    // The tail with each chunk of channel blocks, whose weights are in cache.
                    return self.strip_and_tail(builder, (n, d, h), start, full, count % tile_width, out_offset);
                }
                if strip {
                    // A dense tile kernel's strip: all full tiles in one call. (A depthwise one
                    // strips channel blocks.)
                    let w = Position { index: Index::constant(start as i64), border: None };
                    tiles.extend(emit_tiles(builder, w, tile_width, full));
                } else if full > 0 {
                    tiles.extend(builder.repeat(full, |builder, var| {
                        let index = var.times(tile_width as i64).plus_constant(start as i64);
                        emit_tiles(builder, Position { index, border: None }, tile_width, 1)
                    }));
                }
                let rest = count % tile_width;
                if rest > 0 {
                    let w = Position { index: Index::constant((start + full * tile_width) as i64), border: None };
                    tiles.extend(emit_tiles(builder, w, rest, 1));
                }
                tiles
            }
        }
    }

    /// Bytes of the stage's weights.
    fn weight_bytes(&self) -> u64 {
        self.conv.out_channels * self.in_per_group * self.taps * 4
    }

    /// A dense tile kernel's row segment of `full` tiles from `start` and a tail of `rest` pixels,
    /// in chunks of [`TAIL_BLOCKS`] channel blocks: each block's strip, then the tail of the
    /// chunk's blocks in one call (which the kernel computes at once), while their weights are
    /// still in cache.
    fn strip_and_tail(
        &self,
        builder: &mut Builder,
        (n, d, h): (&Index, &Position, &Position),
        start: u64,
        full: u64,
        rest: u64,
        out_offset: &Index,
    ) -> Vec<Stmt> {
        let sums = self.sums.expect("a tile-kernel stage");
        let (tile_channels, tile_width) = (self.tile_channels, self.tile_width);
        let (blocks, leftover) = (self.vectors / tile_channels, self.vectors % tile_channels);
        let strip_w = Position { index: Index::constant(start as i64), border: None };
        let tail_w = Position { index: Index::constant((start + full * tile_width) as i64), border: None };
        // `count` blocks of `vectors` vectors from vector `first` of group `g`.
        let chunk = |builder: &mut Builder, g: &Index, first: Index, count: u64, vectors: u64| -> Vec<Stmt> {
            let mut body = Vec::new();
            for j in 0..count {
                let block = (g.clone(), first.clone().plus_constant((j * vectors) as i64), vectors);
                let context = TileContext {
                    stage: self,
                    n,
                    d,
                    h,
                    w: &strip_w,
                    width: tile_width,
                    block: Some(block),
                    repeat: full,
                    out_offset,
                };
                body.extend(tile(builder, &context));
            }
            let context =
                TileContext { stage: self, n, d, h, w: &tail_w, width: rest, block: None, repeat: 1, out_offset };
            body.extend(tile_block(builder, &context, g, first, vectors, sums, count));
            body
        };
        builder.repeat(self.conv.groups, |builder, g| {
            let (chunks, spare) = (blocks / TAIL_BLOCKS, blocks % TAIL_BLOCKS);
            let mut body = Vec::new();
            if chunks > 0 {
                body.extend(builder.repeat(chunks, |builder, c| {
                    chunk(builder, &g, c.times((TAIL_BLOCKS * tile_channels) as i64), TAIL_BLOCKS, tile_channels)
                }));
            }
            if spare > 0 {
                let first = Index::constant((chunks * TAIL_BLOCKS * tile_channels) as i64);
                body.extend(chunk(builder, &g, first, spare, tile_channels));
            }
            if leftover > 0 {
                body.extend(chunk(builder, &g, Index::constant((blocks * tile_channels) as i64), 1, leftover));
            }
            body
        })
    }

    /// The loops over the pixels of `region`, around the tiles of every channel block — or, given
    /// `block` (group, first vector, vectors), of that one block.
    fn spatial(&self, builder: &mut Builder, region: &Region, block: Option<&(Index, Index, u64)>) -> Vec<Stmt> {
        let segments: Vec<Vec<Segment>> =
            self.axes.iter().zip(&region.positions).map(|(axis, range)| axis.segments_within(range)).collect();
        let zero = Index::constant(0);
        builder.repeat(region.batch.end - region.batch.start, |builder, n| {
            let n = n.plus_constant(region.batch.start as i64);
            let mut body = Vec::new();
            // Each segment of w in loops of its own over d and h: the borders' tiles are other code.
            for &segment_d in &segments[0] {
                for &segment_h in &segments[1] {
                    for &segment_w in &segments[2] {
                        body.extend(positions(builder, segment_d, &mut |builder, d| {
                            positions(builder, segment_h, &mut |builder, h| {
                                self.row(builder, &n, &d, &h, segment_w, block, &zero)
                            })
                        }));
                    }
                }
            }
            body
        })
    }

    /// The loops of `region` in the schedule's `order`: pixels outermost, or each block of
    /// channel vectors over all pixels (its weights are read from memory once, the input once per
    /// block).
    fn body(&self, builder: &mut Builder, region: &Region, order: Order) -> Vec<Stmt> {
        match order {
            Order::Pixels => self.spatial(builder, region, None),
            Order::Channels => self.channel_blocks(builder, region, 0..self.vectors),
        }
    }

    /// Each block of channel vectors `vectors` (of every group; it starts at a multiple of
    /// `tile_channels`) over all pixels of `region`: blocks of `tile_channels` vectors, then the
    /// rest.
    fn channel_blocks(&self, builder: &mut Builder, region: &Region, vectors: Range<u64>) -> Vec<Stmt> {
        let groups = if self.depthwise { 1 } else { self.conv.groups };
        let tile_channels = self.tile_channels;
        let count = vectors.end - vectors.start;
        let (blocks, rest) = (count / tile_channels, count % tile_channels);
        builder.repeat(groups, |builder, g| {
            let mut body = Vec::new();
            if blocks > 0 {
                body.extend(builder.repeat(blocks, |builder, b| {
                    let first = b.times(tile_channels as i64).plus_constant(vectors.start as i64);
                    self.spatial(builder, region, Some(&(g.clone(), first, tile_channels)))
                }));
            }
            if rest > 0 {
                let first = Index::constant((vectors.start + blocks * tile_channels) as i64);
                body.extend(self.spatial(builder, region, Some(&(g.clone(), first, rest))));
            }
            body
        })
    }
}

/// `inner` at every position of `segment`: one constant on a border, a loop over the interior.
pub(super) fn positions(
    builder: &mut Builder,
    segment: Segment,
    inner: &mut dyn FnMut(&mut Builder, Position) -> Vec<Stmt>,
) -> Vec<Stmt> {
    match segment {
        Segment::Border(position) => {
            inner(builder, Position { index: Index::constant(position as i64), border: Some(position) })
        }
        Segment::Interior { start, count } => builder.repeat(count, |builder, var| {
            inner(builder, Position { index: var.plus_constant(start as i64), border: None })
        }),
    }
}

/// How many times a core's L2 ([`Target::l2_bytes`]) a dense stage's packed weights must be for
/// its parts to cut output channels rather than positions (rows that divide evenly): each part
/// cut by positions streams all of the weights through its cache once per run, one panel at a
/// time (fetched ahead), while the depthwise stage after a channel cut reads half of its rows
/// from the other core's cache. Measured on an AVX-512 AMD EPYC Zen 4 (1 MiB of L2 per core), 2
/// threads, `convgen bench --steps` with either cut alternating (3 rounds): 14 × 14 pointwise
/// layers of 1 MiB of weights (MobileNetV1's pw7–pw11) ran even by positions (0.452–0.468
/// against 0.459–0.466 ms), of 3.8 MiB (1000 → 1000) 2–3% faster (1.71–1.74 against
/// 1.77–1.80), and the depthwise layers after them twice as fast (0.019–0.020 against
/// 0.036–0.039 ms; 0.041–0.044 against 0.070–0.074). Where the weights are many times the cache
/// and the positions few, a channel cut halves what each core streams; not measured beyond 3.8×.
const WEIGHTS_BEYOND_L2: u64 = 4;

/// The functions of one convolution stage — one, or one per [`Part`] with the start of the part's
/// window of the output — the packed parameters they take after their input and output values,
/// and the length of the tile kernel's scratch buffer (their last argument) if they have one.
pub(super) fn convolution(
    name: &str,
    conv: &Conv,
    bound: &BoundConv,
    schedule: Schedule,
    target: Target,
    residual: Option<Activation>,
    input_in_place: bool,
) -> (Vec<Split>, Vec<StageParam>, Option<u64>) {
    let (plan_lanes, threads) = (target.lanes, target.threads.max(1));
    let axes = stage_axes(conv, bound);
    let input3 = axes.map(|axis| axis.input);
    let output3 = axes.map(|axis| axis.output);
    let batch = bound.input[0];
    let in_padded = padded(conv.in_channels, plan_lanes);
    let out_padded = padded(conv.out_channels, plan_lanes);
    let in_per_group = conv.in_channels / conv.groups;
    let depthwise = conv.is_depthwise();
    let (packings, _) = stage_params(conv, schedule, plan_lanes);

    // Buffers: 0 input, 1 output, 2 weight, 3 bias. The input: the internal layout, or
    // (`input_in_place`, a dense tile-kernel stage) the user's channels-first tensor as it is,
    // its channels planes of the positions.
    debug_assert!(!input_in_place || (schedule.kernel == Kernel::Tile && !depthwise));
    let in_channels_stored = if input_in_place { conv.in_channels } else { in_padded };
    let in_len = batch * in_channels_stored * input3.iter().product::<u64>();
    let out_len = batch * out_padded * output3.iter().product::<u64>();
    let mut buffers = vec![
        Buffer { name: "in".into(), len: in_len, writes: false },
        Buffer { name: "out".into(), len: out_len, writes: true },
        Buffer { name: "w".into(), len: packings[0].2, writes: false },
    ];
    if conv.bias {
        buffers.push(Buffer { name: "b".into(), len: out_padded, writes: false });
    }
    let residual = residual.map(|act| {
        buffers.push(Buffer { name: "res".into(), len: out_len, writes: false });
        (BufferId(buffers.len() as u32 - 1), act)
    });
    // The tile kernel's sums, in memory between the kernel and the IR's epilogue.
    let scratch = (schedule.kernel == Kernel::Tile && !kernel_stores(conv, residual.is_some())).then(|| {
        buffers.push(Buffer { name: TILE_SCRATCH.into(), len: scratch_len(conv, schedule, output3[2]), writes: true });
        BufferId(buffers.len() as u32 - 1)
    });
    let sums = (schedule.kernel == Kernel::Tile).then_some(scratch.map_or(Sums::Output, Sums::Scratch));
    let (in_strides, in_channel_stride) = if input_in_place {
        let plane = input3.iter().product::<u64>();
        ([conv.in_channels * plane, input3[1] * input3[2], input3[2], 1], plane)
    } else {
        (internal_strides(input3, in_padded), 1)
    };
    let out_strides = internal_strides(output3, out_padded);
    let buffers_of_stage = (BufferId(0), BufferId(1), BufferId(2), conv.bias.then_some(BufferId(3)));
    let strides = (in_strides, in_channel_stride, out_strides);
    let stage = Stage::new(conv, schedule, plan_lanes, axes, strides, buffers_of_stage, residual, sums);

    // A stage with enough work is split into parts along the outermost of n, d, h, w with more
    // than one position: each part computes a contiguous window of the output. A dense one-image
    // stage of the tile kernel whose packed weights outweigh its input is split along its output
    // channels instead (blocks of the tile's channels, in runs: one per position) where, cut by
    // positions, each part would stream all of the weights from beyond its core's cache (they
    // are [`WEIGHTS_BEYOND_L2`] times the target's L2 or more) or the positions do not divide
    // evenly (7 rows in 2 parts: one does 4/7 of the work). Otherwise positions: then a
    // depthwise stage after it, cut by positions too, reads the rows its core computed. Measured
    // on 2 threads (2 MiB of L2 per core, old and new builds alternating): MobileNetV1's 14×14
    // pointwise layers (1 MiB of weights) cut by positions ran the model 1.024x faster (10
    // pairs; its depthwise layers between them 0.021 instead of 0.032 ms); its 7×7 layers cut
    // by positions (4 rows + 3) ran slower, and pw_960to320_7 0.74x as fast.
    let extents = [batch, output3[0], output3[1], output3[2]];
    let macs = batch * output3.iter().product::<u64>() * conv.out_channels * in_per_group * stage.taps;
    let split = (0..4).find(|&dim| extents[dim] > 1).unwrap_or(3);
    let worth = macs >= target.part_macs.saturating_mul(u64::from(threads));
    let function_lanes = function_lanes(schedule, plan_lanes);
    let position_count = part_count(worth, u64::from(threads), extents[split]);
    let weight_bytes = packings[0].2 * 4;
    let by_channels = batch == 1
        && !depthwise
        && conv.groups == 1
        && schedule.kernel == Kernel::Tile
        && packings[0].2 > in_len
        && (weight_bytes >= WEIGHTS_BEYOND_L2 * target.l2_bytes || !extents[split].is_multiple_of(position_count))
        && stage.vectors * u64::from(schedule.lanes) == out_padded;
    let channel_count = part_count(worth, u64::from(threads), stage.vectors.div_ceil(stage.tile_channels));
    let parts = if by_channels && channel_count > 1 {
        let whole = Region { batch: 0..1, positions: [0..output3[0], 0..output3[1], 0..output3[2]] };
        let lanes = u64::from(schedule.lanes);
        (0..channel_count)
            .map(|part| {
                let vectors = part_range(stage.vectors, stage.tile_channels, channel_count, part);
                let mut builder = Builder::default();
                let body = stage.channel_blocks(&mut builder, &whole, vectors.clone());
                let function = builder.function(function_lanes, buffers.clone(), body);
                let window = vectors.start * lanes..vectors.end * lanes;
                let runs = Runs { count: output3.iter().product(), len: window.end - window.start, stride: out_padded };
                as_part(name, function, (part, channel_count), &window, Some(runs))
            })
            .collect()
    } else {
        let count = position_count;
        (0..count)
            .map(|part| {
                let range = part_range(extents[split], 1, count, part);
                let window = range.start * out_strides[split]..range.end * out_strides[split];
                let mut region = Region { batch: 0..batch, positions: [0..output3[0], 0..output3[1], 0..output3[2]] };
                match split {
                    0 => region.batch = range,
                    dim => region.positions[dim - 1] = range,
                }
                let mut builder = Builder::default();
                let body = stage.body(&mut builder, &region, schedule.order);
                as_part(name, builder.function(function_lanes, buffers.clone(), body), (part, count), &window, None)
            })
            .collect()
    };
    let scratch_len = scratch.map(|buffer| buffers[buffer.0 as usize].len);
    (parts, packings, scratch_len)
}

/// Everything one register tile needs: its stage, where it is, and what of it to compute.
struct TileContext<'a> {
    stage: &'a Stage<'a>,
    n: &'a Index,
    d: &'a Position,
    h: &'a Position,
    w: &'a Position,
    width: u64,
    /// The one channel block to compute (group, first vector, vectors); none: all of them.
    block: Option<(Index, Index, u64)>,
    /// Tiles of `width` pixels side by side (more than 1 only for a tile kernel's strip).
    repeat: u64,
    /// Added to every output index.
    out_offset: &'a Index,
}

/// One tile: `width` pixels along w (consecutive, in the same segment) × all channel blocks.
fn tile(builder: &mut Builder, context: &TileContext) -> Vec<Stmt> {
    let Stage { conv, depthwise, vectors, tile_channels, lanes, buffers, .. } = context.stage;
    let (input, output, weight, bias) = *buffers;
    let lanes = i64::from(*lanes);
    if let Some((g, first_vector, count)) = &context.block {
        return channel_block(builder, context, g, first_vector.clone(), *count, (input, output, weight, bias), lanes);
    }
    let groups = if *depthwise { 1 } else { conv.groups };
    let blocks = vectors / tile_channels;
    let rest = vectors % tile_channels;
    if let (Some(sums), true) = (context.stage.sums, *depthwise) {
        // A depthwise tile kernel's strip: every full block of channels in one call, for these
        // pixels, whose input rows stay in cache across the blocks.
        let zero = Index::constant(0);
        let mut body = Vec::new();
        if blocks > 0 {
            body.extend(tile_block(builder, context, &zero, zero.clone(), *tile_channels, sums, blocks));
        }
        if rest > 0 {
            let first = Index::constant((blocks * tile_channels) as i64);
            body.extend(tile_block(builder, context, &zero, first, rest, sums, 1));
        }
        return body;
    }
    if let (Some(sums), 1, true) = (context.stage.sums, context.repeat, blocks > 1) {
        // A dense tile kernel's single tile (a border or tail one, whose few pixels keep few
        // accumulators busy): every full block of output channels in one call, whose kernel
        // can then run several blocks at once.
        let zero = Index::constant(0);
        return builder.repeat(groups, |builder, g| {
            let mut body = tile_block(builder, context, &g, zero.clone(), *tile_channels, sums, blocks);
            if rest > 0 {
                let first = Index::constant((blocks * tile_channels) as i64);
                body.extend(tile_block(builder, context, &g, first, rest, sums, 1));
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
    let Stage {
        conv,
        axes,
        in_strides,
        out_strides,
        depthwise,
        in_per_group,
        out_per_group_padded,
        taps,
        residual,
        ..
    } = context.stage;
    let TileContext { n, d, h, w, width, out_offset, .. } = context;
    if let Some(sums) = context.stage.sums {
        return tile_block(builder, context, g, first_vector, count, sums, 1);
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
            .plus(out_offset)
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
                                    Value::Load { buffer: weight, index: c.plus_constant(tap * out_strides[3] as i64) },
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
/// kernel: it starts each sum at the bias, adds every product and stores `act(sum)` in the
/// output ([`Sums::Output`]) — or leaves the sums in a scratch buffer, from which the epilogue
/// stores `act(sum)` (plus a residual) a vector of the plan's lanes at a time. (A kernel that
/// read its initial sums from the scratch buffer would wait on the IR's 128-bit stores there: a
/// 256-bit load cannot be forwarded from two stores.)
fn tile_block(
    builder: &mut Builder,
    context: &TileContext,
    g: &Index,
    first_vector: Index,
    count: u64,
    sums: Sums,
    channel_repeat: u64,
) -> Vec<Stmt> {
    let Stage { conv, axes, in_strides, in_channel_stride, out_strides, residual, plan_lanes, .. } = context.stage;
    let TileContext { n, d, h, w, width, repeat, out_offset, .. } = context;
    // A strip of `repeat` tiles of pixels (dense) or of `channel_repeat` blocks of `count`
    // vectors (depthwise): the sums of tile `t` start at `t · width · count · 8` in `scratch`.
    debug_assert!(*repeat == 1 || channel_repeat == 1, "a strip runs along pixels or channels");
    let block_channels = (count * u64::from(TILE_LANES)) as i64;
    let (input, output, weight, bias) = context.stage.buffers;
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
                let inside: Vec<u64> = (0..kernel).filter(|&tap| axes[axis].source(position, tap).is_some()).collect();
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
    let depthwise = context.stage.depthwise;
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
    // Output index of pixel `pixel` of the strip at lane `lane` of vector `vector` of block `block`.
    let out_index = |block: &Index, pixel: &Index, vector: u64, lane: u64| {
        Index::clone(n)
            .times(out_strides[0] as i64)
            .plus(&d.index.clone().times(out_strides[1] as i64))
            .plus(&h.index.clone().times(out_strides[2] as i64))
            .plus(&w.index.clone().plus(pixel).times(out_strides[3] as i64))
            .plus(&channel(vector, lane))
            .plus(&block.clone().times(block_channels))
            .plus(out_offset)
    };
    // Where the sums go: the output (tile `t` of a strip of pixels `width` pixels on, of a strip
    // of channel blocks `count` vectors on), or the scratch buffer (`width · count` vectors on).
    let zero = Index::constant(0);
    let (acc, acc_index, acc_pixel_stride, acc_repeat_stride, act) = match sums {
        Sums::Output => {
            let pixel = out_strides[3] as i64;
            let next = if channel_repeat > 1 { block_channels } else { *width as i64 * pixel };
            let act = TileActivation::of(conv.act).expect("`kernel_stores` checked it");
            (output, out_index(&zero, &zero, 0, 0), pixel, next, act)
        }
        Sums::Scratch(scratch) => (scratch, zero, block_channels, *width as i64 * block_channels, TileActivation::None),
    };
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
        acc,
        acc_index,
        acc_pixel_stride,
        acc_repeat_stride,
        act,
        // Set by `lower` for a plan whose weights stream from beyond the L2 cache.
        prefetch: false,
        reduce: if empty { 0 } else { in_per_group },
        reduce_input_stride: *in_channel_stride as i64,
        reduce_weight_stride: taps_total * row,
        taps: taps.map(|(_, count)| count.max(1)),
        tap_input_strides: std::array::from_fn(|axis| (axes[axis].dilation * in_strides[axis + 1]) as i64),
        tap_weight_strides: [(kernel3[1] * kernel3[2]) as i64 * row, kernel3[2] as i64 * row, row],
    })));
    let Sums::Scratch(scratch) = sums else { return body };
    // The epilogue, over every pixel and channel block of the strip (loops for a strip,
    // unrolled for one tile).
    body.extend(builder.repeat(channel_repeat, |builder, block| {
        builder.repeat(repeat * width, |_, pixel| {
            let mut body = Vec::new();
            for vector in 0..count {
                for lane in (0..tile_lanes).step_by(step as usize) {
                    let index = out_index(&block, &pixel, vector, lane);
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

/// Channel blocks per chunk of [`Stage::strip_and_tail`]: as many tiles of one or two registers
/// as the AVX-512 kernel computes at once.
const TAIL_BLOCKS: u64 = 4;

/// The fewest bytes of weights for which a dense tile-kernel stage computes a row's tail with each
/// chunk of channel blocks ([`Stage::strip_and_tail`]) rather than after all the row's strips, in
/// one call over every block, which reads all the weights a second time: weights that do not stay
/// in a 2 MiB L2. Measured on the Intel Xeon (AVX-512, 2 MiB L2; `convgen bench --steps`, the
/// variants alternating, 3 rounds): 1024 → 1024 at 7 × 7 (4 MiB; 16 tiles of 3 pixels and a tail
/// of 1) after a depthwise layer 0.89–0.90 → 0.78–0.80 ms (the pair), three in a row 0.82–0.89 →
/// 0.71–0.72 ms each (two rounds; the third, noisy, 0.83 → 0.92);
/// 960 → 320 at 7 × 7 (1.2 MiB) 1.01–1.02x, MobileNetV2's 7 × 7 layers of 1.2 and 1.6 MiB
/// 0.94–0.95x (4 rounds), MobileNetV1 even (its 2 and 4 MiB 7 × 7 layers 0.99 and 1.00x, 6 rounds).
const TAIL_WITH_BLOCKS_MIN_BYTES: u64 = 2 << 20;

/// The name of a tile-kernel step's accumulator buffer.
const TILE_SCRATCH: &str = "sums";
