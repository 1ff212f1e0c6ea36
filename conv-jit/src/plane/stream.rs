//! Depthwise planes at stride 1 on AVX-512, one column of vectors at a time, streamed down the
//! plane: each input row is loaded once per tap column and added to the `K` output rows that
//! read it, whose sums are the only ones live (one per tap row); after the row, the oldest sum is
//! complete and stored, and a new one starts at the bias.
//!
//! A 5 × 5 window's 25 taps, its 5 sums and a load fill AVX-512's 32 registers, as a block of 7
//! output rows ([`super::block`]) could not (25 taps, 7 sums and a load: the compiler spilled and
//! shuffled registers in every block), and there are no block boundaries, where a block's first
//! and last input rows feed one or two sums' chains of dependent multiply-adds: a row takes 25
//! multiply-adds on 5 independent sums, enough to hide their latency. A 3 × 3 window's 3 sums
//! are not (one plane at a time ran 0.50–0.65× as fast as blocks), so it streams two planes at
//! once ([`together`]: 6 sums, 18 taps), and only in rows of at most two vectors: past that its
//! blocks were as fast or faster, and [`super::columns`] streams several columns of a plane at
//! once, sharing their taps.
//!
//! Measured on an AVX-512 AMD EPYC Zen 4 (`convgen bench` of the layer, against blocks of 7 or 8
//! rows, alternating, medians of 3–6 pair ratios). 5 × 5: dw5_s1_c240_28 1.21× (0.121 → 0.100 ms,
//! ~0.9 multiply-adds per cycle in the rows inside the plane), 480 channels at 14 × 14 1.31×, 64
//! at 56 × 56 1.15×, 32 at 112 × 112 1.18×. 3 × 3, two planes at once: dw3_s1_c384_14 1.47×, 256
//! channels at 16 × 16 1.54×, 96 at 20 × 20 1.45×, 192 at 28 × 28 1.36×, 128 at 12 × 12 1.05×,
//! 512 at 10 × 10 1.00; but dw3_s1_c144_56 0.79–1.19× (noisy), dw3_s1_c32_112 1.05×, so rows of
//! more than two vectors keep blocks. Planes of rows of at most 8 stay flat ([`super::flat`]: 960
//! channels at 7 × 7 under a 5 × 5 window streamed ran 0.68× as fast).
//!
//! Each sum takes the taps inside the plane in the window's order (an output row's input rows
//! come in order, and each row's tap columns in order), as the other kernels do: bit for bit the
//! portable kernel.

use super::{Avx512, Block, Lanes, PlaneArgs, column_masks, div_ceil, store_row, window};

/// Whether a plane statement's planes are streamed: stride 1, undilated, each output plane
/// reading one input plane (depthwise; a group's planes are summed in turn, which a stream of rows
/// does not do), rows too long for [`super::flat`] (its caller's first choice); a 5 × 5 window,
/// or a 3 × 3 one in rows of at most two vectors.
pub(super) fn applies(args: &PlaneArgs, kernel: usize, stride: usize, dilation: usize) -> bool {
    let narrow = args.output_size[1] <= 2 * Avx512::L;
    stride == 1 && dilation == 1 && args.group_inputs == 1 && (kernel == 5 || (kernel == 3 && narrow))
}

/// Planes streamed side by side for a `kernel × kernel` window (the entry point's `P`): enough
/// sums for the multiply-adds' latency, few enough taps for the registers.
pub(super) const fn together(kernel: usize) -> usize {
    if kernel <= 3 { 2 } else { 1 }
}

/// One output plane: where it reads and writes (here and in [`super::strided`]).
#[derive(Clone, Copy)]
pub(super) struct Plane {
    /// Its input plane's first element.
    pub(super) input: *const f32,
    /// Its window.
    pub(super) weight: *const f32,
    pub(super) bias: f32,
    /// Where its output is written from: here its column's first output element (row 0), in
    /// [`super::strided`] the plane's first element (each column's offset kept with the column).
    pub(super) output: *mut f32,
}

