//! Small planes as flat runs of vectors, on AVX-512: a stride-1 window over a plane whose rows
//! are at most half a vector (8), with an output plane the size of the input (padding that keeps
//! the size). Depthwise 3 × 3 and 5 × 5 windows over 16 planes or more of at most 64 positions
//! take [`super::transposed`] instead (a plane per lane: 1.3–2.0× as fast on 4 × 4 to 7 × 7).
//!
//! The row kernels ([`super::planes`]) put one row in a vector: a row of 7 fills 7 lanes of 16,
//! all of them border. Here the plane is one run of `H·W` elements and each vector takes the next
//! 16 of them, across rows: with the output the input's size, output position `o` reads input
//! position `o + (kh·D − top)·W + (kw·D − left)` at tap `(kh, kw)`, the same shift for every lane.
//! Which lanes read inside the plane (their row and their column inside it, and their output
//! position inside the plane) is a mask per vector and tap, computed once per call; a tap adds
//! a masked multiply-add (one instruction), its mask shared by [`PLANES`] planes. The sums are
//! those of the row kernels bit for bit: every input plane of the group in order, then the taps
//! in order, those outside skipped (a masked-off lane keeps its sum).
//!
//! The input vectors are not all loaded per tap: per tap row `kh`, a chunk of `C` output vectors
//! loads `C + 1` *row loads* (input vectors at the shift of tap `(kh, 0)`, masked to the plane),
//! and tap `(kh, kw)` takes lanes `kw·D..kw·D + 16` of two neighbouring ones — a permute of
//! registers (`valignd` where the compiler sees the shift) instead of an unaligned 64-byte load,
//! most of which straddle two cache lines. dw3_s1_c960_7 ran at ~2.4 cycles per 16-lane
//! multiply-add with a load per tap and ~2 this way, 1.18× (`convgen bench`, the two builds
//! alternating, 6 and 10 pairs, medians and minimums alike; AMD EPYC Zen 4): the shuffles take the
//! vector unit the multiply-adds need. 576 planes of 8 × 8 ran 1.1–1.2×, 1024 of 4 × 4 1.25×,
//! dilation 2 on 7 × 7 1.18×, a 5 × 5 window on 7 × 7 1.03×. Nor were 2 or 4 planes at a time with
//! a load per tap, or 8-lane vectors, faster there. Every second tap column after the first
//! ([`loaded`]: 2 of a 3 × 3 window, 2 and 4 of a 5 × 5 one) loads its inputs instead, masked to
//! the lanes it adds: on the Zen 4 loading the right half of the window's columns was no faster,
//! but an Intel Xeon (Emerald Rapids) runs its 512-bit shuffles on one of its two multiply-add
//! ports, and there (the build before and this one alternating, 8 and 10 pairs) dw3_s1_c960_7 ran
//! 1.02–1.03× as fast (minimums 1.00–1.07×), a 5 × 5 window on 480 planes of 7 × 7 1.06–1.10×
//! (1.09–1.17×), 576 planes of 8 × 8 0.97–1.01× (1.02–1.06×); every tap column after the first
//! loaded, 0.82–0.92× of that.

use conv_dsl::ir::{PLANE_FLAT_MAX_POSITIONS, PLANE_FLAT_MAX_ROW};

use std::arch::x86_64::{
    __m512, __m512i, _mm512_add_epi32, _mm512_permutex2var_ps, _mm512_set1_epi32, _mm512_setr_epi32,
};

use super::{Avx512, Lanes, PlaneArgs, div_ceil};

/// The most vectors a flat plane may take ([`PLANE_FLAT_MAX_POSITIONS`]): the masks of its
/// vectors and taps are a table on the stack.
const MAX_VECTORS: usize = PLANE_FLAT_MAX_POSITIONS as usize / Avx512::L as usize;
const _: () = assert!(2 * PLANE_FLAT_MAX_ROW <= Avx512::L as u64, "a flat plane's row is at most half a vector");

/// The most taps a window has (5 × 5: [`super::MAX_WINDOW`]).
const MAX_TAPS: usize = super::MAX_WINDOW * super::MAX_WINDOW;

