//! The tile microkernels: what generated code calls for `Stmt::Tile` (a dense convolution's
//! register tile of pixels × vectors of 8 output channels).
//!
//! Cranelift 0.135's x86-64 backend lowers vectors of 128 bits at most, which caps code it
//! generates at half of an AVX2 core's FMA throughput (~50 of ~99 GFLOP/s measured on the
//! development machine). So the innermost part of a dense convolution — the multiply-adds of one
//! register tile over all input channels and taps — is this Rust function, compiled for AVX2 + FMA
//! with 256-bit accumulators in registers, while the JIT still generates everything around it: the
//! loop nest over the exact shape, the border split, the bias, and the fused epilogue.
//!
//! One kernel per tile kind (dense, depthwise) and shape (`P` pixels × `V` vectors, const generics, so the tile is unrolled
//! and its accumulators are registers), registered with the JIT module under [`symbol`]. The
//! AVX2 version is registered when the host has AVX2 and FMA, the portable one (the same sums
//! with `f32::mul_add`) otherwise; both are bit-identical to the IR interpreter.
//!
//! # Safety
//!
//! The kernels read and write through raw pointers: this module is the second place of
//! `conv-jit` with `unsafe` code. Generated code is their only caller, and `codegen::check` has
//! proved, before the code existed, that every element a tile touches lies inside its buffer
//! ([`conv_dsl::ir::Tile::extents`], and the bias's `V·8` elements), that the accumulator buffer is written by nothing else
//! during the call, and that the arguments match [`TileArgs`].

#![allow(unsafe_code)]

use conv_dsl::ir::TILE_LANES;

/// The arguments of a tile kernel, as generated code lays them out on its stack: pointers and
/// counts are 8 bytes each, in this order (`codegen` stores field `i` at byte `8·i`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct TileArgs {
    /// Pixel 0's input element for k = 0 at the first tap.
    pub input: *const f32,
    /// Vector 0's first weight for k = 0 at the first tap.
    pub weight: *const f32,
    /// The `V·8` initial sums of every pixel; null: 0.
    pub bias: *const f32,
    /// Where the `P·V·8` sums go.
    pub acc: *mut f32,
    /// Input elements between pixels.
    pub pixel_stride: isize,
    /// Tiles of the strip, one after the other.
    pub repeat: isize,
    /// Input elements between tiles of the strip (their sums are `P·V·8` elements apart).
    pub repeat_input_stride: isize,
    /// Weight elements between tiles of the strip.
    pub repeat_weight_stride: isize,
    /// Bias elements between tiles of the strip.
    pub repeat_bias_stride: isize,
    /// Input channels summed over.
    pub reduce: isize,
    /// Input elements between input channels.
    pub reduce_input_stride: isize,
    /// Weight elements between input channels.
    pub reduce_weight_stride: isize,
    /// Taps per axis (d, h, w).
    pub taps: [isize; 3],
    /// Input elements between taps, per axis.
    pub tap_input_strides: [isize; 3],
    /// Weight elements between taps, per axis.
    pub tap_weight_strides: [isize; 3],
}

impl TileArgs {
    /// The arguments of tile `r` of the strip, whose sums are `sums` elements each.
    ///
    /// # Safety
    /// `r` is below `repeat`, and the strip's arguments satisfy the kernels' contract.
    unsafe fn tile(&self, r: isize, sums: usize) -> TileArgs {
        // SAFETY: the pointers stay inside the strip's buffers (the caller's contract).
        unsafe {
            TileArgs {
                input: self.input.offset(r * self.repeat_input_stride),
                weight: self.weight.offset(r * self.repeat_weight_stride),
                bias: if self.bias.is_null() { self.bias } else { self.bias.offset(r * self.repeat_bias_stride) },
                acc: self.acc.add(r as usize * sums),
                ..*self
            }
        }
    }
}

/// How many 8-byte words [`TileArgs`] holds.
pub(crate) const TILE_ARGS_WORDS: u32 = 21;
const _: () = assert!(std::mem::size_of::<TileArgs>() == TILE_ARGS_WORDS as usize * 8);

/// The symbol under which the kernel for `pixels × vectors` tiles is registered.
pub(crate) fn symbol(depthwise: bool, pixels: u32, vectors: u32) -> String {
    let kind = if depthwise { "dw_" } else { "" };
    format!("convgen_tile_{kind}{pixels}x{vectors}")
}