impl Plane {
    /// Output plane `p` of `args` (depthwise) under a window of `taps` weights, its output from its
    /// first element.
    ///
    /// # Safety
    /// `p` is one of `args`' planes, whose pointers are valid for them.
    #[inline(always)]
    pub(super) unsafe fn nth(args: &PlaneArgs, p: isize, taps: usize) -> Plane {
        let ([h, w], [oh, ow]) = (args.input_size, args.output_size);
        // SAFETY: the caller's contract.
        unsafe {
            Plane {
                input: args.input.offset(args.group(p) * h * w),
                weight: args.weight.offset(p * taps as isize),
                bias: if args.bias.is_null() { 0.0 } else { *args.bias.offset(p) },
                output: args.output.offset(p * oh * ow),
            }
        }
    }
}

/// Every plane of `args`, `P` at a time (the last one by one where `P` does not divide them), each
/// group a column of vectors after another (the last overlapping the one before where `L` does not
/// divide OW; one masked vector in a row shorter than a vector).
///
/// # Safety
/// As for [`super::avx512_kernel`], with [`applies`] true.
#[inline(always)]
pub(super) unsafe fn planes<X: Lanes, const K: usize, const P: usize>(args: &PlaneArgs) {
    let ([h, w], [oh, ow], [pad_top, pad_left]) = (args.input_size, args.output_size, args.padding);
    let l = X::L;
    if oh <= 0 || ow <= 0 {
        return;
    }
    let (lanes, vectors) = if ow >= l { (l, div_ceil(ow, l)) } else { (ow, 1) };
    // SAFETY: the caller's contract; `column` reads only inside the plane (see there).
    unsafe {
        let plane = |p: isize, first: isize| {
            let plane = Plane::nth(args, p, K * K);
            Plane { output: plane.output.offset(first), ..plane }
        };
        let mut p = 0;
        while p < args.planes {
            let side_by_side = p + P as isize <= args.planes;
            for v in 0..vectors {
                let first = (v * l).min(ow - lanes);
                // The column from output row 0, whose first input row, at tap 0, is `−pad_top`
                // (its planes' pointers are in `Plane`s).
                let at = Block {
                    input: std::ptr::null(),
                    group_inputs: 1,
                    weight: std::ptr::null(),
                    size: [h, w],
                    top: -pad_top,
                    left: first - pad_left,
                    output: std::ptr::null_mut(),
                    output_row: ow,
                    lanes,
                    act: args.act,
                };
                let inside = lanes == l && at.left >= 0 && at.left + l + K as isize - 1 <= w;
                if side_by_side {
                    let mut group = [plane(p, first); P];
                    for (q, each) in group.iter_mut().enumerate() {
                        *each = plane(p + q as isize, first);
                    }
                    if inside {
                        column::<X, K, P, false>(&at, oh, &group);
                    } else {
                        column::<X, K, P, true>(&at, oh, &group);
                    }
                } else if inside {
                    column::<X, K, 1, false>(&at, oh, &[plane(p, first)]);
                } else {
                    column::<X, K, 1, true>(&at, oh, &[plane(p, first)]);
                }
            }
            p += if side_by_side { P as isize } else { 1 };
        }
    }
}

