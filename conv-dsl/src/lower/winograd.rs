//! A dense 3×3, stride-1 2D convolution by Winograd's minimal filtering F(2×2, 3×3) (Lavin and
//! Gray, "Fast Algorithms for Convolutional Neural Networks", 2016): 16 multiplies per 2×2 output
//! tile and input channel instead of 36, 2.25× fewer multiply-adds ([`crate::schedule::Kernel::Winograd`]).
//!
//! Each 2×2 output tile (t) reads a 4×4 input tile d at rows `2·th − pad_top ..` and columns
//! `2·tw − pad_left ..` (zero outside the input). With
//!
//! ```text
//! Bᵀ = [1  0 −1  0]    G = [ 1    0    0 ]    Aᵀ = [1  1  1  0]
//!      [0  1  1  0]        [ 1/2  1/2  1/2]         [0  1 −1 −1]
//!      [0 −1  1  0]        [ 1/2 −1/2  1/2]
//!      [0  1  0 −1]        [ 0    0    1 ]
//! ```
//!
//! the input transform is `V = Bᵀ d B` per input channel, the weights' `U = G g Gᵀ` per output and
//! input channel (packed once, [`Packing::Winograd`]), and per transformed point ξ of the 16 the
//! tiles' sums are a matrix product, `M[ξ][t][o] = Σ_c V[ξ][t][c] · U[ξ][c][o]` over the group's
//! input channels, which the tile microkernel computes ([`Stmt::Tile`], dense, one tap: the
//! pointwise case). The output transform `Y = Aᵀ M A` gives the tile's four outputs, to which the
//! IR's epilogue adds the bias, the activation and a fused `add`.
//!
//! The transforms are per-lane IR (additions and subtractions over vectors of the plan's lanes of
//! channels), so both code generators compile them, and the IR interpreter runs them bit for bit
//! as they do. The results are the convolution's up to rounding, not bit for bit the direct
//! sums: the one schedule that changes results ([`crate::schedule::Kernel::Winograd`]).
//!
//! The stage runs on blocks of tile rows: the input transform of the block's tiles into `wv`
//! (`[ξ][tile][channel]`), the 16 matrix products into `wm` (`[ξ][tile][channel]`), then the
//! output transform (`block_rows` rows per block). A border tile row (one reading padding) is a
//! block of its own, unless one block takes all of the rows, with its
//! rows and columns outside the input as zeros and its outputs outside the output not stored
//! (a tile row or column half outside the output always reads past the input too, so it is
//! always a border one, whose positions are constants).

use super::stage::{Axis, Position, Segment, Split, StageParam, internal_strides, positions, stage_axes};
use super::{Builder, Packing, activate, as_part, padded, part_count, part_range};
use crate::bind::BoundConv;
use crate::ir::{Acc, Buffer, BufferId, Index, Stmt, TILE_LANES, Tile, TileActivation, Value};
use crate::schedule::{Schedule, Target};
use crate::spec::{Activation, Conv, MAX_ELEMENTS};

/// Transformed points per tile: 4 × 4.
pub const POINTS: u64 = 16;

/// Bytes of transformed inputs and sums (`wv` and `wm`) a block of tile rows holds, at least one
/// row: they stay in L2 between the transforms and the products. Measured on an AVX-512 AMD EPYC
/// (1 MiB of L2; `convgen bench`, medians of 60 runs, two runs of each size alternating): 64→64
/// at 56×56 (8 KiB per tile) 1.16 ms in blocks of 28 tiles (one row), 1.20–1.31 in blocks of 56;
/// g3_c256_g2_28 (32 KiB per tile) 2.18–2.23 ms in blocks of 14 (one row), 2.71 in blocks of 28;
/// 128→128 at 28×28 1.05 ms in blocks of 14, 1.17 of 28; 32→32 at 56×56 0.33 ms in blocks of 56
/// (two rows), 0.34 of 28, 0.39–0.40 of 112.
const BLOCK_BYTES: u64 = 256 << 10;

