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
}

impl ColumnGroups for Avx512 {
    const MOST: usize = 4;
    const BORDER_WITH_INSIDE: bool = true;
    const VECTORS: (isize, isize) = (3, 7);
}

impl ColumnGroups for Avx2 {
    const MOST: usize = 2;
    const BORDER_WITH_INSIDE: bool = false;
    const VECTORS: (isize, isize) = (5, 14);
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
            stream.plane::<D, false>(&Plane::nth(args, p, 9), std::ptr::null(), args.act);
        }
    }
}

/// How the planes of a plane statement's shape are streamed: their rows and the groups of columns
/// that cover a row.
pub(super) struct Stream<X: Lanes> {
    rows: Rows,
    groups: Vec<grouping::Group<Column<X>>>,
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
        let groups = unsafe { groups::<X, D>(&rows, pad_left) };
        Some(Stream { rows, groups })
    }

    /// One plane streamed, activated by `act` (an `ACT_*` code). With `INIT`, each sum starts at
    /// the element of its output position in the plane of `OH × OW` at `init` rather than at the
    /// bias: a window's taps added to the sums of earlier ones. Rows [`init_rows`] around the
    /// plane's are read too, into sums never stored.
    ///
    /// # Safety
    /// As for [`planes`]: `plane` is one of the statement's planes (or its window over other input
    /// and output planes of the same size); with `INIT`, `init`'s rows [`init_rows`] (of `OW`) are
    /// readable and not `plane`'s output.
    #[inline(always)]
    pub(super) unsafe fn plane<const D: usize, const INIT: bool>(&self, plane: &Plane, init: *const f32, act: isize) {
        let rows = &self.rows;
        // SAFETY: the caller's contract.
        unsafe {
            for group in &self.groups {
                match act {
                    ACT_RELU => group_of::<X, D, ACT_RELU, INIT>(rows, plane, init, group),
                    ACT_RELU6 => group_of::<X, D, ACT_RELU6, INIT>(rows, plane, init, group),
                    _ => group_of::<X, D, ACT_NONE, INIT>(rows, plane, init, group),
                }
            }
        }
    }
}

/// The columns of a row of `ow ≥ l` outputs (each the output position of its lane 0) over an
/// input row of `w` with `pad_left`, in vectors of `l` lanes under a window of dilation `d`: the
/// border ones, whose window reaches outside the row, and the others, in order. Together they
/// cover the row, the last overlapping the one before where `l` does not divide OW.
fn layout(w: isize, ow: isize, pad_left: isize, l: isize, d: isize) -> (Vec<isize>, Vec<isize>) {
    let firsts = (0..div_ceil(ow, l)).map(|v| (v * l).min(ow - l));
    firsts.partition(|&first| !(first >= pad_left && first - pad_left + l + 2 * d <= w))
}

/// The groups that cover a row ([`layout`], [`grouping::groups`]): up to [`ColumnGroups::MOST`] inside
/// columns, each border column with the nearest group where [`ColumnGroups::BORDER_WITH_INSIDE`], else
/// alone.
///
/// # Safety
/// The host runs `X`'s instructions (which make the masks).
#[inline(always)]
unsafe fn groups<X: ColumnGroups, const D: usize>(rows: &Rows, pad_left: isize) -> Vec<grouping::Group<Column<X>>> {
    let ([_, w], [_, ow]) = (rows.size, rows.output_size);
    let (borders, inside) = layout(w, ow, pad_left, X::L, D as isize);
    // SAFETY: the caller's contract.
    let column = |first: isize, border: bool| unsafe {
        let left = first - pad_left;
        let masks = if border { column_masks::<X, 3>(left, w, X::L, D as isize) } else { [X::mask(0, 0); 3] };
        Column { left, output: first, masks }
    };
    let inside_columns: Vec<Column<X>> = inside.iter().map(|&first| column(first, false)).collect();
    let left_of_inside = |first: isize| inside.first().is_some_and(|&inside| first < inside);
    let borders: Vec<_> = borders.iter().map(|&first| (column(first, true), left_of_inside(first))).collect();
    grouping::groups(&inside_columns, &borders, X::MOST, X::BORDER_WITH_INSIDE)
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

/// The rows of an `INIT` plane that [`Stream::plane`] reads under a window of dilation `d`: from
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
/// With `INIT`, the vector read is readable ([`Stream::plane`]).
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
                let (borders, inside) = layout(w, ow, pad_left, l, d);
                let mut covered = vec![false; ow as usize];
                for &first in borders.iter().chain(&inside) {
                    assert!(first >= 0 && first + l <= ow, "w {w} pad {pad_left}: column at {first}");
                    covered[first as usize..(first + l) as usize].fill(true);
                }
                assert!(covered.iter().all(|&c| c), "w {w} pad {pad_left}: {borders:?} {inside:?}");
                for &first in &inside {
                    let left = first - pad_left;
                    assert!(left >= 0 && left + l + 2 * d <= w, "w {w} pad {pad_left}: {first} reads outside");
                }
                for pair in inside.windows(2) {
                    assert!(pair[0] < pair[1] && pair[1] - pair[0] <= l, "w {w} pad {pad_left}: {inside:?}");
                }
            }
        }
    }
}
