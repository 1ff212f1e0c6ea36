//! Depthwise planes of longer rows a vector's lanes at a time, transposed a row at a time: the
//! kernel of [`super::transposed`] (a plane per lane, each tap one unmasked multiply-add of a
//! whole vector) for rows of 15 to
//! [`PLANE_TRANSPOSED_BANDED_MOST`](conv_dsl::ir::PLANE_TRANSPOSED_BANDED_MOST) (on AVX2) in
//! planes of any height, and of 10 to 14 (12 to 14 under a 5 × 5 window) in planes of more than
//! 14 rows (on AVX-512 hosts too, to rows of 13: AVX-512's 16 lanes would need rows of 16).
//! [`super::transposed`] transposes whole planes into tables on the stack,
//! which past 14 × 14 outgrow the L1 cache (two tables of 24.5 KiB at 28 × 28 on AVX2); here an
//! input row is transposed when the first output row that reads it is computed and kept in a ring
//! of the window's `K` rows, and each output row's sums are transposed back as soon as they are
//! complete: a few KiB, whatever the plane's size.
//!
//! A row's sums go in runs of `C` in registers (the window's taps beside them): the first run with
//! the left border's taps skipped, the last the row's last `C` (overlapping the one before where
//! `C` does not divide the row: those sums computed again, in the same order) with the right
//! border's skipped, and those between without a test — which taps are skipped is known when the
//! code is compiled, though the row's length is not. The blocks of `L` positions a row is
//! transposed in are the same: the last one the row's last `L`. Each sum is the bias, then the
//! taps in order, those outside the plane skipped: [`super::portable_kernel`] bit for bit.
//!
//! Measured on an Intel Xeon (Emerald Rapids) with `CONVGEN_MAX_ISA=avx2`, the build before and
//! this one alternating (`convgen bench MODEL --runs 300`, 4 pairs, medians of the pair ratios, 512
//! planes of each size): under a 3 × 3 window, against the planar code of 4 lanes that took them,
//! 1.74× at 16 × 16, 1.58× at 20 × 20, 1.22× at 24 × 24, 1.49× at 28 × 28, 1.25× at 32 × 32; under
//! a 5 × 5 one, against the row kernel, 2.50×, 2.41×, 1.68× and 1.64× (16, 20, 24 and 32), and at
//! 28 × 28 1.29× [`super::transposed`]'s whole planes. With AVX-512's 16 lanes (rows of 16 to 32,
//! against its stream and row kernels, 3 pairs) it ran 0.56–0.82× under a 3 × 3 window and
//! 0.86–0.98× under a 5 × 5 one with runs of 7 sums, 0.48–0.80× with runs of 14: those kernels keep
//! these rows there.

use super::transposed::{Transposing, load_transposed, window_taps};
use super::{Lanes, PlaneArgs, div_ceil};

