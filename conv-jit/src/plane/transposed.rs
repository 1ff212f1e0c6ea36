//! Small depthwise planes a vector's lanes at a time (16 on AVX-512, 8 on AVX2), transposed in
//! registers: a 3 × 3 or 5 × 5 window at stride 1 over planes of at most
//! [`PLANE_TRANSPOSED_MAX_POSITIONS`](conv_dsl::ir::PLANE_TRANSPOSED_MAX_POSITIONS) positions in
//! rows of 2 to 8, or of up to 14 rows of 9 to 13 (on AVX2 also 14:
//! [`PLANE_TRANSPOSED_ROWS`](conv_dsl::ir::PLANE_TRANSPOSED_ROWS)), each output plane the size of
//! its input (MobileNets' last depthwise layers: 7 × 7 at 224 px, 5 × 5 or 6 × 6 at 160 or 192, and
//! their 10 × 10 and 12 × 12 ones there; EfficientNets' last 5 × 5 ones at 7 × 7; on AVX2
//! MobileNets' 14 × 14 ones). Longer rows, on AVX2, are transposed a row at a time
//! ([`super::banded`]).
//!
//! [`super::flat`] puts a plane's positions in the lanes of a vector: every tap is a shifted,
//! masked vector of the plane (a shuffle of two loaded vectors, or a 64-byte load across two cache
//! lines), and a plane of 7 × 7 fills 49 of its 4 vectors' 64 lanes; AVX2's row kernels fill 7 of 8
//! lanes at 7 × 7, every block a border one. Here the lanes are 16 (8) planes instead. Their inputs
//! are transposed in blocks of 16 (8) positions (16 masked loads and 64 shuffles on AVX-512; 8
//! loads and 24 shuffles on AVX2; a last block the plane's last 16 (8) positions, overlapping the
//! one before, or, where at most [`Transposing::GATHERED`] positions are past the last whole block,
//! those positions gathered one by one), so that a position of the planes is one vector and a tap
//! one multiply-add of a whole vector, with no mask and no shifted load. The windows' weights are
//! transposed into a vector per tap (a 3 × 3 window's 9 held in registers; a 5 × 5 one's 25 do not
//! all fit beside the sums, and the compiler keeps some on the stack); an output row's `W` sums
//! stay in registers (on AVX2 rows of 14 or 28 seven at a time); the sums are transposed back the
//! same way. The sums are those of the other kernels bit for bit: the bias, then the taps in order,
//! those outside the plane skipped (which, the rows being `W` long and the padding on the left half
//! the window's reach, is known per output column when the code is compiled).
//!
//! Measured on an Intel Xeon (Emerald Rapids; AVX-512: the flat kernel's build and this one
//! alternating, `convgen bench MODEL --runs 300`, 6–10 pairs, medians of the pair ratios):
//! dw3_s1_c960_7 1.29× (0.033 → 0.026 ms; 1.19× in an earlier round), 960 planes of 6 × 6 1.84×,
//! 960 of 5 × 5 1.84×, 1024 of 4 × 4 1.77×; 576 of 8 × 8 (which fill the flat kernel's vectors)
//! 0.97–1.08× in three rounds, 1024 of 8 × 8 with relu6 1.05×; a 5 × 5 window on 480 planes of 7 ×
//! 7 1.98×, on 1152 of 7 × 7 with relu6 1.97×, on 960 of 6 × 6 1.94× (with the 3 × 3 window
//! unchanged, 1.00×). On the way: the windows' weights gathered (9 gathers) rather than transposed,
//! 0.95×; a last block of 1 position (7 × 7) transposed as the plane's last 16 rather than
//! gathered, 0.95–0.96×, one of 4 (6 × 6) 1.06×. A C copy without its multiply-adds took as long as
//! with them: the transposes, loads and stores are what it costs. AVX2 (the same host with
//! `CONVGEN_MAX_ISA=avx2`; the build before, whose lowering gave these layers the channels-last
//! tile kernel and two conversions, and this one alternating, 6 pairs): dw3_s1_c960_7 1.43× (0.045
//! → 0.031 ms), a 5 × 5 window on 480 planes of 7 × 7 1.68×, 1024 planes of 4 × 4 2.02×; a last
//! position gathered and its sums stored lane by lane rather than the plane's last 8 transposed,
//! 1.05× on dw3_s1_c960_7, 1.12× on 960 planes of 5 × 5, 1.03× for a 5 × 5 window on 1152 of 7 × 7
//! (10 pairs each). Planes of 14 × 14 (AVX2 only,
//! [`PLANE_TRANSPOSED_ROWS`](conv_dsl::ir::PLANE_TRANSPOSED_ROWS) gives the numbers):
//! dw3_s1_c384_14 1.32× the planar code; rows of 9 to 13 (512 planes of each size against the
//! planar code or the row kernels, 6 pairs): 3 × 3 1.34× (13 × 13) to 2.31× (9 × 9), 5 × 5
//! 2.36–2.72× — with one loop over a row's runs of 7 and 6 sums, LLVM left rows of 13 rolled
//! (1.03×); a function per run, inlined with its length a constant ([`row_run`]), 1.34× and 2.72×;
//! on AVX-512 (against the planar code or the channels-last tile kernel, the same method) 3 × 3
//! 1.78× (13 × 13) to 3.09× (9 × 9), 5 × 5 2.84–3.66×, 384 planes of 12 × 12 with relu6 2.47×; the
//! stream and row kernels keep 14 × 14 there (transposed in these runs: dw3_s1_c384_14 0.61×, 512
//! planes of 14 × 14 0.72×, under a 5 × 5 window 0.91×). Planes of 28 × 28 (AVX2): under a 5 × 5
//! window dw5_s1_c240_28 1.20× the row kernel, under a 3 × 3 one 0.93× of the planar code (its two
//! tables, 49 KiB, likely past the 48 KiB L1 cache; [`super::banded`] took them). Summing one
//! output position at a time (the window's taps in registers, the inputs read from memory) rather
//! than a row's `W` sums tap by tap ran 0.48× on AVX2 and 0.19× on AVX-512; AVX2's full input
//! blocks loaded as 128-bit halves into the two lanes of a vector (the loads doing the transpose's
//! lane-crossing step: 16 loads and 16 shuffles rather than 8 and 24), 0.99–1.00× (8 pairs each on
//! dw3_s1_c960_7, 1024 planes of 4 × 4 and a 5 × 5 window on 480 of 7 × 7).

