//! The tile microkernels: what generated code calls for `Stmt::Tile` (a dense convolution's
//! register tile of pixels × vectors of 8 output channels).
//!
//! Cranelift 0.135's x86-64 backend lowers vectors of 128 bits at most, which caps code it
//! generates at half of an AVX2 core's FMA throughput (~50 of ~99 GFLOP/s measured on the
//! development machine). So the innermost part of a dense convolution — the multiply-adds of one
//! register tile over all input channels and taps — is this Rust function, compiled for AVX2 + FMA
//! with 256-bit accumulators in registers (or for AVX-512, with 512-bit ones), while the JIT still
//! generates everything around it: the loop nest over the exact shape, the border split, the bias,
//! and the fused epilogue.
//!
//! One kernel per tile kind (dense, depthwise) and shape (`P` pixels × `V` vectors, const generics, so the tile is unrolled
//! and its accumulators are registers), registered with the JIT module under [`symbol`]. The
//! widest version the host runs ([`Isa::host`]: AVX-512, AVX2 + FMA, or the portable one, the
//! same sums with `f32::mul_add`) is registered; all are bit-identical to the IR interpreter.
//!
//! # Safety
//!
//! The kernels read and write through raw pointers: this module is the second place of
//! `conv-jit` with `unsafe` code. Generated code is their only caller, and `codegen::check` has
//! proved, before the code existed, that every element a tile touches lies inside its buffer
//! ([`conv_dsl::ir::Tile::extents`], and the bias's `V·8` elements), that the accumulator buffer is written by nothing else
//! during the call, and that the arguments match [`TileArgs`].

#![allow(unsafe_code)]

use conv_dsl::ir::{TILE_LANES, TileActivation};

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
    /// Where pixel 0's `V·8` sums go (as `act(sum)`).
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
    /// `acc` elements between pixels' sums.
    pub acc_pixel_stride: isize,
    /// `acc` elements between tiles' sums.
    pub acc_repeat_stride: isize,
    /// What is applied to each sum before it is stored: [`ACT_NONE`], [`ACT_RELU`] or
    /// [`ACT_RELU6`].
    pub act: isize,
    /// Not 0: fetch the next panel of weights meanwhile ([`conv_dsl::ir::Tile::prefetch`]).
    pub prefetch: isize,
}

/// [`TileArgs::act`]: the sums as they are.
pub(crate) const ACT_NONE: isize = 0;
/// [`TileArgs::act`]: `max(x, 0)`.
pub(crate) const ACT_RELU: isize = 1;
/// [`TileArgs::act`]: `clamp(x, 0, 6)` (a NaN stays NaN, as `f64::clamp` keeps it).
pub(crate) const ACT_RELU6: isize = 2;

/// [`TileArgs::act`]'s code for `act`.
pub(crate) fn act_code(act: TileActivation) -> isize {
    match act {
        TileActivation::None => ACT_NONE,
        TileActivation::Relu => ACT_RELU,
        TileActivation::Relu6 => ACT_RELU6,
    }
}

/// `act` (a [`TileArgs::act`] code) applied to one sum, as [`conv_dsl::spec::Activation::apply`]
/// defines it.
pub(crate) fn activate(act: isize, x: f32) -> f32 {
    match act {
        ACT_RELU => x.max(0.0),
        ACT_RELU6 => x.clamp(0.0, 6.0),
        _ => x,
    }
}

impl TileArgs {
    /// The arguments of tile `r` of the strip.
    ///
    /// # Safety
    /// `r` is below `repeat`, and the strip's arguments satisfy the kernels' contract.
    unsafe fn tile(&self, r: isize) -> TileArgs {
        // SAFETY: the pointers stay inside the strip's buffers (the caller's contract).
        unsafe {
            TileArgs {
                input: self.input.offset(r * self.repeat_input_stride),
                weight: self.weight.offset(r * self.repeat_weight_stride),
                bias: if self.bias.is_null() { self.bias } else { self.bias.offset(r * self.repeat_bias_stride) },
                acc: self.acc.offset(r * self.acc_repeat_stride),
                ..*self
            }
        }
    }
}

/// How many 8-byte words [`TileArgs`] holds.
pub(crate) const TILE_ARGS_WORDS: u32 = 25;
const _: () = assert!(std::mem::size_of::<TileArgs>() == TILE_ARGS_WORDS as usize * 8);

/// The symbol under which the kernel for `pixels × vectors` tiles is registered.
pub(crate) fn symbol(depthwise: bool, pixels: u32, vectors: u32) -> String {
    let kind = if depthwise { "dw_" } else { "" };
    format!("convgen_tile_{kind}{pixels}x{vectors}")
}

/// A kernel's entry point.
pub(crate) type Kernel = unsafe extern "C" fn(*const TileArgs);

/// Every tile kind's and shape's kernel for `isa`: `(depthwise, pixels, vectors, kernel)`.
pub(crate) fn kernels(isa: Isa) -> Vec<(bool, u32, u32, Kernel)> {
    let shapes = (1..=6).flat_map(|pixels| (1..=4).map(move |vectors| (pixels, vectors)));
    let kernels: Vec<_> = shapes
        .flat_map(|(pixels, vectors)| [false, true].map(|depthwise| (depthwise, pixels, vectors)))
        .filter_map(|(depthwise, pixels, vectors)| {
            Some((depthwise, pixels, vectors, kernel_for(isa, depthwise, pixels, vectors)?))
        })
        .collect();
    debug_assert!(kernels.iter().all(|&(_, p, v, _)| conv_dsl::ir::tile_shape_exists(p, v)));
    kernels
}

/// The kernel of `isa` for `(depthwise, pixels, vectors)` tiles, if the shape has one. A match
/// rather than a table, so that finding the kernel allocates nothing (the macro's `forward`
/// allocates nothing).
fn kernel_for(isa: Isa, depthwise: bool, pixels: u32, vectors: u32) -> Option<Kernel> {
    macro_rules! shapes {
        ($(($p:literal, $($v:literal),*)),*) => {
            match (pixels, vectors) {
                $($(($p, $v) => Some(match depthwise {
                    true => choose::<$p, $v, true>(isa),
                    false => choose::<$p, $v, false>(isa),
                }),)*)*
                _ => None,
            }
        };
    }
    shapes!((1, 1, 2, 3, 4), (2, 1, 2, 3, 4), (3, 1, 2, 3, 4), (4, 1, 2, 3), (5, 1, 2), (6, 1, 2))
}

/// The environment variable that caps which version of the tile kernels runs, read once per
/// process: `portable` (no tile kernels for the JIT: pure Cranelift code), `avx2` or `avx512`; any
/// other value is ignored. For measuring one version against another on the same machine.
pub const MAX_ISA_VARIABLE: &str = "CONVGEN_MAX_ISA";

/// Which version of the kernels runs: the same sums, bit for bit, in registers of different widths
/// (narrowest first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Isa {
    /// `f32::mul_add` lane by lane: any host.
    Portable,
    /// 256-bit AVX2 + FMA registers, one per vector of 8 lanes.
    Avx2,
    /// 512-bit AVX-512 registers, one per pair of vectors, and several tiles of a strip at once.
    Avx512,
}

impl Isa {
    /// The widest version this host runs, or the cap set by [`MAX_ISA_VARIABLE`] if narrower.
    pub(crate) fn host() -> Isa {
        static HOST: std::sync::OnceLock<Isa> = std::sync::OnceLock::new();
        *HOST.get_or_init(|| {
            let cap = std::env::var(MAX_ISA_VARIABLE).ok().and_then(|name| Isa::named(&name));
            Isa::detected().min(cap.unwrap_or(Isa::Avx512))
        })
    }

    /// The version called `name` in [`MAX_ISA_VARIABLE`].
    fn named(name: &str) -> Option<Isa> {
        match name.trim().to_ascii_lowercase().as_str() {
            "portable" => Some(Isa::Portable),
            "avx2" => Some(Isa::Avx2),
            "avx512" => Some(Isa::Avx512),
            _ => None,
        }
    }

    /// The widest version the CPU runs.
    fn detected() -> Isa {
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma");
            let avx512 = std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vl");
            match (avx2, avx512) {
                (true, true) => Isa::Avx512,
                (true, false) => Isa::Avx2,
                _ => Isa::Portable,
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Isa::Portable
        }
    }

    /// Every version this host runs, narrowest first.
    #[cfg(test)]
    pub(crate) fn on_host() -> Vec<Isa> {
        [Isa::Portable, Isa::Avx2, Isa::Avx512].into_iter().filter(|&isa| isa <= Isa::host()).collect()
    }
}

fn choose<const P: usize, const V: usize, const DEPTHWISE: bool>(isa: Isa) -> Kernel {
    #[cfg(target_arch = "x86_64")]
    match isa {
        Isa::Avx512 => return avx512_kernel::<P, V, DEPTHWISE>,
        Isa::Avx2 => return avx2_kernel::<P, V, DEPTHWISE>,
        Isa::Portable => {}
    }
    let _ = isa;
    portable_kernel::<P, V, DEPTHWISE>
}

const LANES: usize = TILE_LANES as usize;

