//! A depthwise stage fused into the pointwise stage that reads it, on blocks of rows (Halide's
//! `depthwise_separable_conv`; oneDNN, XNNPACK, ONNX Runtime and PyTorch run the two apart).
//!
//! ```text
//! for n, d:
//!   for each block of output rows (one border row, or up to `rows` interior rows):
//!     for each row r of the block:  rows[r] = the depthwise stage's row   (its own tiles, borders)
//!     out[block] = the pointwise stage over the block's pixels as one run  (its own tiles)
//! ```
//!
//! The depthwise output lives only in `rows`, a buffer of a few rows that stays in cache between
//! being written and read, instead of a whole tensor written to memory and read back. Each stage
//! is lowered by the same [`Stage`] code as when it runs alone, with its own schedule, so every
//! output sums the same terms in the same order: a fused plan's results equal the unfused plan's
//! bit for bit.

use super::stage::{
    Axis, Position, Region, Segment, Split, Stage, Sums, function_lanes, internal_strides, is_pointwise, kernel_stores,
    positions, scratch_len, stage_axes, stage_params,
};
use super::{Builder, NamedParam, as_part, padded, part_count, part_range};
use crate::bind::BoundConv;
use crate::ir::{Buffer, BufferId, Index, Stmt};
use crate::schedule::{Kernel, Order, Schedule, Target};
use crate::spec::{Activation, Conv};

/// The most elements one row of the depthwise output may hold for the pair to be fused: a row
/// longer than this (a long 1D signal) would not stay in cache between the two stages.
const MAX_ROW_ELEMENTS: u64 = 1 << 15;

/// One stage of a fused pair: its name (for its parameters), what it computes, its shapes and
/// its schedule.
#[derive(Clone, Copy)]
pub(super) struct Piece<'a> {
    pub name: &'a str,
    pub conv: &'a Conv,
    pub bound: &'a BoundConv,
    pub schedule: Schedule,
}

/// Whether `first` (a depthwise stage) and `second` (the pointwise stage that reads it, and
/// nothing else does) run fused on blocks of rows on `target` with these schedules: neither in
/// the user's layout nor with its channel blocks outermost ([`Order::Channels`], a request to
/// stream each block's weights over the whole image), vectors of the same lanes, a depthwise
/// window wider than one pixel, a depthwise output too large to stay in cache
/// ([`crate::schedule::Fusion::min_elements`]) whose rows are small enough to
/// ([`MAX_ROW_ELEMENTS`]), and pointwise weights few enough to be read once per block of rows
/// ([`crate::schedule::Fusion::max_weights_per_output`]).
pub(super) fn fusable(first: &Piece, second: &Piece, target: Target) -> bool {
    let plan_lanes = target.lanes;
    // One input channel per group: depthwise, with any multiplier.
    let depthwise = first.conv.in_channels == first.conv.groups;
    let channels = padded(first.conv.out_channels, plan_lanes);
    let row = first.bound.output.last().copied().unwrap_or(1) * channels;
    let image = first.bound.output[2..].iter().product::<u64>() * channels;
    let ordinary = |part: &Piece| part.schedule.kernel != Kernel::Planar && part.schedule.order == Order::Pixels;
    let height = stage_axes(first.conv, first.bound)[1].output;
    let block = block_rows(target, row, height) * row;
    let weights = second.conv.in_channels / second.conv.groups * second.conv.out_channels;
    depthwise
        && function_lanes(first.schedule, plan_lanes) == function_lanes(second.schedule, plan_lanes)
        && !is_pointwise(first.conv, first.bound)
        && is_pointwise(second.conv, second.bound)
        && ordinary(first)
        && ordinary(second)
        && row <= MAX_ROW_ELEMENTS
        && image >= target.fusion.min_elements
        && weights <= target.fusion.max_weights_per_output.saturating_mul(block)
}

/// Rows of the depthwise output per block of a fused pair: as many whole rows of `row` elements
/// as [`crate::schedule::Fusion::block_elements`] hold, at least one, at most `height`.
fn block_rows(target: Target, row: u64, height: u64) -> u64 {
    (target.fusion.block_elements / row.max(1)).clamp(1, height.max(1))
}

