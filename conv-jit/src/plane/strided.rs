//! Depthwise 3 × 3 planes at stride 2 on AVX-512 and AVX2, streamed down the plane a few columns
//! of vectors at a time. An output row reads three input rows, the first of which is the last of
//! the row before, so two sums per column are live: the row an even input row ends (tap row 2)
//! and the one it starts (tap row 0), which the odd input row after it continues (tap row 1).
//!
//! An input row's three tap columns come from one pair of vectors: a stride-2 tap reads every
//! second element, and of the pair from the even one of the column's first two elements (aligned
//! in memory where the row is), [`Lanes::evens`] are one tap column's elements and [`Lanes::odds`]
//! the next one's; the third tap column is one of them shifted by one output position, the
//! element past them loaded on its own ([`Shifts::back`], [`Shifts::on`]: one `vpermt2ps` on
//! AVX-512, a `vpermps` and a blend on AVX2). The blocks ([`super::block`]) load two pairs of
//! unaligned vectors per row instead, each crossing a cache line, and their first and last input
//! rows feed one or two dependent chains of multiply-adds.
//!
//! The columns whose window lies inside the rows go down the plane together, up to
//! [`Shifts::GROUP`] at a time, and a border column (masked loads and multiply-adds) with them
//! ([`groups`]), so that each input row's vectors are read in order.
//!
//! Measured on an AVX-512 AMD EPYC Zen 4 (`convgen bench` of the layer, against the blocks,
//! alternating, medians of 6–8 pair ratios): dw3_s2_c96_112 1.86× (0.178 → 0.096 ms), 32 channels
//! at 112 × 112 1.80×, 24 at 100 × 100 2.0×, 64 at 224 × 224 1.49×. On the way (dw3_s2_c96_112,
//! against the blocks' 0.178 ms): one column at a time, 0.143–0.156 ms — the first column down
//! each plane (the border one) took ~1.6× as long as the others, whose lines the hardware had
//! fetched by then, and prefetching the next plane's lines did not help; the inside columns
//! together and the border one alone after them, 0.110; the border one with them, 0.100; the
//! shifted element's position derived from the pair's rather than kept per column (fewer
//! registers), 0.096; written for AVX2 too (the inside columns' edge element loaded with a
//! constant mask rather than the column's, the columns' set-up inlined), 0.085 (1.14× that, 6
//! pairs of builds). On AVX2 (`CONVGEN_MAX_ISA=avx2` on that host, against its blocks, 5 pairs):
//! dw3_s2_c96_112 1.48× (0.217 → 0.146 ms), 32 channels at 112 × 112 1.45×, 64 at 224 × 224 1.39×,
//! 24 at 100 × 100 1.33× (groups of 2 columns ran 0.86× as fast as of up to 4; of up to 7, 0.97×);
//! the border column's weights masked rather than its multiply-adds (a blend each on AVX2), 1.04×
//! more on dw3_s2_c96_112, 1.03× at 32 channels of 112 × 112, 1.12× at 192 of 28 × 28 (8 pairs).
//! A row of 56 outputs ending in a column of AVX2's 8 lanes streamed alone after the groups (as
//! [`super::columns`] ends its rows of 56) rather than in a whole vector inside the last group: 0.83×
//! as fast on dw3_s2_c96_112 and on 32 channels at 112 × 112 (8 pairs of builds). There the whole
//! vector it replaces streams alone too; here the half column is one more stream down input planes
//! of 49 KiB, more than L1 holds.
//!
//! The activation stays a run-time value here ([`super::columns`] makes it a constant): as a
//! constant, on an Intel Xeon (Emerald Rapids, AVX-512), dw3_s2_c96_112 ran 0.99× as fast, 8
//! channels at 112 × 112 (L2-resident) 1.01× (6 pairs of builds), and conv-jit
//! took 593 s of a release build of 9 min 57 s, against 5 min 56 s for the whole build before (a
//! version of every group for each activation).
//!
//! Each sum takes the taps inside the plane in the window's order, as the other kernels do: bit
//! for bit the portable kernel.