/// How often generated code called a portable kernel (tests check that the path runs).
#[cfg(test)]
pub(crate) static PORTABLE_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Runs `$step` with `$input` and `$weight` bound to the pointers of every (k, tap) in the sums'
/// order: input channels, then taps (d, h, w). A macro rather than a function taking a closure:
/// the step must be inlined into the loops for the accumulators to stay in registers, and a
/// closure in a `#[target_feature]` function is not always inlined.
///
/// Unsafe to expand outside an `unsafe` block: the pointers it forms address elements inside the
/// buffers only under the kernels' contract.
macro_rules! for_each_step {
    ($args:expr, |$input:ident, $weight:ident| $step:block) => {{
        let args: &TileArgs = $args;
        if args.taps == [1, 1, 1] {
            // A pointwise layer, or a border tile with one tap: the input channels alone.
            for k in 0..args.reduce {
                let $input = args.input.offset(k * args.reduce_input_stride);
                let $weight = args.weight.offset(k * args.reduce_weight_stride);
                $step
            }
        } else {
            for_each_row!(args, |input_h, weight_h| {
                for tw in 0..args.taps[2] {
                    let $input = input_h.offset(tw * args.tap_input_strides[2]);
                    let $weight = weight_h.offset(tw * args.tap_weight_strides[2]);
                    $step
                }
            });
        }
    }};
}

/// Runs `$row` with `$input` and `$weight` bound to the pointers of the first tap of every row of
/// taps along w, (k, d, h), in the sums' order ([`for_each_step`] without the taps along w).
///
/// Unsafe to expand outside an `unsafe` block, as [`for_each_step`].
macro_rules! for_each_row {
    ($args:expr, |$input:ident, $weight:ident| $row:block) => {{
        let args: &TileArgs = $args;
        let (input_strides, weight_strides) = (args.tap_input_strides, args.tap_weight_strides);
        for k in 0..args.reduce {
            let (input_k, weight_k) =
                (args.input.offset(k * args.reduce_input_stride), args.weight.offset(k * args.reduce_weight_stride));
            for td in 0..args.taps[0] {
                let (input_d, weight_d) =
                    (input_k.offset(td * input_strides[0]), weight_k.offset(td * weight_strides[0]));
                for th in 0..args.taps[1] {
                    let $input = input_d.offset(th * input_strides[1]);
                    let $weight = weight_d.offset(th * weight_strides[1]);
                    $row
                }
            }
        }
    }};
}

/// `$row` for each row of a tile's window, as [`for_each_row`], with the rows unrolled where
/// `$th` (a constant) is not 0: a window of exactly `$th` rows over one input channel
/// ([`window_of_rows`] checked it). A 3 × 3 depthwise tile's three rows in a loop cost as much
/// as their multiply-adds: the loop's counters and pointers outlive the registers. Measured on
/// the Intel Xeon (AVX-512; old and new builds alternating): a cache-resident strip of 3 × 4 tiles
/// over 512 channels 53 → 65–70 GFLOP/s (a loop of calls over a 14 × 14 image); in MobileNetV1
/// (`convgen bench --steps`) the 14 × 14 depthwise layers 0.037 → 0.030 ms, the stride-2 dw4 (now
/// sliding too) 0.081 → 0.069; the model 1.013× (`convgen bench`, 10 pairs; with
/// `CONVGEN_MAX_ISA=avx2` 1.014×, 6 pairs), MobileNetV2 1.034× (8 pairs).
///
/// Unsafe to expand outside an `unsafe` block, as [`for_each_row`].
macro_rules! window_rows {
    ($th:expr, $args:expr, |$input:ident, $weight:ident| $row:block) => {{
        let args: &TileArgs = $args;
        if $th == 0 {
            for_each_row!(args, |$input, $weight| $row);
        } else {
            for th in 0..$th as isize {
                let $input = args.input.offset(th * args.tap_input_strides[1]);
                let $weight = args.weight.offset(th * args.tap_weight_strides[1]);
                $row
            }
        }
    }};
}

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
            let args = &strip.tile(r);
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
            for_each_step!(args, |input, weight| {
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
                        let at = pixel as isize * args.acc_pixel_stride + (vector * LANES + lane) as isize;
                        *args.acc.offset(at) = activate(args.act, *value);
                    }
                }
            }
        }
    }
}

/// A strip of `repeat` tiles as groups of at most `most` consecutive tiles, of even sizes (9 by 4:
/// 3, 3, 3, not 4, 4, 1), so that no group is left with too few accumulators to hide the FMA
/// latency: `(first tile, tiles)` per group.
fn even_groups(repeat: usize, most: usize) -> impl Iterator<Item = (usize, usize)> {
    let groups = repeat.div_ceil(most);
    (0..groups).scan(0, move |first, group| {
        let count = (repeat - *first).div_ceil(groups - group);
        *first += count;
        Some((*first - count, count))
    })
}

/// Runs the strip `$strip` as [`even_groups`] of at most `$most` tiles, each group with
/// `$tiles::<P, V, DEPTHWISE, count, shared>(strip, first)` (1 to 4 tiles at once; `shared`: the
/// strip's tiles read the same weights).
macro_rules! tiles_in_groups {
    ($tiles:ident::<$($generic:tt),+>($strip:expr, $most:expr)) => {{
        let strip: &TileArgs = $strip;
        let shared = strip.repeat_weight_stride == 0;
        for (first, count) in even_groups(strip.repeat as usize, $most) {
            let first = first as isize;
            match (count, shared) {
                (4, true) => $tiles::<$($generic),+, 4, true>(strip, first),
                (4, false) => $tiles::<$($generic),+, 4, false>(strip, first),
                (3, true) => $tiles::<$($generic),+, 3, true>(strip, first),
                (3, false) => $tiles::<$($generic),+, 3, false>(strip, first),
                (2, true) => $tiles::<$($generic),+, 2, true>(strip, first),
                (2, false) => $tiles::<$($generic),+, 2, false>(strip, first),
                _ => $tiles::<$($generic),+, 1, true>(strip, first),
            }
        }
    }};
    // A depthwise strip, whose tiles never share weights, in groups of 1 to 3 tiles (the only
    // kernels compiled for it).
    (depthwise $tiles:ident::<$($generic:tt),+>($strip:expr, $most:expr)) => {{
        let strip: &TileArgs = $strip;
        for (first, count) in even_groups(strip.repeat as usize, $most) {
            let first = first as isize;
            match count {
                3 => $tiles::<$($generic),+, 3, false>(strip, first),
                2 => $tiles::<$($generic),+, 2, false>(strip, first),
                _ => $tiles::<$($generic),+, 1, false>(strip, first),
            }
        }
    }};
    // A depthwise strip one tile at a time.
    (depthwise_one $tiles:ident::<$($generic:tt),+>($strip:expr)) => {{
        let strip: &TileArgs = $strip;
        for first in 0..strip.repeat as isize {
            $tiles::<$($generic),+, 1, false>(strip, first);
        }
    }};
}

/// `T` tiles' accumulators of 8 lanes, starting as the bias or 0. A macro, as [`for_each_step`]:
/// the array must stay registers.
///
/// Unsafe to expand outside an `unsafe` block: it reads the bias of the group's tiles.
macro_rules! avx2_start {
    ($p:ident, $v:ident, $t:ident, $strip:expr, $args:expr) => {{
        use std::arch::x86_64::{_mm256_loadu_ps, _mm256_setzero_ps};
        let (strip, args): (&TileArgs, &TileArgs) = ($strip, $args);
        let mut sums = [[[_mm256_setzero_ps(); $v]; $p]; $t];
        if !args.bias.is_null() {
            for (t, sums) in sums.iter_mut().enumerate() {
                let bias = args.bias.offset(t as isize * strip.repeat_bias_stride);
                for vectors in sums.iter_mut() {
                    for (vector, sum) in vectors.iter_mut().enumerate() {
                        *sum = _mm256_loadu_ps(bias.add(vector * LANES));
                    }
                }
            }
        }
        sums
    }};
}

/// Stores `act(sum)` of `T` tiles' accumulators ([`avx2_start`]) where their sums go.
///
/// Unsafe to expand outside an `unsafe` block: it writes the sums of the group's tiles.
macro_rules! avx2_finish {
    ($strip:expr, $args:expr, $sums:expr) => {{
        use std::arch::x86_64::{_mm256_max_ps, _mm256_min_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_storeu_ps};
        let (strip, args): (&TileArgs, &TileArgs) = ($strip, $args);
        // `max(0, x)` and `min(6, x)` return x where it is NaN (the second operand), as
        // `f64::clamp` does; `max(x, 0)` returns 0 there, as `f64::max` does.
        let (zero, six) = (_mm256_setzero_ps(), _mm256_set1_ps(6.0));
        let activate = |x| match args.act {
            ACT_RELU => _mm256_max_ps(x, zero),
            ACT_RELU6 => _mm256_min_ps(six, _mm256_max_ps(zero, x)),
            _ => x,
        };
        for (t, sums) in $sums.iter().enumerate() {
            let acc = args.acc.offset(t as isize * strip.acc_repeat_stride);
            for (pixel, vectors) in sums.iter().enumerate() {
                let acc = acc.offset(pixel as isize * args.acc_pixel_stride);
                for (vector, sum) in vectors.iter().enumerate() {
                    _mm256_storeu_ps(acc.add(vector * LANES), activate(*sum));
                }
            }
        }
    }};
}

