//! Depthwise 3 × 3 planes at stride 1 streamed down the plane a few columns of vectors at a time.
//! An input row is added to the three output rows that read it (tap rows 2, 1 and 0), so three
//! sums per column are live; after the row the oldest is complete and stored, and a new one
//! starts at the bias ([`super::stream`] streams one column at a time, of two planes).
//!
//! A sum takes three dependent multiply-adds per input row, so one column's three sums wait on
//! the multiply-adds' latency; the columns of a group share the window's 9 taps and add their
//! sums to those in flight, without more registers for weights. The columns whose window lies
//! inside the rows go down the plane together, up to [`ColumnGroups::MOST`] at a time (the row's
//! columns in order), and on AVX-512 a border column with them (masked multiply-adds); on AVX2,
//! whose masked multiply-add costs a blend, a border column's weights are masked instead, 9 more
//! registers than its 16 hold beside a group, so it streams alone.
//!
//! Measured on an AVX-512 AMD EPYC Zen 4 (`convgen bench` of the layer, the build before and this
//! one alternating, medians of 5 pair ratios; `CONVGEN_MAX_ISA=avx2` for AVX2). AVX-512, groups of
//! up to 4: dw3_s1_c144_56 1.35× (0.113 → 0.084 ms), dw3_s1_c32_112 1.28× (0.086 → 0.067),
//! relu6_dw3_c64_56 1.37× (0.052 → 0.038), dw3_d2_c64_56 1.33× (0.054 → 0.041), 96 channels at
//! 40 × 40 1.6×. AVX2, groups of 2: dw3_s1_c144_56 1.46× (0.179 → 0.122 ms), dw3_s1_c32_112
//! 1.13×, relu6_dw3_c64_56 1.42×, dw3_d2_c64_56 1.28×, 96 channels at 40 × 40 1.65×. While
//! developing (a switch in one build): 32 channels at 224 × 224 0.81× on AVX-512 (planes of
//! 200 KiB: the blocks' row-wise order reads them better), so rows of at most 7 vectors there;
//! on AVX2 192 at 28 × 28 0.72× (two of its four columns are border ones, alone: three sums, their
//! latency unhidden), 128 at 20 × 20 and dw3_s1_c384_14 1.00, so rows of 5 to 14 vectors. A border
//! column alone on AVX-512: 0.93–0.96× of it in the group; groups of 3 there as fast as of 4.
//! Groups of 3 or 4 on AVX2 (taps spilled) ran 0.84–0.91× of 2; a border column in the group
//! 0.83×; the two border columns together 0.87–0.95× of each alone. Cutting the plane into bands
//! of rows that stay in L1 did not help (0.93–1.0× on rows of 112). With the activation a run-time
//! value and the store's width checked per row, the AVX2 stream ran 0.81× as fast (a branch per
//! column and step in the loop).
//!
//! On AVX-512, a row whose outputs past its whole vectors are at most half a vector (56: three
//! vectors and 8) ends in a column of AVX2's 8 lanes, streamed alone after the groups, rather than
//! in a whole vector overlapping the one before: a Zen 4 runs a 16-lane multiply-add as two 8-lane
//! halves on its 256-bit units, so the overlapping vector's multiply-adds cost twice the half
//! column's. On the Zen 4 (the build before and this one alternating, 6–8 pairs; the host noisy):
//! dw3_s1_c144_56 1.08–1.12× (medians / minimums; 0.083 → 0.075 ms minimums; without the last
//! column at all, wrong but timed, it took 0.065), dw3d_k3_c32_16x56 1.04–1.06×, relu6_dw3_c64_56
//! 1.01–1.05×, dw3_d2_c64_56 1.03×; with `CONVGEN_MAX_ISA=avx2` (no half column) 1.00–1.07×. Both
//! border columns in one group with the inside ones instead (on AVX-512) ran 0.97× as fast on
//! dw3_s1_c144_56 and 0.98× on relu6_dw3_c64_56.
//!
//! On an Intel Xeon of 2 × 512-bit FMA units (Emerald Rapids, AVX-512; the build before the half
//! column and this one alternating, 8 pairs) the half column costs nothing: dw3_s1_c144_56 1.02×,
//! dw3d_k3_c32_16x56 1.02×, relu6_dw3_c64_56 1.01×. There the big planes wait on memory: 8 channels
//! at 112 × 112, which fit the L2 cache, take 0.019–0.023 ms, 32 (dw3_s1_c32_112) 0.16–0.18 ms, and
//! a vectorised loop over as many bytes in and out 0.12 ms. Prefetching the next plane's line under
//! each column's loads (`prefetcht0`, one per column and input row) made it slower: 0.95× on
//! dw3_s1_c32_112, 0.82× on dw3_s1_c144_56, 0.84× on dw3d_k3_c32_16x56, 0.77× on relu6_dw3_c64_56
//! (6 pairs). Nor did shifting an inside column's last tap column (`valignd`) out of its first
//! one's load and a masked load of the two elements after it help, rather than loading it: where a
//! row is not aligned its 64-byte loads straddle two cache lines, and a C copy of a group's loop
//! (three columns over rows of 56, best of 30 000 runs) ran 1.5× as fast so on one plane in the L1
//! cache and 1.26× over 16 planes in the L2, yet the kernel ran 0.98–1.02× as fast (the build
//! before and that one alternating, 6–10 pairs: relu6_dw3_c64_56, 16 channels at 56 × 56,
//! dw3_s1_c144_56, dw3d_k3_c32_16x56).
//!
//! Under a window of dilation 2, the even output rows read the input rows of one parity and the odd
//! ones the other: each phase is a stream of its own, the tap columns 2 apart.
//!
//! Each sum takes the taps inside the plane in the window's order (an output row's input rows come
//! in order, and each row's tap columns in order), as the other kernels do: bit for bit the
//! portable kernel.