use std::arch::x86_64::{
    __m256, __m512, _mm256_blend_ps, _mm256_broadcast_ss, _mm256_permutevar8x32_ps, _mm256_setr_epi32,
    _mm512_permutex2var_ps, _mm512_setr_epi32,
};

use super::stream::Plane;
use super::{Avx2, Avx512, Lanes, PlaneArgs, div_ceil, store_row, window};

/// Whether a plane statement's planes are streamed so: a depthwise 3 × 3 window at stride 2.
pub(super) fn applies(args: &PlaneArgs, kernel: usize, stride: usize, dilation: usize) -> bool {
    kernel == 3 && stride == 2 && dilation == 1 && args.group_inputs == 1
}

/// The lane of output position `position` in a stride-2 vector of `lanes` ([`Lanes::evens`]):
/// lane `4i + m` holds position `[2i, 2i + 1, L/2 + 2i, L/2 + 1 + 2i][m]`.
const fn lane_of(position: i32, lanes: i32) -> i32 {
    let half = lanes / 2;
    if position < half { 4 * (position / 2) + position % 2 } else { 4 * ((position - half) / 2) + 2 + position % 2 }
}

/// In the lane of each output position of a stride-2 vector of `L` lanes, the lane of the position
/// `shift` on, or `outside` where that is not one of the `L`.
const fn shifted<const L: usize>(shift: i32, outside: i32) -> [i32; L] {
    let mut index = [outside; L];
    let mut position = 0;
    while position < L as i32 {
        let from = position + shift;
        if from >= 0 && from < L as i32 {
            index[lane_of(position, L as i32) as usize] = lane_of(from, L as i32);
        }
        position += 1;
    }
    index
}

/// What the stream needs beyond [`Lanes`]: a stride-2 vector's inputs moved by one output
/// position, the new one from an element loaded on its own.
pub(super) trait Shifts: Lanes {
    /// The most columns streamed together: their sums (two each), the 9 taps and a column's loads
    /// and shuffles in registers.
    const GROUP: usize;
    /// The lane of the edge vector that [`Shifts::back`] (`on`: [`Shifts::on`]) takes.
    fn edge_lane(on: bool) -> isize;
    /// The element at `at` in every lane the shifts take.
    ///
    /// # Safety
    /// The host runs `Self`'s instructions; `at` is readable.
    unsafe fn edge(at: *const f32) -> Self::V;
    /// Position `j` takes `x`'s `j − 1`, position 0 `edge`'s lane `edge_lane(false)`.
    ///
    /// # Safety
    /// The host runs `Self`'s instructions.
    unsafe fn back(x: Self::V, edge: Self::V) -> Self::V;
    /// Position `j` takes `x`'s `j + 1`, the last `edge`'s lane `edge_lane(true)`.
    ///
    /// # Safety
    /// The host runs `Self`'s instructions.
    unsafe fn on(x: Self::V, edge: Self::V) -> Self::V;
}

/// `vpermt2ps`: one instruction, the edge from the second source's lane 0.
impl Shifts for Avx512 {
    const GROUP: usize = 4;
    fn edge_lane(_on: bool) -> isize {
        0
    }
    #[inline(always)]
    unsafe fn edge(at: *const f32) -> __m512 {
        // SAFETY: the caller's contract (one lane read).
        unsafe { Avx512::load_masked(at, 1) }
    }
    #[inline(always)]
    unsafe fn back(x: __m512, edge: __m512) -> __m512 {
        const I: [i32; 16] = shifted::<16>(-1, 16);
        // SAFETY: the caller's contract.
        unsafe {
            let index = _mm512_setr_epi32(
                I[0], I[1], I[2], I[3], I[4], I[5], I[6], I[7], I[8], I[9], I[10], I[11], I[12], I[13], I[14], I[15],
            );
            _mm512_permutex2var_ps(x, index, edge)
        }
    }
    #[inline(always)]
    unsafe fn on(x: __m512, edge: __m512) -> __m512 {
        const I: [i32; 16] = shifted::<16>(1, 16);
        // SAFETY: the caller's contract.
        unsafe {
            let index = _mm512_setr_epi32(
                I[0], I[1], I[2], I[3], I[4], I[5], I[6], I[7], I[8], I[9], I[10], I[11], I[12], I[13], I[14], I[15],
            );
            _mm512_permutex2var_ps(x, index, edge)
        }
    }
}