/// Tile rows per block: as many as [`BLOCK_BYTES`] hold (at least one) — or all of an image's
/// where its transformed weights outweigh its transformed inputs and sums: each block reads all
/// of them. (256→256 at 14×14, 4 MiB of weights: 0.99 ms in one block of 49 tiles, 1.09–1.13 in
/// blocks of 7 or 14; 512→512 at 7×7, 16 MiB: 1.47 ms in one block, 1.74–2.57 in blocks of 4 or
/// 8.)
fn block_rows(rows: u64, columns: u64, weight_len: u64, (in_padded, out_padded): (u64, u64)) -> u64 {
    let tile_bytes = POINTS * (in_padded + out_padded) * 4;
    if weight_len * 4 >= rows * columns * tile_bytes {
        return rows;
    }
    (BLOCK_BYTES / (tile_bytes * columns)).clamp(1, rows)
}

/// Whether F(2×2, 3×3) computes `conv`: a dense (not depthwise) 2D convolution with a 3×3 window,
/// stride 1 and no dilation.
pub fn fits(conv: &Conv) -> bool {
    conv.kernel == [3, 3] && conv.stride == [1, 1] && conv.dilation == [1, 1] && !conv.is_depthwise()
}

/// How a Winograd stage is cut into blocks: the stage's axes, its tile rows and columns, its
/// input and output channels padded to the plan's lanes, tile rows per block, and the lengths of
/// its transformed weights and of its two scratch buffers (`wv`, `wm`).
struct Blocks {
    axes: [Axis; 3],
    rows: Axis,
    columns: Axis,
    padded: (u64, u64),
    block_rows: u64,
    weight_len: u64,
    scratch: (u64, u64),
}

/// The [`Blocks`] of a Winograd stage of `conv` at `bound` on a plan of `plan_lanes`.
fn blocks(conv: &Conv, bound: &BoundConv, plan_lanes: u32) -> Blocks {
    let axes = stage_axes(conv, bound);
    let (rows, columns) = (tile_axis(&axes[1]), tile_axis(&axes[2]));
    let (in_padded, out_padded) = (padded(conv.in_channels, plan_lanes), padded(conv.out_channels, plan_lanes));
    let weight_len = POINTS * conv.in_channels * (conv.out_channels / conv.groups);
    let block_rows = block_rows(rows.output, columns.output, weight_len, (in_padded, out_padded));
    let block_tiles = block_rows * columns.output;
    let scratch = (POINTS * block_tiles * in_padded, POINTS * block_tiles * out_padded);
    Blocks { axes, rows, columns, padded: (in_padded, out_padded), block_rows, weight_len, scratch }
}

/// Whether each scratch buffer of a Winograd stage of `conv` at `bound` is within the limit of
/// every tensor ([`MAX_ELEMENTS`]): a block is at least one row of tiles, 8 elements per input
/// position of the row and channel (all rows where the weights are larger), which very long rows
/// of many channels exceed.
pub fn scratch_fits(conv: &Conv, bound: &BoundConv, plan_lanes: u32) -> bool {
    let Blocks { scratch: (v, m), .. } = blocks(conv, bound, plan_lanes);
    v.max(m) <= MAX_ELEMENTS
}