/// The functions of a fused pair — one, or one per part (a range of images, else of positions
/// along d, else along h) with the start of its window of the output — the packed parameters
/// they take after their input and output values (`(source, packing, len)`: the first stage's,
/// then the second's), and the lengths of the scratch buffers each part takes last (the rows,
/// then the tile kernels' sums if a stage has a tile kernel).
pub(super) fn fused(
    name: &str,
    first: &Piece,
    second: &Piece,
    target: Target,
    residual: Option<Activation>,
) -> (Vec<Split>, Vec<NamedParam>, Vec<u64>) {
    let plan_lanes = target.lanes;
    let axes = stage_axes(first.conv, first.bound);
    let input3 = axes.map(|axis| axis.input);
    let output3 = axes.map(|axis| axis.output);
    let width = output3[2];
    let batch = first.bound.input[0];
    let (in_padded, middle_padded, out_padded) = (
        padded(first.conv.in_channels, plan_lanes),
        padded(first.conv.out_channels, plan_lanes),
        padded(second.conv.out_channels, plan_lanes),
    );
    let rows = block_rows(target, width * middle_padded, output3[1]);

    let mut params = Vec::new();
    let mut buffers = vec![
        Buffer { name: "in".into(), len: batch * in_padded * input3.iter().product::<u64>(), writes: false },
        Buffer { name: "out".into(), len: batch * out_padded * output3.iter().product::<u64>(), writes: true },
    ];
    // The weight and bias buffers of a stage, named `{prefix}_w` and `{prefix}_b`.
    let mut stage_buffers = |part: &Piece, prefix: &str, buffers: &mut Vec<Buffer>| {
        let (packings, _) = stage_params(part.conv, part.schedule, plan_lanes);
        let mut ids = Vec::new();
        for (kind, packing, len) in packings {
            let buffer = if kind == "weight" { "w" } else { "b" };
            buffers.push(Buffer { name: format!("{prefix}_{buffer}"), len, writes: false });
            ids.push(BufferId(buffers.len() as u32 - 1));
            params.push((format!("{}.{kind}", part.name), packing, len));
        }
        (ids[0], ids.get(1).copied())
    };
    let (first_weight, first_bias) = stage_buffers(first, "dw", &mut buffers);
    let (second_weight, second_bias) = stage_buffers(second, "pw", &mut buffers);
    let residual = residual.map(|act| {
        buffers.push(Buffer { name: "res".into(), len: buffers[1].len, writes: false });
        (BufferId(buffers.len() as u32 - 1), act)
    });
    let block_len = rows * width * middle_padded;
    buffers.push(Buffer { name: "rows".into(), len: block_len, writes: true });
    let block = BufferId(buffers.len() as u32 - 1);
    let mut scratch_lens = vec![block_len];
    // Where each stage's tile kernel puts its sums: a scratch buffer both share where either
    // needs one (the depthwise stage's activation is not one the kernels apply, or a residual
    // `add` is fused into the pointwise store).
    let tiled = [first, second].map(|part| part.schedule.kernel == Kernel::Tile);
    let stores =
        [(first, false), (second, residual.is_some())].map(|(part, residual)| kernel_stores(part.conv, residual));
    let scratch = ((tiled[0] && !stores[0]) || (tiled[1] && !stores[1])).then(|| {
        let len =
            scratch_len(first.conv, first.schedule, width).max(scratch_len(second.conv, second.schedule, rows * width));
        buffers.push(Buffer { name: "sums".into(), len, writes: true });
        scratch_lens.push(len);
        BufferId(buffers.len() as u32 - 1)
    });

    let sums = |tiled: bool, stores: bool| match (tiled, stores, scratch) {
        (false, ..) => None,
        (true, true, _) => Some(Sums::Output),
        (true, false, scratch) => Some(Sums::Scratch(scratch.expect("a scratch buffer where a stage needs one"))),
    };
    // The depthwise stage writes row r of a block at r·width·channels of `rows` (its output's
    // strides along n and d are 0; along h, each block's first row is subtracted).
    let depthwise = Stage::new(
        first.conv,
        first.schedule,
        plan_lanes,
        axes,
        (internal_strides(input3, in_padded), 1, [0, 0, width * middle_padded, middle_padded]),
        (BufferId(0), block, first_weight, first_bias),
        None,
        sums(tiled[0], stores[0]),
    );
    // The pointwise stage reads a block as one run of pixels along w and writes them where they
    // are in its output, whose rows are consecutive.
    let one = Axis { input: 1, output: 1, kernel: 1, stride: 1, dilation: 1, pad_before: 0 };
    let run = Axis { input: rows * width, output: rows * width, ..one };
    let out_strides = internal_strides(output3, out_padded);
    let pointwise = Stage::new(
        second.conv,
        second.schedule,
        plan_lanes,
        [one, one, run],
        ([0, 0, 0, middle_padded], 1, out_strides),
        (block, BufferId(1), second_weight, second_bias),
        residual,
        sums(tiled[1], stores[1]),
    );

    // Parts along the outermost of n, d, h with more than one position.
    let extents = [batch, output3[0], output3[1]];
    let threads = u64::from(target.threads.max(1));
    let macs = |part: &Piece| {
        let (conv, bound) = (part.conv, part.bound);
        let positions: u64 = bound.output.iter().product();
        positions * (conv.in_channels / conv.groups) * conv.kernel.iter().product::<u64>()
    };
    let worth = macs(first) + macs(second) >= target.part_macs.saturating_mul(threads);
    let split = (0..3).find(|&dim| extents[dim] > 1).unwrap_or(2);
    let count = part_count(worth, threads, extents[split]);
    let function_lanes = function_lanes(second.schedule, plan_lanes);
    let parts = (0..count)
        .map(|part| {
            let range = part_range(extents[split], 1, count, part);
            let window = range.start * out_strides[split]..range.end * out_strides[split];
            let mut region = Region { batch: 0..batch, positions: [0..output3[0], 0..output3[1], 0..width] };
            match split {
                0 => region.batch = range,
                dim => region.positions[dim - 1] = range,
            }
            let mut builder = Builder::default();
            let body = blocks(&mut builder, &depthwise, &pointwise, &region, rows);
            as_part(name, builder.function(function_lanes, buffers.clone(), body), (part, count), &window, None)
        })
        .collect();
    (parts, params, scratch_lens)
}