/// The AVX2 + FMA kernel: `P × V` accumulators of 8 lanes in `ymm` registers per tile, `V`
/// weight vectors and one broadcast input (dense) or `V` input vectors (depthwise) per pixel and
/// step; tiles of at most 6 accumulators are computed two or three at once. Depthwise tiles
/// whose window slides along their pixels take [`avx2_sliding`] where its registers suffice.
///
/// # Safety
/// As for [`portable_kernel`], and the host has AVX2 and FMA ([`kernels`] registers it only then).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe extern "C" fn avx2_kernel<const P: usize, const V: usize, const DEPTHWISE: bool>(args: *const TileArgs) {
    // SAFETY: the caller's contract (see the function's safety section).
    unsafe {
        let strip = &*args;
        // A sliding window's accumulators, a row's weights for one vector and the input vector
        // in the 16 registers.
        let slides = |taps: usize| DEPTHWISE && P * V + taps < 16;
        // As in `avx512_kernel`: whole rows of 3 or 5 taps unrolled, others in loops.
        match (sliding_window(strip), window_of_rows(strip)) {
            (Some((3, 1)), Some(3)) if slides(3) => {
                return tiles_in_groups!(depthwise_one avx2_sliding::<P, V, 3, 3, 1>(strip));
            }
            (Some((3, 1)), Some(2)) if slides(3) => {
                return tiles_in_groups!(depthwise_one avx2_sliding::<P, V, 3, 2, 1>(strip));
            }
            (Some((3, 2)), Some(3)) if slides(3) => {
                return tiles_in_groups!(depthwise_one avx2_sliding::<P, V, 3, 3, 2>(strip));
            }
            (Some((5, 1)), Some(5)) if slides(5) => {
                return tiles_in_groups!(depthwise_one avx2_sliding::<P, V, 5, 5, 1>(strip));
            }
            (Some((3, 1)), _) if slides(3) => {
                return tiles_in_groups!(depthwise_one avx2_sliding::<P, V, 3, 0, 1>(strip));
            }
            (Some((3, 2)), _) if slides(3) => {
                return tiles_in_groups!(depthwise_one avx2_sliding::<P, V, 3, 0, 2>(strip));
            }
            (Some((5, 1)), _) if slides(5) => {
                return tiles_in_groups!(depthwise_one avx2_sliding::<P, V, 5, 0, 1>(strip));
            }
            (Some((7, 1)), _) if slides(7) => {
                return tiles_in_groups!(depthwise_one avx2_sliding::<P, V, 7, 0, 1>(strip));
            }
            _ => {}
        }
        // Tiles at once: as many (up to 3) as fit in 12 of the 16 registers as accumulators (the
        // rest hold weights and the broadcast input): small tiles, such as a border pixel's strip
        // over channel blocks, then still hide the FMA latency.
        let together = (12 / (P * V)).clamp(1, 3);
        // A dense tile of 7–10 accumulators over a small window in the channels-first layout:
        // the window unrolled (with more accumulators LLVM spills them: 6 × 2 tiles ran 0.83× the
        // loop below on std3_64to64_56).
        if !DEPTHWISE && together == 1 && P * V <= 10 {
            match window_rows(strip, V) {
                Some((1, 3, 3)) => return avx2_rows::<P, V, 1, 3, 3>(strip),
                Some((1, 2, 3)) => return avx2_rows::<P, V, 1, 2, 3>(strip),
                Some((1, 3, 2)) => return avx2_rows::<P, V, 1, 3, 2>(strip),
                Some((1, 2, 2)) => return avx2_rows::<P, V, 1, 2, 2>(strip),
                Some((2, 3, 3)) => return avx2_rows::<P, V, 2, 3, 3>(strip),
                Some((2, 2, 3)) => return avx2_rows::<P, V, 2, 2, 3>(strip),
                Some((2, 3, 2)) => return avx2_rows::<P, V, 2, 3, 2>(strip),
                Some((2, 2, 2)) => return avx2_rows::<P, V, 2, 2, 2>(strip),
                _ => {}
            }
        }
        // A dense pointwise tile of 7–12 accumulators whose pixels or whose input channels are
        // adjacent input elements: loads at constant offsets, the channels unrolled.
        if !DEPTHWISE && together == 1 {
            match pointwise_inputs(strip, V) {
                Some(Adjacent::Pixels) => return avx2_pointwise::<P, V, true>(strip),
                Some(Adjacent::Channels) => return avx2_pointwise::<P, V, false>(strip),
                None => {}
            }
        }
        tiles_in_groups!(avx2_tiles::<P, V, DEPTHWISE>(strip, together));
    }
}

/// `T` tiles of a strip from tile `first` on, in AVX2 registers; `SHARED`: they all read the same
/// weights (loaded once per step).
///
/// # Safety
/// As for [`avx2_kernel`], and tiles `first..first + T` are in the strip.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn avx2_tiles<const P: usize, const V: usize, const DEPTHWISE: bool, const T: usize, const SHARED: bool>(
    strip: &TileArgs,
    first: isize,
) {
    use std::arch::x86_64::{_mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps};
    // SAFETY: tiles `first..first + T` of the strip address only elements inside its buffers (the
    // caller's contract); every pointer below is one of theirs.
    unsafe {
        let args = &strip.tile(first);
        let mut sums = avx2_start!(P, V, T, strip, args);
        for_each_step!(args, |input, weight| {
            let mut weights = [_mm256_setzero_ps(); V];
            for (t, sums) in sums.iter_mut().enumerate() {
                let input = input.offset(t as isize * strip.repeat_input_stride);
                if t == 0 || !SHARED {
                    let weight = weight.offset(t as isize * strip.repeat_weight_stride);
                    for (vector, weights) in weights.iter_mut().enumerate() {
                        *weights = _mm256_loadu_ps(weight.add(vector * LANES));
                    }
                }
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
            }
        });
        avx2_finish!(strip, args, sums);
    }
}

/// `T` depthwise tiles of `P` pixels × `V` vectors from tile `first` on, whose window of `TW` taps
/// slides along their pixels `S` taps at a time ([`sliding_window`]), in AVX2 registers: per row
/// of taps (k, d, h; the `TH` rows unrolled unless `TH` is 0, [`window_rows`]) and vector, the
/// row's `TW` weights are loaded once (into registers), and each of the `S·(P − 1) + TW` input
/// vectors the row reads is loaded once and meets the weights of every tap that reads it. The
/// same sums in the same order as [`avx2_tiles`]. `_SHARED` is unused: a depthwise strip's tiles
/// never share weights.
///
/// # Safety
/// As for [`avx2_kernel`], tiles `first..first + T` are in the strip, and `sliding_window`
/// returned `(TW, S)` for it, and `TH` is 0 or `window_of_rows` returned it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn avx2_sliding<
    const P: usize,
    const V: usize,
    const TW: usize,
    const TH: usize,
    const S: usize,
    const T: usize,
    const _SHARED: bool,
>(
    strip: &TileArgs,
    first: isize,
) {
    use std::arch::x86_64::{_mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps};
    // SAFETY: tiles `first..first + T` of the strip address only elements inside its buffers (the
    // caller's contract); every pointer below is one of theirs: pixel p's tap tw reads input
    // S·p + tw of the row (in taps along w), and S·p + tw < S·(P − 1) + TW.
    unsafe {
        let args = &strip.tile(first);
        let mut sums = avx2_start!(P, V, T, strip, args);
        window_rows!(TH, args, |input_row, weight_row| {
            for (t, sums) in sums.iter_mut().enumerate() {
                let input = input_row.offset(t as isize * strip.repeat_input_stride);
                let weight = weight_row.offset(t as isize * strip.repeat_weight_stride);
                for j in 0..V {
                    let mut weights = [_mm256_setzero_ps(); TW];
                    for (tw, weights) in weights.iter_mut().enumerate() {
                        *weights =
                            _mm256_loadu_ps(weight.offset(tw as isize * args.tap_weight_strides[2]).add(j * LANES));
                    }
                    for i in 0..S * (P - 1) + TW {
                        let x = _mm256_loadu_ps(input.offset(i as isize * args.tap_input_strides[2]).add(j * LANES));
                        // As in `avx512_sliding`: the pixels whose window holds input i.
                        for (p, sums) in sums.iter_mut().enumerate() {
                            let tw = i.wrapping_sub(S * p);
                            if tw < TW {
                                sums[j] = _mm256_fmadd_ps(x, weights[tw], sums[j]);
                            }
                        }
                    }
                }
            }
        });
        avx2_finish!(strip, args, sums);
    }
}

/// Bytes between pixels' inputs at which [`avx512_kernel`] limits a strip's tiles at once to
/// [`ALIASED_PIXELS`] pixels: their lines fall in the same few sets of the L1 cache. Measured on an
/// AVX-512 AMD EPYC (`convgen bench --steps` of MobileNetV1 with its 7 × 7 pointwise layers forced
/// to 6 × 2 tiles, the `conv!` macro's, of which the kernel had computed 3 at once): the layer of
/// 1024 input channels (4 KiB apart) 2.14 ms with 18 pixels at once, 1.52 with 12, 1.15 with 9,
/// 1.23 with 6; of 512 (2 KiB) 0.66, 0.61, 0.59, 0.60. Limiting strips whose pixels are 1 element
/// apart (channels-first input) made them 0.78–0.99× as fast, so only such strides take it. The
/// macro's MobileNetV1 (`cargo bench --bench suite`, 3 rounds) went from 13.1–13.3 ms to 12.3–12.6.
/// (The JIT's own 3 × 4 tiles, 3 at once, read 9 pixels already.)
const ALIASING_STRIDE: isize = 2048;

