//! The 1×1 plane kernel: a pointwise (or grouped 1×1) convolution in the channels-first layout,
//! stride 1 and no padding, as a matrix product whose vectors run along the pixels: a tile is `R`
//! output channels × `V` vectors of consecutive pixels, and each input channel adds one vector load
//! per pixel vector and one broadcast weight per output channel (`R·V` multiply-adds). The input
//! and output stay in the user's layout, so a pointwise output layer reading the model's input
//! needs no conversion at either end (the channels-last tile kernels write the internal layout,
//! which a conversion then transposes).
//!
//! Tiles: the pixels of a group run in tiles of `V` vectors (from the first pixel whose input
//! vectors are aligned, with one more tile at pixel 0: [`aligned_start`]), the last one
//! overlapping the one before where the plane is not a multiple (a plane shorter than a tile in
//! single vectors, the last of them masked where the plane is shorter than a vector); within a
//! pixel tile, the group's output channels in blocks of `R`, the last overlapping likewise (one
//! channel at a time in a group of fewer than `R`). An overlapped sum is computed again in the
//! same order, so it is stored twice with the same value. Every sum is the bias (or 0), then one fused multiply-add per input
//! channel in order: the definition ([`super::portable_kernel`]) bit for bit.
//!
//! A 1D layer's statement (single-element planes along a depth axis) goes to [`super::rows`]. A
//! statement the fast path does not cover (padding, an output plane of another size, or a 3D
//! layer's volumes) runs the portable kernel: the lowering never emits one, but any valid statement computes its
//! definition.

#[cfg(target_arch = "x86_64")]
use super::{Avx2, Avx512, Lanes};
use super::{FLAT, Kernel, PlaneArgs, portable_kernel};
use crate::microkernel::Isa;

/// The kernel for `isa`.
pub(super) fn choose(isa: Isa) -> Kernel {
    #[cfg(target_arch = "x86_64")]
    match isa {
        Isa::Avx512 => return avx512_kernel,
        Isa::Avx2 => return avx2_kernel,
        Isa::Portable => {}
    }
    let _ = isa;
    portable_kernel::<1, 1, 1>
}

/// # Safety
/// As for [`portable_kernel`], and the host has AVX-512 F and VL, AVX2 and FMA ([`Isa::host`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe extern "C" fn avx512_kernel(args: *const PlaneArgs) {
    // SAFETY: the caller's contract. 8 channels × 3 vectors: 24 sums, 3 inputs and a weight in
    // the 32 registers. A 1D layer's rows: `rows`.
    unsafe {
        if (*args).depth != FLAT {
            return super::rows::avx512(args);
        }
        planes::<Avx512, 8, 3>(args)
    }
}

/// # Safety
/// As for [`portable_kernel`], and the host has AVX2 and FMA ([`Isa::host`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe extern "C" fn avx2_kernel(args: *const PlaneArgs) {
    // SAFETY: the caller's contract. 6 channels × 2 vectors: 12 sums, 2 inputs and a weight in
    // the 16 registers. (On an AVX-512 EPYC with `CONVGEN_MAX_ISA=avx2`, against 6 × 2: 4 × 3
    // tiles ran 0.48–0.74×, 8 × 1 0.82–0.92×; on AVX-512, 6 × 4 ran 0.93–1.0× of 8 × 3.) A 1D
    // layer's rows: `rows`.
    unsafe {
        if (*args).depth != FLAT {
            return super::rows::avx2(args);
        }
        planes::<Avx2, 6, 2>(args)
    }
}