use super::grouping::{self, Window};
use super::stream::Plane;
use super::{Avx2, Avx512, Lanes, PlaneArgs, column_masks, div_ceil};
use crate::microkernel::{ACT_NONE, ACT_RELU, ACT_RELU6};

/// How a vector width streams its columns.
pub(super) trait ColumnGroups: Lanes {
    /// The most inside columns streamed together: their sums (three each), the 9 taps and a load
    /// in registers.
    const MOST: usize;
    /// Whether a border column streams with inside ones, or alone.
    const BORDER_WITH_INSIDE: bool;
    /// The rows streamed so, in vectors: the fewest and the most.
    const VECTORS: (isize, isize);
    /// Whether a row's last outputs past its whole vectors, where they are at most half a vector,
    /// are a column of AVX2's 8 lanes rather than a whole vector overlapping the one before: on
    /// the 256-bit units of a Zen 4 an 8-lane multiply-add costs half a 16-lane one.
    const HALF_TAIL: bool;
}

impl ColumnGroups for Avx512 {
    const MOST: usize = 4;
    const BORDER_WITH_INSIDE: bool = true;
    const VECTORS: (isize, isize) = (3, 7);
    const HALF_TAIL: bool = true;
}

impl ColumnGroups for Avx2 {
    const MOST: usize = 2;
    const BORDER_WITH_INSIDE: bool = false;
    const VECTORS: (isize, isize) = (5, 14);
    const HALF_TAIL: bool = false;
}

/// Whether a plane statement's planes are streamed so on `X`: a depthwise 3 × 3 window at stride
/// 1, undilated or of dilation 2, in rows of [`ColumnGroups::VECTORS`].
pub(super) fn applies<X: ColumnGroups>(args: &PlaneArgs, kernel: usize, stride: usize, dilation: usize) -> bool {
    let (fewest, most) = X::VECTORS;
    let vectors = div_ceil(args.output_size[1], X::L);
    kernel == 3 && stride == 1 && dilation <= 2 && args.group_inputs == 1 && (fewest..=most).contains(&vectors)
}

/// What the columns of a plane statement share.
#[derive(Clone, Copy)]
struct Rows {
    /// (H, W).
    size: [isize; 2],
    /// Padding rows above the plane.
    pad_top: isize,
    /// (OH, OW).
    output_size: [isize; 2],
}

/// One column of vectors: the input column of its lane 0 at tap 0, its output position, and on a
/// border per tap column the lanes whose input is inside the row.
#[derive(Clone, Copy)]
struct Column<X: Lanes> {
    left: isize,
    output: isize,
    masks: [X::M; 3],
}