/// The most pixels a strip with [`ALIASING_STRIDE`] computes at once.
#[cfg(target_arch = "x86_64")]
const ALIASED_PIXELS: usize = 9;

/// The AVX-512 kernel: the AVX2 kernel's sums with one 512-bit register per pair of vectors (an
/// odd last vector in a 256-bit one), computing up to three tiles of the strip at once so that a
/// small tile still has enough independent accumulators in flight; AVX-512 has 32 registers.
/// Depthwise tiles whose window slides along their pixels ([`sliding_window`]) take
/// [`avx512_sliding`].
///
/// # Safety
/// As for [`portable_kernel`], and the host has AVX-512 F and VL, AVX2 and FMA ([`Isa::host`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe extern "C" fn avx512_kernel<const P: usize, const V: usize, const DEPTHWISE: bool>(args: *const TileArgs) {
    // SAFETY: the caller's contract (see the function's safety section).
    unsafe {
        let strip = &*args;
        let registers = P * V.div_ceil(2);
        if DEPTHWISE && V.is_multiple_of(2) {
            // Accumulators and a tile's weights for the window (a row of its taps) in 28 of the
            // 32 registers.
            let together = |taps: usize| (28 / (registers + taps * V / 2)).clamp(1, 3);
            // Windows of a whole row of 3 or 5 taps (the interior and the top and bottom rows
            // of a 3 × 3 or 5 × 5 layer) unrolled, others in loops over their rows.
            match (sliding_window(strip), window_of_rows(strip)) {
                (Some((3, 1)), Some(3)) => {
                    return tiles_in_groups!(depthwise avx512_sliding::<P, V, 3, 3, 1>(strip, together(3)));
                }
                (Some((3, 1)), Some(2)) => {
                    return tiles_in_groups!(depthwise avx512_sliding::<P, V, 3, 2, 1>(strip, together(3)));
                }
                (Some((3, 2)), Some(3)) => {
                    return tiles_in_groups!(depthwise avx512_sliding::<P, V, 3, 3, 2>(strip, together(3)));
                }
                (Some((5, 1)), Some(5)) => {
                    return tiles_in_groups!(depthwise avx512_sliding::<P, V, 5, 5, 1>(strip, together(5)));
                }
                (Some((3, 1)), _) => {
                    return tiles_in_groups!(depthwise avx512_sliding::<P, V, 3, 0, 1>(strip, together(3)));
                }
                (Some((3, 2)), _) => {
                    return tiles_in_groups!(depthwise avx512_sliding::<P, V, 3, 0, 2>(strip, together(3)));
                }
                (Some((5, 1)), _) => {
                    return tiles_in_groups!(depthwise avx512_sliding::<P, V, 5, 0, 1>(strip, together(5)));
                }
                (Some((7, 1)), _) => {
                    return tiles_in_groups!(depthwise avx512_sliding::<P, V, 7, 0, 1>(strip, together(7)));
                }
                _ => {}
            }
        }
        // Tiles at once: as many as fit in 24 of the 32 registers as accumulators, at most 3 (4
        // for tiles of 1 or 2 registers, the border pixels' strips over channel blocks). Measured
        // (AVX-512 Zen 5, `convgen bench --steps`): 4 tiles of 3 × 4 ran MobileNetV1's 14×14
        // pointwise layers 2–5% slower than 3.
        let together = (24 / registers).clamp(1, if registers <= 2 { 4 } else { 3 });
        // A dense strip of pixels whose inputs lie a multiple of 2 KiB apart (channels-last input
        // of 512 or 1024 channels): the L1 cache holds their lines in one or two sets of 8 ways,
        // so at most `ALIASED_PIXELS` pixels' inputs are read at once.
        let aliased = strip.pixel_stride != 0 && (strip.pixel_stride * 4) % ALIASING_STRIDE == 0;
        let together = if !DEPTHWISE && strip.repeat_weight_stride == 0 && aliased {
            together.min((ALIASED_PIXELS / P).max(1))
        } else {
            together
        };
        tiles_in_groups!(avx512_tiles::<P, V, DEPTHWISE>(strip, together));
    }
}

/// f32 elements in a 64-byte cache line.
#[cfg(target_arch = "x86_64")]
const LINE_FLOATS: usize = 16;

/// Asks for the `lines` cache lines from `at` on in the L2 cache (`prefetcht1`): a hint, which
/// reads nothing and may name any address (the pointer is only formed, with wrapping arithmetic).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn fetch_lines(at: *const f32, lines: usize) {
    use std::arch::x86_64::{_MM_HINT_T1, _mm_prefetch};
    for line in 0..lines {
        // SAFETY: a prefetch accesses no memory the program can observe, at any address.
        unsafe { _mm_prefetch::<_MM_HINT_T1>(at.wrapping_add(line * LINE_FLOATS).cast::<i8>()) }
    }
}

/// The rows of a strip's window where they are its only loop around a row of taps (one input
/// channel, one tap along d: a 2D depthwise window), which [`window_rows`] unrolls for some
/// counts.
fn window_of_rows(strip: &TileArgs) -> Option<usize> {
    (strip.reduce == 1 && strip.taps[0] == 1).then_some(strip.taps[1] as usize)
}

/// The taps along w of a depthwise strip and its stride in taps, `(taps, stride)`, where its
/// tiles' pixels read inputs of a row `stride` taps apart and the window is one of those
/// [`avx512_sliding`] is compiled for: 3, 5 or 7 taps at stride 1 (the input moves by one pixel
/// from one tap to the next: no dilation along w), 3 at stride 2.
fn sliding_window(strip: &TileArgs) -> Option<(usize, usize)> {
    let (taps, tap) = (strip.taps[2], strip.tap_input_strides[2]);
    match (taps, strip.pixel_stride) {
        (3 | 5 | 7, pixel) if pixel == tap => Some((taps as usize, 1)),
        (3, pixel) if pixel == 2 * tap => Some((3, 2)),
        _ => None,
    }
}

/// `T` tiles' accumulators as `(wide, narrow)`: one 512-bit register per pair of vectors (an odd
/// last vector in a 256-bit one), starting as the bias or 0. A macro, as [`for_each_step`]: the
/// arrays must stay registers.
///
/// Unsafe to expand outside an `unsafe` block: it reads the bias of the group's tiles.
macro_rules! avx512_start {
    ($p:ident, $v:ident, $t:ident, $strip:expr, $args:expr) => {{
        use std::arch::x86_64::{_mm256_loadu_ps, _mm256_setzero_ps, _mm512_loadu_ps, _mm512_setzero_ps};
        let (strip, args): (&TileArgs, &TileArgs) = ($strip, $args);
        let (pairs, odd) = ($v / 2, $v % 2 == 1);
        let mut wide = [[[_mm512_setzero_ps(); $v]; $p]; $t];
        let mut narrow = [[_mm256_setzero_ps(); $p]; $t];
        if !args.bias.is_null() {
            for t in 0..$t {
                let bias = args.bias.offset(t as isize * strip.repeat_bias_stride);
                for p in 0..$p {
                    for (j, sum) in wide[t][p].iter_mut().enumerate().take(pairs) {
                        *sum = _mm512_loadu_ps(bias.add(j * 2 * LANES));
                    }
                    if odd {
                        narrow[t][p] = _mm256_loadu_ps(bias.add(($v - 1) * LANES));
                    }
                }
            }
        }
        (wide, narrow)
    }};
}

/// Stores `act(sum)` of `T` tiles' accumulators ([`avx512_start`]) where their sums go.
///
/// Unsafe to expand outside an `unsafe` block: it writes the sums of the group's tiles.
macro_rules! avx512_finish {
    ($p:ident, $v:ident, $t:ident, $strip:expr, $args:expr, $wide:expr, $narrow:expr) => {{
        use std::arch::x86_64::{
            _mm256_max_ps, _mm256_min_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_storeu_ps, _mm512_max_ps,
            _mm512_min_ps, _mm512_set1_ps, _mm512_setzero_ps, _mm512_storeu_ps,
        };
        let (strip, args): (&TileArgs, &TileArgs) = ($strip, $args);
        let (pairs, odd) = ($v / 2, $v % 2 == 1);
        // As in the AVX2 kernel: NaN stays NaN through relu6, becomes 0 through relu.
        let (zero, six) = (_mm512_setzero_ps(), _mm512_set1_ps(6.0));
        let (zero_narrow, six_narrow) = (_mm256_setzero_ps(), _mm256_set1_ps(6.0));
        let activate = |x| match args.act {
            ACT_RELU => _mm512_max_ps(x, zero),
            ACT_RELU6 => _mm512_min_ps(six, _mm512_max_ps(zero, x)),
            _ => x,
        };
        let activate_narrow = |x| match args.act {
            ACT_RELU => _mm256_max_ps(x, zero_narrow),
            ACT_RELU6 => _mm256_min_ps(six_narrow, _mm256_max_ps(zero_narrow, x)),
            _ => x,
        };
        for t in 0..$t {
            let acc = args.acc.offset(t as isize * strip.acc_repeat_stride);
            for p in 0..$p {
                let acc = acc.offset(p as isize * args.acc_pixel_stride);
                for (j, sum) in $wide[t][p].iter().enumerate().take(pairs) {
                    _mm512_storeu_ps(acc.add(j * 2 * LANES), activate(*sum));
                }
                if odd {
                    _mm256_storeu_ps(acc.add(($v - 1) * LANES), activate_narrow($narrow[t][p]));
                }
            }
        }
    }};
}