/// Vectors computed together ([`planes`]'s `C`) where the plane has that many, else all of its
/// vectors ([`chunk`]): their sums are independent multiply-add chains in flight at once. A plane
/// of 2 or 3 vectors took them one at a time before; all at once, on an Intel Xeon (Emerald
/// Rapids; the build before and this one alternating, 8–10 pairs, medians): 960 planes of 6 × 6
/// ran 1.08–1.09× as fast, 960 of 5 × 5 1.05–1.14×, 576 of 6 × 6 (relu6) 1.08×, a 5 × 5 window on
/// 480 planes of 6 × 6 1.64×; dw3_s1_c960_7 (4 vectors) 1.00×.
pub(super) const CHUNK: usize = 4;

/// Planes computed together ([`planes`]'s `P`) where there are that many: more independent sums,
/// and each mask taken by every plane. Their row loads and sums take 18 of the 32 vector
/// registers; 4 planes (16 sums, 20 row loads) spilled them, 3 ran 0.78–0.87× of 2.
pub(super) const PLANES: usize = 2;

/// Whether tap column `kw` loads its inputs (masked to the lanes it adds) rather than permuting
/// them out of the row loads: every second one after the first.
const fn loaded(kw: usize) -> bool {
    kw > 0 && kw.is_multiple_of(2)
}

/// Whether `args` is a flat plane at stride `stride`: stride 1, the output plane the input's
/// size, rows of at most [`PLANE_FLAT_MAX_ROW`], at most [`PLANE_FLAT_MAX_POSITIONS`] positions
/// (the lowering chooses the plane kernel for such planes by the same bounds).
pub(super) fn applies(args: &PlaneArgs, stride: usize) -> bool {
    let ([h, w], [oh, ow]) = (args.input_size, args.output_size);
    let (max_row, max_positions) = (PLANE_FLAT_MAX_ROW as isize, PLANE_FLAT_MAX_POSITIONS as isize);
    stride == 1 && [oh, ow] == [h, w] && h > 0 && w > 0 && w <= max_row && h * w <= max_positions
}

/// The vectors of a flat plane ([`applies`]) computed together: [`CHUNK`], or all of them where
/// it has fewer.
pub(super) fn chunk(args: &PlaneArgs) -> usize {
    (vectors(args.input_size[0] * args.input_size[1]) as usize).clamp(1, CHUNK)
}

/// Vectors in a run of `n` elements.
fn vectors(n: isize) -> isize {
    div_ceil(n, Avx512::L)
}