/// `vpermps` and a blend of the new position's lane (the edge broadcast, or loaded into that lane).
impl Shifts for Avx2 {
    const GROUP: usize = 4;
    fn edge_lane(on: bool) -> isize {
        if on { 7 } else { 0 }
    }
    #[inline(always)]
    unsafe fn edge(at: *const f32) -> __m256 {
        // SAFETY: the caller's contract.
        unsafe { _mm256_broadcast_ss(&*at) }
    }
    #[inline(always)]
    unsafe fn back(x: __m256, edge: __m256) -> __m256 {
        const I: [i32; 8] = shifted::<8>(-1, 0);
        const { assert!(lane_of(0, 8) == 0) };
        // SAFETY: the caller's contract.
        unsafe {
            let index = _mm256_setr_epi32(I[0], I[1], I[2], I[3], I[4], I[5], I[6], I[7]);
            _mm256_blend_ps::<0b0000_0001>(_mm256_permutevar8x32_ps(x, index), edge)
        }
    }
    #[inline(always)]
    unsafe fn on(x: __m256, edge: __m256) -> __m256 {
        const I: [i32; 8] = shifted::<8>(1, 0);
        const { assert!(lane_of(7, 8) == 7) };
        // SAFETY: the caller's contract.
        unsafe {
            let index = _mm256_setr_epi32(I[0], I[1], I[2], I[3], I[4], I[5], I[6], I[7]);
            _mm256_blend_ps::<0b1000_0000>(_mm256_permutevar8x32_ps(x, index), edge)
        }
    }
}

/// Where the element shifted in lies from the pair's first: the one before the pair where the
/// column's first input column is odd (`ODD`), else the one after it.
const fn edge_offset<X: Lanes, const ODD: bool>() -> isize {
    if ODD { -1 } else { 2 * X::L }
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
    /// Lanes that are output positions (`L`, or OW where that is shorter).
    lanes: isize,
    /// The `ACT_*` code.
    act: isize,
}

/// One column of vectors: where it reads in an input row and writes in an output row (offsets from
/// the row's first element), and with `MASK` which lanes are inside the row.
struct Column<X: Lanes> {
    /// The pair's first element: the even one of the column's first two (at tap 0, `left`, and
    /// `left + 1`).
    pair: isize,
    /// The output position of lane 0.
    output: isize,
    /// The pair's elements inside the row.
    pair_mask: (X::M, X::M),
    /// The lane the shift takes the edge element from ([`Shifts::edge_lane`]) where that element
    /// is inside the row, else none.
    edge_mask: X::M,
    /// Per tap column, the lanes (in the stride-2 order) whose input is inside the row and which
    /// are output positions.
    taps: [X::M; 3],
}

// (By hand: a derive would ask `X` itself to be `Copy`.)
impl<X: Lanes> Clone for Column<X> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<X: Lanes> Copy for Column<X> {}

