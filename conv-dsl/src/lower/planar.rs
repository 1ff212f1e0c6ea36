//! A depthwise stage computed in the user's channels-first layout ([`Kernel::Planar`]).
//!
//! A model that starts and ends with the same depthwise layer would otherwise spend two layout
//! conversions — a full read and write of its input and of its output — around one cheap
//! convolution. Channels-first, each channel is a plane of its own, so the stage reads the user's
//! input and writes the user's output directly, vectorised along w (with stride 2 along w, each
//! input vector is every other element of the row, [`Value::LoadEven`]):
//!
//! ```text
//! for n, channel c (input channel c / multiplier):
//!   w[tap] = splat weight[c, tap]             (registers, for windows of up to 9 taps)
//!   for od, and oh in tiles of R rows:        (loops in the interior, constants on a border)
//!     for each vector of lanes positions along w:
//!       acc[r] = bias[c]
//!       for every input row the tile's taps read (each loaded once per kw, shared by the rows):
//!         acc[r] += in[c, row, ow + kw·dilation − pad ..] · w[kd, kh, kw]
//!       store activation(acc[r])
//! ```
//!
//! The border columns of w (where some taps fall outside the row) are vectors too: the vector
//! for a left border column `p` starts at `p` and takes only the taps that column has, so only its
//! first lane is right; the vector for a right border column `q` ends at `q`, only its last lane
//! right. They are stored first (left ones ascending, right ones descending) and the interior
//! vectors overwrite their wrong lanes, the last interior vector overlapping the one before where
//! the row's interior is not a multiple of the lanes. Each output's sum has the same terms in the
//! same order as in the channels-last lowering (bias, then taps in order), so results are the same
//! bit for bit whatever the layout.

use std::ops::Range;

use super::{Axis, Builder, Packing, Position, Segment, Split, StageParam, activate, as_part, part_count, part_range};
use crate::bind::BoundConv;
use crate::ir::{Acc, Buffer, BufferId, Index, Stmt, Value};
use crate::schedule::{Schedule, Target};
use crate::spec::Conv;

/// Windows of at most this many taps keep their weights in registers (with 4 row accumulators and
/// an input vector, 14 of the 16 vector registers of x86-64).
const WEIGHT_REGISTERS: u64 = 9;

/// The default tile for `conv` (rows × vectors along w): 4 rows where the window's weights stay in
/// registers and the rows' taps are consecutive rows (4 rows of a 3×3 window read 6 input rows
/// instead of 12), otherwise 4 vectors of one row, which share each weight's splat. Measured with
/// `convgen bench --schedule`, minimum times over 3 runs in the same session: dw3_s1_c144_56 0.212
/// ms with 4×1 against 0.254 with 1×4, dw3_s1_c32_112 0.192 against 0.217, but the dilated
/// dw3_d2_c64_56 (4 rows read 8 input rows) 0.124 against 0.106.
pub(super) fn default_tile(conv: &Conv) -> (u32, u32) {
    let rank = conv.kernel.len();
    let consecutive_rows = rank >= 2 && conv.dilation[rank - 2] == 1;
    if conv.kernel.iter().product::<u64>() <= WEIGHT_REGISTERS && consecutive_rows { (4, 1) } else { (1, 4) }
}

/// The geometry of the stage, (d, h, w) with missing axes of size 1.
fn axes(conv: &Conv, bound: &BoundConv) -> [Axis; 3] {
    let rank = conv.kernel.len();
    std::array::from_fn(|axis| match axis.checked_sub(3 - rank) {
        None => Axis { input: 1, output: 1, kernel: 1, stride: 1, dilation: 1, pad_before: 0 },
        Some(i) => Axis {
            input: bound.input[2 + i],
            output: bound.output[2 + i],
            kernel: conv.kernel[i],
            stride: conv.stride[i],
            dilation: conv.dilation[i],
            pad_before: bound.padding[i][0],
        },
    })
}

/// The vectors of one output row, in the order they are stored.
#[derive(Debug)]
struct Row {
    /// Border columns before the interior: a vector starts at each.
    left: Vec<u64>,
    /// Border columns after the interior, last first: a vector ends at each.
    right: Vec<u64>,
    /// The interior columns, covered by vectors from the first (the last one may overlap).
    interior: Range<u64>,
}