/// The functions of a Winograd stage (one, or one per [`super::Part`] with the start of its
/// window of the output), its packed parameters, and the lengths of its two scratch buffers
/// (`wv`, `wm`; its last arguments).
pub(super) fn winograd(
    name: &str,
    conv: &Conv,
    bound: &BoundConv,
    schedule: Schedule,
    target: Target,
    residual: Option<Activation>,
) -> (Vec<Split>, Vec<StageParam>, Vec<u64>) {
    let plan_lanes = target.lanes;
    let Blocks {
        axes,
        rows,
        columns,
        padded: (in_padded, out_padded),
        block_rows,
        weight_len,
        scratch: (v_len, m_len),
    } = blocks(conv, bound, plan_lanes);
    let batch = bound.input[0];
    let groups = conv.groups;
    let (in_per_group, out_per_group) = (conv.in_channels / groups, conv.out_channels / groups);
    let (v_plane, m_plane) = (v_len / POINTS, m_len / POINTS);

    let panel = u64::from(schedule.tile_channels * TILE_LANES);
    let mut params: Vec<StageParam> =
        vec![("weight", Packing::Winograd { groups, in_per_group, out_per_group, panel }, weight_len)];
    if conv.bias {
        params.push(("bias", Packing::Bias { channels: conv.out_channels }, out_padded));
    }
    let in_strides = internal_strides(axes.map(|axis| axis.input), in_padded);
    let out_strides = internal_strides(axes.map(|axis| axis.output), out_padded);
    let out_len = batch * out_strides[0];
    let mut buffers = vec![
        Buffer { name: "in".into(), len: batch * in_strides[0], writes: false },
        Buffer { name: "out".into(), len: out_len, writes: true },
        Buffer { name: "w".into(), len: weight_len, writes: false },
    ];
    let push = |buffers: &mut Vec<Buffer>, buffer: Buffer| {
        buffers.push(buffer);
        BufferId(buffers.len() as u32 - 1)
    };
    let bias = conv.bias.then(|| push(&mut buffers, Buffer { name: "b".into(), len: out_padded, writes: false }));
    let residual =
        residual.map(|act| (push(&mut buffers, Buffer { name: "res".into(), len: out_len, writes: false }), act));
    let v = push(&mut buffers, Buffer { name: "wv".into(), len: v_len, writes: true });
    let m = push(&mut buffers, Buffer { name: "wm".into(), len: m_len, writes: true });
    let stage = Winograd {
        conv,
        schedule,
        plan_lanes: u64::from(plan_lanes),
        rows,
        columns,
        output: [axes[1].output, axes[2].output],
        in_strides,
        out_strides,
        in_padded,
        out_padded,
        in_per_group,
        out_per_group,
        v_plane,
        m_plane,
        block_rows,
        buffers: (BufferId(0), BufferId(1), BufferId(2), bias, residual, v, m),
    };

    // Split into parts along the images, else along h in whole tile rows.
    let macs = batch * axes[1].output * axes[2].output * conv.out_channels * in_per_group * 9;
    let worth = macs >= target.part_macs.saturating_mul(u64::from(target.threads.max(1)));
    let (extent, unit, stride) =
        if batch > 1 { (batch, 1, out_strides[0]) } else { (axes[1].output, 2, out_strides[2]) };
    let count = part_count(worth, u64::from(target.threads.max(1)), extent.div_ceil(unit));
    let parts = (0..count)
        .map(|part| {
            let range = part_range(extent, unit, count, part);
            let window = range.start * stride..range.end * stride;
            let (images, tile_rows) =
                if batch > 1 { (range, 0..rows.output) } else { (0..1, range.start / 2..range.end.div_ceil(2)) };
            let mut builder = Builder::default();
            let body = builder.repeat(images.end - images.start, |builder, n| {
                stage.tile_rows(builder, &n.plus_constant(images.start as i64), &tile_rows)
            });
            let function = builder.function(plan_lanes, buffers.clone(), body);
            as_part(name, function, (part, count), &window, None)
        })
        .collect();
    (parts, params, vec![v_len, m_len])
}

/// The tiles along one axis: 4 input positions each, 2 apart — an [`Axis`] of 4 taps and stride 2,
/// whose segments are the border tiles and the interior run.
fn tile_axis(axis: &Axis) -> Axis {
    Axis {
        input: axis.input,
        output: axis.output.div_ceil(2),
        kernel: 4,
        stride: 2,
        dilation: 1,
        pad_before: axis.pad_before,
    }
}

/// A Winograd stage: its geometry, strides and buffers.
struct Winograd<'a> {
    conv: &'a Conv,
    schedule: Schedule,
    plan_lanes: u64,
    /// Tile rows and columns.
    rows: Axis,
    columns: Axis,
    /// The output's (OH, OW).
    output: [u64; 2],
    in_strides: [u64; 4],
    out_strides: [u64; 4],
    in_padded: u64,
    out_padded: u64,
    in_per_group: u64,
    out_per_group: u64,
    /// Elements of one transformed point's plane in `wv` and `wm`.
    v_plane: u64,
    m_plane: u64,
    /// Tile rows per interior block.
    block_rows: u64,
    /// Input, output, weight, bias, residual, `wv`, `wm`.
    #[allow(clippy::type_complexity)]
    buffers: (BufferId, BufferId, BufferId, Option<BufferId>, Option<(BufferId, Activation)>, BufferId, BufferId),
}