use std::arch::x86_64::{
    __m256, __m512, _mm256_i32gather_ps, _mm256_mullo_epi32, _mm256_permute2f128_ps, _mm256_set1_epi32,
    _mm256_setr_epi32, _mm256_shuffle_ps, _mm256_storeu_ps, _mm256_unpackhi_ps, _mm256_unpacklo_ps, _mm512_castpd_ps,
    _mm512_castps_pd, _mm512_i32gather_ps, _mm512_i32scatter_ps, _mm512_mullo_epi32, _mm512_set1_epi32,
    _mm512_setr_epi32, _mm512_shuffle_f32x4, _mm512_unpackhi_pd, _mm512_unpackhi_ps, _mm512_unpacklo_pd,
    _mm512_unpacklo_ps,
};

use conv_dsl::ir::plane_transposed;

use super::{Avx2, Avx512, Lanes, PlaneArgs, div_ceil};

/// Whether a plane statement's planes are computed so on `X`: a depthwise layer whose window and
/// planes [`plane_transposed`] takes for `X`'s lanes (3 × 3 or 5 × 5 at stride 1, small planes of
/// the same size out as in), with at least `X::L` planes (one per lane).
pub(super) fn applies<X: Lanes>(args: &PlaneArgs, kernel: usize, stride: usize, dilation: usize) -> bool {
    let size = |[a, b]: [isize; 2]| [a, b].map(|n| u64::try_from(n).unwrap_or(u64::MAX));
    let window = (kernel as u64, stride as u64, dilation as u64);
    let (input, output, padding) = (size(args.input_size), size(args.output_size), size(args.padding));
    let planes = plane_transposed(window, input, output, padding, X::L as u64);
    let depthwise = args.group_inputs == 1 && args.group_outputs == 1;
    planes && depthwise && args.planes >= X::L
}

