//! 1D layers: a plane statement whose planes are single elements (input and output planes of
//! 1 × 1, a 1 × 1 window) and whose depth axis ([`PlaneArgs::depth`]) is each channel's row —
//! how the lowering states a 1D depthwise or grouped layer — at stride 1 along the row, any
//! window (taps and dilation) and padding.
//!
//! The outputs of a row whose taps all lie inside the input row run as waves ([`wave`]: each
//! input vector loaded once for every output vector that has a tap there) where the window is
//! undilated and 17 to 64 taps long on AVX-512; otherwise in tiles of `R` vectors of consecutive
//! outputs, then tiles of [`SHORT`] vectors and single ones for what is left (the last of each
//! overlapping the one before: its sums computed again in the same order). A tile splats one
//! weight per tap and adds the `R` input vectors it meets there, unaligned loads straight from the
//! row: its sums stay in registers through every tap. The outputs near either end, whose taps
//! reach past the row, are vectors whose lanes take only their taps inside it (masked loads and
//! multiply-adds, two vectors at a time, their masks computed once per call: computed per tap,
//! they took 15% of dw1d_k31_c256_l1000's time). Every sum is the bias (or 0), then, for each
//! input channel of the group in order, its taps in order (those outside the row skipped): the
//! definition ([`super::portable_kernel`]) bit for bit.
//!
//! Measured while writing it (a standalone loop over dw1d_k31_c256_l1000's rows, AVX-512 AMD EPYC
//! Zen 4, medians of 200 runs): tiles of 16 vectors of 16 lanes 0.235 ms (68 GFLOP/s), 8 0.242,
//! 4 0.250; of 8 vectors of 8 lanes (AVX2) 0.235; the tap vectors shifted out of aligned
//! vectors kept in registers instead of loaded (`valignd`) 0.267–0.27, half of each 0.34; 4
//! waves 0.154 (103 GFLOP/s). In convgen (`convgen bench` of the layer, the build before
//! alternating, 5 pairs): 0.181–0.216 ms against 0.373–0.453 for the planar code of 4 lanes,
//! 2.06–2.12× (one pair 1.73×); with `CONVGEN_MAX_ISA=avx2` tiles of 8 vectors 0.270 ms,
//! 1.37–1.50× (2 waves of 4 blocks there: 0.280).

use std::ops::Range;

use super::{Avx2, Avx512, Lanes, PlaneArgs, div_ceil, portable_kernel};

/// Vectors of a tile for what is left of a row after the full tiles.
const SHORT: usize = 4;

/// Whether [`rows`] computes `args` fast: planes of single elements, stride 1 along the row;
/// anything else its caller hands to the portable kernel.
pub(super) fn applies(args: &PlaneArgs) -> bool {
    let [_, _, taps, stride, dilation, _] = args.depth;
    let single = args.input_size == [1, 1] && args.output_size == [1, 1] && args.padding == [0, 0];
    single && stride == 1 && taps >= 1 && dilation >= 1
}

/// [`run`] on AVX-512: tiles of 16 vectors (16 sums, a weight and loads in the 32 registers), or 4
/// waves (up to 4 × 4 sums, 4 weights and 4 loads). Not inlined into the 1×1 kernel's entry point,
/// which calls it: inlined, the pointwise layers ran 0.72–0.76× as fast (pw_64to64_56,
/// pw_144to24_56; the build before alternating).
///
/// # Safety
/// As for [`super::portable_kernel`], and the host has AVX-512 F and VL, AVX2 and FMA.
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
#[inline(never)]
pub(super) unsafe fn avx512(args: *const PlaneArgs) {
    // SAFETY: the caller's contract.
    unsafe { run::<Avx512, 16, 4>(args) }
}

/// [`run`] on AVX2: tiles of 8 vectors, without waves (`W` of 1: on an AVX-512 Zen 4 with
/// `CONVGEN_MAX_ISA=avx2`, dw1d_k31_c256_l1000 ran 0.280 ms in 2 waves of 4 blocks of taps, 0.270
/// in tiles). Not inlined, as [`avx512`].
///
/// # Safety
/// As for [`super::portable_kernel`], and the host has AVX2 and FMA.
#[target_feature(enable = "avx2,fma")]
#[inline(never)]
pub(super) unsafe fn avx2(args: *const PlaneArgs) {
    // SAFETY: the caller's contract.
    unsafe { run::<Avx2, 8, 1>(args) }
}