/// Tile rows of a block: a border row (its value a constant), or a run of interior rows from
/// `first` (one loop over them).
enum RowRun {
    Border(u64),
    Interior { first: Index, count: u64 },
}

impl RowRun {
    /// Tile rows in the run.
    fn count(&self) -> u64 {
        match self {
            RowRun::Border(_) => 1,
            RowRun::Interior { count, .. } => *count,
        }
    }
}

impl From<Segment> for RowRun {
    fn from(segment: Segment) -> Self {
        match segment {
            Segment::Border(row) => RowRun::Border(row),
            Segment::Interior { start, count } => RowRun::Interior { first: Index::constant(start as i64), count },
        }
    }
}

/// Where one tile is: its image, tile row and column, and its index among the block's tiles.
struct TileAt<'a> {
    n: &'a Index,
    row: &'a Position,
    column: &'a Position,
    tile: Index,
}

impl Winograd<'_> {
    /// The blocks of the tile rows `range` of image `n`: each border row alone, the interior in
    /// blocks of `block_rows`.
    fn tile_rows(&self, builder: &mut Builder, n: &Index, range: &std::ops::Range<u64>) -> Vec<Stmt> {
        let mut body = Vec::new();
        if range.end - range.start <= self.block_rows {
            // One block: every transformed weight read once (a layer of many channels on small
            // images streams megabytes of them).
            let runs: Vec<RowRun> = self.rows.segments_within(range).into_iter().map(RowRun::from).collect();
            return self.block(builder, n, &runs);
        }
        for segment in self.rows.segments_within(range) {
            match segment {
                Segment::Border(_) => body.extend(self.block(builder, n, &[RowRun::from(segment)])),
                Segment::Interior { start, count } => {
                    let (full, rest) = (count / self.block_rows, count % self.block_rows);
                    if full > 0 {
                        body.extend(builder.repeat(full, |builder, block| {
                            let first = block.times(self.block_rows as i64).plus_constant(start as i64);
                            self.block(builder, n, &[RowRun::Interior { first, count: self.block_rows }])
                        }));
                    }
                    if rest > 0 {
                        let first = Index::constant((start + full * self.block_rows) as i64);
                        body.extend(self.block(builder, n, &[RowRun::Interior { first, count: rest }]));
                    }
                }
            }
        }
        body
    }

    /// One block of tile rows, `runs` of them in order: input transform, the matrix products,
    /// output transform.
    fn block(&self, builder: &mut Builder, n: &Index, runs: &[RowRun]) -> Vec<Stmt> {
        let mut body = Vec::new();
        body.extend(self.each_row(builder, runs, |builder, row, first_tile| {
            self.each_tile(builder, self.columns.segments(), |builder, column, tile| {
                self.input_tile(builder, &TileAt { n, row, column, tile: tile.plus(&first_tile) })
            })
        }));
        let rows: u64 = runs.iter().map(RowRun::count).sum();
        body.extend(self.products(builder, rows * self.columns.output));
        body.extend(self.each_row(builder, runs, |builder, row, first_tile| {
            self.each_tile(builder, self.output_columns(), |builder, column, tile| {
                self.output_tile(builder, &TileAt { n, row, column, tile: tile.plus(&first_tile) })
            })
        }));
        body
    }

    /// `inner` for every tile row of `runs` (an interior run one loop), with the block's index of
    /// the row's first tile as the last argument.
    fn each_row(
        &self,
        builder: &mut Builder,
        runs: &[RowRun],
        mut inner: impl FnMut(&mut Builder, &Position, Index) -> Vec<Stmt>,
    ) -> Vec<Stmt> {
        let columns = self.columns.output as i64;
        let mut body = Vec::new();
        let mut within = 0;
        for run in runs {
            match run {
                RowRun::Border(row) => {
                    let row = Position { index: Index::constant(*row as i64), border: Some(*row) };
                    body.extend(inner(builder, &row, Index::constant(within * columns)));
                }
                RowRun::Interior { first, count } => body.extend(builder.repeat(*count, |builder, r| {
                    let row = Position { index: first.clone().plus(&r), border: None };
                    inner(builder, &row, r.times(columns).plus_constant(within * columns))
                })),
            }
            within += run.count() as i64;
        }
        body
    }

    /// The tile columns as the output transform sees them: it reads no padding, so one run of the
    /// columns whose two outputs exist, and a half column (a border position) where OW is odd.
    fn output_columns(&self) -> Vec<Segment> {
        let (full, half) = (self.output[1] / 2, self.output[1] % 2 == 1);
        let run = (full > 0).then_some(Segment::Interior { start: 0, count: full });
        run.into_iter().chain(half.then_some(Segment::Border(full))).collect()
    }

    /// `inner` for every tile column of a row, by `segments` (its index within the row as the last
    /// argument).
    fn each_tile(
        &self,
        builder: &mut Builder,
        segments: Vec<Segment>,
        mut inner: impl FnMut(&mut Builder, &Position, Index) -> Vec<Stmt>,
    ) -> Vec<Stmt> {
        let mut body = Vec::new();
        for segment in segments {
            body.extend(positions(builder, segment, &mut |builder, column| {
                let tile = column.index.clone();
                inner(builder, &column, tile)
            }));
        }
        body
    }

    /// The input transform of one tile (every vector of channels): `V = Bᵀ d B` into `wv`.
    fn input_tile(&self, builder: &mut Builder, at: &TileAt) -> Vec<Stmt> {
        let &TileAt { n, row, column, ref tile } = at;
        let (input, _, _, _, _, v, _) = self.buffers;
        let lanes = self.plan_lanes;
        builder.accumulators = builder.accumulators.max(20);
        let d = |k: u64| Acc(k as u32);
        let u = |i: u64, k: u64| Acc((4 + i * 4 + k) as u32);
        // Whether input row (column) `tap` of the tile is inside the input: always in the
        // interior.
        let inside = |axis: &Axis, position: &Position, tap: u64| axis.takes(position.border, tap);
        let coordinate = |axis: &Axis, position: &Position, tap: u64| {
            position.index.clone().times(2).plus_constant(tap as i64 - axis.pad_before as i64)
        };
        builder.repeat(self.in_padded / lanes, |_, vector| {
            let channel = vector.times(lanes as i64);
            let mut body = Vec::new();
            // Per input row i: u_i = d_i B (d_i: the row's four elements).
            for i in 0..4 {
                for k in 0..4 {
                    let value = if inside(&self.rows, row, i) && inside(&self.columns, column, k) {
                        let index = n
                            .clone()
                            .times(self.in_strides[0] as i64)
                            .plus(&coordinate(&self.rows, row, i).times(self.in_strides[2] as i64))
                            .plus(&coordinate(&self.columns, column, k).times(self.in_strides[3] as i64))
                            .plus(&channel);
                        Value::Load { buffer: input, index }
                    } else {
                        Value::Zero
                    };
                    body.push(Stmt::Init { acc: d(k), value });
                }
                for (k, value) in transform_b(|k| Value::Acc(d(k))).into_iter().enumerate() {
                    body.push(Stmt::Init { acc: u(i, k as u64), value });
                }
            }
            // Per column k: V[·][k] = Bᵀ u[·][k], stored at point (i, k).
            for k in 0..4 {
                for (i, value) in transform_b(|i| Value::Acc(u(i, k))).into_iter().enumerate() {
                    let point = i as u64 * 4 + k;
                    let index = tile
                        .clone()
                        .times(self.in_padded as i64)
                        .plus(&channel)
                        .plus_constant((point * self.v_plane) as i64);
                    body.push(Stmt::Store { buffer: v, index, value });
                }
            }
            body
        })
    }

    /// The 16 matrix products of a block of `tiles` tiles, by the tile kernel: per point, group and
    /// block of output-channel vectors, a strip over the tiles.
    fn products(&self, builder: &mut Builder, tiles: u64) -> Vec<Stmt> {
        let (_, _, weight, _, _, v, m) = self.buffers;
        let groups = self.conv.groups;
        let lanes = u64::from(TILE_LANES);
        let vectors = self.out_per_group / lanes;
        let tile_channels = u64::from(self.schedule.tile_channels);
        let (blocks, rest) = (vectors / tile_channels, vectors % tile_channels);
        let pixels = u64::from(self.schedule.tile_width).min(tiles);
        let (full, tail) = (tiles / pixels, tiles % pixels);
        let (in_per_group, out_per_group) = (self.in_per_group as i64, self.out_per_group as i64);
        let point_weights = (groups * self.in_per_group * self.out_per_group) as i64;
        builder.repeat(POINTS, |builder, point| {
            builder.repeat(groups, |builder, g| {
                // A strip of `repeat` tiles of `pixels` from tile `first`, output vectors from
                // `first_vector`, `count` of them (the panel's width).
                let strip = |first_vector: &Index, count: u64, first: u64, pixels: u64, repeat: u64| {
                    let width = (count * lanes) as i64;
                    let channel = g.clone().times(out_per_group).plus(&first_vector.clone().times(lanes as i64));
                    Stmt::Tile(Box::new(Tile {
                        depthwise: false,
                        pixels: pixels as u32,
                        repeat,
                        repeat_input_stride: (pixels * self.in_padded) as i64,
                        repeat_weight_stride: 0,
                        repeat_bias_stride: 0,
                        vectors: count as u32,
                        input: v,
                        input_index: point
                            .clone()
                            .times(self.v_plane as i64)
                            .plus(&g.clone().times(in_per_group))
                            .plus_constant((first * self.in_padded) as i64),
                        pixel_stride: self.in_padded as i64,
                        weight,
                        weight_index: point.clone().times(point_weights).plus(&channel.clone().times(in_per_group)),
                        bias: None,
                        acc: m,
                        acc_index: point
                            .clone()
                            .times(self.m_plane as i64)
                            .plus(&channel)
                            .plus_constant((first * self.out_padded) as i64),
                        acc_pixel_stride: self.out_padded as i64,
                        acc_repeat_stride: (pixels * self.out_padded) as i64,
                        act: TileActivation::None,
                        prefetch: false,
                        reduce: self.in_per_group,
                        reduce_input_stride: 1,
                        reduce_weight_stride: width,
                        taps: [1, 1, 1],
                        tap_input_strides: [0; 3],
                        tap_weight_strides: [0; 3],
                    }))
                };
                let strips = |first_vector: &Index, count: u64| {
                    let mut body = vec![strip(first_vector, count, 0, pixels, full)];
                    if tail > 0 {
                        body.push(strip(first_vector, count, full * pixels, tail, 1));
                    }
                    body
                };
                let mut body = Vec::new();
                if blocks > 0 {
                    body.extend(
                        builder.repeat(blocks, |_, block| strips(&block.times(tile_channels as i64), tile_channels)),
                    );
                }
                if rest > 0 {
                    body.extend(strips(&Index::constant((blocks * tile_channels) as i64), rest));
                }
                body
            })
        })
    }

    /// The output transform of one tile (every vector of channels): `Y = Aᵀ M A`, plus the bias,
    /// activated (and a fused `add`), stored where the output has the position.
    fn output_tile(&self, builder: &mut Builder, at: &TileAt) -> Vec<Stmt> {
        let &TileAt { n, row, column, ref tile } = at;
        let (_, output, _, bias, residual, _, m) = self.buffers;
        let lanes = self.plan_lanes;
        builder.accumulators = builder.accumulators.max(12);
        let point = |k: u64| Acc(k as u32);
        let s = |i: u64, c: u64| Acc((4 + i * 2 + c) as u32);
        // Whether output row (column) 2·position + offset exists: always in the interior.
        let exists = |position: &Position, offset: u64, size: u64| {
            position.border.is_none_or(|position| 2 * position + offset < size)
        };
        builder.repeat(self.out_padded / lanes, |_, vector| {
            let channel = vector.times(lanes as i64);
            let mut body = Vec::new();
            // Per point row i: s_i = m_i A.
            for i in 0..4 {
                for k in 0..4 {
                    let index = tile
                        .clone()
                        .times(self.out_padded as i64)
                        .plus(&channel)
                        .plus_constant(((i * 4 + k) * self.m_plane) as i64);
                    body.push(Stmt::Init { acc: point(k), value: Value::Load { buffer: m, index } });
                }
                for (c, value) in transform_a(|k| Value::Acc(point(k))).into_iter().enumerate() {
                    body.push(Stmt::Init { acc: s(i, c as u64), value });
                }
            }
            // Per output column c: y[·][c] = Aᵀ s[·][c].
            for c in 0..2 {
                for (r, y) in transform_a(|i| Value::Acc(s(i, c))).into_iter().enumerate() {
                    if !exists(row, r as u64, self.output[0]) || !exists(column, c, self.output[1]) {
                        continue;
                    }
                    let index = n
                        .clone()
                        .times(self.out_strides[0] as i64)
                        .plus(&row.index.clone().times(2).plus_constant(r as i64).times(self.out_strides[2] as i64))
                        .plus(&column.index.clone().times(2).plus_constant(c as i64).times(self.out_strides[3] as i64))
                        .plus(&channel);
                    let sum = match bias {
                        Some(bias) => {
                            Value::Add(Box::new(y), Box::new(Value::Load { buffer: bias, index: channel.clone() }))
                        }
                        None => y,
                    };
                    let mut value = activate(self.conv.act, sum);
                    if let Some((other, act)) = residual {
                        let other = Value::Load { buffer: other, index: index.clone() };
                        value = activate(act, Value::Add(Box::new(value), Box::new(other)));
                    }
                    body.push(Stmt::Store { buffer: output, index, value });
                }
            }
            body
        })
    }
}