impl<X: Shifts> Column<X> {
    /// The column whose lane 0 is output position `first`, its masks with `MASK`; `ODD`: its
    /// first input column at tap 0, `2·first − pad_left`, is odd.
    ///
    /// # Safety
    /// The host runs `X`'s instructions (which make the masks).
    #[inline(always)]
    unsafe fn new<const MASK: bool, const ODD: bool>(rows: &Rows, first: isize, pad_left: isize) -> Column<X> {
        let w = rows.size[1];
        let left = 2 * first - pad_left;
        debug_assert_eq!(left.rem_euclid(2) == 1, ODD);
        let pair = if ODD { left + 1 } else { left };
        let edge = pair + edge_offset::<X, ODD>();
        // SAFETY: the caller's contract.
        unsafe {
            let none = X::mask(0, 0);
            let mut column = Column { pair, output: first, pair_mask: (none, none), edge_mask: none, taps: [none; 3] };
            if MASK {
                column.pair_mask = X::span_mask(-pair, w - pair);
                let lane = X::edge_lane(!ODD);
                column.edge_mask = if (0..w).contains(&edge) { X::mask(lane, lane + 1) } else { none };
                for (kw, taps) in column.taps.iter_mut().enumerate() {
                    let start = left + kw as isize;
                    *taps = X::strided_mask(div_ceil(-start, 2), div_ceil(w - start, 2).min(rows.lanes));
                }
            }
            column
        }
    }
}

/// Every plane of `args`, each in groups of columns of vectors across its rows ([`groups`]).
///
/// # Safety
/// As for [`super::portable_kernel`], with [`applies`] true, and the host runs `X`'s instructions.
#[inline(always)]
pub(super) unsafe fn planes<X: Shifts>(args: &PlaneArgs) {
    let ([h, w], [oh, ow], [pad_top, pad_left]) = (args.input_size, args.output_size, args.padding);
    if oh <= 0 || ow <= 0 {
        return;
    }
    let rows = Rows { size: [h, w], pad_top, output_size: [oh, ow], lanes: ow.min(X::L), act: args.act };
    let odd = pad_left % 2 == 1;
    // SAFETY: the caller's contract; each column reads only inside the plane (see `columns`).
    unsafe {
        let groups = if odd { groups::<X, true>(&rows, pad_left) } else { groups::<X, false>(&rows, pad_left) };
        for p in 0..args.planes {
            let plane = Plane {
                input: args.input.offset(args.group(p) * h * w),
                weight: args.weight.offset(p * 9),
                bias: if args.bias.is_null() { 0.0 } else { *args.bias.offset(p) },
                output: args.output.offset(p * oh * ow),
            };
            for group in &groups {
                if odd {
                    group_of::<X, true>(&rows, &plane, group);
                } else {
                    group_of::<X, false>(&rows, &plane, group);
                }
            }
        }
    }
}

/// Columns streamed down a plane together: up to [`Shifts::GROUP`] inside the row and at most one
/// on its border (masked).
struct Group<X: Lanes> {
    inside: Vec<Column<X>>,
    border: Option<Column<X>>,
}

/// The groups that cover a row ([`layout`]): the inside columns in groups as even as [`Shifts::GROUP`]
/// allows (5 columns 3 and 2, not 4 and 1), each border column with the nearest group that has
/// none (an input row's vectors are then read in order: one column at a time, the first column
/// down a plane took ~1.6× as long as the others, whose lines the hardware had fetched by then).
///
/// # Safety
/// The host runs `X`'s instructions.
#[inline(always)]
unsafe fn groups<X: Shifts, const ODD: bool>(rows: &Rows, pad_left: isize) -> Vec<Group<X>> {
    let (borders, inside) = layout(rows.size[1], rows.output_size[1], pad_left, X::L);
    let size = inside.len().div_ceil(inside.len().div_ceil(X::GROUP).max(1)).max(1);
    let mut groups = Vec::new();
    for firsts in inside.chunks(size) {
        let mut columns = Vec::new();
        for &first in firsts {
            // SAFETY: the caller's contract.
            columns.push(unsafe { Column::new::<false, ODD>(rows, first, pad_left) });
        }
        groups.push(Group { inside: columns, border: None });
    }
    for first in borders {
        // SAFETY: the caller's contract.
        let border = Some(unsafe { Column::new::<true, ODD>(rows, first, pad_left) });
        let left_of_inside = inside.first().is_some_and(|&inside| first < inside);
        let free = if left_of_inside {
            groups.iter_mut().find(|group| group.border.is_none())
        } else {
            groups.iter_mut().rev().find(|group| group.border.is_none())
        };
        match free {
            Some(group) => group.border = border,
            None => groups.push(Group { inside: Vec::new(), border }),
        }
    }
    groups
}

