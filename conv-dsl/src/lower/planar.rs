//! A depthwise or small-group stage computed in the user's channels-first layout
//! ([`Kernel::Planar`]).
//!
//! A model that starts and ends with the same depthwise (or grouped) layer would otherwise spend
//! two layout conversions — a full read and write of its input and of its output — around one
//! cheap convolution. Channels-first, each channel is a plane of its own, so the stage reads the
//! user's input and writes the user's output directly, vectorised along w (with stride 2 along
//! w, each input vector is every other element of the row, [`Value::LoadEven`]):
//!
//! ```text
//! for n, group g, block of O output channels of the group:
//!   w[tap] = splat weight[c, tap]             (registers: one channel of one input, up to 9 taps)
//!   for od, and oh in tiles of R rows:        (loops in the interior, constants on a border)
//!     for each vector of lanes positions along w:
//!       acc[o][r] = bias[c + o]
//!       for each input channel k of the group, every input row the tile's taps read (each
//!       vector loaded once per kw, shared by the rows and the O channels):
//!         acc[o][r] += in[k, row, ow + kw·dilation − pad ..] · w[o, k, kd, kh, kw]
//!       store activation(acc[o][r])
//! ```
//!
//! A depthwise layer's tile is one channel (O = 1). A grouped layer's tile holds O output
//! channels of one group ([`outs`]), which read the same input vectors: a grouped layer with few
//! channels per group (ResNeXt's, g3_c128_g32_56's 4) has too few output channels per group
//! for the channels-last kernels' vectors of output channels, and here needs none.
//!
//! The border columns of w (where some taps fall outside the row) are vectors too: the vector
//! for a left border column `p` starts at `p` and takes only the taps that column has, so only its
//! first lane is right; the vector for a right border column `q` ends at `q`, only its last lane
//! right. They are stored first (left ones ascending, right ones descending) and the interior
//! vectors overwrite their wrong lanes, the last interior vector overlapping the one before where
//! the row's interior is not a multiple of the lanes. Each output's sum has the same terms in the
//! same order as in the channels-last lowering (bias, then input channels, then taps in order), so
//! results are the same bit for bit whatever the layout.

use std::ops::Range;

use super::{Axis, Builder, Packing, Position, Segment, Split, StageParam, activate, as_part, part_count, part_range};
use crate::bind::BoundConv;
use crate::ir::{
    Acc, Buffer, BufferId, Index, PLANE_FLAT_MAX_POSITIONS, PLANE_FLAT_MAX_ROW, PLANE_VOLUME_ROWS, Plane, PlaneDepth,
    Stmt, TILE_LANES, TileActivation, Value, plane_transposed,
};
use crate::schedule::{Kernel, PLANAR_MAX_ACCUMULATORS, Schedule, Target};
use crate::spec::Conv;

/// Windows of at most this many taps keep their weights in registers (with 4 row accumulators and
/// an input vector, 14 of the 16 vector registers of x86-64), where a tile reads one input
/// channel for one output channel (depthwise).
const WEIGHT_REGISTERS: u64 = 9;

/// The most output channels of a group one tile computes ([`outs`]).
const MAX_OUTS: u64 = 4;

/// The output channels of one group a tile of `rows × vectors` computes together: one for a
/// depthwise layer (its weights stay in registers), else the largest divisor of the group's
/// output channels up to [`MAX_OUTS`] whose accumulators (`outs × rows × vectors`) stay within
/// [`PLANAR_MAX_ACCUMULATORS`].
fn outs(conv: &Conv, rows: u32, vectors: u32) -> u64 {
    let (in_per_group, out_per_group) = (conv.in_channels / conv.groups, conv.out_channels / conv.groups);
    if in_per_group == 1 {
        return 1;
    }
    let room = u64::from(PLANAR_MAX_ACCUMULATORS / (rows * vectors).max(1)).max(1);
    (1..=MAX_OUTS.min(room)).rev().find(|&outs| out_per_group.is_multiple_of(outs)).unwrap_or(1)
}

/// The default tile for `conv` (rows × vectors along w): 4 rows where the window's weights stay in
/// registers and the rows' taps are consecutive rows (4 rows of a 3×3 window read 6 input rows
/// instead of 12), otherwise 4 vectors of one row, which share each weight's splat. Measured with
/// `convgen bench --schedule`, minimum times over 3 runs in the same session: dw3_s1_c144_56 0.212
/// ms with 4×1 against 0.254 with 1×4, dw3_s1_c32_112 0.192 against 0.217, but the dilated
/// dw3_d2_c64_56 (4 rows read 8 input rows) 0.124 against 0.106. A window whose weights do not
/// fit (a large layer's, [`PLANAR_LARGE_INPUT`]): 2 rows × 4 vectors (measured as there: 3.5–3.7
/// ms against 4.0–4.1 with 1×4 on the 3D layers, 1.47 against 1.75 for 5×5 at 56×56). A grouped
/// layer: 2 vectors of one row, for up to 4 output channels each ([`outs`]).
pub(super) fn default_tile(conv: &Conv) -> (u32, u32) {
    if conv.in_channels != conv.groups {
        return (1, 2);
    }
    let rank = conv.kernel.len();
    let consecutive_rows = rank >= 2 && conv.dilation[rank - 2] == 1;
    let taps = conv.kernel.iter().product::<u64>();
    if taps > WEIGHT_REGISTERS {
        (2, 4)
    } else if consecutive_rows {
        (4, 1)
    } else {
        (1, 4)
    }
}