/// [`rows`] where it [`applies`], else the portable kernel.
///
/// # Safety
/// As for [`super::portable_kernel`], and the host runs `X`'s instructions.
#[inline(always)]
unsafe fn run<X: Lanes, const R: usize, const W: usize>(args: *const PlaneArgs) {
    // SAFETY: the caller's contract.
    unsafe {
        if !applies(&*args) {
            return portable_kernel::<1, 1, 1>(args);
        }
        #[cfg(test)]
        super::ROWS_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        rows::<X, R, W>(&*args)
    }
}

/// One output row and what it reads.
struct Row {
    /// The group's first input row.
    input: *const f32,
    /// The row's first weight (of its first input channel).
    weight: *const f32,
    bias: f32,
    output: *mut f32,
}

/// What every row shares: the statement's numbers along the row.
struct Shape {
    /// Input elements per row.
    len_in: isize,
    /// Input rows per group.
    inputs: isize,
    taps: isize,
    dilation: isize,
    /// Zero elements before the row.
    pad: isize,
    act: isize,
}

/// Every output row of `args`: in `W` waves where they apply ([`waves`]), else in tiles of `R`
/// vectors (the module's order).
///
/// # Safety
/// As for [`super::portable_kernel`], with [`applies`] true, and the host runs `X`'s instructions.
#[inline(always)]
unsafe fn rows<X: Lanes, const R: usize, const W: usize>(args: &PlaneArgs) {
    let [len_in, len_out, taps, _, dilation, pad] = args.depth;
    let (inputs, outputs) = (args.group_inputs, args.group_outputs);
    if len_out <= 0 || inputs <= 0 || outputs <= 0 {
        return;
    }
    let shape = Shape { len_in, inputs, taps, dilation, pad, act: args.act };
    // The outputs all of whose taps lie inside the row (at least a vector of them, else none).
    let reach = (taps - 1) * dilation;
    let inner = pad.clamp(0, len_out)..(len_in + pad - reach).clamp(0, len_out);
    let inner = if inner.end - inner.start >= X::L { inner } else { 0..0 };
    // The vectors at the row's ends, and for each its masks of the lanes inside the row, a tap's
    // after another (the same for every row).
    let borders = border_vectors::<X>(0..inner.start, inner.end..len_out);
    let masks: Vec<X::M> = borders
        .iter()
        .flat_map(|&(at, _)| (0..taps).map(move |t| at - pad + t * dilation))
        // SAFETY: the host runs `X`'s instructions (the caller's contract).
        .map(|first| unsafe { X::mask(-first, len_in - first) })
        .collect();
    // SAFETY: the caller's contract: each row's input, weights and output lie inside the buffers;
    // the waves, tiles and end vectors below read only inside the input row and write only inside
    // the output row.
    unsafe {
        for p in 0..args.planes {
            let row = Row {
                input: args.input.offset(args.group(p) * inputs * len_in),
                weight: args.weight.offset(p * inputs * taps),
                bias: if args.bias.is_null() { 0.0 } else { *args.bias.offset(p) },
                output: args.output.offset(p * len_out),
            };
            if !waves::<X, W>(&row, &shape, &inner) {
                let at = tiles::<X, R>(&row, &shape, &inner, inner.start);
                let at = tiles::<X, SHORT>(&row, &shape, &inner, at);
                tiles::<X, 1>(&row, &shape, &inner, at);
            }
            // Two vectors at a time (two sums in flight where one would wait on each multiply-add).
            for (vectors, masks) in borders.chunks(2).zip(masks.chunks(2 * taps as usize)) {
                let (first, second) = masks.split_at(taps as usize);
                match *vectors {
                    [one, two] => border::<X, 2>(&row, &shape, [one, two], [first, second]),
                    [one] => border::<X, 1>(&row, &shape, [one], [first]),
                    _ => unreachable!("chunks of one or two vectors"),
                }
            }
        }
    }
}

/// The outputs `inner` of a row (all their taps inside it) as `W` waves ([`wave`]) where the
/// window takes 2 to 4 blocks of `L` taps (17 to 64 on AVX-512; AVX2 runs none, [`avx2`]),
/// undilated, one input row per group, and the row holds at least [`MIN_WAVE`] vectors per wave;
/// returns whether it did.
///
/// # Safety
/// As for [`tiles`].
#[inline(always)]
unsafe fn waves<X: Lanes, const W: usize>(row: &Row, shape: &Shape, inner: &Range<isize>) -> bool {
    let vectors = div_ceil(inner.end - inner.start, X::L);
    let per_wave = div_ceil(vectors, W as isize);
    // (`W` of 1: no waves.)
    if shape.dilation != 1 || shape.inputs != 1 || per_wave < MIN_WAVE || W < 2 {
        return false;
    }
    // SAFETY: the caller's contract; W ≥ 2 waves of `per_wave` vectors, at most half the row's
    // vectors rounded up, fit inside `inner`.
    unsafe {
        match div_ceil(shape.taps, X::L) {
            2 => wave::<X, W, 2>(row, shape, inner, per_wave),
            3 => wave::<X, W, 3>(row, shape, inner, per_wave),
            4 => wave::<X, W, 4>(row, shape, inner, per_wave),
            _ => return false,
        }
    }
    true
}