/// Every plane of `args` ([`applies`]), `P` planes × `C` vectors at a time (the last ones
/// overlapping those before where `P` does not divide the planes or `C` the vectors; `P` and `C`
/// at most as many as there are).
///
/// # Safety
/// As for [`super::portable_kernel`], with [`applies`] true, and the host runs AVX-512 F.
#[inline(always)]
pub(super) unsafe fn planes<const K: usize, const D: usize, const C: usize, const P: usize>(args: &PlaneArgs) {
    type X = Avx512;
    const { assert!(K <= super::MAX_WINDOW && (K - 1) * D < Avx512::L as usize && C <= CHUNK) };
    let ([h, w], [top, left]) = (args.input_size, args.padding);
    let (k, d, l, c, q) = (K as isize, D as isize, X::L, C as isize, P as isize);
    let n = h * w;
    let count = vectors(n);
    debug_assert!(applies(args, 1) && count >= c && args.planes >= q);
    // masks[v·K·K + kh·K + kw]: the lanes of vector `v` that are output positions and whose input
    // at tap (kh, kw) lies inside the plane, as bits.
    let mut masks = [0u16; MAX_VECTORS * MAX_TAPS];
    for v in 0..count {
        let base = v * l;
        // Per tap column, the lanes whose input column lies inside the row.
        let mut columns = [0u16; super::MAX_WINDOW];
        let mut column = base % w;
        for lane in 0..l {
            for (kw, bits) in columns.iter_mut().enumerate().take(K) {
                *bits |= u16::from((0..w).contains(&(column + kw as isize * d - left))) << lane;
            }
            column = if column + 1 == w { 0 } else { column + 1 };
        }
        for kh in 0..k {
            // The output positions whose input row at tap row `kh` lies inside the plane (and
            // that are in the plane): a range of them.
            let lo = ((top - kh * d) * w).max(0);
            let hi = ((top - kh * d + h) * w).min(n);
            let rows = super::bits(lo - base, hi - base, l) as u16;
            for (kw, &columns) in columns.iter().enumerate().take(K) {
                masks[(v * k + kh) as usize * K + kw] = rows & columns;
            }
        }
    }
    // loads_inside[u·K + kh]: the lanes of row load `u` of tap row `kh` — the input vector at plane
    // position `u·L + (kh·D − top)·W − left` — that lie inside the plane, as bits.
    let mut loads_inside = [0u16; (MAX_VECTORS + 1) * super::MAX_WINDOW];
    for u in 0..=count {
        for kh in 0..k {
            let at = u * l + (kh * d - top) * w - left;
            loads_inside[(u * k + kh) as usize] = super::bits(-at, n - at, l) as u16;
        }
    }
    // shifts[kw]: the lanes tap column `kw` takes from two neighbouring row loads, `kw·D..kw·D + 16`
    // (a permute of two vectors by an index vector: one `valignd` where the compiler sees the
    // shift, yet no jump over the possible shifts where it does not unroll the window).
    // SAFETY: the caller runs AVX-512 F.
    let shifts: [__m512i; K] = std::array::from_fn(|kw| unsafe {
        let kw = (kw * D) as i32;
        _mm512_add_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(kw))
    });
    // SAFETY: the caller's contract; the pointers formed with `wrapping_offset` are dereferenced
    // only through the lanes of their masks, which lie inside an input plane of the group (the
    // row loads, and the loaded tap columns' inputs under their taps' masks) or are output
    // positions (output).
    unsafe {
        let mut next_plane = 0;
        while next_plane < args.planes {
            let first_plane = next_plane.min(args.planes - q);
            let planes: [isize; P] = std::array::from_fn(|j| first_plane + j as isize);
            let inputs = planes.map(|p| args.input.offset(args.group(p) * args.group_inputs * n));
            let weights = planes.map(|p| args.weight.offset(p * args.group_inputs * k * k));
            let biases = planes.map(|p| X::splat(if args.bias.is_null() { 0.0 } else { *args.bias.offset(p) }));
            let mut next = 0;
            while next < count {
                let first = next.min(count - c);
                let mut sums = biases.map(|bias| [bias; C]);
                for g in 0..args.group_inputs {
                    for kh in 0..K {
                        // Row load `m` of each plane: the input vector at plane position
                        // `(first + m)·L + (kh·D − top)·W − left`, which tap `(kh, kw)` of output
                        // vector `first + i` reads shifted from row loads `i`, `i + 1` by `kw·D`
                        // lanes.
                        let start = first * l + (kh as isize * d - top) * w - left;
                        // Each plane's input at `start`: its row loads' first, and the loaded tap
                        // columns' inputs from there.
                        let rows = inputs.map(|input| input.wrapping_offset(g * n + start));
                        let loads: [[__m512; CHUNK + 1]; P] = std::array::from_fn(|j| {
                            let input = rows[j];
                            std::array::from_fn(|m| {
                                if m > C {
                                    return X::splat(0.0);
                                }
                                let inside = *loads_inside.get_unchecked((first as usize + m) * K + kh);
                                X::load_masked(input.wrapping_offset(m as isize * l), inside)
                            })
                        });
                        for (kw, &shift) in shifts.iter().enumerate() {
                            let taps = weights.map(|weight| X::splat(*weight.offset(g * k * k).add(kh * K + kw)));
                            for i in 0..C {
                                let mask = *masks.get_unchecked((first as usize + i) * K * K + kh * K + kw);
                                for (j, ((sums, loads), &tap)) in sums.iter_mut().zip(&loads).zip(&taps).enumerate() {
                                    let x = if loaded(kw) {
                                        let at = i as isize * l + (kw * D) as isize;
                                        X::load_masked(rows[j].wrapping_offset(at), mask)
                                    } else {
                                        _mm512_permutex2var_ps(loads[i], shift, loads[i + 1])
                                    };
                                    sums[i] = X::fma_masked(sums[i], x, tap, mask);
                                }
                            }
                        }
                    }
                }
                for (j, sums) in sums.iter().enumerate() {
                    let output = args.output.offset(planes[j] * n);
                    for (i, sum) in sums.iter().enumerate() {
                        let v = first + i as isize;
                        let to = output.offset(v * l);
                        let y = X::activate(*sum, args.act);
                        if (v + 1) * l <= n { X::store(to, y) } else { X::store_masked(to, y, X::mask(0, n - v * l)) }
                    }
                }
                next += c;
            }
            next_plane += q;
        }
    }
}