/// The default planar schedule of a stage on a target of `lanes`: [`default_tile`] with the
/// target's vectors, or with vectors of [`NARROW_LANES`] where the target's do not fit twice in a
/// row ([`worth`]) but those do. The macro's 8 lanes on dw3_s1_c384_14 (rows of 14): its `forward`
/// built both ways and run alternately (5 rounds of 2000 runs, median of the medians) took
/// 0.057 ms with 4 lanes against 0.071 ms with the plane kernel, its default before.
pub(super) fn default_schedule(conv: &Conv, bound: &BoundConv, lanes: u32) -> Schedule {
    let (rows, vectors) = default_tile(conv);
    let target = Schedule::planar(lanes, rows, vectors);
    let narrow = Schedule::planar(NARROW_LANES, rows, vectors);
    if lanes > NARROW_LANES && !worth(conv, bound, target) && worth(conv, bound, narrow) { narrow } else { target }
}

/// The narrowest vectors [`default_schedule`] takes for short rows (Cranelift's 128 bits).
const NARROW_LANES: u32 = 4;

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

/// The fewest input elements (2 MiB of f32, twice a Zen 4 core's L2) from which a depthwise layer
/// of any window is computed planar. Measured on an AMD EPYC Zen 4 (`convgen bench`, JIT, medians,
/// channels-last with the tile kernel against planar 2×4 tiles): dw3d_k3_c32_16x56 (1.6 M
/// elements) 6.4–6.6 against 3.7 ms, 64 channels at 8×56×56 6.9 against 3.5, 5×5 windows over
/// 240 channels at 56×56 2.1 against 1.5 and 96 at 112×112 4.0 against 2.6; but below it 5×5
/// over 240 at 28×28 (188 K) 0.24 against 0.37–0.46, 3×3×3 over 32 at 16×28×28 (401 K) 0.82
/// against 1.0, and dw1d_k31_c256_l1000 (256 K) 0.58–0.60 against 0.60–0.62.
const PLANAR_LARGE_INPUT: u64 = 512 * 1024;

/// Whether a stage that may be computed planar (it reads the model's input and is its output)
/// should be, with `schedule`: when its window's weights fit in registers and its rows hold at
/// least two vectors of interior. Measured (`convgen bench`, this planar lowering against the
/// channels-last one in the same run, medians): dw3_s1_c144_56 0.21 against 0.64 ms,
/// dw3_s1_c384_14 0.039 against 0.071 ms, but dw3_s1_c960_7 (rows of 7) 0.076 against 0.047 ms;
/// larger windows gain nothing over the tile kernel (dw5_s1_c240_28 0.94 against 0.50–0.64 ms,
/// dw1d_k31_c256_l1000 1.0–1.2 against 0.9–1.05 ms) — unless the tensors are too large for the
/// caches ([`PLANAR_LARGE_INPUT`]), where the channels-last lowering's two conversions are
/// memory traffic that costs more than the planar code's narrower vectors.
///
/// A grouped layer whose groups have fewer output channels than a tile kernel's vector (or not a
/// multiple of it) is computed planar too, whatever its window: channels-last, its vectors of 4
/// output channels each reads every input as a splat. Measured on an AMD EPYC Zen 4 (`convgen
/// bench`, JIT, medians): g3_c128_g32_56 (4 channels per group) 0.71 ms planar with 1×2 tiles
/// (4 output channels each; 1×1 1.04, 2×1 0.91, 2×2 0.75, 1×4 0.91), against 1.44–2.2 ms
/// channels-last with its two conversions.
pub(super) fn worth(conv: &Conv, bound: &BoundConv, schedule: Schedule) -> bool {
    let lanes = u64::from(schedule.lanes);
    let small_window = conv.kernel.iter().product::<u64>() <= WEIGHT_REGISTERS;
    let large_input = bound.input.iter().product::<u64>() >= PLANAR_LARGE_INPUT;
    let small_groups = small_groups(conv);
    let long_rows =
        row(&axes(conv, bound)[2], lanes).is_ok_and(|row| row.interior.end - row.interior.start >= 2 * lanes);
    let fits = if conv.in_channels == conv.groups { small_window || large_input } else { small_groups };
    fits && long_rows && schedule.validate(conv).is_ok()
}

/// Whether `conv` is grouped (not depthwise) with a number of output channels per group that is
/// not a whole number of the channels-last kernels' vectors.
fn small_groups(conv: &Conv) -> bool {
    conv.groups > 1
        && conv.in_channels != conv.groups
        && !(conv.out_channels / conv.groups).is_multiple_of(u64::from(TILE_LANES))
}

/// The shortest output rows for which the plane kernel ([`Kernel::Plane`]) is chosen: two of its
/// AVX-512 vectors.
const PLANE_MIN_ROW: u64 = 32;

/// The shortest output rows for which the plane kernel is chosen for a large window at stride 1,
/// and, where the host runs its 16-lane version ([`Target::wide_microkernels`]), for a depthwise
/// window of at most 9 taps at stride 1 (a row of 14 to 16 is one vector).
const PLANE_MIN_SHORT_ROW: u64 = 14;