/// Every plane of `args`, each in groups of columns of vectors across its rows.
///
/// # Safety
/// As for [`super::portable_kernel`], with [`applies`] true, and the host runs `X`'s instructions.
#[inline(always)]
pub(super) unsafe fn planes<X: ColumnGroups, const D: usize>(args: &PlaneArgs) {
    // SAFETY: the caller's contract; each column reads only inside the plane (see `columns`).
    unsafe {
        let Some(stream) = Stream::<X>::new::<D>(args) else { return };
        for p in 0..args.planes {
            stream.plane::<D>(&Plane::nth(args, p, 9), args.act);
        }
    }
}

/// How the planes of a plane statement's shape are streamed: their rows and the groups of columns
/// that cover a row, and the half column after them ([`ColumnGroups::HALF_TAIL`]), streamed alone.
pub(super) struct Stream<X: Lanes> {
    rows: Rows,
    groups: Vec<grouping::Group<Column<X>>>,
    tail: Option<grouping::Group<Column<Avx2>>>,
}

impl<X: ColumnGroups> Stream<X> {
    /// The stream of `args`' planes (their size, padding and window; none where there is no output
    /// or a row is shorter than a vector).
    ///
    /// # Safety
    /// The host runs `X`'s instructions (which make the masks).
    #[inline(always)]
    pub(super) unsafe fn new<const D: usize>(args: &PlaneArgs) -> Option<Stream<X>> {
        let ([h, w], [oh, ow], [pad_top, pad_left]) = (args.input_size, args.output_size, args.padding);
        if oh <= 0 || ow < X::L {
            return None;
        }
        let rows = Rows { size: [h, w], pad_top, output_size: [oh, ow] };
        // SAFETY: the caller's contract.
        Some(unsafe { stream::<X, D>(rows, pad_left) })
    }

    /// One plane streamed, activated by `act` (an `ACT_*` code).
    ///
    /// # Safety
    /// As for [`planes`]: `plane` is one of the statement's planes (or its window over other input
    /// and output planes of the same size).
    #[inline(always)]
    pub(super) unsafe fn plane<const D: usize>(&self, plane: &Plane, act: isize) {
        let none = std::ptr::null();
        // SAFETY: the caller's contract.
        unsafe {
            match act {
                ACT_RELU => self.run::<D, ACT_RELU, false>(plane, none),
                ACT_RELU6 => self.run::<D, ACT_RELU6, false>(plane, none),
                _ => self.run::<D, ACT_NONE, false>(plane, none),
            }
        }
    }

    /// One plane streamed as a later pass of [`super::volume`]: each sum starts at the element of
    /// its output position in the plane of `OH × OW` at `init` rather than at the bias (a window's
    /// taps added to the sums of earlier ones), not activated. Rows [`init_rows`] around the
    /// plane's are read too, into sums never stored. (Only without an activation, the one version
    /// the volumes need: each version of the stream is a copy of its unrolled groups.)
    ///
    /// # Safety
    /// As for [`Stream::plane`]; `init`'s rows [`init_rows`] (of `OW`) are readable and not
    /// `plane`'s output.
    #[inline(always)]
    pub(super) unsafe fn pass<const D: usize>(&self, plane: &Plane, init: *const f32) {
        // SAFETY: the caller's contract.
        unsafe { self.run::<D, ACT_NONE, true>(plane, init) }
    }

    /// Every group of the plane, then the half column.
    ///
    /// # Safety
    /// As for [`Stream::plane`], and with `INIT` for [`Stream::pass`].
    #[inline(always)]
    unsafe fn run<const D: usize, const ACT: isize, const INIT: bool>(&self, plane: &Plane, init: *const f32) {
        let rows = &self.rows;
        // SAFETY: the caller's contract.
        unsafe {
            for group in &self.groups {
                group_of::<X, D, ACT, INIT>(rows, plane, init, group);
            }
            if let Some(tail) = &self.tail {
                tail_of::<D, ACT, INIT>(rows, plane, init, tail);
            }
        }
    }
}