/// `T` tiles of a strip from tile `first` on, in AVX-512 registers; `SHARED`: they all read the
/// same weights (loaded once per step).
///
/// # Safety
/// As for [`avx512_kernel`], and tiles `first..first + T` are in the strip.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
#[inline]
unsafe fn avx512_tiles<const P: usize, const V: usize, const DEPTHWISE: bool, const T: usize, const SHARED: bool>(
    strip: &TileArgs,
    first: isize,
) {
    use std::arch::x86_64::{
        _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm512_fmadd_ps, _mm512_loadu_ps,
        _mm512_set1_ps, _mm512_setzero_ps,
    };
    // Vectors 2j and 2j + 1 are register j of `wide` (j < pairs); an odd last vector is `narrow`.
    let (pairs, odd) = (V / 2, V % 2 == 1);
    // SAFETY: tiles `first..first + T` of the strip address only elements inside its buffers (the
    // caller's contract); every pointer below is one of theirs.
    unsafe {
        let args = &strip.tile(first);
        let (mut wide, mut narrow) = avx512_start!(P, V, T, strip, args);
        // One step: every tile's sums over one (k, tap), its input at `input`, weights at `weight`.
        macro_rules! step {
            ($input:expr, $weight:expr, $pixel_stride:expr) => {{
                let (input, weight, pixel_stride): (*const f32, *const f32, isize) = ($input, $weight, $pixel_stride);
                let mut weights = [_mm512_setzero_ps(); V];
                let mut weight_narrow = _mm256_setzero_ps();
                for t in 0..T {
                    let input = input.offset(t as isize * strip.repeat_input_stride);
                    if t == 0 || !SHARED {
                        let weight = weight.offset(t as isize * strip.repeat_weight_stride);
                        for (j, weights) in weights.iter_mut().enumerate().take(pairs) {
                            *weights = _mm512_loadu_ps(weight.add(j * 2 * LANES));
                        }
                        if odd {
                            weight_narrow = _mm256_loadu_ps(weight.add((V - 1) * LANES));
                        }
                    }
                    for p in 0..P {
                        let input = input.offset(p as isize * pixel_stride);
                        if DEPTHWISE {
                            for j in 0..pairs {
                                let x = _mm512_loadu_ps(input.add(j * 2 * LANES));
                                wide[t][p][j] = _mm512_fmadd_ps(x, weights[j], wide[t][p][j]);
                            }
                            if odd {
                                let x = _mm256_loadu_ps(input.add((V - 1) * LANES));
                                narrow[t][p] = _mm256_fmadd_ps(x, weight_narrow, narrow[t][p]);
                            }
                        } else {
                            for j in 0..pairs {
                                wide[t][p][j] = _mm512_fmadd_ps(_mm512_set1_ps(*input), weights[j], wide[t][p][j]);
                            }
                            if odd {
                                narrow[t][p] = _mm256_fmadd_ps(_mm256_set1_ps(*input), weight_narrow, narrow[t][p]);
                            }
                        }
                    }
                }
            }};
        }
        // A pointwise strip: `POINTWISE_UNROLL` input channels at a time, at constant offsets from
        // one input and one weight pointer where the input channels (channels-last) or the pixels
        // (channels-first, read in place) are adjacent (as in `avx2_pointwise`). Measured on an
        // AVX-512 Xeon (66 tiles of 3 × 4 over 512 channels-last input channels, cache-resident,
        // 3 at once): 181 GFLOP/s against 169 one channel at a time (this core's FMA peak: 214).
        macro_rules! unrolled {
            ($channel_stride:expr, $pixel_stride:expr) => {{
                let (channel_stride, channel_weights) = ($channel_stride, V * LANES);
                let (mut input, mut weight) = (args.input, args.weight);
                // The strip's second group of tiles (groups differ by at most one tile) fetches
                // the next panel, one line per line of its own: the first group reads the panel
                // from memory already, later ones have it in cache.
                let second = first == T as isize || (T >= 2 && first == T as isize + 1);
                let ahead = (SHARED && second && args.prefetch != 0).then(|| args.reduce as usize * channel_weights);
                let lines = (POINTWISE_UNROLL as usize * channel_weights).div_ceil(LINE_FLOATS);
                // Input channel k's pointers are those `for_each_step` forms (`pointwise_inputs`
                // checked the strides); past the last channel they only move (wrapping), unread.
                for _ in 0..args.reduce / POINTWISE_UNROLL {
                    if let Some(ahead) = ahead {
                        fetch_lines(weight.wrapping_add(ahead), lines);
                    }
                    for unrolled in 0..POINTWISE_UNROLL {
                        step!(
                            input.offset(unrolled * channel_stride),
                            weight.add(unrolled as usize * channel_weights),
                            $pixel_stride
                        );
                    }
                    input = input.wrapping_offset(POINTWISE_UNROLL * channel_stride);
                    weight = weight.wrapping_add(POINTWISE_UNROLL as usize * channel_weights);
                }
                for _ in 0..args.reduce % POINTWISE_UNROLL {
                    step!(input, weight, $pixel_stride);
                    input = input.wrapping_offset(channel_stride);
                    weight = weight.wrapping_add(channel_weights);
                }
            }};
        }
        match pointwise_inputs(args, V) {
            Some(Adjacent::Channels) if !DEPTHWISE => unrolled!(1, args.pixel_stride),
            Some(Adjacent::Pixels) if !DEPTHWISE => unrolled!(args.reduce_input_stride, 1),
            _ => for_each_step!(args, |input, weight| { step!(input, weight, args.pixel_stride) }),
        }
        avx512_finish!(P, V, T, strip, args, wide, narrow);
    }
}

/// `T` depthwise tiles of `P` pixels × `V` vectors (`V` even) from tile `first` on, whose window
/// of `TW` taps slides along their pixels `S` taps at a time ([`sliding_window`]): per row of taps
/// (k, d, h; the `TH` rows unrolled unless `TH` is 0, [`window_rows`]), each of the
/// `S·(P − 1) + TW` input vectors the row reads is loaded once and meets the weights (loaded once
/// per row, in registers) of every tap that reads it. The same sums in the same order as
/// [`avx512_tiles`] (each pixel's taps along w in order), with 15 of its 35 loads per row for a
/// 5-tap window and 6 × 2 tiles. `_SHARED` is unused: a depthwise strip's tiles never share weights.
///
/// # Safety
/// As for [`avx512_kernel`], tiles `first..first + T` are in the strip, and `sliding_window`
/// returned `(TW, S)` for it, and `TH` is 0 or `window_of_rows` returned it.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
#[inline]
unsafe fn avx512_sliding<
    const P: usize,
    const V: usize,
    const TW: usize,
    const TH: usize,
    const S: usize,
    const T: usize,
    const _SHARED: bool,