/// A kernel's entry point.
pub(crate) type Kernel = unsafe extern "C" fn(*const TileArgs);

/// Every tile kind's and shape's kernel for this host: `(depthwise, pixels, vectors, kernel)`. The
/// AVX2 + FMA versions where the host has both (`avx2` true), else the portable ones.
pub(crate) fn kernels(avx2: bool) -> Vec<(bool, u32, u32, Kernel)> {
    let mut kernels = Vec::new();
    macro_rules! shapes {
        ($(($p:literal, $($v:literal),*)),*) => {
            $($(
                kernels.push((false, $p, $v, choose::<$p, $v, false>(avx2)));
                kernels.push((true, $p, $v, choose::<$p, $v, true>(avx2)));
            )*)*
        };
    }
    shapes!((1, 1, 2, 3, 4), (2, 1, 2, 3, 4), (3, 1, 2, 3, 4), (4, 1, 2, 3), (5, 1, 2), (6, 1, 2));
    debug_assert!(kernels.iter().all(|&(_, p, v, _)| conv_dsl::ir::tile_shape_exists(p, v)));
    kernels
}

/// Whether the host runs the AVX2 + FMA kernels.
pub(crate) fn host_has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

fn choose<const P: usize, const V: usize, const DEPTHWISE: bool>(avx2: bool) -> Kernel {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        return avx2_kernel::<P, V, DEPTHWISE>;
    }
    let _ = avx2;
    portable_kernel::<P, V, DEPTHWISE>
}

const LANES: usize = TILE_LANES as usize;

/// How often generated code called a portable kernel (tests check that the path runs).
#[cfg(test)]
pub(crate) static PORTABLE_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The portable kernel: the same sums in the same order, lane by lane, with `f32::mul_add`.
///
/// # Safety
/// `args` points to a [`TileArgs`] whose pointers and strides address only elements inside live
/// buffers (the module's safety section), and nothing else accesses the accumulators meanwhile.
unsafe extern "C" fn portable_kernel<const P: usize, const V: usize, const DEPTHWISE: bool>(args: *const TileArgs) {
    #[cfg(test)]
    PORTABLE_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: the caller's contract (see the function's safety section).
    unsafe {
        let strip = &*args;
        for r in 0..strip.repeat {
            let args = &strip.tile(r, P * V * LANES);
            let mut sums = [[[0.0f32; LANES]; V]; P];
            if !args.bias.is_null() {
                for vectors in &mut sums {
                    for (vector, sum) in vectors.iter_mut().enumerate() {
                        for (lane, value) in sum.iter_mut().enumerate() {
                            *value = *args.bias.add(vector * LANES + lane);
                        }
                    }
                }
            }
            for_each_step(args, |input, weight| {
                for (pixel, vectors) in sums.iter_mut().enumerate() {
                    let input = input.offset(pixel as isize * args.pixel_stride);
                    for (vector, sum) in vectors.iter_mut().enumerate() {
                        for (lane, value) in sum.iter_mut().enumerate() {
                            let x = if DEPTHWISE { *input.add(vector * LANES + lane) } else { *input };
                            *value = x.mul_add(*weight.add(vector * LANES + lane), *value);
                        }
                    }
                }
            });
            for (pixel, vectors) in sums.iter().enumerate() {
                for (vector, sum) in vectors.iter().enumerate() {
                    for (lane, value) in sum.iter().enumerate() {
                        *args.acc.add((pixel * V + vector) * LANES + lane) = *value;
                    }
                }
            }
        }
    }
}