/// Every output plane of `args` in tiles of `R` channels × `V` vectors (the module's order).
///
/// # Safety
/// As for [`portable_kernel`], and the host runs `X`'s instructions.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn planes<X: Lanes, const R: usize, const V: usize>(args: *const PlaneArgs) {
    // SAFETY: the caller's contract.
    let args = unsafe { &*args };
    if args.padding != [0, 0] || args.input_size != args.output_size || args.depth != FLAT {
        // SAFETY: the caller's contract.
        return unsafe { portable_kernel::<1, 1, 1>(args) };
    }
    let plane = args.output_size[0] * args.output_size[1];
    let (inputs, outputs) = (args.group_inputs, args.group_outputs);
    if plane <= 0 || inputs <= 0 || outputs <= 0 {
        return;
    }
    let tile = V as isize * X::L;
    for group in 0..super::div_ceil(args.planes, outputs) {
        let first = group * outputs;
        let channels = outputs.min(args.planes - first);
        let at = Group {
            input: args.input.wrapping_offset(group * inputs * plane),
            inputs,
            plane,
            weight: args.weight.wrapping_offset(first * inputs),
            bias: if args.bias.is_null() { args.bias } else { args.bias.wrapping_offset(first) },
            output: args.output.wrapping_offset(first * plane),
            channels,
            act: args.act,
        };
        // SAFETY: every tile below lies inside the group's planes (pixels `0..plane`, channels
        // `0..channels`), which the caller's contract puts inside the buffers.
        unsafe {
            if plane >= tile {
                let skew = aligned_start::<X>(args.input, plane, tile);
                let first = (skew > 0).then_some(0);
                for pixel in first.into_iter().chain(pixel_starts(plane - skew, tile).map(|pixel| skew + pixel)) {
                    at.channels::<X, R, V, false>(pixel, X::mask(0, X::L));
                }
            } else if plane >= X::L {
                for pixel in pixel_starts(plane, X::L) {
                    at.channels::<X, R, 1, false>(pixel, X::mask(0, X::L));
                }
            } else {
                at.channels::<X, R, 1, true>(0, X::mask(0, plane));
            }
        }
    }
}

/// The first pixel from which the tiles' input vectors start at a multiple of a vector's size
/// (a cache line on AVX-512), where every input plane starts at the same offset from one (planes of
/// a multiple of `L` elements) and a tile of `tile` pixels still fits after it; else 0. A user's
/// buffer need not be so aligned (a `Vec<f32>` of a large image is 16 bytes past a page), and
/// then every load of the input would straddle two lines: the tiles run from that pixel instead,
/// with one more tile at pixel 0 overlapping the first (its sums computed again, in the same
/// order). A 64 → 64 pointwise layer at 56 × 56 (a harness calling `conv_jit::plane` on
/// buffers at chosen offsets, AVX-512 Xeon): 170 GFLOP/s from an aligned input, 156 from one 16
/// bytes past a line.
#[cfg(target_arch = "x86_64")]
fn aligned_start<X: Lanes>(input: *const f32, plane: isize, tile: isize) -> isize {
    let elements = input as usize / std::mem::size_of::<f32>();
    let skew = ((X::L as usize - elements % X::L as usize) % X::L as usize) as isize;
    let aligned = (input as usize).is_multiple_of(std::mem::size_of::<f32>()) && plane % X::L == 0;
    if aligned && plane - skew >= tile { skew } else { 0 }
}

/// Input channels per step of a tile's loop (each channel's weights then at a constant offset from
/// the step's). Against one per step, two ran 1.05× on pw_64to64_56, 1.14× on pw_32to16_112,
/// 1.06× on pw_144to24_56 and 1.03× on sep_c64_56 (AVX-512 Xeon, old and new builds alternating,
/// 8 pairs; with `CONVGEN_MAX_ISA=avx2` 1.00–1.04×); four ran 0.97× (LLVM splatted all 32 weights
/// of a step first and spilled them).
const UNROLL: usize = 2;

/// The first positions of runs of `run` in `0..len` (`len ≥ run`): every multiple of `run` that
/// starts a whole run, then `len − run` if the runs do not end at `len` (overlapping the last).
fn pixel_starts(len: isize, run: isize) -> impl Iterator<Item = isize> {
    let whole = len / run;
    let last = (len % run != 0).then_some(len - run);
    (0..whole).map(move |index| index * run).chain(last)
}

/// One group's planes: where it reads and writes.
#[derive(Clone, Copy)]
struct Group {
    /// The group's first input plane.
    input: *const f32,
    /// Input planes (channels) of the group, `plane` elements apart.
    inputs: isize,
    /// Elements per plane (H·W, the same for input and output).
    plane: isize,
    /// The group's first output channel's weights (`inputs` consecutive weights per channel).
    weight: *const f32,
    /// The group's first output channel's initial sum; null: 0.
    bias: *const f32,
    /// The group's first output plane.
    output: *mut f32,
    /// Output channels of the group.
    channels: isize,
    /// The `ACT_*` code.
    act: isize,
}