/// The columns of a row of `ow ≥ l` outputs (each the output position of its lane 0) over an
/// input row of `w` with `pad_left`, in vectors of `l` lanes under a window of dilation `d`: the
/// border ones, whose window reaches outside the row, and the others, in order; and with `half`,
/// where the row's outputs past its whole vectors are at most `l / 2`, a column of `l / 2` lanes
/// that ends the row (and whether it is on the border). Together they cover the row: without a
/// half column the last vector overlaps the one before where `l` does not divide OW; the half
/// column overlaps the last vector where fewer than `l / 2` outputs are past it.
fn layout(w: isize, ow: isize, pad_left: isize, l: isize, d: isize, half: bool) -> Layout {
    let border = |first: isize, lanes: isize| !(first >= pad_left && first - pad_left + lanes + 2 * d <= w);
    let rest = ow % l;
    let tail = (half && rest > 0 && rest <= l / 2).then(|| (ow - l / 2, border(ow - l / 2, l / 2)));
    let whole = if tail.is_some() { ow / l } else { div_ceil(ow, l) };
    let firsts = (0..whole).map(|v| (v * l).min(ow - l));
    let (borders, inside) = firsts.partition(|&first| border(first, l));
    Layout { borders, inside, tail }
}

/// A row's columns ([`layout`]).
struct Layout {
    borders: Vec<isize>,
    inside: Vec<isize>,
    /// The half column's output position and whether it is on the border.
    tail: Option<(isize, bool)>,
}

/// The stream of planes of `rows` after `pad_left`: the groups that cover a row ([`layout`],
/// [`grouping::groups`]): up to [`ColumnGroups::MOST`] inside columns, each border column with the
/// nearest group where [`ColumnGroups::BORDER_WITH_INSIDE`], else alone; and the half column alone,
/// if any.
///
/// # Safety
/// The host runs `X`'s instructions (which make the masks) and AVX2's where it has a half column.
#[inline(always)]
unsafe fn stream<X: ColumnGroups, const D: usize>(rows: Rows, pad_left: isize) -> Stream<X> {
    let ([_, w], [_, ow]) = (rows.size, rows.output_size);
    let Layout { borders, inside, tail } = layout(w, ow, pad_left, X::L, D as isize, X::HALF_TAIL);
    // SAFETY: the caller's contract.
    unsafe {
        let inside_columns: Vec<Column<X>> =
            inside.iter().map(|&first| column::<X, D>(first, false, pad_left, w)).collect();
        let left_of_inside = |first: isize| inside.first().is_some_and(|&inside| first < inside);
        let borders: Vec<_> =
            borders.iter().map(|&first| (column::<X, D>(first, true, pad_left, w), left_of_inside(first))).collect();
        let tail = tail.map(|(first, border)| {
            let column = column::<Avx2, D>(first, border, pad_left, w);
            if border {
                grouping::Group { inside: Vec::new(), border: Some(column) }
            } else {
                grouping::Group { inside: vec![column], border: None }
            }
        });
        Stream { rows, groups: grouping::groups(&inside_columns, &borders, X::MOST, X::BORDER_WITH_INSIDE), tail }
    }
}

/// The column of `X` whose lane 0 is output position `first` in a row of `w` inputs after
/// `pad_left`, its masks on the `border`.
///
/// # Safety
/// The host runs `X`'s instructions (which make the masks).
#[inline(always)]
unsafe fn column<X: Lanes, const D: usize>(first: isize, border: bool, pad_left: isize, w: isize) -> Column<X> {
    let left = first - pad_left;
    // SAFETY: the caller's contract.
    let masks = unsafe { if border { column_masks::<X, 3>(left, w, X::L, D as isize) } else { [X::mask(0, 0); 3] } };
    Column { left, output: first, masks }
}