>(
    strip: &TileArgs,
    first: isize,
) {
    use std::arch::x86_64::{_mm512_fmadd_ps, _mm512_loadu_ps, _mm512_setzero_ps};
    let pairs = V / 2;
    // SAFETY: tiles `first..first + T` of the strip address only elements inside its buffers (the
    // caller's contract); every pointer below is one of theirs: pixel p's tap tw reads input
    // S·p + tw of the row (in taps along w), and S·p + tw < S·(P − 1) + TW.
    unsafe {
        let args = &strip.tile(first);
        let (mut wide, narrow) = avx512_start!(P, V, T, strip, args);
        window_rows!(TH, args, |input_row, weight_row| {
            for (t, sums) in wide.iter_mut().enumerate() {
                let input = input_row.offset(t as isize * strip.repeat_input_stride);
                let weight = weight_row.offset(t as isize * strip.repeat_weight_stride);
                let mut weights = [[_mm512_setzero_ps(); V]; TW];
                for (tw, weights) in weights.iter_mut().enumerate() {
                    let weight = weight.offset(tw as isize * args.tap_weight_strides[2]);
                    for (j, weights) in weights.iter_mut().enumerate().take(pairs) {
                        *weights = _mm512_loadu_ps(weight.add(j * 2 * LANES));
                    }
                }
                for i in 0..S * (P - 1) + TW {
                    let input = input.offset(i as isize * args.tap_input_strides[2]);
                    for j in 0..pairs {
                        let x = _mm512_loadu_ps(input.add(j * 2 * LANES));
                        // The pixels whose window holds input i, each with tap i − S·p (a test on
                        // constants once the loops are unrolled; a range over p is not unrolled).
                        for (p, sums) in sums.iter_mut().enumerate() {
                            let tw = i.wrapping_sub(S * p);
                            if tw < TW {
                                sums[j] = _mm512_fmadd_ps(x, weights[tw][j], sums[j]);
                            }
                        }
                    }
                }
            }
        });
        avx512_finish!(P, V, T, strip, args, wide, narrow);
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
    /// `acc` elements from one pixel's sums to the next's.
    pub acc_pixel_stride: isize,
    /// `acc` elements from one tile's sums to the next's.
    pub acc_repeat_stride: isize,
    /// Applied to every sum before it is stored.
    pub act: TileActivation,
    /// Whether the kernel fetches the next panel of weights into the L2 cache meanwhile
    /// ([`conv_dsl::ir::Tile::prefetch`]; a hint, which reads nothing).
    pub prefetch: bool,
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
    input: (&[f32], usize),
    weight: (&[f32], usize),
    bias: Option<(&[f32], usize)>,
    acc: (&mut [f32], usize),
    shape: &TileShape,
) {
    tile_of_shape((depthwise, P as u32, V as u32), input, weight, bias, acc, shape);
}

/// [`tile`] with the shape as values: not generic, so a caller's crate instantiates none of the
/// kernels (they are compiled here once, for the JIT's table). With `tile` instantiating every
/// version of its shapes' kernels, the `conv!` macro's MobileNetV1 example took 58 s of CPU time
/// to build, 34 s without.
fn tile_of_shape(
    (depthwise, pixels, vectors): (bool, u32, u32),
    input: (&[f32], usize),
    weight: (&[f32], usize),
    bias: Option<(&[f32], usize)>,
    acc: (&mut [f32], usize),
    shape: &TileShape,
) {
    let kernel = kernel_for(Isa::host(), depthwise, pixels, vectors);
    let kernel = kernel.unwrap_or_else(|| panic!("no tile kernel of {pixels}x{vectors} (depthwise: {depthwise})"));
    run_checked(kernel, (depthwise, pixels, vectors), input, weight, bias, acc, shape);
}

/// [`tile`] for a dense 2D strip whose strides are constants of the caller's code (the `conv!`
/// macro's, which knows them when it expands): input elements between pixels (`PIXEL`) and
/// between input channels (`REDUCE_IN`), weight elements between input channels (`REDUCE_W`), the
/// window's `TH × TW` taps and their input (`IN_H`, `IN_W`) and weight (`W_H`, `W_W`) strides.
/// With every stride a constant and the window unrolled, each step's loads take constant offsets
/// from two pointers: measured on an AVX2 Zen 3 (one strip of a 3×3 layer of 64 input channels,
/// cache-resident, alternating with [`tile`]'s kernel in one process), 1.3–2.2× the steps of the
/// kernel with strides read at run time. The same sums in the same order, bit for bit.
///
/// A host with AVX-512 runs [`tile`]'s AVX-512 kernel instead (strides read at run time, several
/// tiles of the strip at once): measured on an AVX-512 AMD EPYC (`cargo bench --bench suite`, the
/// macro's rows, 3 rounds alternating with the AVX2 fixed kernel) 1.07× on g3_c256_g2_28 (4.69–4.75
/// ms against 5.06–5.08) and 1.05× on std3_64to64_56 (2.15–2.16 against 2.25–2.29).
///
/// # Panics
/// As [`tile`], and if `shape`'s strides and taps are not the constants (the macro passes both
/// from the same statement).
pub fn tile_fixed<
    const P: usize,
    const V: usize,
    const PIXEL: isize,
    const REDUCE_IN: isize,
    const REDUCE_W: isize,
    const TH: usize,
    const TW: usize,
    const IN_H: isize,
    const IN_W: isize,
    const W_H: isize,
    const W_W: isize,
>(
    input: (&[f32], usize),
    weight: (&[f32], usize),
    bias: Option<(&[f32], usize)>,
    acc: (&mut [f32], usize),
    shape: &TileShape,
) {
    let fixed = (shape.pixel_stride, shape.reduce_input_stride, shape.reduce_weight_stride)
        == (PIXEL, REDUCE_IN, REDUCE_W)
        && shape.taps == [1, TH, TW]
        && shape.tap_input_strides[1..] == [IN_H, IN_W]
        && shape.tap_weight_strides[1..] == [W_H, W_W];
    assert!(fixed, "a fixed tile strip whose shape is not its constants: {shape:?}");
    #[cfg(target_arch = "x86_64")]
    if Isa::host() == Isa::Avx2 {
        let kernel: Kernel = avx2_fixed::<P, V, PIXEL, REDUCE_IN, REDUCE_W, TH, TW, IN_H, IN_W, W_H, W_W>;
        return run_checked(kernel, (false, P as u32, V as u32), input, weight, bias, acc, shape);
    }
    tile_of_shape((false, P as u32, V as u32), input, weight, bias, acc, shape);
}

/// The sums of every tile of a dense strip over a 2D window of `$th × $tw` taps, one tile at a
/// time, in AVX2 registers: [`avx2_tiles`]'s sums in the same order, with the strides and the
/// window as the given expressions. Constants (as [`avx2_fixed`] passes) or the strip's values (as
/// [`avx2_rows`] passes): the window is unrolled either way, and every constant stride becomes a
/// constant offset of a load. A macro, as [`for_each_step`]: the accumulators must stay registers.
///
/// Unsafe to expand outside an `unsafe` block: the strip's tiles address only elements inside
/// its buffers when the expressions are its strides (the kernels' contract).
#[cfg(target_arch = "x86_64")]
macro_rules! avx2_window {
    ($p:ident, $v:ident, $strip:expr, pixel: $pixel:expr, reduce: ($reduce_in:expr, $reduce_w:expr),
     window: ($th:expr, $tw:expr), input: ($in_h:expr, $in_w:expr), weight: ($w_h:expr, $w_w:expr)) => {{
        use std::arch::x86_64::{_mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps};
        let strip: &TileArgs = $strip;
        let (pixel, reduce_in, reduce_w): (isize, isize, isize) = ($pixel, $reduce_in, $reduce_w);
        let (th_taps, tw_taps): (isize, isize) = ($th, $tw);
        let (in_h, in_w, w_h, w_w): (isize, isize, isize, isize) = ($in_h, $in_w, $w_h, $w_w);
        for r in 0..strip.repeat {
            let args = &strip.tile(r);
            const ONE: usize = 1;
            let mut sums = avx2_start!($p, $v, ONE, strip, args);
            for k in 0..args.reduce {
                let (input_k, weight_k) = (args.input.offset(k * reduce_in), args.weight.offset(k * reduce_w));
                for th in 0..th_taps {
                    for tw in 0..tw_taps {
                        let input = input_k.offset(th * in_h + tw * in_w);
                        let weight = weight_k.offset(th * w_h + tw * w_w);
                        let mut weights = [_mm256_setzero_ps(); $v];
                        for (vector, weights) in weights.iter_mut().enumerate() {
                            *weights = _mm256_loadu_ps(weight.add(vector * LANES));
                        }
                        for (pixel_index, vectors) in sums[0].iter_mut().enumerate() {
                            let x = _mm256_broadcast_ss(&*input.offset(pixel_index as isize * pixel));
                            for (sum, weights) in vectors.iter_mut().zip(&weights) {
                                *sum = _mm256_fmadd_ps(x, *weights, *sum);
                            }
                        }
                    }
                }
            }
            avx2_finish!(strip, args, sums);
        }
    }};
}

/// The AVX2 + FMA kernel of [`tile_fixed`]: [`avx2_window`] with the strides and the window as
/// constants.
///
/// # Safety
/// As for [`avx2_kernel`] (dense tiles), and the strip's strides and taps are the constants.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe extern "C" fn avx2_fixed<
    const P: usize,
    const V: usize,
    const PIXEL: isize,
    const REDUCE_IN: isize,
    const REDUCE_W: isize,
    const TH: usize,
    const TW: usize,
    const IN_H: isize,
    const IN_W: isize,
    const W_H: isize,
    const W_W: isize,
>(
    args: *const TileArgs,
) {
    // SAFETY: the caller's contract: the constants are the strip's strides.
    unsafe {
        avx2_window!(P, V, &*args, pixel: PIXEL, reduce: (REDUCE_IN, REDUCE_W),
            window: (TH as isize, TW as isize), input: (IN_H, IN_W), weight: (W_H, W_W));
    }
}

/// [`avx2_kernel`]'s dense tiles over a window of `TH × TW` taps whose pixels are `S` input
/// elements apart, whose taps along w are adjacent input elements and have adjacent vectors of
/// weights (the JIT's strips of a layer reading the channels-first input in place, stride `S`):
/// [`avx2_window`] with those three strides and the window as constants, the strides between rows
/// and channels read from the strip. One base pointer per channel and the distance between rows
/// then address every load.
///
/// # Safety
/// As for [`avx2_kernel`] (dense tiles), and [`window_rows`] returned `(S, TH, TW)` for the strip.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_rows<const P: usize, const V: usize, const S: isize, const TH: usize, const TW: usize>(
    strip: &TileArgs,
) {
    // SAFETY: the caller's contract: the constants are the strip's strides.
    unsafe {
        avx2_window!(P, V, strip, pixel: S, reduce: (strip.reduce_input_stride, strip.reduce_weight_stride),
            window: (TH as isize, TW as isize), input: (strip.tap_input_strides[1], 1),
            weight: (strip.tap_weight_strides[1], (V * LANES) as isize));
    }
}