impl Group {
    /// The tiles of `V` vectors from `pixel` for every output channel: blocks of `R`, the last
    /// overlapping the one before (single channels where the group has fewer than `R`). `MASK`:
    /// the last vector's lanes are those of `mask`.
    ///
    /// # Safety
    /// The pixels (those of `mask` in the last vector where `MASK`) lie inside the planes; the host
    /// runs `X`'s instructions.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn channels<X: Lanes, const R: usize, const V: usize, const MASK: bool>(&self, pixel: isize, mask: X::M) {
        // SAFETY: the caller's contract; every channel is below `self.channels`.
        unsafe {
            if self.channels >= R as isize {
                for channel in pixel_starts(self.channels, R as isize) {
                    self.tile::<X, R, V, MASK>(channel, pixel, mask);
                }
            } else {
                for channel in 0..self.channels {
                    self.tile::<X, 1, V, MASK>(channel, pixel, mask);
                }
            }
        }
    }

    /// Output channels `channel..channel + R` × `V` vectors from `pixel`: each sum starts at its
    /// bias (or 0) and takes one fused multiply-add per input channel, in order; then the
    /// activation and the store.
    ///
    /// # Safety
    /// As for [`Group::channels`], and the channels lie inside the group.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn tile<X: Lanes, const R: usize, const V: usize, const MASK: bool>(
        &self,
        channel: isize,
        pixel: isize,
        mask: X::M,
    ) {
        // SAFETY: the caller's contract: every pointer below is inside the group's planes or its
        // weights and biases.
        unsafe {
            let mut sums = [[X::splat(0.0); V]; R];
            if !self.bias.is_null() {
                for (row, sums) in sums.iter_mut().enumerate() {
                    *sums = [X::splat(*self.bias.offset(channel + row as isize)); V];
                }
            }
            let weight = self.weight.offset(channel * self.inputs);
            let mut input = self.input.offset(pixel);
            // Input channels `UNROLL` at a time, then the rest one at a time: the `R` weight rows'
            // addresses are made once per step, each channel's weights at constant offsets.
            let steps = self.inputs / UNROLL as isize;
            let mut k = 0;
            for _ in 0..steps {
                for next in 0..UNROLL {
                    self.add_input::<X, R, V, MASK>(&mut sums, input, weight.offset(k + next as isize), mask);
                    // (Past the last channel it points outside the planes, unread.)
                    input = input.wrapping_offset(self.plane);
                }
                k += UNROLL as isize;
            }
            while k < self.inputs {
                self.add_input::<X, R, V, MASK>(&mut sums, input, weight.offset(k), mask);
                input = input.wrapping_offset(self.plane);
                k += 1;
            }
            let output = self.output.offset(channel * self.plane + pixel);
            for (row, sums) in sums.iter().enumerate() {
                for (vector, &sum) in sums.iter().enumerate() {
                    let at = output.offset(row as isize * self.plane + vector as isize * X::L);
                    let sum = X::activate(sum, self.act);
                    if MASK && vector == V - 1 { X::store_masked(at, sum, mask) } else { X::store(at, sum) }
                }
            }
        }
    }

    /// One input channel's terms: its `V` vectors from `input`, and its weight for each of the
    /// tile's `R` output channels from `weight`, `inputs` apart.
    ///
    /// # Safety
    /// As for [`Group::tile`].
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    unsafe fn add_input<X: Lanes, const R: usize, const V: usize, const MASK: bool>(
        &self,
        sums: &mut [[X::V; V]; R],
        input: *const f32,
        weight: *const f32,
        mask: X::M,
    ) {
        // SAFETY: the caller's contract. (Loops, not closures: a closure is not compiled with
        // the caller's features.)
        unsafe {
            let mut x = [X::splat(0.0); V];
            for (vector, x) in x.iter_mut().enumerate() {
                let at = input.offset(vector as isize * X::L);
                *x = if MASK && vector == V - 1 { X::load_masked(at, mask) } else { X::load(at) };
            }
            for (row, sums) in sums.iter_mut().enumerate() {
                let w = X::splat(*weight.offset(row as isize * self.inputs));
                for (sum, &x) in sums.iter_mut().zip(&x) {
                    *sum = X::fma(*sum, x, w);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::pixel_starts;

    /// Runs cover the range, start inside it, and overlap only at the end.
    #[test]
    fn pixel_runs_cover_the_plane() {
        assert_eq!(pixel_starts(48, 16).collect::<Vec<_>>(), [0, 16, 32]);
        assert_eq!(pixel_starts(50, 16).collect::<Vec<_>>(), [0, 16, 32, 34]);
        assert_eq!(pixel_starts(16, 16).collect::<Vec<_>>(), [0]);
        assert_eq!(pixel_starts(17, 16).collect::<Vec<_>>(), [0, 1]);
    }
}