/// The columns of a row of `ow` outputs (each the output position of its lane 0) over an input row
/// of `w` with `pad_left`, in vectors of `l` lanes: the border ones, whose window reaches outside
/// the row, and the others, in order. Together they cover the row, the last of each kind
/// overlapping the one before where `l` does not divide their run.
fn layout(w: isize, ow: isize, pad_left: isize, l: isize) -> (Vec<isize>, Vec<isize>) {
    if ow < l {
        return (vec![0], Vec::new());
    }
    // A column is inside where its first input column, `2·first − pad_left`, is in the row, and so
    // is its last, 2·L on.
    let (lo, hi) = (div_ceil(pad_left, 2), ((w - 1 + pad_left - 2 * l).div_euclid(2)).min(ow - l));
    if lo > hi {
        return ((0..div_ceil(ow, l)).map(|v| (v * l).min(ow - l)).collect(), Vec::new());
    }
    // Border columns at 0, L, … below `from`; inside ones from there to `to` (the last at `to − L`);
    // border ones from `to` (the last at `ow − L`).
    let from = div_ceil(lo, l) * l;
    let to = if hi == ow - l { ow } else { hi + l };
    let left = (0..from / l).map(|v| v * l);
    let right = (0..div_ceil(ow - to, l)).map(|v| (to + v * l).min(ow - l));
    let inside = (0..div_ceil(to - from, l)).map(|v| (from + v * l).min(to - l)).collect();
    (left.chain(right).collect(), inside)
}

/// `group`'s columns of `plane`, streamed together.
///
/// # Safety
/// As for [`columns`].
#[inline(always)]
unsafe fn group_of<X: Shifts, const ODD: bool>(rows: &Rows, plane: &Plane, group: &Group<X>) {
    const { assert!(X::GROUP <= 4, "a version for each group size") };

    let c = |i: usize| group.inside[i];
    // SAFETY: the caller's contract.
    unsafe {
        match (&group.inside[..], group.border) {
            ([], Some(border)) => columns::<X, 0, 1, ODD>(rows, plane, &[], &[border]),
            ([_], Some(border)) => columns::<X, 1, 1, ODD>(rows, plane, &[c(0)], &[border]),
            ([_, _], Some(border)) => columns::<X, 2, 1, ODD>(rows, plane, &[c(0), c(1)], &[border]),
            ([_, _, _], Some(border)) => columns::<X, 3, 1, ODD>(rows, plane, &[c(0), c(1), c(2)], &[border]),
            ([_, _, _, _], Some(border)) => columns::<X, 4, 1, ODD>(rows, plane, &[c(0), c(1), c(2), c(3)], &[border]),
            ([_], None) => columns::<X, 1, 0, ODD>(rows, plane, &[c(0)], &[]),
            ([_, _], None) => columns::<X, 2, 0, ODD>(rows, plane, &[c(0), c(1)], &[]),
            ([_, _, _], None) => columns::<X, 3, 0, ODD>(rows, plane, &[c(0), c(1), c(2)], &[]),
            ([_, _, _, _], None) => columns::<X, 4, 0, ODD>(rows, plane, &[c(0), c(1), c(2), c(3)], &[]),
            _ => unreachable!("`groups` makes groups of 1 to GROUP inside columns, or a border one alone"),
        }
    }
}

/// A 3 × 3 window's taps, each in every lane.
type Window<V> = [[V; 3]; 3];

/// A group's sums, of its inside columns and of its border one: per column the output row the
/// next even input row ends (`[1]`) and the one it starts (`[0]`).
type Sums<V, const C: usize, const B: usize> = ([[V; 2]; C], [[V; 2]; B]);