/// Calls `step(input, weight)` with the pointers of every (k, tap) in the sums' order: input
/// channels, then taps (d, h, w).
///
/// # Safety
/// As for the kernels: the pointers it forms address elements inside the buffers.
#[inline(always)]
unsafe fn for_each_step(args: &TileArgs, mut step: impl FnMut(*const f32, *const f32)) {
    let [taps_d, taps_h, taps_w] = args.taps;
    let (input_strides, weight_strides) = (args.tap_input_strides, args.tap_weight_strides);
    // SAFETY: every offset formed stays inside the buffers (the caller's contract).
    unsafe {
        if args.taps == [1, 1, 1] {
            // A pointwise layer, or a border tile with one tap: the input channels alone.
            for k in 0..args.reduce {
                step(
                    args.input.offset(k * args.reduce_input_stride),
                    args.weight.offset(k * args.reduce_weight_stride),
                );
            }
            return;
        }
        for k in 0..args.reduce {
            let (input_k, weight_k) =
                (args.input.offset(k * args.reduce_input_stride), args.weight.offset(k * args.reduce_weight_stride));
            for td in 0..taps_d {
                let (input_d, weight_d) =
                    (input_k.offset(td * input_strides[0]), weight_k.offset(td * weight_strides[0]));
                for th in 0..taps_h {
                    let (input_h, weight_h) =
                        (input_d.offset(th * input_strides[1]), weight_d.offset(th * weight_strides[1]));
                    for tw in 0..taps_w {
                        step(input_h.offset(tw * input_strides[2]), weight_h.offset(tw * weight_strides[2]));
                    }
                }
            }
        }
    }
}

/// The AVX2 + FMA kernel: `P × V` accumulators of 8 lanes in `ymm` registers, `V` weight vectors
/// and one broadcast input (dense) or `V` input vectors (depthwise) per pixel and step.
///
/// # Safety
/// As for [`portable_kernel`], and the host has AVX2 and FMA ([`kernels`] registers it only then).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe extern "C" fn avx2_kernel<const P: usize, const V: usize, const DEPTHWISE: bool>(args: *const TileArgs) {
    use std::arch::x86_64::{
        __m256, _mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    };
    // SAFETY: the caller's contract (see the function's safety section).
    unsafe {
        let strip = &*args;
        for r in 0..strip.repeat {
            let args = &strip.tile(r, P * V * LANES);
            let initial: [__m256; V] = std::array::from_fn(|vector| match args.bias.is_null() {
                true => _mm256_setzero_ps(),
                false => _mm256_loadu_ps(args.bias.add(vector * LANES)),
            });
            let mut sums: [[__m256; V]; P] = [initial; P];
            for_each_step(args, |input, weight| {
                let weights: [__m256; V] = std::array::from_fn(|vector| _mm256_loadu_ps(weight.add(vector * LANES)));
                for (pixel, vectors) in sums.iter_mut().enumerate() {
                    let input = input.offset(pixel as isize * args.pixel_stride);
                    if DEPTHWISE {
                        for (vector, (sum, weights)) in vectors.iter_mut().zip(&weights).enumerate() {
                            *sum = _mm256_fmadd_ps(_mm256_loadu_ps(input.add(vector * LANES)), *weights, *sum);
                        }
                    } else {
                        let x = _mm256_broadcast_ss(&*input);
                        for (sum, weights) in vectors.iter_mut().zip(&weights) {
                            *sum = _mm256_fmadd_ps(x, *weights, *sum);
                        }
                    }
                }
            });
            for (pixel, vectors) in sums.iter().enumerate() {
                for (vector, sum) in vectors.iter().enumerate() {
                    _mm256_storeu_ps(args.acc.add((pixel * V + vector) * LANES), *sum);
                }
            }
        }
    }
}

/// The counts and strides of a tile strip: everything of a [`conv_dsl::ir::Tile`] but its
/// buffers and indices (the `conv!` macro's code passes it to [`tile`]).
#[derive(Clone, Copy, Debug)]
pub struct TileShape {
    /// Input elements from one pixel to the next.
    pub pixel_stride: isize,
    /// Tiles of the strip.
    pub repeat: usize,
    /// Input elements from one tile of the strip to the next.
    pub repeat_input_stride: isize,
    /// Weight elements from one tile of the strip to the next.
    pub repeat_weight_stride: isize,
    /// Bias elements from one tile of the strip to the next.
    pub repeat_bias_stride: isize,
    /// Input channels each sum runs over.
    pub reduce: usize,
    /// Input elements from one input channel to the next.
    pub reduce_input_stride: isize,
    /// Weight elements from one input channel to the next.
    pub reduce_weight_stride: isize,
    /// Taps per axis (d, h, w).
    pub taps: [usize; 3],
    /// Input elements from one tap to the next, per axis.
    pub tap_input_strides: [isize; 3],
    /// Weight elements from one tap to the next, per axis.
    pub tap_weight_strides: [isize; 3],
}