/// How a row of `axis` is covered by vectors of `lanes`, or why it cannot be.
fn row(axis: &Axis, lanes: u64) -> Result<Row, String> {
    let segments = axis.segments();
    let interior = segments.iter().find_map(|segment| match *segment {
        Segment::Interior { start, count } => Some(start..start + count),
        Segment::Border(_) => None,
    });
    let width = interior.as_ref().map_or(0, |range| range.end - range.start);
    let too_short = || {
        format!(
            "kernel=planar needs rows of at least {lanes} positions whose taps are all inside the input, and \
             room for the border columns' vectors; these rows have {width} such positions"
        )
    };
    let interior = interior.filter(|range| range.end - range.start >= lanes).ok_or_else(too_short)?;
    let taps = |column: u64| (0..axis.kernel).filter_map(move |tap| axis.source(column, tap));
    // Input elements one vector's lanes span: consecutive, or every other one for stride 2.
    let span = axis.stride * (lanes - 1) + 1;
    let left: Vec<u64> = (0..interior.start).collect();
    let right: Vec<u64> = (interior.end..axis.output).rev().collect();
    // A left vector [p, p + lanes) reads [source, source + span) per tap, and must not reach a
    // right border column (which is stored after it); a right vector (q − lanes, q] likewise.
    let left_fits =
        left.iter().all(|&p| p + lanes <= interior.end && taps(p).all(|source| source + span <= axis.input));
    let right_fits = right.iter().all(|&q| q + 1 >= interior.start + lanes && taps(q).all(|source| source + 1 >= span));
    if left_fits && right_fits { Ok(Row { left, right, interior }) } else { Err(too_short()) }
}

/// Whether a stage that may be computed planar (it reads the model's input and is its output)
/// should be, with `schedule`: when its window's weights fit in registers and its rows hold at
/// least two vectors of interior. Measured (`convgen bench`, this planar lowering against the
/// channels-last one in the same run, medians): dw3_s1_c144_56 0.21 against 0.64 ms,
/// dw3_s1_c384_14 0.039 against 0.071 ms, but dw3_s1_c960_7 (rows of 7) 0.076 against 0.047 ms;
/// larger windows gain nothing over the tile kernel (dw5_s1_c240_28 0.94 against 0.50–0.64 ms,
/// dw1d_k31_c256_l1000 1.0–1.2 against 0.9–1.05 ms).
pub(super) fn worth(conv: &Conv, bound: &BoundConv, schedule: Schedule) -> bool {
    let lanes = u64::from(schedule.lanes);
    let small_window = conv.kernel.iter().product::<u64>() <= WEIGHT_REGISTERS;
    let long_rows =
        row(&axes(conv, bound)[2], lanes).is_ok_and(|row| row.interior.end - row.interior.start >= 2 * lanes);
    small_window && long_rows && schedule.validate(conv).is_ok()
}