/// The loops of a fused pair over `region`: images, positions along d, blocks of up to `rows`
/// rows (a border row alone), each the depthwise rows then the pointwise run.
fn blocks(builder: &mut Builder, depthwise: &Stage, pointwise: &Stage, region: &Region, rows: u64) -> Vec<Stmt> {
    let axes = &depthwise.axes;
    let (segments_d, segments_h) =
        (axes[0].segments_within(&region.positions[0]), axes[1].segments_within(&region.positions[1]));
    let segments_w = axes[2].segments();
    let width = axes[2].output;
    let zero = Index::constant(0);
    builder.repeat(region.batch.end - region.batch.start, |builder, n| {
        let n = n.plus_constant(region.batch.start as i64);
        let mut body = Vec::new();
        for &segment_d in &segments_d {
            body.extend(positions(builder, segment_d, &mut |builder, d| {
                // The block of `count` rows from `first` (a border row: `border`).
                let block = |builder: &mut Builder, first: Index, count: u64, border: Option<u64>| {
                    // Row r of the block at r·width·channels of the buffer.
                    let offset = first.clone().times(-(depthwise.out_strides[2] as i64));
                    let mut body = builder.repeat(count, |builder, r| {
                        let h = Position { index: first.clone().plus(&r), border };
                        let row = |&segment_w| depthwise.row(builder, &n, &d, &h, segment_w, None, &offset);
                        segments_w.iter().flat_map(row).collect()
                    });
                    // The pointwise stage has no borders: its positions are plain indices.
                    let (d, h) = (Position { border: None, ..d.clone() }, Position { index: first, border: None });
                    let run = Segment::Interior { start: 0, count: count * width };
                    body.extend(pointwise.row(builder, &n, &d, &h, run, None, &zero));
                    body
                };
                let mut body = Vec::new();
                for &segment_h in &segments_h {
                    match segment_h {
                        Segment::Border(at) => body.extend(block(builder, Index::constant(at as i64), 1, Some(at))),
                        Segment::Interior { start, count } => {
                            let full = count / rows;
                            if full > 0 {
                                body.extend(builder.repeat(full, |builder, b| {
                                    block(builder, b.times(rows as i64).plus_constant(start as i64), rows, None)
                                }));
                            }
                            if count % rows > 0 {
                                let first = Index::constant((start + full * rows) as i64);
                                body.extend(block(builder, first, count % rows, None));
                            }
                        }
                    }
                }
                body
            }));
        }
        body
    })
}