/// Flat planes (rows of at most [`PLANE_FLAT_MAX_ROW`], at most [`PLANE_FLAT_MAX_POSITIONS`]
/// positions) of a depthwise window at stride 1 whose output plane is its input's size take the
/// plane kernel where the host runs its 16-lane version: `conv_jit`'s flat
/// planes, whose vectors run across rows (a row of 8 would fill half a vector). Measured on an
/// AVX-512 AMD EPYC (`convgen bench --schedule dw:kernel=plane --against ""`, 200 alternating
/// pairs, median ratios) against the default of before (the channels-last tile kernel and two
/// conversions, or for the dilated window the planar code): dw3_s1_c960_7 1.40–1.51×, 576
/// channels at 8 × 8 1.76×, 1024 at 4 × 4 2.2×, dilation 2 on 512 at 7 × 7 3.0×; a 5 × 5 window
/// at 7 × 7 1.05–1.19× ([`plane_pays`]; 1.00× once, before its row kernel changed); rows of 14
/// keep the row kernel (flat: 0.84× on dw3_s1_c384_14).
fn flat_plane(bound: &BoundConv) -> bool {
    let positions: u64 = bound.output[2..].iter().product();
    let width = bound.output.last().copied().unwrap_or(0);
    bound.input[2..] == bound.output[2..] && width <= PLANE_FLAT_MAX_ROW && positions <= PLANE_FLAT_MAX_POSITIONS
}

/// The shortest output rows for which the plane kernel is chosen for a large window at stride 2.
const PLANE_MIN_ROW_STRIDED: u64 = 28;

/// The shortest output rows for which a depthwise 3×3 window at stride 2 takes the plane kernel
/// where the host runs its 16-lane version, which streams such planes (`conv_jit::plane`'s
/// `strided`). Measured on an AVX-512 AMD EPYC Zen 4 against the previous default (`convgen bench
/// --against "--schedule dw:kernel=plane"`, 300 alternating pairs, median ratios): 2.3× the planar
/// code at 144 channels of 56 × 56 (rows of 28) and 192 or 240 of 28 × 28 (rows of 14); against
/// the channels-last tile kernel and its conversions 1.8× at 384 channels of 14 × 14 and 1.3× at
/// 576 (rows of 7), but 0.89× at 96 channels of 12 × 12 (rows of 6), 0.76× at 320 of 10 × 10 and
/// 0.54× at 960 of 8 × 8 (rows of 4: the per-plane work outweighs the rows).
const PLANE_MIN_STREAMED_ROW: u64 = 7;

/// [`PLANE_MIN_STREAMED_ROW`] where the host runs the 8-lane (AVX2) version. Measured on the same
/// host with `CONVGEN_MAX_ISA=avx2` (same method): 1.37× the planar code at 144 channels of
/// 56 × 56, 1.41× at 192 of 28 × 28, 1.36× the channels-last tile kernel at 384 of 14 × 14; rows
/// of 7 even (576 channels of 14 × 14, 0.97×), rows of 6 and 5 0.73× and 0.68×.
const PLANE_MIN_STREAMED_ROW_AVX2: u64 = 14;

/// The smallest output plane (H·W) for which a pointwise layer takes the 1×1 plane kernel by
/// default. Measured on an AVX-512 AMD EPYC (`convgen bench --schedule pw:kernel=plane --against
/// ""`, 100 alternating pairs, median ratios) against the channels-last tile kernel and its
/// conversion of the output: pw_32to16_112 1.19×, 32 → 64 at 112 × 112 1.31–1.35×,
/// pw_64to64_56 1.15×, 64 → 128 at 56 × 56 1.17–1.19×, pw_144to24_56 1.17×, 128 → 128 at
/// 28 × 28 1.03–1.04×; slower on smaller planes, whose tiles of 48 pixels overlap more and which
/// the tile kernel's conversion costs less: 256 → 256 at 14 × 14 0.88×, pw_384to64_14 0.84×,
/// pw_960to320_7 0.54×.
const PLANE_MIN_POINTWISE: u64 = 28 * 28;

/// The fewest output channels for which a pointwise layer takes the 1×1 plane kernel by default on
/// a target without wide (AVX-512) microkernels, whose AVX2 kernel computes blocks of 6 channels:
/// with `CONVGEN_MAX_ISA=avx2` (same host and method as [`PLANE_MIN_POINTWISE`]) pw_32to16_112 ran
/// 0.87× the tile kernel (its 16 outputs in blocks of 6 compute 18; tiles of 4 or 8 channels were
/// no faster), pw_144to24_56 1.01×, pw_64to64_56 1.10×, 64 → 128 at 56 × 56 1.12×.
const PLANE_MIN_POINTWISE_OUTPUTS_AVX2: u64 = 24;

/// Output planes per part of a split pointwise stage on the plane kernel (its AVX-512 tile's).
const PART_CHANNELS: u64 = 8;

/// The parts a pointwise stage on the plane kernel is split into, at most `count`: each part
/// reads the whole input, so a part with far more than its share of the `units` of
/// [`PART_CHANNELS`] output planes makes the split slower than none. As many parts as keep the
/// largest within 1.25 of an even share, else 1. Measured on an Intel Xeon (AVX-512, 2 MiB of L2,
/// `convgen bench --threads 2 --against "--threads 1"`): pw_144to24_56, 3 units split 1 + 2, ran
/// 0.79–0.89× as fast on two threads as on one (3 runs over two days); pw_32to16_112 (1 + 1) and
/// pw_64to64_56 (4 + 4) 1.67× and 1.77× (`bench/compare.py --threads 2`).
fn even_parts(count: u64, units: u64) -> u64 {
    (2..=count)
        .rev()
        .find(|&parts| {
            let largest =
                (0..parts).map(|part| part_range(units, 1, parts, part)).map(|range| range.end - range.start).max();
            largest.is_some_and(|largest| largest * parts * 4 <= units * 5)
        })
        .unwrap_or(1)
}