/// `C` columns inside the row and `B` on its border of one plane, streamed down it together:
/// iteration `r` takes input row `2r − pad_top` (tap row 2 of output row `r − 1`, which is complete
/// then and stored, and tap row 0 of row `r`) and the next (tap row 1 of row `r`). The iterations
/// whose rows are inside the plane and whose output rows exist run without checks. The border
/// columns load and add only the lanes whose input column is inside the row (and that are output
/// positions). `ODD`: the columns' first input columns are odd.
///
/// # Safety
/// As for [`planes`]; every element each `inside` vector reads is inside the row.
#[inline(always)]
unsafe fn columns<X: Shifts, const C: usize, const B: usize, const ODD: bool>(
    rows: &Rows,
    plane: &Plane,
    inside: &[Column<X>; C],
    border: &[Column<X>; B],
) {
    let ([h, _], [oh, _]) = (rows.size, rows.output_size);
    // SAFETY: the caller's contract.
    unsafe {
        let taps = window::<X, 3>(plane.weight);
        // Where a masked multiply-add costs a blend, the border column's weights masked instead,
        // −0 outside (its loads there are +0: the sums keep their bits, as `Lanes::masked_weight`
        // says).
        let mut border_taps = taps;
        if let Some(border) = border.first().filter(|_| X::MASK_WEIGHTS) {
            for row in border_taps.iter_mut() {
                for (tap, &mask) in row.iter_mut().zip(&border.taps) {
                    *tap = X::masked_weight(*tap, mask);
                }
            }
        }
        let taps = (taps, border_taps);
        let mut sums: Sums<X::V, C, B> = ([[X::splat(0.0); 2]; C], [[X::splat(0.0); 2]; B]);
        // Iterations whose two input rows are inside the plane, that end a row and start one.
        let first = div_ceil(rows.pad_top, 2).max(1).min(oh);
        let last = (h - 2 + rows.pad_top).div_euclid(2).clamp(first - 1, oh - 1);
        for r in 0..first {
            step::<X, C, B, ODD, true>(rows, plane, (inside, border), &taps, &mut sums, r);
        }
        for r in first..last + 1 {
            step::<X, C, B, ODD, false>(rows, plane, (inside, border), &taps, &mut sums, r);
        }
        for r in last + 1..oh + 1 {
            step::<X, C, B, ODD, true>(rows, plane, (inside, border), &taps, &mut sums, r);
        }
    }
}