/// `x B` for a row `x` of four (`Bᵀ x` for a column): `[x0 − x2, x1 + x2, x2 − x1, x1 − x3]`.
fn transform_b(x: impl Fn(u64) -> Value) -> [Value; 4] {
    let pair = |a: u64, b: u64| (Box::new(x(a)), Box::new(x(b)));
    let [(a0, b0), (a1, b1), (a2, b2), (a3, b3)] = [pair(0, 2), pair(1, 2), pair(2, 1), pair(1, 3)];
    [Value::Sub(a0, b0), Value::Add(a1, b1), Value::Sub(a2, b2), Value::Sub(a3, b3)]
}

/// `x A` for a row `x` of four (`Aᵀ x` for a column): `[x0 + x1 + x2, x1 − x2 − x3]`.
fn transform_a(x: impl Fn(u64) -> Value) -> [Value; 2] {
    let sum = Value::Add(Box::new(Value::Add(Box::new(x(0)), Box::new(x(1)))), Box::new(x(2)));
    let difference = Value::Sub(Box::new(Value::Sub(Box::new(x(1)), Box::new(x(2)))), Box::new(x(3)));
    [sum, difference]
}

/// `G g Gᵀ` of one 3×3 window `g` (row-major), the 4×4 transformed weights (row-major), computed
/// in f64 and rounded once.
pub fn transform_weights(g: &[f32]) -> [f32; 16] {
    const G: [[f64; 3]; 4] = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];
    let mut gg = [[0.0f64; 3]; 4];
    for (i, row) in G.iter().enumerate() {
        for c in 0..3 {
            gg[i][c] = (0..3).map(|k| row[k] * f64::from(g[k * 3 + c])).sum();
        }
    }
    let mut out = [0.0f32; 16];
    for i in 0..4 {
        for (j, row) in G.iter().enumerate() {
            out[i * 4 + j] = (0..3).map(|k| gg[i][k] * row[k]).sum::<f64>() as f32;
        }
    }
    out
}
