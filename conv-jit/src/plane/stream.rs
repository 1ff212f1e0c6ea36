//! Depthwise 5 × 5 planes at stride 1 on AVX-512, one column of vectors at a time, streamed down
//! the plane: each input row is loaded once per tap column and added to the 5 output rows that
//! read it, whose sums are the only ones live (one per tap row); after the row, the oldest sum is
//! complete and stored, and a new one starts at the bias.
//!
//! The window's 25 taps, the 5 sums and a load fill AVX-512's 32 registers, as a block of 7
//! output rows ([`super::block`]) could not (25 taps, 7 sums and a load: the compiler spilled and
//! shuffled registers in every block), and there are no block boundaries, where a block's first
//! and last input rows feed one or two sums' chains of dependent multiply-adds. A row takes 25
//! multiply-adds on 5 independent sums, enough to hide their latency; a 3 × 3 window's 3 sums are
//! not (3 × 3 planes streamed so ran 0.50–0.65× their blocks), so those keep blocks.
//!
//! Measured on an AVX-512 AMD EPYC Zen 4 (`convgen bench` of the layer, this against blocks of 7
//! rows, alternating, medians of 3–5 pair ratios): dw5_s1_c240_28 1.21× (0.121 → 0.100 ms,
//! ~0.9 multiply-adds per cycle in the rows inside the plane), 480 channels at 14 × 14 1.29×, 64
//! at 56 × 56 1.18×, 32 at 112 × 112 1.22×, 96 at 28 × 28 unpadded 1.40×, 480 at 9 × 9 1.00.
//! Planes of rows of at most 8 stay flat ([`super::flat`]: 960 channels at 7 × 7 streamed ran
//! 0.68× as fast).
//!
//! Each sum takes the taps inside the plane in the window's order (an output row's input rows
//! come in order, and each row's tap columns in order), as the other kernels do: bit for bit the
//! portable kernel.

use super::{Block, Lanes, PlaneArgs, bits, div_ceil, store_row, window};

/// The window this kernel computes, `K × K` (its taps fill the registers beside the sums).
const K: usize = 5;

/// Whether a plane statement's planes are streamed: a 5 × 5 window at stride 1, undilated, each
/// output plane reading one input plane (depthwise; a group's planes are summed in turn, which a
/// stream of rows does not do), rows too long for [`super::flat`].
pub(super) fn applies(args: &PlaneArgs, kernel: usize, stride: usize, dilation: usize) -> bool {
    kernel == K && stride == 1 && dilation == 1 && args.group_inputs == 1
}

/// Every plane of `args`, each a column of vectors after another (the last overlapping the one
/// before where `L` does not divide OW; one masked vector in a row shorter than a vector).
///
/// # Safety
/// As for [`super::avx512_kernel`], with [`applies`] true.
#[inline(always)]
pub(super) unsafe fn planes<X: Lanes>(args: &PlaneArgs) {
    let ([h, w], [oh, ow], [pad_top, pad_left]) = (args.input_size, args.output_size, args.padding);
    let l = X::L;
    if oh <= 0 || ow <= 0 {
        return;
    }
    let (lanes, vectors) = if ow >= l { (l, div_ceil(ow, l)) } else { (ow, 1) };
    // SAFETY: the caller's contract; `column` reads only inside the plane (see there).
    unsafe {
        for p in 0..args.planes {
            let input = args.input.offset(p / args.group_outputs * h * w);
            let weight = args.weight.offset(p * (K * K) as isize);
            let bias = if args.bias.is_null() { 0.0 } else { *args.bias.offset(p) };
            let output = args.output.offset(p * oh * ow);
            for v in 0..vectors {
                let first = (v * l).min(ow - lanes);
                // The column from output row 0: its first input row, at tap 0, is `−pad_top`.
                let at = Block {
                    input,
                    group_inputs: 1,
                    weight,
                    size: [h, w],
                    top: -pad_top,
                    left: first - pad_left,
                    output: output.offset(first),
                    output_row: ow,
                    lanes,
                    act: args.act,
                };
                let inside = lanes == l && at.left >= 0 && at.left + l + K as isize - 1 <= w;
                if inside {
                    column::<X, false>(&at, oh, bias);
                } else {
                    column::<X, true>(&at, oh, bias);
                }
            }
        }
    }
}