/// `(pixel stride, taps along h, taps along w)` of a dense strip that [`avx2_rows`] computes: one
/// tap along d, pixels 1 or 2 input elements apart, taps along w one input element and one weight
/// vector apart, and at least 2 × 2 taps of at most 3 × 3 (smaller windows gain little from
/// unrolling, larger ones spill).
fn window_rows(strip: &TileArgs, vectors: usize) -> Option<(isize, isize, isize)> {
    let [d, h, w] = strip.taps;
    let adjacent = strip.tap_input_strides[2] == 1 && strip.tap_weight_strides[2] == (vectors * LANES) as isize;
    let fits = d == 1 && (2..=3).contains(&h) && (2..=3).contains(&w);
    (adjacent && fits && matches!(strip.pixel_stride, 1 | 2)).then_some((strip.pixel_stride, h, w))
}

/// Which of a pointwise strip's input elements are adjacent, for [`avx2_pointwise`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Adjacent {
    /// Pixels 1 element apart: the channels-first input of a layer reading it in place.
    Pixels,
    /// Input channels 1 element apart: the internal channels-last layout.
    Channels,
}

/// How [`avx2_pointwise`] addresses a dense strip's input, if it computes the strip: one tap, the
/// weights of each input channel the `vectors` vectors right after the previous channel's, and
/// pixels or channels adjacent.
fn pointwise_inputs(strip: &TileArgs, vectors: usize) -> Option<Adjacent> {
    let packed = strip.reduce_weight_stride == (vectors * LANES) as isize;
    match (strip.pixel_stride, strip.reduce_input_stride) {
        _ if strip.taps != [1, 1, 1] || !packed => None,
        (1, _) => Some(Adjacent::Pixels),
        (_, 1) => Some(Adjacent::Channels),
        _ => None,
    }
}

/// [`avx2_kernel`]'s dense pointwise tiles ([`pointwise_inputs`]), one at a time: [`avx2_tiles`]'s
/// sums in the same order, with every load at a constant offset from a pointer that moves once
/// per [`POINTWISE_UNROLL`] input channels. `PIXELS_ADJACENT`: one input pointer, each pixel at a
/// constant offset from it; otherwise one pointer per pixel, each channel at a constant offset.
/// Measured on a Zen 3 (a strip of 32 tiles of 6 × 2 over 512 input channels, channels-last,
/// cache-resident, alternating with [`avx2_tiles`] in one process): 1.20–1.27× its speed while
/// another tenant shares the core, equal (~97 GFLOP/s) while none does — fewer instructions per
/// FMA matter when the core's issue slots are shared.
///
/// # Safety
/// As for [`avx2_kernel`] (dense tiles), and `pointwise_inputs` returned `Pixels`
/// (`PIXELS_ADJACENT`) or `Channels` for the strip.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_pointwise<const P: usize, const V: usize, const PIXELS_ADJACENT: bool>(strip: &TileArgs) {
    use std::arch::x86_64::{_mm256_broadcast_ss, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_setzero_ps};
    // SAFETY: every pointer formed addresses an element of the strip's tiles (the caller's
    // contract): pixel `p`'s input for channel `k` at `input + k·reduce_input_stride +
    // p·pixel_stride`, its weights at `weight + k·V·8` (the packing `pointwise_inputs` checked).
    unsafe {
        for r in 0..strip.repeat {
            let args = &strip.tile(r);
            const ONE: usize = 1;
            let mut sums = avx2_start!(P, V, ONE, strip, args);
            let pixels: [*const f32; P] = std::array::from_fn(|p| args.input.offset(p as isize * args.pixel_stride));
            let step = (V * LANES) as isize;
            // Input channel `k`'s sums: inlined (a macro) so that the accumulators stay registers.
            macro_rules! channel {
                ($k:expr) => {{
                    let k: isize = $k;
                    let weight = args.weight.offset(k * step);
                    let mut weights = [_mm256_setzero_ps(); V];
                    for (vector, weights) in weights.iter_mut().enumerate() {
                        *weights = _mm256_loadu_ps(weight.add(vector * LANES));
                    }
                    let row = args.input.offset(k * args.reduce_input_stride);
                    for (pixel, vectors) in sums[0].iter_mut().enumerate() {
                        let input = if PIXELS_ADJACENT { row.add(pixel) } else { pixels[pixel].offset(k) };
                        let x = _mm256_broadcast_ss(&*input);
                        for (sum, weights) in vectors.iter_mut().zip(&weights) {
                            *sum = _mm256_fmadd_ps(x, *weights, *sum);
                        }
                    }
                }};
            }
            // As in `avx512_tiles`: the strip's second tile fetches the next panel, a line of it
            // per line of its own.
            let ahead = (r == 1 && strip.prefetch != 0 && strip.repeat_weight_stride == 0).then(|| args.reduce * step);
            let lines = (POINTWISE_UNROLL * step) as usize / LINE_FLOATS;
            let unrolled = args.reduce - args.reduce % POINTWISE_UNROLL;
            let mut k = 0;
            while k < unrolled {
                if let Some(ahead) = ahead {
                    fetch_lines(args.weight.wrapping_offset(k * step + ahead), lines);
                }
                for u in 0..POINTWISE_UNROLL {
                    channel!(k + u);
                }
                k += POINTWISE_UNROLL;
            }
            while k < args.reduce {
                channel!(k);
                k += 1;
            }
            avx2_finish!(strip, args, sums);
        }
    }
}

/// Input channels per iteration of [`avx2_pointwise`]'s loop (in the same probe, 2 ran 0.95× and
/// 1 0.87× of 4's speed on a shared core).
#[cfg(target_arch = "x86_64")]
const POINTWISE_UNROLL: isize = 4;

/// Runs `kernel`, the kernel of `(depthwise, pixels, vectors)` tiles of a version the host runs,
/// on a strip of slices, after checking that the strip stays inside them ([`tile`]'s panics).
fn run_checked(
    kernel: Kernel,
    (depthwise, pixels, vectors): (bool, u32, u32),
    (input, input_index): (&[f32], usize),
    (weight, weight_index): (&[f32], usize),
    bias: Option<(&[f32], usize)>,
    (acc, acc_index): (&mut [f32], usize),
    shape: &TileShape,
) {
    use conv_dsl::ir::{BufferId, Index};
    let described = conv_dsl::ir::Tile {
        depthwise,
        pixels,
        vectors,
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
        acc_pixel_stride: shape.acc_pixel_stride as i64,
        acc_repeat_stride: shape.acc_repeat_stride as i64,
        act: shape.act,
        prefetch: shape.prefetch,
        reduce: shape.reduce as u64,
        reduce_input_stride: shape.reduce_input_stride as i64,
        reduce_weight_stride: shape.reduce_weight_stride as i64,
        taps: shape.taps.map(|count| count as u64),
        tap_input_strides: shape.tap_input_strides.map(|stride| stride as i64),
        tap_weight_strides: shape.tap_weight_strides.map(|stride| stride as i64),
    };
    let lengths = [input.len(), weight.len(), bias.map_or(0, |(bias, _)| bias.len()), acc.len()];
    let bases = [input_index, weight_index, bias.map_or(0, |(_, index)| index), acc_index];
    let known = conv_dsl::ir::tile_shape_exists(pixels, vectors);
    let inside = inside(described.extents(), bases, lengths);
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
        acc_pixel_stride: shape.acc_pixel_stride,
        acc_repeat_stride: shape.acc_repeat_stride,
        act: act_code(shape.act),
        prefetch: isize::from(shape.prefetch),
    };
    // SAFETY: every element the strip touches lies inside its slice (checked just above with the
    // definition the JIT's checker uses, `Tile::extents`), `acc` is an exclusive borrow distinct
    // from the shared ones, and the kernel is of a version the CPU runs (the caller's choice).
    unsafe { kernel(&args) }
}