/// `group`'s columns of `plane`, streamed together, activated by `ACT` (a constant: as a run-time
/// value it cost a branch per column and step).
///
/// # Safety
/// As for [`columns`].
#[inline(always)]
unsafe fn group_of<X: ColumnGroups, const D: usize, const ACT: isize, const INIT: bool>(
    rows: &Rows,
    plane: &Plane,
    init: *const f32,
    group: &grouping::Group<Column<X>>,
) {
    const { assert!(X::MOST <= 4, "a version for each group size") };
    let c = |i: usize| group.inside[i];
    let at = (rows, plane, init);
    // SAFETY: the caller's contract.
    unsafe {
        match (&group.inside[..], group.border) {
            ([], Some(b)) => columns::<X, 0, 1, D, ACT, INIT>(at, &[], &[b]),
            ([_], Some(b)) => columns::<X, 1, 1, D, ACT, INIT>(at, &[c(0)], &[b]),
            ([_, _], Some(b)) => columns::<X, 2, 1, D, ACT, INIT>(at, &[c(0), c(1)], &[b]),
            ([_, _, _], Some(b)) => columns::<X, 3, 1, D, ACT, INIT>(at, &[c(0), c(1), c(2)], &[b]),
            ([_, _, _, _], Some(b)) => columns::<X, 4, 1, D, ACT, INIT>(at, &[c(0), c(1), c(2), c(3)], &[b]),
            ([_], None) => columns::<X, 1, 0, D, ACT, INIT>(at, &[c(0)], &[]),
            ([_, _], None) => columns::<X, 2, 0, D, ACT, INIT>(at, &[c(0), c(1)], &[]),
            ([_, _, _], None) => columns::<X, 3, 0, D, ACT, INIT>(at, &[c(0), c(1), c(2)], &[]),
            ([_, _, _, _], None) => columns::<X, 4, 0, D, ACT, INIT>(at, &[c(0), c(1), c(2), c(3)], &[]),
            _ => unreachable!("`groups` makes groups of 1 to MOST inside columns, or a border one alone"),
        }
    }
}

/// The half column of a row ([`ColumnGroups::HALF_TAIL`]) streamed alone, as [`group_of`] streams
/// a group.
///
/// # Safety
/// As for [`columns`]; the host runs AVX2's instructions.
#[inline(always)]
unsafe fn tail_of<const D: usize, const ACT: isize, const INIT: bool>(
    rows: &Rows,
    plane: &Plane,
    init: *const f32,
    tail: &grouping::Group<Column<Avx2>>,
) {
    let at = (rows, plane, init);
    // SAFETY: the caller's contract.
    unsafe {
        match (&tail.inside[..], tail.border) {
            ([], Some(b)) => columns::<Avx2, 0, 1, D, ACT, INIT>(at, &[], &[b]),
            (&[c], None) => columns::<Avx2, 1, 0, D, ACT, INIT>(at, &[c], &[]),
            _ => unreachable!("`stream` makes the half column alone"),
        }
    }
}

/// The rows of an `INIT` plane that [`Stream::pass`] reads under a window of dilation `d`: from
/// `−2·d` (the first sums of a stream, two tap rows above its first output row) to `OH + 3·d`
/// (the sums started by the last steps, after the last output row), exclusive — as offsets from
/// row 0 and from row OH.
pub(super) const fn init_rows(d: usize) -> (isize, isize) {
    (-2 * d as isize, 3 * d as isize)
}

/// The sum output row `row` of a plane starts at in `column`: the bias, or with `INIT` the row's
/// element in `init` (`OW` apart).
///
/// # Safety
/// With `INIT`, the vector read is readable ([`Stream::pass`]).
#[inline(always)]
unsafe fn start_of<X: Lanes, const INIT: bool>(
    bias: X::V,
    init: *const f32,
    ow: isize,
    row: isize,
    column: &Column<X>,
) -> X::V {
    // SAFETY: the caller's contract.
    if INIT { unsafe { X::load(init.wrapping_offset(row * ow + column.output)) } } else { bias }
}

/// A group's sums, of its inside columns and of its border one: per column the output rows that
/// take the next input row at tap rows 0, 1 and 2.
type Sums<V, const C: usize, const B: usize> = ([[V; 3]; C], [[V; 3]; B]);