/// The planar functions of a stage — one, or one per part (a range of images, else of channel
/// groups, whose output is a contiguous window) — and its packed parameters. Its buffers are the
/// user's input and output, the weight and the bias. `schedule` has passed
/// [`Schedule::validate`], as [`super::lower`] checks every schedule first.
pub(super) fn planar(
    name: &str,
    conv: &Conv,
    bound: &BoundConv,
    schedule: Schedule,
    target: Target,
) -> Result<(Vec<Split>, Vec<StageParam>), String> {
    let lanes = u64::from(schedule.lanes);
    let axes = axes(conv, bound);
    let row = row(&axes[2], lanes)?;
    let batch = bound.input[0];
    let groups = conv.groups;
    let multiplier = conv.out_channels / groups;
    let taps: u64 = conv.kernel.iter().product();
    let in_plane: u64 = bound.input[2..].iter().product();
    let out_plane: u64 = bound.output[2..].iter().product();
    let weight_packing =
        Packing::Dense { groups, in_per_group: 1, out_per_group: multiplier, out_per_group_padded: multiplier, taps };
    let mut params = vec![("weight", weight_packing, conv.out_channels * taps)];
    let mut buffers = vec![
        Buffer { name: "in".into(), len: batch * conv.in_channels * in_plane, writes: false },
        Buffer { name: "out".into(), len: batch * conv.out_channels * out_plane, writes: true },
        Buffer { name: "w".into(), len: conv.out_channels * taps, writes: false },
    ];
    if conv.bias {
        params.push(("bias", Packing::Bias { channels: conv.out_channels }, conv.out_channels));
        buffers.push(Buffer { name: "b".into(), len: conv.out_channels, writes: false });
    }
    let (rows, vectors) = (u64::from(schedule.tile_width), u64::from(schedule.tile_channels));
    let context = Context { conv, axes: &axes, row: &row, lanes, rows, vectors, multiplier, taps, in_plane, out_plane };

    // Parts: ranges of images, else of groups (each a run of whole output planes).
    let macs = batch * conv.out_channels * out_plane * taps;
    let worth = macs >= target.part_macs.saturating_mul(u64::from(target.threads.max(1)));
    let (extent, stride) =
        if batch > 1 { (batch, conv.out_channels * out_plane) } else { (groups, multiplier * out_plane) };
    let count = part_count(worth, u64::from(target.threads.max(1)), extent);
    let parts = (0..count)
        .map(|part| {
            let range = part_range(extent, 1, count, part);
            let (images, channels) = if batch > 1 { (range.clone(), 0..groups) } else { (0..batch, range.clone()) };
            let mut builder = Builder::default();
            let body = context.body(&mut builder, images, channels);
            let window = range.start * stride..range.end * stride;
            as_part(name, builder.function(schedule.lanes, buffers.clone(), body), (part, count), &window)
        })
        .collect();
    Ok((parts, params))
}

/// What the statements of one stage are built from.
struct Context<'a> {
    conv: &'a Conv,
    axes: &'a [Axis; 3],
    row: &'a Row,
    lanes: u64,
    /// Output rows per tile.
    rows: u64,
    /// Vectors side by side along w per tile, in the interior.
    vectors: u64,
    multiplier: u64,
    taps: u64,
    in_plane: u64,
    out_plane: u64,
}

const INPUT: BufferId = BufferId(0);
const OUTPUT: BufferId = BufferId(1);
const WEIGHT: BufferId = BufferId(2);
const BIAS: BufferId = BufferId(3);

/// One output channel's indices: its image, its group (= input channel) and its place in the group.
struct Channel {
    n: Index,
    g: Index,
    m: Index,
}

/// A tile's vectors along w: where the first starts, the column whose taps they take (a border
/// column, for a single vector), or none (every tap), and how many there are side by side.
struct Column {
    start: Index,
    border: Option<u64>,
    vectors: u64,
}