/// Vectors of `L` lanes that move between `L` planes and `L` positions: transposed in `L × L`
/// blocks, or a position gathered from (scattered to) the planes.
pub(super) trait Transposing<const L: usize>: Lanes {
    /// The most positions past the last `L` that are gathered ([`Block::Gathered`]) rather than
    /// transposed as the plane's last `L`, overlapping the block before.
    const GATHERED: isize;
    /// `rows[i]`'s lane `j` becomes `rows[j]`'s lane `i`.
    unsafe fn transpose(rows: &mut [Self::V; L]);
    /// Lane `p` from `at + p · step`.
    unsafe fn gather(at: *const f32, step: isize) -> Self::V;
    /// Lane `p` to `at + p · step`.
    unsafe fn scatter(at: *mut f32, step: isize, x: Self::V);
}

impl Transposing<16> for Avx512 {
    /// 1 or 2 positions gathered and scattered: 1.04–1.05× the plane's last 16 transposed; 4,
    /// 0.94× (the module's doc).
    const GATHERED: isize = 2;

    #[inline(always)]
    unsafe fn transpose(rows: &mut [__m512; 16]) {
        // SAFETY: the caller's contract (the host runs AVX-512 F).
        unsafe {
            let mut pairs = [Avx512::splat(0.0); 16];
            for i in (0..16).step_by(2) {
                pairs[i] = _mm512_unpacklo_ps(rows[i], rows[i + 1]);
                pairs[i + 1] = _mm512_unpackhi_ps(rows[i], rows[i + 1]);
            }
            let pd = _mm512_castps_pd;
            for i in (0..16).step_by(4) {
                rows[i] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(pairs[i]), pd(pairs[i + 2])));
                rows[i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(pairs[i]), pd(pairs[i + 2])));
                rows[i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(pd(pairs[i + 1]), pd(pairs[i + 3])));
                rows[i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(pd(pairs[i + 1]), pd(pairs[i + 3])));
            }
            // Each 128-bit lane now holds a 4 × 4 block transposed; move the blocks.
            for i in 0..4 {
                let (a0, a1, a2, a3) = (rows[i], rows[4 + i], rows[8 + i], rows[12 + i]);
                let b0 = _mm512_shuffle_f32x4::<0x88>(a0, a1);
                let b1 = _mm512_shuffle_f32x4::<0xdd>(a0, a1);
                let b2 = _mm512_shuffle_f32x4::<0x88>(a2, a3);
                let b3 = _mm512_shuffle_f32x4::<0xdd>(a2, a3);
                pairs[i] = _mm512_shuffle_f32x4::<0x88>(b0, b2);
                pairs[i + 8] = _mm512_shuffle_f32x4::<0xdd>(b0, b2);
                pairs[i + 4] = _mm512_shuffle_f32x4::<0x88>(b1, b3);
                pairs[i + 12] = _mm512_shuffle_f32x4::<0xdd>(b1, b3);
            }
            *rows = pairs;
        }
    }

    #[inline(always)]
    unsafe fn gather(at: *const f32, step: isize) -> __m512 {
        // SAFETY: the caller's contract.
        unsafe {
            let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            _mm512_i32gather_ps::<4>(_mm512_mullo_epi32(lanes, _mm512_set1_epi32(step as i32)), at)
        }
    }

    #[inline(always)]
    unsafe fn scatter(at: *mut f32, step: isize, x: __m512) {
        // SAFETY: the caller's contract.
        unsafe {
            let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            _mm512_i32scatter_ps::<4>(at, _mm512_mullo_epi32(lanes, _mm512_set1_epi32(step as i32)), x)
        }
    }
}