/// Whether a stage that may be computed in the user's layout takes the plane kernel by default:
/// a depthwise layer, or a grouped one with too few output channels per group for the
/// channels-last kernels' vectors (as [`worth`] asks of the planar code), with a window it exists
/// for ([`Schedule::validate`]), and rows long enough:
/// - a window of at most 9 taps: rows of at least [`PLANE_MIN_ROW`] outputs (shorter rows take
///   the inline planar code, of 4 lanes where need be: [`default_schedule`]);
///   — or, on a `target` with wide (AVX-512) microkernels, a depthwise one at stride 1 with rows
///   of at least [`PLANE_MIN_SHORT_ROW`], or on a flat plane ([`flat_plane`]); on a `target`
///   with 8-lane (AVX2) microkernels, a depthwise one on small planes or in rows of 15 to 32
///   ([`transposed_planes`]);
///   — or a depthwise 3×3 one at stride 2 (undilated) with rows of at least
///   [`PLANE_MIN_STREAMED_ROW`] on a `target` with wide microkernels, else
///   [`PLANE_MIN_STREAMED_ROW_AVX2`];
/// - a larger window (5×5): rows of at least [`PLANE_MIN_SHORT_ROW`] outputs at stride 1, at least
///   [`PLANE_MIN_ROW_STRIDED`] at stride 2 — or, on a `target` with wide microkernels, a
///   depthwise one on a flat plane, or at stride 2 with rows of at least [`PLANE_MIN_SHORT_ROW`];
///   on a `target` with 8-lane microkernels, a depthwise 5×5 one on small planes
///   ([`transposed_planes`]);
/// - a pointwise layer (1×1, one group, no padding): planes of at least [`PLANE_MIN_POINTWISE`]
///   outputs, and at least [`PLANE_MIN_POINTWISE_OUTPUTS_AVX2`] output channels unless the target
///   has wide microkernels.
///
/// Measured on an AMD EPYC Zen 4 against the previous default (`convgen bench --against
/// "--schedule dw:…"`, 200–300 alternating pairs, median ratios). Faster: 1.77× the inline planar
/// code on dw3_s1_c32_112, 1.47× on dw3_s1_c144_56, 1.89× on relu6_dw3_c64_56, 1.36× on
/// dw3_d2_c64_56, 1.83× on g3_c128_g32_56; 1.19× the channels-last tile kernel on dw5_s1_c240_28,
/// 1.20× on a 5×5 layer of 480 channels at 14×14, 1.20× on a stride-2 one of 240 channels at
/// 56×56, and 1.28× the planar code on a stride-2 one of 96 channels at 112×112; for the macro's
/// 8 lanes on dw3_s2_c96_112 (`forward` alternately built both ways, 4 rounds of 500 runs) 0.26–0.34
/// ms against the planar code's 0.33–0.46, and since its stride-2 taps shuffle within 128-bit lanes
/// (`conv_jit::plane`) 1.01–1.09× the JIT's planar code of 4 lanes on dw3_s2_c96_112 (7 runs of
/// 300 pairs; 1.02–1.03× at 32 channels). Slower: 0.72× the JIT's planar code of 4
/// lanes on dw3_s1_c384_14 (rows of 14; the macro's planar code of 4 lanes too: see
/// [`default_schedule`]), and against the channels-last tile kernel 0.49× on dw3_s1_c960_7, 0.48×
/// on a 5×5 layer at 7×7 and 0.81× on a stride-2 5×5 one at 28×28 (rows of 7 and 14 fill few lanes
/// of 16 and are all border).
///
/// Rows of 14 to 31 on AVX-512, with blocks of 7 rows where 7 divides the plane's rows better
/// than 8 (`conv_jit::plane`'s `block_rows`), measured on an AVX-512 AMD EPYC (`convgen bench
/// --schedule dw:kernel=plane --against ""`, 100 alternating pairs, median ratios) against the
/// planar code: 1.14× on dw3_s1_c384_14, 1.32× on a dilated (2) one of 256 channels at 14×14,
/// 1.36× on one of 128 channels at 28×28, 1.05× at 21×21; at stride 2 (256 channels, 14×14
/// outputs) 0.88× on blocks of rows, so it kept the planar code until its planes streamed
/// ([`PLANE_MIN_STREAMED_ROW`]). The AVX2 version (8 lanes, two vectors for a row
/// of 14) ran 0.63× the planar code on dw3_s1_c384_14 and 0.80× at 28×28.
///
/// 5×5 depthwise windows on AVX-512 since their taps stay in registers (`conv_jit::plane`'s
/// `in_registers`; same host and method, 100 pairs) against the channels-last tile kernel and its
/// two conversions: flat planes of 1152 channels at 7×7 1.14–1.19×, of 672 1.00–1.12× (two
/// builds), of 240 1.05×; at stride 2
/// with rows of 14, 480 channels at 28×28 1.10×, 240 at 28×28 1.07×; with rows of 7 (stride 2 at
/// 14×14, 240 and 672 channels) 0.48–0.52×, so those keep the tile kernel.
pub(super) fn plane_pays(conv: &Conv, bound: &BoundConv, target: Target) -> bool {
    match conv.kernel.len() {
        1 => return rows_pay(conv, bound),
        3 => return volume_pays(conv, bound),
        _ => {}
    }
    if conv.is_dense_pointwise() {
        let plane: u64 = bound.output[2..].iter().product();
        let unpadded = bound.input[2..] == bound.output[2..];
        let channels = target.wide_microkernels || conv.out_channels >= PLANE_MIN_POINTWISE_OUTPUTS_AVX2;
        return unpadded && channels && plane >= PLANE_MIN_POINTWISE && Schedule::plane().validate(conv).is_ok();
    }
    let stride = conv.stride.iter().copied().max().unwrap_or(1);
    let width = bound.output.last().copied().unwrap_or(0);
    let small_window = conv.kernel.iter().product::<u64>() <= WEIGHT_REGISTERS;
    let depthwise = conv.in_channels == conv.groups;
    // Where the host runs the 16-lane kernels: flat planes of a depthwise window at stride 1.
    let wide = target.wide_microkernels && depthwise;
    let flat = wide && stride == 1 && flat_plane(bound);
    let min_row = match (small_window, stride == 1) {
        (true, true) if wide => PLANE_MIN_SHORT_ROW,
        (true, _) => PLANE_MIN_ROW,
        (false, true) => PLANE_MIN_SHORT_ROW,
        (false, false) if wide => PLANE_MIN_SHORT_ROW,
        (false, false) => PLANE_MIN_ROW_STRIDED,
    };
    // A depthwise 3×3 window at stride 2 streams its planes (`conv_jit::plane`'s `strided`).
    let streamed = depthwise
        && conv.kernel.iter().all(|&k| k == 3)
        && conv.stride.iter().all(|&s| s == 2)
        && conv.dilation.iter().all(|&d| d == 1)
        && width >= if wide { PLANE_MIN_STREAMED_ROW } else { PLANE_MIN_STREAMED_ROW_AVX2 };
    let rows = flat || streamed || transposed_planes(conv, bound, target) || width >= min_row;
    let grouping = depthwise || small_groups(conv);
    rows && grouping && Schedule::plane().validate(conv).is_ok()
}