impl Context<'_> {
    /// The loops over images `images` and groups `groups`, and everything inside.
    fn body(&self, builder: &mut Builder, images: Range<u64>, groups: Range<u64>) -> Vec<Stmt> {
        builder.repeat(images.end - images.start, |builder, n| {
            let n = n.plus_constant(images.start as i64);
            builder.repeat(groups.end - groups.start, |builder, g| {
                let g = g.plus_constant(groups.start as i64);
                builder.repeat(self.multiplier, |builder, m| {
                    self.channel(builder, &Channel { n: n.clone(), g: g.clone(), m })
                })
            })
        })
    }

    /// The weights in registers (small windows), then every tile of one output channel's plane.
    fn channel(&self, builder: &mut Builder, channel: &Channel) -> Vec<Stmt> {
        let mut body = Vec::new();
        if self.taps <= WEIGHT_REGISTERS {
            for tap in 0..self.taps {
                body.push(Stmt::Init { acc: Acc(tap as u32), value: self.weight_in_memory(channel, tap) });
            }
        }
        let [axis_d, axis_h, _] = self.axes;
        for segment_d in axis_d.segments() {
            body.extend(positions(builder, segment_d, 1, &mut |builder, d, _| {
                let mut body = Vec::new();
                for segment_h in axis_h.segments() {
                    body.extend(positions(builder, segment_h, self.rows, &mut |builder, h, rows| {
                        self.tile(builder, channel, &d, &h, rows)
                    }));
                }
                body
            }));
        }
        body
    }

    /// Weight `tap` of the channel, from the packed weights (`[g][tap][m]`).
    fn weight_in_memory(&self, channel: &Channel, tap: u64) -> Value {
        let index = channel
            .g
            .clone()
            .times((self.taps * self.multiplier) as i64)
            .plus(&channel.m)
            .plus_constant((tap * self.multiplier) as i64);
        Value::Splat { buffer: WEIGHT, index }
    }

    /// Weight `tap`: its register, or a splat from memory for a large window.
    fn weight(&self, channel: &Channel, tap: u64) -> Value {
        if self.taps <= WEIGHT_REGISTERS { Value::Acc(Acc(tap as u32)) } else { self.weight_in_memory(channel, tap) }
    }

    /// `rows` output rows from `h` (one row on a border): every vector of the rows, in the order
    /// that leaves every lane right (see the module's documentation) — the interior in blocks of
    /// [`Context::vectors`] vectors, then single vectors.
    fn tile(&self, builder: &mut Builder, channel: &Channel, d: &Position, h: &Position, rows: u64) -> Vec<Stmt> {
        let lanes = self.lanes;
        let row = self.row;
        let single =
            |start: u64, border: Option<u64>| Column { start: Index::constant(start as i64), border, vectors: 1 };
        let mut body = Vec::new();
        for &p in &row.left {
            body.extend(self.vectors(builder, channel, d, h, rows, &single(p, Some(p))));
        }
        for &q in &row.right {
            body.extend(self.vectors(builder, channel, d, h, rows, &single(q + 1 - lanes, Some(q))));
        }
        let (first, width) = (row.interior.start, row.interior.end - row.interior.start);
        let block = self.vectors * lanes;
        if width >= block {
            body.extend(builder.repeat(width / block, |builder, v| {
                let start = v.times(block as i64).plus_constant(first as i64);
                self.vectors(builder, channel, d, h, rows, &Column { start, border: None, vectors: self.vectors })
            }));
        }
        let mut next = first + width / block * block;
        while next + lanes <= row.interior.end {
            body.extend(self.vectors(builder, channel, d, h, rows, &single(next, None)));
            next += lanes;
        }
        if next < row.interior.end {
            body.extend(self.vectors(builder, channel, d, h, rows, &single(row.interior.end - lanes, None)));
        }
        body
    }

    /// `column.vectors` vectors side by side in each of `rows` output rows: init, accumulate,
    /// store. Each input vector is loaded once for all the rows that read it; a weight from memory
    /// is splat once for all the vectors of a row.
    fn vectors(
        &self,
        builder: &mut Builder,
        channel: &Channel,
        d: &Position,
        h: &Position,
        rows: u64,
        column: &Column,
    ) -> Vec<Stmt> {
        let (conv, [axis_d, axis_h, axis_w]) = (self.conv, self.axes);
        let vectors = column.vectors;
        let in_registers = self.taps <= WEIGHT_REGISTERS;
        let first = if in_registers { self.taps as u32 } else { 0 };
        let accumulator = |row: u64, vector: u64| Acc(first + (row * vectors + vector) as u32);
        let shared = |vector: u64| Acc(first + (rows * vectors + vector) as u32);
        let weight_register = Acc(first + ((rows + 1) * vectors) as u32);
        builder.accumulators = builder.accumulators.max(weight_register.0 + 1);
        let out_channel = channel.g.clone().times(self.multiplier as i64).plus(&channel.m);
        let inside = |axis: &Axis, border: Option<u64>, tap: u64| axis.takes(border, tap);
        let lanes = self.lanes as i64;

        let mut body = Vec::new();
        for row in 0..rows {
            for vector in 0..vectors {
                let value =
                    if conv.bias { Value::Splat { buffer: BIAS, index: out_channel.clone() } } else { Value::Zero };
                body.push(Stmt::Init { acc: accumulator(row, vector), value });
            }
        }
        let input_base = channel
            .n
            .clone()
            .times((conv.in_channels * self.in_plane) as i64)
            .plus(&channel.g.clone().times(self.in_plane as i64))
            .plus(&column.start.clone().times(axis_w.stride as i64));
        for kd in (0..axis_d.kernel).filter(|&kd| inside(axis_d, d.border, kd)) {
            // Input row (relative to the tile's first) of each (row, kh), ascending: each output's
            // taps then still come in order (kd, kh, kw).
            let mut reads: Vec<(u64, u64, u64)> = (0..rows)
                .flat_map(|row| {
                    (0..axis_h.kernel)
                        .filter(move |&kh| inside(axis_h, h.border, kh))
                        .map(move |kh| (row * axis_h.stride + kh * axis_h.dilation, row, kh))
                })
                .collect();
            reads.sort_unstable();
            let d_index = d
                .index
                .clone()
                .times(axis_d.stride as i64)
                .plus_constant((kd * axis_d.dilation) as i64 - axis_d.pad_before as i64);
            for group in reads.chunk_by(|a, b| a.0 == b.0) {
                let relative = group[0].0;
                let h_index = h
                    .index
                    .clone()
                    .times(axis_h.stride as i64)
                    .plus_constant(relative as i64 - axis_h.pad_before as i64);
                for kw in (0..axis_w.kernel).filter(|&kw| inside(axis_w, column.border, kw)) {
                    let index = input_base
                        .clone()
                        .plus(&d_index.clone().times((axis_h.input * axis_w.input) as i64))
                        .plus(&h_index.clone().times(axis_w.input as i64))
                        .plus_constant((kw * axis_w.dilation) as i64 - axis_w.pad_before as i64);
                    let inputs: Vec<Value> = (0..vectors)
                        .map(|vector| {
                            let index = index.clone().plus_constant(vector as i64 * lanes * axis_w.stride as i64);
                            let input = if axis_w.stride == 2 {
                                Value::LoadEven { buffer: INPUT, index }
                            } else {
                                Value::Load { buffer: INPUT, index }
                            };
                            if group.len() == 1 {
                                return input;
                            }
                            body.push(Stmt::Init { acc: shared(vector), value: input });
                            Value::Acc(shared(vector))
                        })
                        .collect();
                    for &(_, row, kh) in group {
                        let tap = (kd * axis_h.kernel + kh) * axis_w.kernel + kw;
                        let mut weight = self.weight(channel, tap);
                        if !in_registers && vectors > 1 {
                            body.push(Stmt::Init { acc: weight_register, value: weight });
                            weight = Value::Acc(weight_register);
                        }
                        for (vector, input) in inputs.iter().enumerate() {
                            let acc = accumulator(row, vector as u64);
                            body.push(Stmt::Fma { acc, a: input.clone(), b: weight.clone() });
                        }
                    }
                }
            }
        }
        let output_base = channel
            .n
            .clone()
            .times((conv.out_channels * self.out_plane) as i64)
            .plus(&out_channel.times(self.out_plane as i64))
            .plus(&d.index.clone().times((axis_h.output * axis_w.output) as i64))
            .plus(&column.start);
        for row in 0..rows {
            let row_base =
                output_base.clone().plus(&h.index.clone().plus_constant(row as i64).times(axis_w.output as i64));
            for vector in 0..vectors {
                let index = row_base.clone().plus_constant(vector as i64 * lanes);
                let value = activate(conv.act, Value::Acc(accumulator(row, vector)));
                body.push(Stmt::Store { buffer: OUTPUT, index, value });
            }
        }
        body
    }
}

/// The positions of one segment of d or h: a border position alone, or the interior in tiles of
/// `rows` (a loop over the full tiles, then the rest) — `inner` given the first position, whose
/// constant value on a border, and the tile's rows.
fn positions(
    builder: &mut Builder,
    segment: Segment,
    rows: u64,
    inner: &mut dyn FnMut(&mut Builder, Position, u64) -> Vec<Stmt>,
) -> Vec<Stmt> {
    match segment {
        Segment::Border(at) => inner(builder, Position { index: Index::constant(at as i64), border: Some(at) }, 1),
        Segment::Interior { start, count } => {
            let mut body = Vec::new();
            if count >= rows {
                body = builder.repeat(count / rows, |builder, tile| {
                    let index = tile.times(rows as i64).plus_constant(start as i64);
                    inner(builder, Position { index, border: None }, rows)
                });
            }
            if count % rows != 0 {
                let index = Index::constant((start + count / rows * rows) as i64);
                body.extend(inner(builder, Position { index, border: None }, count % rows));
            }
            body
        }
    }
}