/// Runs a tile strip of `P` pixels × `V` vectors (the semantics of [`conv_dsl::ir::Tile`]) on
/// slices, with the kernels generated JIT code calls: the AVX2 + FMA one where the CPU has both,
/// the portable one (the same fused sums) otherwise. The `conv!` macro's AVX2 code calls it.
///
/// # Panics
/// If the strip reaches outside a slice, or the shape has no kernel: the macro never emits such
/// a call (its plan is checked when it is lowered); the check makes this function safe to call
/// with anything.
pub fn tile<const P: usize, const V: usize>(
    depthwise: bool,
    (input, input_index): (&[f32], usize),
    (weight, weight_index): (&[f32], usize),
    bias: Option<(&[f32], usize)>,
    (acc, acc_index): (&mut [f32], usize),
    shape: &TileShape,
) {
    use conv_dsl::ir::{BufferId, Index};
    let described = conv_dsl::ir::Tile {
        depthwise,
        pixels: P as u32,
        vectors: V as u32,
        repeat: shape.repeat as u64,
        repeat_input_stride: shape.repeat_input_stride as i64,
        repeat_weight_stride: shape.repeat_weight_stride as i64,
        repeat_bias_stride: shape.repeat_bias_stride as i64,
        input: BufferId(0),
        input_index: Index::constant(0),
        pixel_stride: shape.pixel_stride as i64,
        weight: BufferId(1),
        weight_index: Index::constant(0),
        bias: bias.map(|_| (BufferId(2), Index::constant(0))),
        acc: BufferId(3),
        acc_index: Index::constant(0),
        reduce: shape.reduce as u64,
        reduce_input_stride: shape.reduce_input_stride as i64,
        reduce_weight_stride: shape.reduce_weight_stride as i64,
        taps: shape.taps.map(|count| count as u64),
        tap_input_strides: shape.tap_input_strides.map(|stride| stride as i64),
        tap_weight_strides: shape.tap_weight_strides.map(|stride| stride as i64),
    };
    let lengths = [input.len(), weight.len(), bias.map_or(0, |(bias, _)| bias.len()), acc.len()];
    let bases = [input_index, weight_index, bias.map_or(0, |(_, index)| index), acc_index];
    let known = conv_dsl::ir::tile_shape_exists(P as u32, V as u32);
    let inside = described.extents().iter().flatten().all(|&(buffer, low, end)| {
        let (base, len) = (bases[buffer.0 as usize] as i64, lengths[buffer.0 as usize] as i64);
        base + low >= 0 && base + end <= len
    });
    assert!(known && inside, "a tile strip outside its buffers or of an unknown shape: {described:?}");
    // Pointers with the whole slices' provenance (a strip may reach below its first index).
    // `wrapping_add` only forms them: each index is inside its slice (checked above).
    let args = TileArgs {
        input: input.as_ptr().wrapping_add(input_index),
        weight: weight.as_ptr().wrapping_add(weight_index),
        bias: bias.map_or(std::ptr::null(), |(bias, index)| bias.as_ptr().wrapping_add(index)),
        acc: acc.as_mut_ptr().wrapping_add(acc_index),
        pixel_stride: shape.pixel_stride,
        repeat: shape.repeat as isize,
        repeat_input_stride: shape.repeat_input_stride,
        repeat_weight_stride: shape.repeat_weight_stride,
        repeat_bias_stride: shape.repeat_bias_stride,
        reduce: shape.reduce as isize,
        reduce_input_stride: shape.reduce_input_stride,
        reduce_weight_stride: shape.reduce_weight_stride,
        taps: shape.taps.map(|count| count as isize),
        tap_input_strides: shape.tap_input_strides,
        tap_weight_strides: shape.tap_weight_strides,
    };
    let kernel = match depthwise {
        true => choose::<P, V, true>(host_has_avx2_fma()),
        false => choose::<P, V, false>(host_has_avx2_fma()),
    };
    // SAFETY: every element the strip touches lies inside its slice (checked just above with the
    // definition the JIT's checker uses, `Tile::extents`), `acc` is an exclusive borrow distinct
    // from the shared ones, and the AVX2 kernel is chosen only where the CPU has AVX2 and FMA.
    unsafe { kernel(&args) }
}