/// The fewest vectors per wave ([`wave`]), whose first and last `J − 1` blocks compute sums that
/// are not stored.
const MIN_WAVE: isize = 8;

/// The outputs `inner` of a row as `W` waves of `count` vectors each, side by side (the last
/// ending at `inner.end`, overlapping the one before: its sums computed again in the same order),
/// for a window of `J` blocks of `L` taps (`(J − 1)·L < taps ≤ J·L`), undilated.
///
/// A wave walks its input in steps of one element: the vector loaded at step `s` (elements
/// `s..s + L` from the wave's first input) is tap `s − L·v` of each of its output vectors `v`
/// that has one there — tap `s mod L` of the vector `⌊s / L⌋`, tap `s mod L + L` of the one
/// before, and so on: `J` sums per load, where a tile loads an input vector per multiply-add.
/// Each output vector still takes its taps in order, one per step, so its sum is the tiles' bit for
/// bit. Its sums live for `J` blocks of `L` steps: the `J` vectors in flight are registers that
/// shift by one each block (`sums[j]` holds vector `block − j`), the oldest stored as it
/// completes. The first and last `J − 1` blocks also compute sums of vectors outside the wave
/// (every load still one a stored vector needs, so inside the row), which are not stored.
///
/// Measured while writing it (standalone, dw1d_k31_c256_l1000's rows, AVX-512 AMD EPYC Zen 4,
/// medians of 200 runs, in one process): 4 waves 0.153–0.154 ms (103 GFLOP/s), 6 0.157, 8 0.153,
/// against 0.235 for tiles of 16 vectors (68 GFLOP/s) — an unaligned load of 16 lanes per
/// multiply-add was what bounded the tiles.
///
/// # Safety
/// As for [`tiles`]; `W·count·L` covers `inner` and `count·L` fits in it.
#[inline(always)]
unsafe fn wave<X: Lanes, const W: usize, const J: usize>(row: &Row, shape: &Shape, inner: &Range<isize>, count: isize) {
    let (lanes, blocks) = (X::L, J as isize);
    let span = count * lanes;
    let starts: [isize; W] = std::array::from_fn(|i| (inner.start + i as isize * span).min(inner.end - span));
    // Steps of each block at which all `J` sums take a tap (the window's last block has `both`).
    let both = shape.taps - (blocks - 1) * lanes;
    // SAFETY: the caller's contract: every load below is one that a stored vector's taps need
    // (the function's comment), so inside the row; every store inside `inner`.
    unsafe {
        let inputs: [*const f32; W] = starts.map(|start| row.input.offset(start - shape.pad));
        let mut sums = [[X::splat(row.bias); W]; J];
        for block in 0..count + blocks - 1 {
            let at = block * lanes;
            for step in 0..both {
                let weights: [X::V; J] =
                    std::array::from_fn(|j| X::splat(*row.weight.offset(step + j as isize * lanes)));
                for (i, input) in inputs.iter().enumerate() {
                    let x = X::load(input.offset(at + step));
                    for (sums, weight) in sums.iter_mut().zip(weights) {
                        sums[i] = X::fma(sums[i], x, weight);
                    }
                }
            }
            // The last block's other steps serve no stored vector.
            if block < count + blocks - 2 {
                for step in both..lanes {
                    // (No weight past the window's last for the oldest sum, which takes none here.)
                    let weights: [X::V; J] = std::array::from_fn(|j| {
                        X::splat(if j + 1 < J { *row.weight.offset(step + j as isize * lanes) } else { 0.0 })
                    });
                    for (i, input) in inputs.iter().enumerate() {
                        let x = X::load(input.offset(at + step));
                        for (sums, weight) in sums[..J - 1].iter_mut().zip(weights) {
                            sums[i] = X::fma(sums[i], x, weight);
                        }
                    }
                }
            }
            // Vector `block − (J − 1)` has all its taps.
            let done = block - (blocks - 1);
            if (0..count).contains(&done) {
                for (i, start) in starts.iter().enumerate() {
                    X::store(row.output.offset(start + done * lanes), X::activate(sums[J - 1][i], shape.act));
                }
            }
            sums.copy_within(0..J - 1, 1);
            sums[0] = [X::splat(row.bias); W];
        }
    }
}