/// `C` columns inside the row and `B` on its border of one plane, streamed down it together, each
/// phase of the output rows ([`Phase`]: all of them where `D` is 1) in turn: step `j` takes the
/// phase's `j`-th input row (none above or below the plane) and stores its output row `j − 2`,
/// complete then. The steps whose rows are all inside the plane and whose output rows all exist
/// run without checks. The border column loads and adds only the lanes whose input column is
/// inside the row.
///
/// # Safety
/// As for [`planes`]; every element each `inside` vector reads is inside the row.
#[inline(always)]
unsafe fn columns<X: Lanes, const C: usize, const B: usize, const D: usize, const ACT: isize, const INIT: bool>(
    (rows, plane, init): (&Rows, &Plane, *const f32),
    inside: &[Column<X>; C],
    border: &[Column<X>; B],
) {
    let ([h, _], [oh, ow], pad_top) = (rows.size, rows.output_size, rows.pad_top);
    // SAFETY: the caller's contract.
    unsafe {
        let taps = grouping::taps::<X>(plane.weight, border.first().map(|border| &border.masks));
        let bias = X::splat(plane.bias);
        let d = D as isize;
        // Under a window of dilation D, the output rows `q, q + D, …` of each phase `q` read the
        // input rows `q − pad_top + D·j`: a stream of their own.
        for q in 0..d {
            let phase = Phase { first: q, rows: div_ceil(oh - q, d) };
            // Step `j` takes input row `q − pad_top + D·j` and stores the phase's output row `j − 2`.
            // The steps before the plane's first input row only move sums still at their start: the
            // stream starts there, or at the first step that stores (2) where that comes first.
            let (start, end) = (div_ceil(pad_top - q, d).clamp(0, 2), phase.rows + 2);
            // The sums of the phase's output rows `start − kh` (tap row `kh` next).
            let first = |column: &Column<X>| -> [X::V; 3] {
                std::array::from_fn(|kh| start_of::<X, INIT>(bias, init, ow, q + d * (start - kh as isize), column))
            };
            let mut sums: Sums<X::V, C, B> = (inside.map(|column| first(&column)), border.map(|column| first(&column)));
            // Steps with an input row and 3 output rows.
            let inside_from = div_ceil(pad_top - q, d).max(2).min(end);
            let inside_to = phase.rows.min((h - 1 - q + pad_top).div_euclid(d) + 1).clamp(inside_from, end);
            let at = (rows, plane, init, phase);
            for j in start..inside_from {
                step::<X, C, B, D, ACT, INIT, true>(at, (inside, border), &taps, &mut sums, j);
            }
            for j in inside_from..inside_to {
                step::<X, C, B, D, ACT, INIT, false>(at, (inside, border), &taps, &mut sums, j);
            }
            for j in inside_to..end {
                step::<X, C, B, D, ACT, INIT, true>(at, (inside, border), &taps, &mut sums, j);
            }
        }
    }
}

/// The output rows of one phase of a dilated window ([`columns`]): `first`, `first + D`, … (`rows`
/// of them).
#[derive(Clone, Copy)]
struct Phase {
    first: isize,
    rows: isize,
}

/// Step `j` of [`columns`]' `phase`: in each column, input row `i = first − pad_top + D·j` added
/// to the phase's output rows `j − kh` that exist (`sums[kh]`, tap row `kh`), its output row
/// `j − 2` stored, the sums moved one tap row on and `sums[0]` started ([`start_of`]). `CHECK`: input
/// row `i` may be outside the plane and the output rows outside the phase's.
///
/// # Safety
/// As for [`columns`]; without `CHECK` input row `i` is inside the plane, and the phase's output
/// rows `j − 2 ..= j` exist.
#[inline(always)]
unsafe fn step<
    X: Lanes,
    const C: usize,
    const B: usize,
    const D: usize,
    const ACT: isize,
    const INIT: bool,
    const CHECK: bool,