impl Transposing<8> for Avx2 {
    /// A last position gathered (and scattered lane by lane) rather than 8 transposed: 1.03–1.12×
    /// (the module's doc).
    const GATHERED: isize = 1;

    #[inline(always)]
    unsafe fn transpose(rows: &mut [__m256; 8]) {
        // SAFETY: the caller's contract (the host runs AVX2).
        unsafe {
            let mut pairs = [Avx2::splat(0.0); 8];
            for i in (0..8).step_by(2) {
                pairs[i] = _mm256_unpacklo_ps(rows[i], rows[i + 1]);
                pairs[i + 1] = _mm256_unpackhi_ps(rows[i], rows[i + 1]);
            }
            for i in (0..8).step_by(4) {
                rows[i] = _mm256_shuffle_ps::<0x44>(pairs[i], pairs[i + 2]);
                rows[i + 1] = _mm256_shuffle_ps::<0xee>(pairs[i], pairs[i + 2]);
                rows[i + 2] = _mm256_shuffle_ps::<0x44>(pairs[i + 1], pairs[i + 3]);
                rows[i + 3] = _mm256_shuffle_ps::<0xee>(pairs[i + 1], pairs[i + 3]);
            }
            // Each 128-bit lane now holds a 4 × 4 block transposed; swap the blocks across.
            for i in 0..4 {
                pairs[i] = _mm256_permute2f128_ps::<0x20>(rows[i], rows[i + 4]);
                pairs[i + 4] = _mm256_permute2f128_ps::<0x31>(rows[i], rows[i + 4]);
            }
            *rows = pairs;
        }
    }

    #[inline(always)]
    unsafe fn gather(at: *const f32, step: isize) -> __m256 {
        // SAFETY: the caller's contract.
        unsafe {
            let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            _mm256_i32gather_ps::<4>(at, _mm256_mullo_epi32(lanes, _mm256_set1_epi32(step as i32)))
        }
    }

    /// AVX2 has no scatter: the lanes stored one by one.
    #[inline(always)]
    unsafe fn scatter(at: *mut f32, step: isize, x: __m256) {
        let mut lanes = [0.0f32; 8];
        // SAFETY: `lanes` holds the vector's 8 floats; the caller's contract for `at`.
        unsafe {
            _mm256_storeu_ps(lanes.as_mut_ptr(), x);
            for (p, lane) in lanes.into_iter().enumerate() {
                *at.offset(p as isize * step) = lane;
            }
        }
    }
}

/// `L` rows of `count` elements (at most `L`) from `first`, `stride` elements apart, transposed:
/// vector `i`'s lane `p` is row `p`'s element `i` (0 past `count`).
///
/// # Safety
/// The host runs `X`; each row's `count` elements are readable.
#[inline(always)]
pub(super) unsafe fn load_transposed<X: Transposing<L>, const L: usize>(
    first: *const f32,
    stride: isize,
    count: isize,
) -> [X::V; L] {
    // SAFETY: the caller's contract.
    unsafe {
        let mask = X::mask(0, count);
        let mut rows = std::array::from_fn(|p| {
            let row = first.offset(p as isize * stride);
            if count == X::L { X::load(row) } else { X::load_masked(row, mask) }
        });
        X::transpose(&mut rows);
        rows
    }
}

/// The windows of `L` planes from `weight` (`K · K` taps each), transposed: `taps[t]` holds tap `t`
/// of every plane (a window's taps in blocks of `L`: a 5 × 5 one's 25 in two of 16 or four of 8).
///
/// # Safety
/// The host runs `X`; `L` windows are readable from `weight`.
#[inline(always)]
pub(super) unsafe fn window_taps<X: Transposing<L>, const L: usize, const K: usize>(weight: *const f32) -> [X::V; 32] {
    const { assert!(K * K <= 32) };
    let taps_per_window = (K * K) as isize;
    // SAFETY: the caller's contract (the host runs `X`).
    let mut taps = [unsafe { X::splat(0.0) }; 32];
    for (part, taps) in taps.chunks_exact_mut(L).enumerate().take((K * K).div_ceil(L)) {
        let at = (part * L) as isize;
        let count = (taps_per_window - at).min(X::L);
        // SAFETY: the caller's contract.
        taps.copy_from_slice(&unsafe { load_transposed::<X, L>(weight.offset(at), taps_per_window, count) });
    }
    taps
}