/// Iteration `r` of [`columns`]: in each column, input row `2r − pad_top` added to output row
/// `r − 1` (`[1]` of its sums, tap row 2), which is then stored, and to row `r` (`[0]`, from the
/// bias, tap row 0); input row `2r + 1 − pad_top` added to row `r` (tap row 1), which moves to
/// `[1]`. `CHECK`: the input rows may be outside the plane, and output rows `r − 1`, `r` outside
/// `0..OH`.
///
/// # Safety
/// As for [`columns`]; without `CHECK` both input rows are inside the plane and `1 ≤ r < OH`.
#[inline(always)]
unsafe fn step<X: Shifts, const C: usize, const B: usize, const ODD: bool, const CHECK: bool>(
    rows: &Rows,
    plane: &Plane,
    (inside, border): (&[Column<X>; C], &[Column<X>; B]),
    (taps, border_taps): &(Window<X::V>, Window<X::V>),
    (inside_sums, border_sums): &mut Sums<X::V, C, B>,
    r: isize,
) {
    let ([h, w], [oh, ow]) = (rows.size, rows.output_size);
    let top = 2 * r - rows.pad_top;
    let (ends, starts) = (!CHECK || r >= 1, !CHECK || r < oh);
    // SAFETY: the caller's contract; masked-off lanes touch no memory.
    unsafe {
        let bias = X::splat(plane.bias);
        for sums in inside_sums.iter_mut() {
            sums[0] = bias;
        }
        for sums in border_sums.iter_mut() {
            sums[0] = bias;
        }
        if !CHECK || (0..h).contains(&top) {
            let row = plane.input.wrapping_offset(top * w);
            for (column, sums) in inside.iter().zip(inside_sums.iter_mut()) {
                let x = tap_columns::<X, false, ODD>(row, column);
                even_row::<X>(sums, x, taps, (ends, starts), [None; 3]);
            }
            for (column, sums) in border.iter().zip(border_sums.iter_mut()) {
                let x = tap_columns::<X, true, ODD>(row, column);
                even_row::<X>(sums, x, border_taps, (ends, starts), border_masks(column));
            }
        }
        if ends {
            let row = plane.output.offset((r - 1) * ow);
            for (column, sums) in inside.iter().zip(inside_sums.iter()) {
                let y = X::unstride(X::activate(sums[1], rows.act));
                store_row::<X>(row.offset(column.output), y, rows.lanes, ow, r < oh);
            }
            for (column, sums) in border.iter().zip(border_sums.iter()) {
                let y = X::unstride(X::activate(sums[1], rows.act));
                store_row::<X>(row.offset(column.output), y, rows.lanes, ow, r < oh);
            }
        }
        if starts && (!CHECK || (0..h).contains(&(top + 1))) {
            let row = plane.input.wrapping_offset((top + 1) * w);
            for (column, sums) in inside.iter().zip(inside_sums.iter_mut()) {
                let x = tap_columns::<X, false, ODD>(row, column);
                for (kw, &x) in x.iter().enumerate() {
                    sums[0] = add::<X>(sums[0], x, taps[1][kw], None);
                }
            }
            for (column, sums) in border.iter().zip(border_sums.iter_mut()) {
                let x = tap_columns::<X, true, ODD>(row, column);
                let masks = border_masks(column);
                for (kw, &x) in x.iter().enumerate() {
                    sums[0] = add::<X>(sums[0], x, border_taps[1][kw], masks[kw]);
                }
            }
        }
        for sums in inside_sums.iter_mut() {
            sums[1] = sums[0];
        }
        for sums in border_sums.iter_mut() {
            sums[1] = sums[0];
        }
    }
}

/// An even input row's tap columns `x` added to a column's sums: to the row it ends (`sums[1]`, tap
/// row 2) where `ends`, to the row it starts (`sums[0]`, tap row 0) where `starts`; only in the
/// lanes of each tap column's mask where there is one. (A function, not a closure: a closure is
/// not always inlined, and out of line it lacks the caller's target features.)
///
/// # Safety
/// The host has AVX-512 F.
#[inline(always)]
unsafe fn even_row<X: Lanes>(
    sums: &mut [X::V; 2],
    x: [X::V; 3],
    taps: &[[X::V; 3]; 3],
    (ends, starts): (bool, bool),
    masks: [Option<X::M>; 3],
) {
    // SAFETY: the caller's contract.
    unsafe {
        for (kw, &x) in x.iter().enumerate() {
            if ends {
                sums[1] = add::<X>(sums[1], x, taps[2][kw], masks[kw]);
            }
            if starts {
                sums[0] = add::<X>(sums[0], x, taps[0][kw], masks[kw]);
            }
        }
    }
}

/// The masks of a border column's multiply-adds: its tap columns' lanes inside the row, or none
/// where its weights are masked instead ([`Lanes::MASK_WEIGHTS`]).
#[inline(always)]
fn border_masks<X: Lanes>(column: &Column<X>) -> [Option<X::M>; 3] {
    if X::MASK_WEIGHTS { [None; 3] } else { column.taps.map(Some) }
}

/// `sum + x·tap`, only in the lanes of `mask` where there is one.
///
/// # Safety
/// The host has AVX-512 F.
#[inline(always)]
unsafe fn add<X: Lanes>(sum: X::V, x: X::V, tap: X::V, mask: Option<X::M>) -> X::V {
    // SAFETY: the caller's contract.
    unsafe {
        match mask {
            Some(mask) => X::fma_masked(sum, x, tap, mask),
            None => X::fma(sum, x, tap),
        }
    }
}