>(
    (rows, plane, init, phase): (&Rows, &Plane, *const f32, Phase),
    (inside, border): (&[Column<X>; C], &[Column<X>; B]),
    (taps, border_taps): &(Window<X::V>, Window<X::V>),
    (inside_sums, border_sums): &mut Sums<X::V, C, B>,
    j: isize,
) {
    let ([h, w], [_, ow], d) = (rows.size, rows.output_size, D as isize);
    let i = phase.first - rows.pad_top + d * j;
    let exists = |kh: usize| !CHECK || (0..phase.rows).contains(&(j - kh as isize));
    // SAFETY: the caller's contract; masked-off lanes touch no memory.
    unsafe {
        if !CHECK || (0..h).contains(&i) {
            let row = plane.input.wrapping_offset(i * w);
            for (column, sums) in inside.iter().zip(inside_sums.iter_mut()) {
                for (kw, offset) in [0, d, 2 * d].into_iter().enumerate() {
                    let x = X::load(row.wrapping_offset(column.left + offset));
                    for (kh, sum) in sums.iter_mut().enumerate() {
                        if exists(kh) {
                            *sum = X::fma(*sum, x, taps[kh][kw]);
                        }
                    }
                }
            }
            for (column, sums) in border.iter().zip(border_sums.iter_mut()) {
                for (kw, &mask) in column.masks.iter().enumerate() {
                    let x = X::load_masked(row.wrapping_offset(column.left + d * kw as isize), mask);
                    for (kh, sum) in sums.iter_mut().enumerate() {
                        if exists(kh) {
                            *sum = if X::MASK_WEIGHTS {
                                X::fma(*sum, x, border_taps[kh][kw])
                            } else {
                                X::fma_masked(*sum, x, taps[kh][kw], mask)
                            };
                        }
                    }
                }
            }
        }
        // Whole vectors: every column is `L` outputs of a row of at least `L`.
        let m = j - 2;
        if !CHECK || (0..phase.rows).contains(&m) {
            let row = plane.output.offset((phase.first + d * m) * ow);
            for (column, sums) in inside.iter().zip(inside_sums.iter()) {
                X::store(row.offset(column.output), X::activate(sums[2], ACT));
            }
            for (column, sums) in border.iter().zip(border_sums.iter()) {
                X::store(row.offset(column.output), X::activate(sums[2], ACT));
            }
        }
        // (Two loops, not one over a `chain()` of both kinds, which kept the sums in memory.)
        let (bias, next) = (X::splat(plane.bias), phase.first + d * (j + 1));
        for (column, sums) in inside.iter().zip(inside_sums.iter_mut()) {
            *sums = [start_of::<X, INIT>(bias, init, ow, next, column), sums[0], sums[1]];
        }
        for (column, sums) in border.iter().zip(border_sums.iter_mut()) {
            *sums = [start_of::<X, INIT>(bias, init, ow, next, column), sums[0], sums[1]];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The columns cover every output position of the row, the inside ones read only inside it
    /// (undilated and at dilation 2), and they are in order, `L` apart but for the last.
    #[test]
    fn columns_cover_the_row_and_read_inside_it() {
        let rows = [Avx512::L, Avx2::L].into_iter().flat_map(|l| (1..130isize).map(move |w| (l, w)));
        for ((l, w), d) in rows.flat_map(|row| [(row, 1), (row, 2)]) {
            for pad_left in 0..5 {
                let ow = w + 2 * pad_left - 2 * d;
                if ow < l {
                    continue;
                }
                for half in [false, true] {
                    let Layout { borders, inside, tail } = layout(w, ow, pad_left, l, d, half);
                    let at = format!("w {w} pad {pad_left} half {half}");
                    let mut covered = vec![false; ow as usize];
                    let whole = borders.iter().chain(&inside).map(|&first| (first, l));
                    for (first, lanes) in whole.chain(tail.map(|(first, _)| (first, l / 2))) {
                        assert!(first >= 0 && first + lanes <= ow, "{at}: column at {first}");
                        covered[first as usize..(first + lanes) as usize].fill(true);
                    }
                    assert!(covered.iter().all(|&c| c), "{at}: {borders:?} {inside:?} {tail:?}");
                    let tail_inside = tail.filter(|&(_, border)| !border).map(|(first, _)| (first, l / 2));
                    for (first, lanes) in inside.iter().map(|&first| (first, l)).chain(tail_inside) {
                        let left = first - pad_left;
                        assert!(left >= 0 && left + lanes + 2 * d <= w, "{at}: {first} reads outside");
                    }
                    for pair in inside.windows(2) {
                        assert!(pair[0] < pair[1] && pair[1] - pair[0] <= l, "{at}: {inside:?}");
                    }
                    // A half column where the row's last outputs fit one, no whole vector overlapping.
                    assert_eq!(tail.is_some(), half && (1..=l / 2).contains(&(ow % l)), "{at}: {tail:?}");
                    if tail.is_some() {
                        assert!(borders.iter().chain(&inside).all(|&first| first % l == 0), "{at}");
                    }
                }
            }
        }
    }
}