/// Tiles of `V` vectors from output `at` while a whole one fits before `inner.end`, then one more
/// ending there, overlapping the one before, if what is left fills at least half a tile (always
/// for single vectors) and the tile stays inside `inner`; returns where the next tiles start.
///
/// # Safety
/// As for [`rows`]: every output in `inner` has all its taps inside the row, and `at` lies in it.
#[inline(always)]
unsafe fn tiles<X: Lanes, const V: usize>(row: &Row, shape: &Shape, inner: &Range<isize>, mut at: isize) -> isize {
    let span = V as isize * X::L;
    // SAFETY: the caller's contract.
    unsafe {
        while at + span <= inner.end {
            tile::<X, V>(row, shape, at);
            at += span;
        }
        let left = inner.end - at;
        if left > 0 && inner.end - span >= inner.start && (V == 1 || 2 * left >= span) {
            tile::<X, V>(row, shape, inner.end - span);
            at = inner.end;
        }
    }
    at
}

/// The `V` vectors of outputs from `at`, every tap inside the row.
///
/// # Safety
/// As for [`tiles`].
#[inline(always)]
unsafe fn tile<X: Lanes, const V: usize>(row: &Row, shape: &Shape, at: isize) {
    // SAFETY: the caller's contract: inputs `at − pad + t·dilation + 0..V·L` are inside the row for
    // every tap `t`, outputs `at..at + V·L` inside the output row.
    unsafe {
        let mut sums = [X::splat(row.bias); V];
        for k in 0..shape.inputs {
            let input = row.input.offset(k * shape.len_in + at - shape.pad);
            let weight = row.weight.offset(k * shape.taps);
            for t in 0..shape.taps {
                let w = X::splat(*weight.offset(t));
                let from = input.offset(t * shape.dilation);
                for (v, sum) in sums.iter_mut().enumerate() {
                    *sum = X::fma(*sum, X::load(from.offset(v as isize * X::L)), w);
                }
            }
        }
        for (v, sum) in sums.into_iter().enumerate() {
            X::store(row.output.offset(at + v as isize * X::L), X::activate(sum, shape.act));
        }
    }
}

/// The vectors of outputs at a row's ends (`left` and `right`), as `(first output, end)`: from
/// each range's start, one per `L` outputs, none past the range's end.
fn border_vectors<X: Lanes>(left: Range<isize>, right: Range<isize>) -> Vec<(isize, isize)> {
    let vectors = |range: Range<isize>| (range.start..range.end).step_by(X::L as usize).map(move |at| (at, range.end));
    vectors(left).chain(vectors(right)).collect()
}

/// `N` vectors of outputs, each `(first output, end)` with its masks (one per tap: the lanes whose
/// input element is inside the row), each lane taking only its taps inside the input row.
///
/// # Safety
/// As for [`rows`]; the outputs lie inside the output row, and the masks are [`rows`]'.
#[inline(always)]
unsafe fn border<X: Lanes, const N: usize>(
    row: &Row,
    shape: &Shape,
    vectors: [(isize, isize); N],
    masks: [&[X::M]; N],
) {
    // SAFETY: the caller's contract; a masked load touches only its lanes' elements, those inside
    // the input row, and the masked store only the outputs asked for.
    unsafe {
        let mut sums = [X::splat(row.bias); N];
        for k in 0..shape.inputs {
            let input = row.input.offset(k * shape.len_in);
            let weight = row.weight.offset(k * shape.taps);
            for t in 0..shape.taps {
                let w = X::splat(*weight.offset(t));
                for ((sum, (at, _)), masks) in sums.iter_mut().zip(vectors).zip(masks) {
                    // Lane `i` reads input element `at − pad + t·dilation + i`.
                    let from = input.wrapping_offset(at - shape.pad + t * shape.dilation);
                    let inside = masks[t as usize];
                    *sum = X::fma_masked(*sum, X::load_masked(from, inside), w, inside);
                }
            }
        }
        for (sum, (at, end)) in sums.into_iter().zip(vectors) {
            X::store_masked(row.output.offset(at), X::activate(sum, shape.act), X::mask(0, end - at));
        }
    }
}