/// A block of positions of a lane's worth of planes, moved between planes and the positions'
/// vectors together.
#[derive(Clone, Copy)]
enum Block {
    /// `count` positions from `at` (at most `L`), as one `L × L` transpose (masked where fewer).
    Transposed { at: isize, count: isize },
    /// `count` positions from `at`, each gathered from the planes (and its sums scattered).
    Gathered { at: isize, count: isize },
}

/// Block `b` (of `⌈n / l⌉`) of a plane of `n` positions in blocks of `l`: `l` from `l·b`; the
/// last, where `l` does not divide `n`, the plane's last `l` or, past at most `gathered`, those
/// gathered; of a plane of fewer than `l`, all of them.
#[inline(always)]
fn block(b: isize, n: isize, l: isize, gathered: isize) -> Block {
    let (at, rest) = (b * l, n - b * l);
    match rest {
        _ if rest >= l => Block::Transposed { at, count: l },
        _ if n < l => Block::Transposed { at: 0, count: n },
        _ if rest <= gathered => Block::Gathered { at, count: rest },
        _ => Block::Transposed { at: n - l, count: l },
    }
}

/// Every plane of `args` ([`applies`], a `K × K` window, rows of `W`), `L` at a time (the last `L`
/// overlapping those before where `L` does not divide the planes), an output row's sums `C` at a
/// time (the last `W mod C` alone where `C` does not divide `W`: [`row_run`]). The transposed
/// inputs and the sums of the `L` planes are two tables of `N` vectors (at least the plane's
/// positions) on the stack: each up to 11.4 KiB on AVX-512 (14 rows of 13), 6.1 KiB on AVX2 (14 ×
/// 14).
///
/// # Safety
/// As for [`super::portable_kernel`], with [`applies`] true for `X`, `K` and `W` the rows' length,
/// and the host runs `X`.
#[inline(always)]
pub(super) unsafe fn planes<
    X: Transposing<L>,
    const L: usize,
    const K: usize,
    const W: usize,
    const C: usize,
    const N: usize,