/// Whether every extent (`(buffer, low, end)` from a statement's index, buffers 0–3 as in
/// [`conv_dsl::ir::Tile::extents`]) lies inside its slice, at `bases[buffer]` in a slice of
/// `lengths[buffer]` elements.
pub(crate) fn inside(
    extents: [Option<(conv_dsl::ir::BufferId, i64, i64)>; 4],
    bases: [usize; 4],
    lengths: [usize; 4],
) -> bool {
    extents.iter().flatten().all(|&(buffer, low, end)| {
        let (base, len) = (bases[buffer.0 as usize] as i64, lengths[buffer.0 as usize] as i64);
        base.checked_add(low).is_some_and(|low| low >= 0) && base.checked_add(end).is_some_and(|end| end <= len)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use conv_dsl::random::SplitMix64;

    /// The constant-stride kernel (and the AVX2 one, whichever the host runs) sums like the kernel
    /// with strides read at run time, bit for bit:
    /// a 3×3 window over channels-first input (a border strip of 2 × 3 taps too) and a pointwise
    /// strip over channels-last input, with and without bias, on strips of 1 to 4 tiles.
    #[test]
    fn the_fixed_kernel_sums_like_the_strided_one() {
        fn case<const P: usize, const TH: usize, const TW: usize, const PIXEL: isize, const IN_K: isize>(
            repeat: usize,
            bias: bool,
            act: TileActivation,
        ) {
            const W_K: isize = 9 * 16;
            let shape = TileShape {
                pixel_stride: PIXEL,
                repeat,
                repeat_input_stride: P as isize * PIXEL,
                repeat_weight_stride: 0,
                repeat_bias_stride: 0,
                reduce: 5,
                reduce_input_stride: IN_K,
                reduce_weight_stride: W_K,
                taps: [1, TH, TW],
                tap_input_strides: [0, 23, PIXEL],
                tap_weight_strides: [0, 48, 16],
                acc_pixel_stride: 19,
                acc_repeat_stride: 19 * P as isize + 3,
                act,
                prefetch: false,
            };
            let mut rng = SplitMix64::new(repeat as u64 + 11 * P as u64);
            let mut random = |len: usize| (0..len).map(|_| 8.0 * rng.symmetric()).collect::<Vec<f32>>();
            let (input, weight, bias_values) = (random(8_000), random(2_000), random(40));
            let bias = bias.then_some((&bias_values[..], 4));
            let mut expected = vec![f32::NAN; 600];
            let mut found = vec![f32::NAN; 600];
            tile::<P, 2>(false, (&input, 7), (&weight, 1), bias, (&mut expected, 2), &shape);
            tile_fixed::<P, 2, PIXEL, IN_K, W_K, TH, TW, 23, PIXEL, 48, 16>(
                (&input, 7),
                (&weight, 1),
                bias,
                (&mut found, 2),
                &shape,
            );
            let written = expected.iter().filter(|sum| sum.is_finite()).count();
            assert_eq!(written, repeat * P * 16, "{P}x2, {TH}x{TW} taps, {repeat} tiles");
            let same = expected.iter().zip(&found).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{P}x2, {TH}x{TW} taps, {repeat} tiles");
            // The AVX2 fixed kernel itself, which `tile_fixed` skips on an AVX-512 host.
            #[cfg(target_arch = "x86_64")]
            if Isa::host() >= Isa::Avx2 {
                let mut avx2 = vec![f32::NAN; 600];
                let kernel: Kernel = avx2_fixed::<P, 2, PIXEL, IN_K, W_K, TH, TW, 23, PIXEL, 48, 16>;
                run_checked(kernel, (false, P as u32, 2), (&input, 7), (&weight, 1), bias, (&mut avx2, 2), &shape);
                let same = expected.iter().zip(&avx2).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "AVX2: {P}x2, {TH}x{TW} taps, {repeat} tiles");
            }
        }
        for repeat in 1..=4 {
            let (bias, act) = (repeat % 2 == 0, [TileActivation::None, TileActivation::Relu6][repeat % 2]);
            case::<5, 3, 3, 1, 250>(repeat, bias, act);
            case::<6, 2, 3, 1, 250>(repeat, !bias, act);
            case::<5, 1, 1, 21, 1>(repeat, bias, TileActivation::Relu);
        }
    }

    /// Every kernel version this host runs sums every tile shape bit for bit like the portable
    /// one: strips of 1 to 7 tiles (the AVX-512 kernel computes up to three at once, then the
    /// rest), with and without a bias, weights shared by the strip's tiles or not, pointwise and
    /// windowed steps, over channels-last (pixels apart by the width, or by 2 KiB) and (dense
    /// steps) channels-first input.
    #[test]
    fn every_kernel_version_sums_like_the_portable_one() {
        let mut rng = SplitMix64::new(7);
        let mut below = |n: u64| (rng.next_u64() % n) as isize;
        let portable = kernels(Isa::Portable);
        let isas = Isa::on_host();
        assert!(isas.contains(&Isa::host()) && isas[0] == Isa::Portable);
        for isa in isas {
            for (&(depthwise, pixels, vectors, kernel), &(.., reference)) in kernels(isa).iter().zip(&portable) {
                for case in 0..14 {
                    let width = (vectors * TILE_LANES) as isize;
                    let repeat = 1 + case % 7;
                    // Windows of 3, 5 and 7 taps along w (which the AVX-512 kernel slides along
                    // the pixels where V is even) and of 2 (which it does not).
                    // Dense windows of 2 or 3 × 2 or 3 taps over channels-first input, pixels 1
                    // or 2 elements apart (which the AVX2 kernel unrolls).
                    // Pointwise steps over channels-first input too, pixels 1, 2 or 3 elements
                    // apart (the AVX2 kernel unrolls pixels 1 apart).
                    let channels_first = !depthwise && case % 3 == 0;
                    let taps = if channels_first && case % 2 == 1 {
                        [1, 2 + below(2), 2 + below(2)]
                    } else if case % 2 == 0 {
                        [1, 1, 1]
                    } else {
                        // Rows of 1 to 3 taps, or 5 (the kernels unroll rows of 2, 3 and 5).
                        [1 + below(2), [1, 2, 3, 5][below(4) as usize], [3, 5, 7, 2][(case / 2 % 4) as usize]]
                    };
                    // Pointwise steps over up to 11 channels: the AVX2 kernel unrolls 4 at once.
                    let reduce = 1 + below(if taps == [1, 1, 1] { 11 } else { 5 });
                    // Strides as in a channels-last layout, with room between pixels and tiles;
                    // or as in a channels-first one, of rows of 37 elements.
                    let (pixel_stride, tap_input_strides, reduce_input_stride) = if channels_first {
                        let pixel_stride = 1 + case / 6;
                        (pixel_stride, [37 * 41, 37, 1], 37 * 41 * 3)
                    } else {
                        // Some pointwise strips with pixels 2 KiB apart (the AVX-512 kernel
                        // computes fewer of their tiles at once: `ALIASING_STRIDE`).
                        let aliasing = !depthwise && case % 6 == 4;
                        let tap = if aliasing { ALIASING_STRIDE / 4 } else { width + below(3) };
                        // Some depthwise strips at stride 2 along w (which the kernels slide
                        // along the pixels for windows of 3 taps).
                        let pixel_stride = if depthwise && case % 5 == 1 { 2 * tap } else { tap };
                        let strides = [pixel_stride * 97, pixel_stride * 13, tap];
                        (pixel_stride, strides, if depthwise { 0 } else { 1 })
                    };
                    let repeat_input_stride = pixel_stride * pixels as isize + below(2);
                    let tap_weight_strides = [width * 9, width * 3, width];
                    // Each channel's weights right after the previous one's (a pointwise
                    // step's packing, which the AVX2 kernel unrolls), or spaced out.
                    let packed = taps == [1, 1, 1] && case % 4 < 2;
                    let reduce_weight_stride = if packed { width } else { width * 36 };
                    let shared = !depthwise && case % 3 != 0;
                    let repeat_weight_stride = if shared { 0 } else { width * 36 * 5 };
                    // Sums packed (a scratch buffer), or spaced out and activated (an output).
                    let (acc_pixel_stride, acc_repeat_stride, act) = match case % 4 {
                        0 | 1 => (width, width * pixels as isize, TileActivation::None),
                        2 => (width + 3, (width + 3) * pixels as isize + 5, TileActivation::Relu),
                        // Tiles side by side within a pixel (a strip of channel blocks).
                        _ => (width * repeat, width, TileActivation::Relu6),
                    };
                    let shape = TileShape {
                        pixel_stride,
                        repeat: repeat as usize,
                        repeat_input_stride,
                        repeat_weight_stride,
                        repeat_bias_stride: if shared { 0 } else { width },
                        reduce: reduce as usize,
                        reduce_input_stride,
                        reduce_weight_stride,
                        taps: taps.map(|count| count as usize),
                        tap_input_strides,
                        tap_weight_strides,
                        acc_pixel_stride,
                        acc_repeat_stride,
                        act,
                        // Fetching the next panel (a hint) changes no sum.
                        prefetch: case % 3 == 1,
                    };
                    let mut rng = SplitMix64::new(case as u64);
                    // Values up to ±8, so that relu6 clamps some sums.
                    let mut random = |len: usize| (0..len).map(|_| 8.0 * rng.symmetric()).collect::<Vec<f32>>();
                    let input = random(200_000);
                    let weight = random(60_000);
                    let bias = random(8 * 32 + 64);
                    let bias = (case % 4 != 1).then_some((&bias[..], 3));
                    let sums =
                        (repeat * acc_repeat_stride.max(pixels as isize * acc_pixel_stride) + 2 * width) as usize;
                    let mut expected = vec![f32::NAN; sums + 5];
                    let mut found = vec![f32::NAN; sums + 5];
                    let what = (depthwise, pixels, vectors);
                    run_checked(reference, what, (&input, 11), (&weight, 2), bias, (&mut expected, 5), &shape);
                    run_checked(kernel, what, (&input, 11), (&weight, 2), bias, (&mut found, 5), &shape);
                    let written =
                        |t: isize, p: isize, lane: isize| 5 + t * acc_repeat_stride + p * acc_pixel_stride + lane;
                    let every = (0..repeat).all(|t| {
                        (0..pixels as isize)
                            .all(|p| (0..width).all(|lane| expected[written(t, p, lane) as usize].is_finite()))
                    });
                    assert!(every, "{isa:?} {what:?}: every sum written");
                    let finite = expected.iter().filter(|sum| sum.is_finite()).count();
                    assert_eq!(finite, (repeat * pixels as isize * width) as usize, "{isa:?} {what:?}: nothing else");
                    if act != TileActivation::None {
                        assert!(
                            expected.iter().filter(|sum| sum.is_finite()).all(|&sum| sum >= 0.0),
                            "{isa:?} {what:?}"
                        );
                    }
                    let same = expected.iter().zip(&found).all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(same, "{isa:?} {what:?} case {case}: {shape:?}");
                }
            }
        }
    }
}