/// Every plane of `args` ([`super::transposed::applies`] true for `X`, a `K × K` window, rows of at
/// most `MAXW`), `L` at a time (the last `L` overlapping those before where `L` does not
/// divide the planes), an output row's sums `C` at a time.
///
/// # Safety
/// As for [`super::portable_kernel`], with [`super::transposed::applies`] true for `X` and `K`,
/// rows of at least `L` and `C + K` and at most `MAXW`, and the host runs `X`.
#[inline(always)]
pub(super) unsafe fn planes<X: Transposing<L>, const L: usize, const K: usize, const C: usize, const MAXW: usize>(
    args: &PlaneArgs,
) {
    const { assert!(K == 3 || K == 5) };
    const { assert!(C >= 1 && C + K <= MAXW && L <= MAXW) };
    let (h, w, top) = (args.input_size[0], args.input_size[1], args.padding[0]);
    let (n, lanes) = (h * w, X::L);
    debug_assert!(super::transposed::applies::<X>(args, K, 1, 1) && lanes == L as isize);
    debug_assert!(w >= lanes && w >= (C + K) as isize && w <= MAXW as isize);
    // The first column of each block of `L` positions of a row: every `L`-th, the last the row's
    // last `L`.
    let blocks = div_ceil(w, lanes);
    let block_at = |b: isize| (b * lanes).min(w - lanes);
    // SAFETY: the caller's contract; every load and store below is of positions `0..n` of planes
    // `first..first + L` (a row `y`'s `w` positions from `y·w`), inside the input and output
    // planes, and of the weights and biases of those planes; every ring row and sum read is one of
    // the `w ≤ MAXW` written for that row.
    unsafe {
        // ring[iy mod K]: input row `iy` of the `L` planes, transposed (position `x` a vector);
        // sums: the output row's.
        let mut ring = [[X::splat(0.0); MAXW]; K];
        let mut sums = [X::splat(0.0); MAXW];
        let mut next = 0;
        while next < args.planes {
            let first = next.min(args.planes - lanes);
            let (input, output) = (args.input.offset(first * n), args.output.offset(first * n));
            let taps = window_taps::<X, L, K>(args.weight.offset(first * (K * K) as isize));
            let bias = if args.bias.is_null() { X::splat(0.0) } else { X::load(args.bias.offset(first)) };
            let mut transposed = 0;
            for y in 0..h {
                // The input rows output row `y` reads, up to the plane's last.
                let last = (y + K as isize - 1 - top).min(h - 1);
                while transposed <= last {
                    let row = &mut ring[(transposed % K as isize) as usize];
                    for b in 0..blocks {
                        let at = block_at(b);
                        let vectors = load_transposed::<X, L>(input.offset(transposed * w + at), n, lanes);
                        row.get_unchecked_mut(at as usize..at as usize + L).copy_from_slice(&vectors);
                    }
                    transposed += 1;
                }
                let rows: [*const X::V; K] = std::array::from_fn(|kh| {
                    let iy = y + kh as isize - top;
                    if (0..h).contains(&iy) { ring[(iy % K as isize) as usize].as_ptr() } else { std::ptr::null() }
                });
                let source = Source { rows: &rows, taps: &taps, bias, act: args.act };
                let out = sums.as_mut_ptr();
                run::<X, K, C, LEFT>(&source, out, 0);
                // The runs between: from the `C`-th output, the last ending where the right one
                // starts or after (without reaching the right border).
                let (c, reach) = (C as isize, (K / 2) as isize);
                let mut x0 = c;
                while x0 < w - c {
                    run::<X, K, C, INSIDE>(&source, out, x0.min(w - c - reach) as usize);
                    x0 += c;
                }
                run::<X, K, C, RIGHT>(&source, out, (w - c) as usize);
                for b in 0..blocks {
                    let at = block_at(b);
                    let mut vectors: [X::V; L] = std::array::from_fn(|i| *sums.get_unchecked(at as usize + i));
                    X::transpose(&mut vectors);
                    for (p, vector) in vectors.iter().enumerate() {
                        X::store(output.offset(p as isize * n + y * w + at), *vector);
                    }
                }
            }
            next += lanes;
        }
    }
}

/// What [`run`] reads: the window's `K` input rows of the `L` planes transposed (null where a row
/// is outside the plane), their windows' taps (`taps[t]` tap `t`), their bias and the activation.
struct Source<'a, V, const K: usize> {
    rows: &'a [*const V; K],
    taps: &'a [V; 32],
    bias: V,
    act: isize,
}

/// A run of the row's first `C` outputs: taps left of the row skipped.
const LEFT: u8 = 0;
/// A run whose taps all lie inside the row.
const INSIDE: u8 = 1;
/// A run of the row's last `C` outputs: taps right of the row skipped.
const RIGHT: u8 = 2;

/// Output sums `x0..x0 + C` of a row (in registers) of the `L` planes, each the bias and then the
/// taps in order, those outside the plane skipped (rows by `source.rows`, columns by `EDGE`);
/// activated into `out`.
///
/// # Safety
/// The host runs `X`; every row of `source.rows` that is not null holds the row's transposed
/// positions, `out` its sums; `x0` is 0 for [`LEFT`], the row's length less `C` for [`RIGHT`], and
/// for [`INSIDE`] at least the window's left reach with `x0 + C` at most the row's length less its
/// right reach.
#[inline(always)]
unsafe fn run<X: Lanes, const K: usize, const C: usize, const EDGE: u8>(
    source: &Source<X::V, K>,
    out: *mut X::V,
    x0: usize,
) {
    let left = (K - 1) / 2;
    // SAFETY: the caller's contract: every column read (`x0 + i + kw − left`) is one of the row's.
    unsafe {
        let mut sums = [source.bias; C];
        for kh in 0..K {
            let row = source.rows[kh];
            if row.is_null() {
                continue;
            }
            for (i, sum) in sums.iter_mut().enumerate() {
                for kw in 0..K {
                    // Column `x0 + i + kw − left`, skipped past either end of the row.
                    let inside = match EDGE {
                        LEFT => i + kw >= left,
                        RIGHT => i + kw < C + left,
                        _ => true,
                    };
                    if inside {
                        *sum = X::fma(*sum, *row.add(x0 + i + kw - left), source.taps[kh * K + kw]);
                    }
                }
            }
        }
        for (i, sum) in sums.iter().enumerate() {
            *out.add(x0 + i) = X::activate(*sum, source.act);
        }
    }
}