>(
    args: &PlaneArgs,
) {
    const { assert!(C >= 1 && C <= W) };
    const { assert!(K == 3 || K == 5) };
    let (h, w, top) = (args.input_size[0], W as isize, args.padding[0]);
    let (n, taps_per_window) = (h * w, (K * K) as isize);
    debug_assert!(applies::<X>(args, K, 1, 1) && args.input_size[1] == w && X::L == L as isize && n as usize <= N);
    let (together, blocks) = (X::L, div_ceil(n, X::L));
    let block = |b| block(b, n, together, X::GATHERED);
    // SAFETY: the caller's contract; every load, gather, store and scatter below is of positions
    // `0..n` of planes `first..first + L` (masked to them where a block is short), inside the
    // input and output planes, and of the weights and biases of those planes.
    unsafe {
        // inputs[q]: position `q` of the `L` planes; sums[q]: its output.
        let mut inputs = [X::splat(0.0); N];
        let mut sums = [X::splat(0.0); N];
        let mut next = 0;
        while next < args.planes {
            let first = next.min(args.planes - together);
            let (input, output) = (args.input.offset(first * n), args.output.offset(first * n));
            for b in 0..blocks {
                let (at, count) = match block(b) {
                    Block::Transposed { at, count } => (at, count),
                    Block::Gathered { at, count } => {
                        for q in at..at + count {
                            *inputs.get_unchecked_mut(q as usize) = X::gather(input.offset(q), n);
                        }
                        continue;
                    }
                };
                let rows = load_transposed::<X, L>(input.offset(at), n, count);
                for (i, row) in rows.iter().enumerate().take(count as usize) {
                    *inputs.get_unchecked_mut(at as usize + i) = *row;
                }
            }
            let taps = window_taps::<X, L, K>(args.weight.offset(first * taps_per_window));
            let bias = if args.bias.is_null() { X::splat(0.0) } else { X::load(args.bias.offset(first)) };
            let source = RunSource { inputs: &inputs, taps: &taps, bias, act: args.act, h, top };
            // The runs of `C` sums, then the row's last `W mod C` (each call inlined with its
            // count a constant: one loop over runs of both lengths was left rolled in rows of 13).
            let full = W - W % C;
            for y in 0..h {
                for x0 in (0..full).step_by(C) {
                    row_run::<X, K, W, C>(&source, &mut sums, y, x0, C);
                }
                if full < W {
                    row_run::<X, K, W, C>(&source, &mut sums, y, full, W - full);
                }
            }
            for b in 0..blocks {
                let (at, count) = match block(b) {
                    Block::Transposed { at, count } => (at, count),
                    Block::Gathered { at, count } => {
                        for q in at..at + count {
                            X::scatter(output.offset(q), n, *sums.get_unchecked(q as usize));
                        }
                        continue;
                    }
                };
                let mut rows: [X::V; L] = std::array::from_fn(|i| {
                    if (i as isize) < count { *sums.get_unchecked(at as usize + i) } else { X::splat(0.0) }
                });
                X::transpose(&mut rows);
                for (p, row) in rows.iter().enumerate() {
                    let to = output.offset(p as isize * n + at);
                    if count == together { X::store(to, *row) } else { X::store_masked(to, *row, X::mask(0, count)) }
                }
            }
            next += together;
        }
    }
}

/// What [`row_run`] reads: the transposed inputs of the `L` planes, their windows' taps (`taps[t]`
/// tap `t`), their bias, the activation, and the planes' rows and top padding.
struct RunSource<'a, V> {
    inputs: &'a [V],
    taps: &'a [V; 32],
    bias: V,
    act: isize,
    h: isize,
    top: isize,
}

/// Output row `y`'s sums `x0..x0 + count` (`count` at most `C`, in registers) of the `L` planes,
/// each the bias and then the taps in order, those outside the plane skipped; activated into
/// `sums`.
///
/// # Safety
/// The host runs `X`; `source.inputs` and `sums` hold the planes' `h·W` positions, `x0 + count ≤ W`.
#[inline(always)]
unsafe fn row_run<X: Lanes, const K: usize, const W: usize, const C: usize>(
    source: &RunSource<X::V>,
    sums: &mut [X::V],
    y: isize,
    x0: usize,
    count: usize,
) {
    let (w, left) = (W as isize, (K - 1) / 2);
    // SAFETY: the caller's contract: every row read is one of the `h` rows, every column one of
    // the `W`, and every sum written one of output row `y`'s.
    unsafe {
        let mut row_sums = [source.bias; C];
        for kh in 0..K {
            let iy = y + kh as isize - source.top;
            if !(0..source.h).contains(&iy) {
                continue;
            }
            let row = source.inputs.as_ptr().offset(iy * w);
            for (i, sum) in row_sums.iter_mut().enumerate().take(count) {
                let x = x0 + i;
                for kw in 0..K {
                    // Column `x + kw − left`, skipped outside the row.
                    let Some(ix) = (x + kw).checked_sub(left).filter(|&ix| ix < W) else { continue };
                    *sum = X::fma(*sum, *row.add(ix), source.taps[kh * K + kw]);
                }
            }
        }
        for (i, sum) in row_sums.iter().enumerate().take(count) {
            *sums.get_unchecked_mut((y * w) as usize + x0 + i) = X::activate(*sum, source.act);
        }
    }
}