/// Whether a depthwise stage's small planes (on AVX2 also rows of up to 32) take the plane kernel
/// by default: planes its kernel transposes a vector's lanes at a time ([`plane_transposed`]: 8
/// where the host runs its AVX2 version, 16 on AVX-512, where the smallest planes are flat anyway,
/// [`flat_plane`]), at least that many of them.
///
/// Measured on an Intel Xeon (Emerald Rapids) with `CONVGEN_MAX_ISA=avx2` against the channels-last
/// tile kernel and its two conversions (`convgen bench --schedule dw:kernel=plane` and without,
/// alternating, 6 pairs, median ratios): dw3_s1_c960_7 1.43×, 960 channels at 6 × 6 1.36×, 576 at 8
/// × 8 1.59×, a 5 × 5 window on 480 at 7 × 7 1.83×; planes of 14 × 14 against the planar code of 4
/// lanes or the row kernel (the builds before and after alternating, 8 pairs): dw3_s1_c384_14
/// 1.32×, 192 channels with relu6 1.48×, a 5 × 5 window on 480 channels 2.04×; on 512 planes of 9 ×
/// 9 to 13 × 13 1.34–2.31× (3 × 3) and 2.36–2.72× (5 × 5); in rows of 15 to 32, a row at a time
/// ([`PLANE_TRANSPOSED_BANDED_MOST`](crate::ir::PLANE_TRANSPOSED_BANDED_MOST)), 512 planes of 16 ×
/// 16 to 32 × 32 1.22–1.74× the planar code (3 × 3) and 1.29–2.50× the row kernel or, at 28 × 28,
/// the whole planes transposed (5 × 5); so too rows of 10 to 14 (12 to 14 under a 5 × 5 window)
/// in planes of more than 14 rows, 512 of them (6 pairs): 1.12× (3 × 3, 40 rows of 10), 1.52×
/// (30 of 11), 1.62× (24 of 12), 1.50× (28 of 14) the planar code; 5 × 5, 3.0× the channels-last
/// tile kernel (20 rows of 13) and 2.1× the row kernel (28 of 14), 4 pairs. With AVX-512 on such
/// planes (against the planar code or the channels-last tile kernel, 6 pairs): 1.78–3.09× (3 × 3)
/// and 2.84–3.66× (5 × 5); on rows of 10 to 13 in taller planes (AVX2's banded kernel, 4–6 pairs)
/// 0.97–1.07× (40 × 10), 1.23× (30 × 11), 1.40–1.60× (24 × 12), 2.29× (5 × 5, 20 × 13).
fn transposed_planes(conv: &Conv, bound: &BoundConv, target: Target) -> bool {
    let depthwise = conv.in_channels == conv.groups && conv.out_channels == conv.groups;
    let square = |values: &[u64]| match values {
        [a, b] if a == b => Some(*a),
        _ => None,
    };
    let window = (square(&conv.kernel), square(&conv.stride), square(&conv.dilation));
    let (Some(kernel), Some(stride), Some(dilation)) = window else { return false };
    let plane = |shape: &[u64]| match shape {
        [_, _, h, w] => Some([*h, *w]),
        _ => None,
    };
    let (Some(input), Some(output)) = (plane(&bound.input), plane(&bound.output)) else { return false };
    let ([top, _], [left, _]) = match bound.padding[..] {
        [top, left] => (top, left),
        _ => return false,
    };
    let lanes = u64::from(TILE_LANES) * if target.wide_microkernels { 2 } else { 1 };
    let planes = plane_transposed((kernel, stride, dilation), input, output, [top, left], lanes);
    target.microkernels && depthwise && conv.in_channels >= lanes && planes
}