/// One column of `oh` output rows from `at` (a [`Block`] of them, its `top` the padding above
/// the plane negated), streamed down the plane: step `i` takes input row `i` (none above or
/// below the plane) and stores output row `i + pad_top − (K − 1)`, complete then. The steps whose
/// rows are all inside the plane and whose output rows all exist run without checks. `MASK`: load
/// and add only the lanes whose input column is inside the row (and that are output positions).
///
/// # Safety
/// As for [`planes`]; without `MASK` every column the vector reads is inside the plane.
#[inline(always)]
unsafe fn column<X: Lanes, const MASK: bool>(at: &Block, oh: isize, bias: f32) {
    let [h, w] = at.size;
    let (pad_top, k) = (-at.top, K as isize);
    // SAFETY: the caller's contract.
    unsafe {
        let taps = window::<X, K>(at.weight);
        let mut masks = [X::mask(0, 0); K];
        if MASK {
            // Bit `j`: input column `left + j` is inside the row; a tap column's lanes are those
            // bits from its offset, up to the vector's lanes (as `block` makes them).
            let inside = bits(-at.left, w - at.left, 63);
            for (kw, mask) in masks.iter_mut().enumerate() {
                *mask = X::mask_of_bits((inside >> kw) & bits(0, at.lanes, 63));
            }
        }
        // Output row `r` is stored at step `r + K − 1 − pad_top`: the first before row 0 where the
        // padding is taller than the window (its first rows read no input row), the last at `end`.
        let last_to_fill = k - 1 - pad_top;
        let (start, end) = (last_to_fill.min(0), oh + last_to_fill);
        // Steps with an input row and K output rows: from the first whose oldest row exists.
        let inside_from = last_to_fill.max(0).min(end);
        let inside_to = h.min(oh - pad_top).clamp(inside_from, end);
        let mut sums = [X::splat(bias); K];
        for i in start..inside_from {
            step::<X, MASK, true>(at, oh, &taps, &masks, &mut sums, bias, i);
        }
        for i in inside_from..inside_to {
            step::<X, MASK, false>(at, oh, &taps, &masks, &mut sums, bias, i);
        }
        for i in inside_to..end {
            step::<X, MASK, true>(at, oh, &taps, &masks, &mut sums, bias, i);
        }
    }
}

/// Step `i` of [`column`]: input row `i` added to the output rows `i + pad_top − kh` that exist
/// (`sums[kh]`, tap row `kh`), output row `i + pad_top − (K − 1)` stored, the sums moved one tap
/// row on and `sums[0]` started at the bias. `CHECK`: input row `i` may be outside the plane and
/// output rows outside `0..OH`.
///
/// # Safety
/// As for [`column`]; without `CHECK` input row `i` is inside the plane, and so are output rows
/// `i + pad_top − (K − 1) ..= i + pad_top`.
#[inline(always)]
unsafe fn step<X: Lanes, const MASK: bool, const CHECK: bool>(
    at: &Block,
    oh: isize,
    taps: &[[X::V; K]; K],
    masks: &[X::M; K],
    sums: &mut [X::V; K],
    bias: f32,
    i: isize,
) {
    let ([h, w], pad_top) = (at.size, -at.top);
    // SAFETY: the caller's contract; masked-off lanes touch no memory.
    unsafe {
        if !CHECK || (0..h).contains(&i) {
            for kw in 0..K {
                let from = at.input.wrapping_offset(i * w + at.left + kw as isize);
                let x = if MASK { X::load_masked(from, masks[kw]) } else { X::load(from) };
                for (kh, sum) in sums.iter_mut().enumerate() {
                    if CHECK && !(0..oh).contains(&(i + pad_top - kh as isize)) {
                        continue;
                    }
                    *sum = if MASK {
                        X::fma_masked(*sum, x, taps[kh][kw], masks[kw])
                    } else {
                        X::fma(*sum, x, taps[kh][kw])
                    };
                }
            }
        }
        let r = i + pad_top - (K as isize - 1);
        if !CHECK || (0..oh).contains(&r) {
            let y = X::activate(sums[K - 1], at.act);
            store_row::<X>(at.output.offset(r * at.output_row), y, at.lanes, at.output_row, r + 1 < oh);
        }
        // (A loop, not `copy_within`, which kept the sums in memory: 0.47× as fast.)
        for kh in (1..K).rev() {
            sums[kh] = sums[kh - 1];
        }
        sums[0] = X::splat(bias);
    }
}