/// One column of `oh` output rows of each of `planes`, where `at` says (a [`Block`] of them, its
/// `top` the padding above the plane negated), streamed down the planes: step `i` takes input
/// row `i` (none above or below the plane) and stores output row `i + pad_top − (K − 1)`,
/// complete then. The steps whose rows are all inside the plane and whose output rows all exist
/// run without checks. `MASK`: load and add only the lanes whose input column is inside the row
/// (and that are output positions).
///
/// # Safety
/// As for [`planes`]; without `MASK` every column the vector reads is inside the plane.
#[inline(always)]
unsafe fn column<X: Lanes, const K: usize, const P: usize, const MASK: bool>(
    at: &Block,
    oh: isize,
    planes: &[Plane; P],
) {
    let [h, w] = at.size;
    let (pad_top, k) = (-at.top, K as isize);
    // SAFETY: the caller's contract.
    unsafe {
        // (Loops, not `array::from_fn`, which is not always inlined.)
        let (mut taps, mut sums) = ([[[X::splat(0.0); K]; K]; P], [[X::splat(0.0); K]; P]);
        for (q, plane) in planes.iter().enumerate() {
            taps[q] = window::<X, K>(plane.weight);
            sums[q] = [X::splat(plane.bias); K];
        }
        let masks = if MASK { column_masks::<X, K>(at.left, w, at.lanes, 1) } else { [X::mask(0, 0); K] };
        // Output row `r` is stored at step `r + K − 1 − pad_top`: the first before row 0 where the
        // padding is taller than the window (its first rows read no input row), the last at `end`.
        let last_to_fill = k - 1 - pad_top;
        let (start, end) = (last_to_fill.min(0), oh + last_to_fill);
        // Steps with an input row and K output rows: from the first whose oldest row exists.
        let inside_from = last_to_fill.max(0).min(end);
        let inside_to = h.min(oh - pad_top).clamp(inside_from, end);
        for i in start..inside_from {
            step::<X, K, P, MASK, true>(at, oh, planes, &taps, &masks, &mut sums, i);
        }
        for i in inside_from..inside_to {
            step::<X, K, P, MASK, false>(at, oh, planes, &taps, &masks, &mut sums, i);
        }
        for i in inside_to..end {
            step::<X, K, P, MASK, true>(at, oh, planes, &taps, &masks, &mut sums, i);
        }
    }
}

/// Step `i` of [`column`]: in each plane, input row `i` added to the output rows
/// `i + pad_top − kh` that exist (`sums[q][kh]`, tap row `kh`), output row `i + pad_top − (K − 1)`
/// stored, the sums moved one tap row on and `sums[q][0]` started at the bias. `CHECK`: input row
/// `i` may be outside the plane and output rows outside `0..OH`.
///
/// # Safety
/// As for [`column`]; without `CHECK` input row `i` is inside the plane, and so are output rows
/// `i + pad_top − (K − 1) ..= i + pad_top`.
#[inline(always)]
unsafe fn step<X: Lanes, const K: usize, const P: usize, const MASK: bool, const CHECK: bool>(
    at: &Block,
    oh: isize,
    planes: &[Plane; P],
    taps: &[[[X::V; K]; K]; P],
    masks: &[X::M; K],
    sums: &mut [[X::V; K]; P],
    i: isize,
) {
    let ([h, w], pad_top) = (at.size, -at.top);
    // SAFETY: the caller's contract; masked-off lanes touch no memory.
    unsafe {
        if !CHECK || (0..h).contains(&i) {
            for kw in 0..K {
                for (q, plane) in planes.iter().enumerate() {
                    let from = plane.input.wrapping_offset(i * w + at.left + kw as isize);
                    let x = if MASK { X::load_masked(from, masks[kw]) } else { X::load(from) };
                    for (kh, sum) in sums[q].iter_mut().enumerate() {
                        if CHECK && !(0..oh).contains(&(i + pad_top - kh as isize)) {
                            continue;
                        }
                        let tap = taps[q][kh][kw];
                        *sum = if MASK { X::fma_masked(*sum, x, tap, masks[kw]) } else { X::fma(*sum, x, tap) };
                    }
                }
            }
        }
        let r = i + pad_top - (K as isize - 1);
        if !CHECK || (0..oh).contains(&r) {
            for (q, plane) in planes.iter().enumerate() {
                let y = X::activate(sums[q][K - 1], at.act);
                store_row::<X>(plane.output.offset(r * at.output_row), y, at.lanes, at.output_row, r + 1 < oh);
            }
        }
        for (q, plane) in planes.iter().enumerate() {
            // (A loop, not `copy_within`, which kept the sums in memory: 0.47× as fast.)
            for kh in (1..K).rev() {
                sums[q][kh] = sums[q][kh - 1];
            }
            sums[q][0] = X::splat(plane.bias);
        }
    }
}