/// Whether a 1D stage takes the plane kernel by default: a depthwise layer (or one of small
/// groups, as [`worth`] asks of the planar code) at stride 1 with rows of at least
/// [`PLANE_MIN_ROW`] outputs (`conv_jit::plane`'s `rows`: waves or tiles of vectors along the row,
/// any window).
///
/// Measured on an AVX-512 AMD EPYC Zen 4 against the inline planar code of 4 lanes it replaces
/// (`convgen bench`, the two builds alternating, 3–5 pairs): dw1d_k31_c256_l1000 2.06–2.12×
/// (0.373–0.453 → 0.181–0.216 ms), with `CONVGEN_MAX_ISA=avx2` 1.37–1.50× (→ 0.270 ms).
fn rows_pay(conv: &Conv, bound: &BoundConv) -> bool {
    let width = bound.output.last().copied().unwrap_or(0);
    let grouping = conv.in_channels == conv.groups || small_groups(conv);
    grouping && width >= PLANE_MIN_ROW && Schedule::plane().validate(conv).is_ok()
}

/// Whether a 3D stage takes the plane kernel by default: a depthwise layer whose window across
/// each plane is 3 × 3 at stride 1, undilated or of dilation 2, in rows of
/// [`PLANE_VOLUME_ROWS`] outputs — where the kernel streams each plane's columns
/// (`conv_jit::plane`'s `volume`); any window along the depth.
///
/// Measured on an AVX-512 AMD EPYC Zen 4 against the inline planar code of 4 lanes it replaces
/// (`convgen bench`, the two builds alternating): see `conv_jit::plane`'s `volume`.
fn volume_pays(conv: &Conv, bound: &BoundConv) -> bool {
    let across = |values: &[u64]| values.get(1..).unwrap_or_default().to_vec();
    let window = (across(&conv.kernel), across(&conv.stride), across(&conv.dilation));
    let streamed = window.0 == [3, 3] && window.1 == [1, 1] && (window.2 == [1, 1] || window.2 == [2, 2]);
    let width = bound.output.last().copied().unwrap_or(0);
    let (fewest, most) = PLANE_VOLUME_ROWS;
    let depthwise = conv.in_channels == conv.groups;
    depthwise && streamed && (fewest..=most).contains(&width) && Schedule::plane().validate(conv).is_ok()
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
    let plane_kernel = schedule.kernel == Kernel::Plane;
    // The plane kernel covers any row itself.
    let row =
        if plane_kernel { Row { left: Vec::new(), right: Vec::new(), interior: 0..0 } } else { row(&axes[2], lanes)? };
    let batch = bound.input[0];
    let groups = conv.groups;
    let (in_per_group, out_per_group) = (conv.in_channels / groups, conv.out_channels / groups);
    let taps: u64 = conv.kernel.iter().product();
    let in_plane: u64 = bound.input[2..].iter().product();
    let out_plane: u64 = bound.output[2..].iter().product();
    // The plane kernel reads each output channel's taps together (PyTorch's own order: panels of
    // one output channel); the inline code a tap's output channels together.
    let weight_packing = if plane_kernel {
        Packing::Panels { groups, in_per_group, out_per_group, panel: 1, taps }
    } else {
        Packing::Dense { groups, in_per_group, out_per_group, out_per_group_padded: out_per_group, taps }
    };
    let weight_len = conv.out_channels * in_per_group * taps;
    let mut params = vec![("weight", weight_packing, weight_len)];
    let mut buffers = vec![
        Buffer { name: "in".into(), len: batch * conv.in_channels * in_plane, writes: false },
        Buffer { name: "out".into(), len: batch * conv.out_channels * out_plane, writes: true },
        Buffer { name: "w".into(), len: weight_len, writes: false },
    ];
    if conv.bias {
        params.push(("bias", Packing::Bias { channels: conv.out_channels }, conv.out_channels));
        buffers.push(Buffer { name: "b".into(), len: conv.out_channels, writes: false });
    }
    let (rows, vectors) = (u64::from(schedule.tile_width), u64::from(schedule.tile_channels));
    let outs = outs(conv, schedule.tile_width, schedule.tile_channels);
    let context = Context {
        conv,
        axes: &axes,
        row: &row,
        lanes,
        rows,
        vectors,
        in_per_group,
        out_per_group,
        outs,
        taps,
        in_plane,
        out_plane,
    };

    // Parts: ranges of images, else of groups (each a run of whole output planes); the plane
    // kernel's one group (a pointwise layer) in runs of `PART_CHANNELS` output planes.
    let macs = batch * conv.out_channels * out_plane * taps * in_per_group;
    let worth = macs >= target.part_macs.saturating_mul(u64::from(target.threads.max(1)));
    let one_group = plane_kernel && groups == 1 && batch == 1;
    let (extent, unit, stride) = if batch > 1 {
        (batch, 1, conv.out_channels * out_plane)
    } else if one_group {
        (conv.out_channels, PART_CHANNELS, out_plane)
    } else {
        (groups, 1, out_per_group * out_plane)
    };
    let count = part_count(worth, u64::from(target.threads.max(1)), extent.div_ceil(unit));
    let count = if one_group { even_parts(count, extent.div_ceil(unit)) } else { count };
    let parts = (0..count)
        .map(|part| {
            let range = part_range(extent, unit, count, part);
            let (images, channels) = if batch > 1 { (range.clone(), 0..groups) } else { (0..batch, range.clone()) };
            let mut builder = Builder::default();
            let body = if plane_kernel {
                let outputs =
                    if one_group { channels } else { channels.start * out_per_group..channels.end * out_per_group };
                context.planes(&mut builder, images, outputs)
            } else {
                context.body(&mut builder, images, channels)
            };
            let window = range.start * stride..range.end * stride;
            as_part(name, builder.function(schedule.lanes, buffers.clone(), body), (part, count), &window, None)
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
    in_per_group: u64,
    out_per_group: u64,
    /// Output channels of a group per tile ([`outs`]).
    outs: u64,
    taps: u64,
    in_plane: u64,
    out_plane: u64,
}

const INPUT: BufferId = BufferId(0);
const OUTPUT: BufferId = BufferId(1);
const WEIGHT: BufferId = BufferId(2);
const BIAS: BufferId = BufferId(3);

/// One tile's output channels: their image, their group, and the block of [`Context::outs`]
/// channels of the group they are.
struct Channel {
    n: Index,
    g: Index,
    block: Index,
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
                builder.repeat(self.out_per_group / self.outs, |builder, block| {
                    self.channel(builder, &Channel { n: n.clone(), g: g.clone(), block })
                })
            })
        })
    }

    /// The plane kernel's statements ([`Kernel::Plane`]): per image, one [`Stmt::Plane`] for the
    /// output planes `outputs`: whole groups (a depthwise layer's group is one input channel), or
    /// any run of the one group of a layer that has one.
    fn planes(&self, builder: &mut Builder, images: Range<u64>, outputs: Range<u64>) -> Vec<Stmt> {
        let conv = self.conv;
        // A 1D layer's rows are the statement's depth axis, each plane a single element.
        let [axis_d, axis_h, axis_w] = match *self.axes {
            [unit, _, row] if conv.kernel.len() == 1 => [row, unit, unit],
            axes => axes,
        };
        let (group_inputs, group_outputs) = (self.in_per_group, self.out_per_group);
        let act = TileActivation::of(conv.act).expect("Schedule::validate accepts kernel=plane only for these");
        builder.repeat(images.end - images.start, |_, n| {
            let n = n.plus_constant(images.start as i64);
            let first_in = outputs.start / group_outputs * group_inputs;
            let input_index = n
                .clone()
                .times((conv.in_channels * self.in_plane) as i64)
                .plus_constant((first_in * self.in_plane) as i64);
            let first_out = outputs.start;
            let output_index =
                n.times((conv.out_channels * self.out_plane) as i64).plus_constant((first_out * self.out_plane) as i64);
            vec![Stmt::Plane(Box::new(Plane {
                input: INPUT,
                input_index,
                weight: WEIGHT,
                weight_index: Index::constant((first_out * group_inputs * self.taps) as i64),
                bias: conv.bias.then(|| (BIAS, Index::constant(first_out as i64))),
                output: OUTPUT,
                output_index,
                planes: outputs.end - outputs.start,
                group_inputs,
                group_outputs,
                input_size: [axis_h.input, axis_w.input],
                output_size: [axis_h.output, axis_w.output],
                kernel: axis_w.kernel,
                stride: axis_w.stride,
                dilation: axis_w.dilation,
                padding: [axis_h.pad_before, axis_w.pad_before],
                act,
                depth: PlaneDepth {
                    input: axis_d.input,
                    output: axis_d.output,
                    kernel: axis_d.kernel,
                    stride: axis_d.stride,
                    dilation: axis_d.dilation,
                    pad: axis_d.pad_before,
                },
            }))]
        })
    }

    /// Whether a tile's weights stay in registers for a whole plane: a depthwise layer's (one
    /// input channel for one output channel) window of at most [`WEIGHT_REGISTERS`] taps.
    fn weights_in_registers(&self) -> bool {
        self.in_per_group == 1 && self.outs == 1 && self.taps <= WEIGHT_REGISTERS
    }

    /// The weights in registers (depthwise, small windows), then every tile of one block of
    /// output channels' planes.
    fn channel(&self, builder: &mut Builder, channel: &Channel) -> Vec<Stmt> {
        let mut body = Vec::new();
        if self.weights_in_registers() {
            for tap in 0..self.taps {
                let value = self.weight_in_memory(channel, &Index::constant(0), tap, 0);
                body.push(Stmt::Init { acc: Acc(tap as u32), value });
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

    /// Weight `tap` of the group's input channel `k` for the block's output channel `out`, from
    /// the packed weights (`[g][k][tap][m]`).
    fn weight_in_memory(&self, channel: &Channel, k: &Index, tap: u64, out: u64) -> Value {
        let per_group = self.out_per_group as i64;
        let index = channel
            .g
            .clone()
            .times(self.in_per_group as i64)
            .plus(k)
            .times(self.taps as i64 * per_group)
            .plus(&channel.block.clone().times(self.outs as i64))
            .plus_constant(tap as i64 * per_group + out as i64);
        Value::Splat { buffer: WEIGHT, index }
    }

    /// Weight `tap` of input channel `k` for output channel `out`: its register, or a splat from
    /// memory.
    fn weight(&self, channel: &Channel, k: &Index, tap: u64, out: u64) -> Value {
        if self.weights_in_registers() {
            Value::Acc(Acc(tap as u32))
        } else {
            self.weight_in_memory(channel, k, tap, out)
        }
    }

    /// The output channel `out` of the tile's block.
    fn out_channel(&self, channel: &Channel, out: u64) -> Index {
        let block = channel.block.clone().times(self.outs as i64);
        channel.g.clone().times(self.out_per_group as i64).plus(&block).plus_constant(out as i64)
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

    /// `column.vectors` vectors side by side in each of `rows` output rows of the block's
    /// [`Context::outs`] channels: init, accumulate over the group's input channels (a loop where
    /// there are several), store.
    fn vectors(
        &self,
        builder: &mut Builder,
        channel: &Channel,
        d: &Position,
        h: &Position,
        rows: u64,
        column: &Column,
    ) -> Vec<Stmt> {
        let conv = self.conv;
        let first = if self.weights_in_registers() { self.taps as u32 } else { 0 };
        let registers = Registers { first, outs: self.outs, rows, vectors: column.vectors };
        builder.accumulators = builder.accumulators.max(registers.weight().0 + 1);

        let mut body = Vec::new();
        for out in 0..self.outs {
            for row in 0..rows {
                for vector in 0..column.vectors {
                    let value = if conv.bias {
                        Value::Splat { buffer: BIAS, index: self.out_channel(channel, out) }
                    } else {
                        Value::Zero
                    };
                    body.push(Stmt::Init { acc: registers.accumulator(out, row, vector), value });
                }
            }
        }
        let tile = Tile { channel, d, h, rows, column, registers: &registers };
        body.extend(builder.repeat(self.in_per_group, |_, k| self.accumulate(&tile, &k)));
        body.extend(self.store(&tile));
        body
    }

    /// The multiply-adds of input channel `k` of the group: each input vector is loaded once for
    /// all the rows and output channels that read it; a weight from memory is splat once for all
    /// the vectors of a row.
    fn accumulate(&self, tile: &Tile, k: &Index) -> Vec<Stmt> {
        let (conv, [axis_d, axis_h, axis_w]) = (self.conv, self.axes);
        let Tile { channel, d, h, rows, column, registers } = *tile;
        let vectors = column.vectors;
        let in_registers = self.weights_in_registers();
        let inside = |axis: &Axis, border: Option<u64>, tap: u64| axis.takes(border, tap);
        let lanes = self.lanes as i64;

        let mut body = Vec::new();
        let input_channel = channel.g.clone().times(self.in_per_group as i64).plus(k);
        let input_base = channel
            .n
            .clone()
            .times((conv.in_channels * self.in_plane) as i64)
            .plus(&input_channel.times(self.in_plane as i64))
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
                            if group.len() == 1 && self.outs == 1 {
                                return input;
                            }
                            body.push(Stmt::Init { acc: registers.shared(vector), value: input });
                            Value::Acc(registers.shared(vector))
                        })
                        .collect();
                    for &(_, row, kh) in group {
                        let tap = (kd * axis_h.kernel + kh) * axis_w.kernel + kw;
                        for out in 0..self.outs {
                            let mut weight = self.weight(channel, k, tap, out);
                            if !in_registers && vectors > 1 {
                                body.push(Stmt::Init { acc: registers.weight(), value: weight });
                                weight = Value::Acc(registers.weight());
                            }
                            for (vector, input) in inputs.iter().enumerate() {
                                let acc = registers.accumulator(out, row, vector as u64);
                                body.push(Stmt::Fma { acc, a: input.clone(), b: weight.clone() });
                            }
                        }
                    }
                }
            }
        }
        body
    }

    /// Stores `activation(sum)` of every accumulator of the tile.
    fn store(&self, tile: &Tile) -> Vec<Stmt> {
        let (conv, [_, axis_h, axis_w]) = (self.conv, self.axes);
        let Tile { channel, d, h, rows, column, registers } = *tile;
        let mut body = Vec::new();
        for out in 0..self.outs {
            let output_base = channel
                .n
                .clone()
                .times((conv.out_channels * self.out_plane) as i64)
                .plus(&self.out_channel(channel, out).times(self.out_plane as i64))
                .plus(&d.index.clone().times((axis_h.output * axis_w.output) as i64))
                .plus(&column.start);
            for row in 0..rows {
                let row_base =
                    output_base.clone().plus(&h.index.clone().plus_constant(row as i64).times(axis_w.output as i64));
                for vector in 0..column.vectors {
                    let index = row_base.clone().plus_constant((vector * self.lanes) as i64);
                    let value = activate(conv.act, Value::Acc(registers.accumulator(out, row, vector)));
                    body.push(Stmt::Store { buffer: OUTPUT, index, value });
                }
            }
        }
        body
    }
}

/// One tile of [`Context::vectors`]: its channels, rows and columns, and its registers.
#[derive(Clone, Copy)]
struct Tile<'a> {
    channel: &'a Channel,
    d: &'a Position,
    h: &'a Position,
    rows: u64,
    column: &'a Column,
    registers: &'a Registers,
}

/// A tile's registers (IR accumulators), after the `first` that hold a depthwise window's
/// weights: one accumulator per (output channel, row, vector), an input vector per vector shared
/// by the rows and channels that read it, and a weight splat shared by the vectors.
struct Registers {
    first: u32,
    outs: u64,
    rows: u64,
    vectors: u64,
}

impl Registers {
    fn accumulator(&self, out: u64, row: u64, vector: u64) -> Acc {
        Acc(self.first + ((out * self.rows + row) * self.vectors + vector) as u32)
    }

    fn shared(&self, vector: u64) -> Acc {
        Acc(self.first + (self.outs * self.rows * self.vectors + vector) as u32)
    }

    fn weight(&self) -> Acc {
        Acc(self.first + ((self.outs * self.rows + 1) * self.vectors) as u32)
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