/// A column's three tap columns' inputs in the input row from `row` (its first element), in the
/// stride-2 order: the pair's evens and odds, and the third shifted from one of them.
///
/// # Safety
/// The host has AVX-512 F; the elements read (without `MASK`: the pair and the edge; with it, those
/// of them inside the row) are inside the plane.
#[inline(always)]
unsafe fn tap_columns<X: Shifts, const MASK: bool, const ODD: bool>(row: *const f32, column: &Column<X>) -> [X::V; 3] {
    let pair = row.wrapping_offset(column.pair);
    let edge = pair.wrapping_offset(edge_offset::<X, ODD>());
    // SAFETY: the caller's contract; masked-off lanes touch no memory.
    unsafe {
        let (a, b) = if MASK {
            let (first, second) = column.pair_mask;
            (X::load_masked(pair, first), X::load_masked(pair.wrapping_offset(X::L), second))
        } else {
            (X::load(pair), X::load(pair.wrapping_offset(X::L)))
        };
        let edge = if MASK {
            // The element into the lane the shift takes (none where it is outside the row).
            X::load_masked(edge.wrapping_offset(-X::edge_lane(!ODD)), column.edge_mask)
        } else {
            X::edge(edge)
        };
        let (evens, odds) = (X::evens(a, b), X::odds(a, b));
        if ODD { [X::back(odds, edge), evens, odds] } else { [evens, odds, X::on(evens, edge)] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shifts move each output position by one, whatever lane the stride-2 order puts it in,
    /// on 16 lanes and on 8.
    #[test]
    fn shifts_move_positions_by_one() {
        fn check<const L: usize>(outside: i32) {
            let l = L as i32;
            let mut lanes: Vec<i32> = (0..l).map(|position| lane_of(position, l)).collect();
            lanes.sort();
            assert_eq!(lanes, (0..l).collect::<Vec<_>>(), "lane_of is a permutation of {L}");
            let (back, on) = (shifted::<L>(-1, outside), shifted::<L>(1, outside));
            for position in 0..l {
                let lane = lane_of(position, l) as usize;
                let expected_back = if position == 0 { outside } else { lane_of(position - 1, l) };
                let expected_on = if position == l - 1 { outside } else { lane_of(position + 1, l) };
                assert_eq!((back[lane], on[lane]), (expected_back, expected_on), "position {position} of {L}");
            }
        }
        check::<16>(16);
        check::<8>(0);
        // The lanes AVX2's blends take the new position from.
        assert_eq!((lane_of(0, 8), lane_of(7, 8)), (Avx2::edge_lane(false) as i32, Avx2::edge_lane(true) as i32));
    }

    /// The columns cover every output position of the row, the inside ones read only inside it,
    /// and they are in order, `L` apart but for the last of each kind.
    #[test]
    fn columns_cover_the_row_and_read_inside_it() {
        for (l, w) in [Avx512::L, Avx2::L].into_iter().flat_map(|l| (1..90isize).map(move |w| (l, w))) {
            for pad_left in 0..5 {
                let ow = (w + 2 * pad_left - 3).div_euclid(2) + 1;
                if ow <= 0 {
                    continue;
                }
                let (borders, inside) = layout(w, ow, pad_left, l);
                let lanes = ow.min(l);
                let mut covered = vec![false; ow as usize];
                for &first in borders.iter().chain(&inside) {
                    assert!(first >= 0 && first + lanes <= ow, "w {w} pad {pad_left}: column at {first}");
                    covered[first as usize..(first + lanes) as usize].fill(true);
                }
                assert!(covered.iter().all(|&c| c), "w {w} pad {pad_left}: {borders:?} {inside:?}");
                for &first in &inside {
                    let left = 2 * first - pad_left;
                    assert!(left >= 0 && left + 2 * l < w, "w {w} pad {pad_left}: {first} reads outside");
                }
                for pair in inside.windows(2) {
                    assert!(pair[0] < pair[1] && pair[1] - pair[0] <= l, "w {w} pad {pad_left}: {inside:?}");
                }
            }
        }
    }
}
