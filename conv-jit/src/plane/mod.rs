//! The plane microkernels: what generated code calls for `Stmt::Plane` (whole channel planes of a
//! depthwise or grouped 2D convolution in the channels-first layout, border, bias and activation
//! included; a grouped output plane sums over its group's input planes, each window in turn).
//!
//! A depthwise layer that reads the user's channels-first input and writes the user's output is
//! computed plane by plane, vectorised along w (`conv_dsl::lower`'s `planar`). Cranelift's 128-bit
//! vectors cap that code at ~43 GFLOP/s on cache-resident planes; these kernels, compiled for
//! AVX-512 (16 lanes) or AVX2 + FMA (8 lanes), keep the window's weights in registers, compute
//! blocks of 4 to 8 output rows ([`block_rows`]) × one vector (the rows share their input rows:
//! a 3×3 window's 8 rows read 10 input rows, not 24), and handle the border columns and a short
//! row with masked loads and masked multiply-adds, the top and bottom rows by skipping the taps
//! outside the plane. On AVX-512 a plane of rows of at most 8 at stride 1 (its output the input's
//! size) is one run of vectors across its rows instead ([`flat`]), and a depthwise 5 × 5 window
//! at stride 1 (a 3 × 3 one in rows of at most two vectors) streams each column of vectors down
//! the plane, a sum per tap row live ([`stream`]); on AVX-512 and AVX2, a depthwise 3 × 3 one at
//! stride 1 in longer rows streams a few columns of vectors at a time, sharing the window's taps
//! ([`columns`]), and at stride 2 likewise, each input row's taps from one aligned pair of
//! vectors ([`strided`]). A 3D layer's volumes ([`PlaneArgs::depth`]) are their planes, each a pass
//! of that stride-1 stream per depth tap ([`volume`]), or the portable kernel's sums. A 1D layer
//! is a statement of single-element planes whose depth axis is each channel's row, with the 1 × 1
//! window: waves or tiles of vectors along the row at stride 1, any window and padding ([`rows`]).
//!
//! One kernel per window ([`conv_dsl::ir::plane_kernel_exists`]: kernel, stride and dilation are
//! const generics, so the window is unrolled and its weights are registers), registered with the
//! JIT module under [`symbol`]; the widest version the host runs ([`Isa::host`]). All versions
//! are bit-identical to the IR interpreter: each sum is the chain of fused multiply-adds over the
//! taps inside the plane, in order, and a masked-off lane keeps its sum.
//!
//! # Safety
//!
//! The kernels read and write through raw pointers: generated code is their only caller, and
//! `codegen::check` has proved, before the code existed, that every plane a statement names lies
//! inside its buffer ([`conv_dsl::ir::Plane::extents`]) and that the output shares no buffer with
//! the others. The kernels themselves read only positions inside each `H × W` input plane (the
//! masked-off lanes of a masked load touch no memory) and write only inside each output plane.

#![allow(unsafe_code)]

use conv_dsl::ir::{PLANE_WINDOWS, Plane, PlaneDepth, TileActivation};

use crate::microkernel::{ACT_RELU, ACT_RELU6, Isa, act_code, activate};

#[cfg(target_arch = "x86_64")]
mod banded;
#[cfg(target_arch = "x86_64")]
mod columns;
#[cfg(target_arch = "x86_64")]
mod flat;
#[cfg(target_arch = "x86_64")]
mod grouping;
mod pointwise;
#[cfg(target_arch = "x86_64")]
mod rows;
#[cfg(target_arch = "x86_64")]
mod stream;
#[cfg(target_arch = "x86_64")]
mod strided;
#[cfg(target_arch = "x86_64")]
mod transposed;
#[cfg(target_arch = "x86_64")]
mod volume;

/// The arguments of a plane kernel, as generated code lays them out on its stack: pointers and
/// counts are 8 bytes each, in this order (`codegen` stores field `i` at byte `8·i`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub(crate) struct PlaneArgs {
    /// Input plane 0's first element.
    pub input: *const f32,
    /// Output plane 0's first weight.
    pub weight: *const f32,
    /// One initial sum per output plane; null: 0.
    pub bias: *const f32,
    /// Output plane 0's first element.
    pub output: *mut f32,
    /// Output planes.
    pub planes: isize,
    /// Input planes per group, which each output plane sums over.
    pub group_inputs: isize,
    /// Output planes per group.
    pub group_outputs: isize,
    /// (H, W).
    pub input_size: [isize; 2],
    /// (OH, OW).
    pub output_size: [isize; 2],
    /// (top, left).
    pub padding: [isize; 2],
    /// What is applied to each sum before it is stored (`microkernel`'s `ACT_*` codes).
    pub act: isize,
    /// A 3D layer's depth axis ([`conv_dsl::ir::PlaneDepth`]): input planes per channel, output
    /// planes, taps, stride, dilation and padding in front ([`FLAT`]: a 2D layer's).
    pub depth: [isize; 6],
}

impl PlaneArgs {
    /// The group of output plane `p` (no division where each group has one output plane, as a
    /// depthwise layer without a multiplier: kernels of small planes ask once per few planes).
    #[inline(always)]
    fn group(&self, p: isize) -> isize {
        if self.group_outputs == 1 { p } else { p / self.group_outputs }
    }
}

/// A 2D layer's [`PlaneArgs::depth`] ([`conv_dsl::ir::PlaneDepth::FLAT`]).
const FLAT: [isize; 6] = [1, 1, 1, 1, 1, 0];

/// How many 8-byte words [`PlaneArgs`] holds.
pub(crate) const PLANE_ARGS_WORDS: u32 = 20;
const _: () = assert!(std::mem::size_of::<PlaneArgs>() == PLANE_ARGS_WORDS as usize * 8);

/// A kernel's entry point.
pub(crate) type Kernel = unsafe extern "C" fn(*const PlaneArgs);

/// The symbol under which the kernel for a `kernel × kernel` window with `stride` and `dilation`
/// is registered.
pub(crate) fn symbol(kernel: u64, stride: u64, dilation: u64) -> String {
    format!("convgen_plane_{kernel}x{kernel}_s{stride}_d{dilation}")
}

/// Every window's kernel for `isa` ([`PLANE_WINDOWS`]): `((kernel, stride, dilation), kernel)`.
pub(crate) fn kernels(isa: Isa) -> Vec<((u64, u64, u64), Kernel)> {
    PLANE_WINDOWS.iter().filter_map(|&window| Some((window, kernel_for(isa, window)?))).collect()
}

fn choose<const K: usize, const S: usize, const D: usize>(isa: Isa) -> Kernel {
    #[cfg(target_arch = "x86_64")]
    match isa {
        Isa::Avx512 => return avx512_kernel::<K, S, D>,
        Isa::Avx2 => return avx2_kernel::<K, S, D>,
        Isa::Portable => {}
    }
    let _ = isa;
    portable_kernel::<K, S, D>
}

/// The kernel for `(kernel, stride, dilation)` on `isa`, if one exists (one of [`PLANE_WINDOWS`]).
fn kernel_for(isa: Isa, window: (u64, u64, u64)) -> Option<Kernel> {
    Some(match window {
        (3, 1, 1) => choose::<3, 1, 1>(isa),
        (3, 2, 1) => choose::<3, 2, 1>(isa),
        (3, 1, 2) => choose::<3, 1, 2>(isa),
        (5, 1, 1) => choose::<5, 1, 1>(isa),
        (5, 2, 1) => choose::<5, 2, 1>(isa),
        (1, 1, 1) => pointwise::choose(isa),
        _ => return None,
    })
}

/// How often generated code called a portable kernel (tests check that the path runs).
#[cfg(test)]
pub(crate) static PORTABLE_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The definition, element by element (`f32::mul_add`): any host.
///
/// # Safety
/// `args` points to a [`PlaneArgs`] whose planes lie inside live buffers (the module's safety
/// section), and nothing else accesses the output meanwhile.
unsafe extern "C" fn portable_kernel<const K: usize, const S: usize, const D: usize>(args: *const PlaneArgs) {
    #[cfg(test)]
    PORTABLE_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: the caller's contract; every position read is inside its H × W plane.
    unsafe {
        let args = &*args;
        let ([h, w], [oh, ow], [top, left]) = (args.input_size, args.output_size, args.padding);
        let (k, s, d) = (K as isize, S as isize, D as isize);
        let [depth_in, depth_out, kd, sd, dd, front] = args.depth;
        let group_inputs = args.group_inputs;
        for (p, z) in (0..args.planes).flat_map(|p| (0..depth_out).map(move |z| (p, z))) {
            let input = args.input.offset(args.group(p) * group_inputs * depth_in * h * w);
            let weight = args.weight.offset(p * group_inputs * kd * k * k);
            let output = args.output.offset((p * depth_out + z) * oh * ow);
            let bias = if args.bias.is_null() { 0.0 } else { *args.bias.offset(p) };
            for (y, x) in (0..oh).flat_map(|y| (0..ow).map(move |x| (y, x))) {
                let mut sum = bias;
                let taps = (0..kd).flat_map(|t| (0..k).flat_map(move |kh| (0..k).map(move |kw| (t, kh, kw))));
                for (g, (t, kh, kw)) in (0..group_inputs).flat_map(|g| taps.clone().map(move |tap| (g, tap))) {
                    let (iz, ih, iw) = (z * sd - front + t * dd, y * s - top + kh * d, x * s - left + kw * d);
                    if (0..depth_in).contains(&iz) && (0..h).contains(&ih) && (0..w).contains(&iw) {
                        let x = *input.offset((((g * depth_in) + iz) * h + ih) * w + iw);
                        let tap = *weight.offset(((g * kd + t) * k + kh) * k + kw);
                        sum = x.mul_add(tap, sum);
                    }
                }
                *output.offset(y * ow + x) = activate(args.act, sum);
            }
        }
    }
}

/// The vector operations the kernels are written in, for one register width. Every method is
/// `#[inline(always)]` and called only from the `#[target_feature]` functions of each block size
/// ([`avx512_planes`], [`avx2_planes`]), into which the whole kernel is inlined. Its types are
/// markers (`Copy`, so that structs of their vectors and masks derive `Copy`).
#[cfg(target_arch = "x86_64")]
trait Lanes: Copy {
    /// f32 lanes per vector.
    const L: isize;
    /// A vector.
    type V: Copy;
    /// Which lanes of a vector take part.
    type M: Copy;
    /// `x` in every lane.
    unsafe fn splat(x: f32) -> Self::V;
    /// Lanes `lo..hi` (clamped to `0..L`).
    unsafe fn mask(lo: isize, hi: isize) -> Self::M;
    /// The lanes `i < L` whose bit `i` is set.
    unsafe fn mask_of_bits(bits: u64) -> Self::M;
    /// The lanes of a stride-2 sum ([`Lanes::evens`]) that hold output positions `lo..hi`
    /// (clamped to `0..L`).
    unsafe fn strided_mask(lo: isize, hi: isize) -> Self::M;
    /// Elements `lo..hi` of a stride-2 pair of loads, `at .. at + 2·L` (clamped to `0..2·L`): the
    /// lanes each of the two loads reads.
    unsafe fn span_mask(lo: isize, hi: isize) -> (Self::M, Self::M);
    /// `L` consecutive elements.
    unsafe fn load(at: *const f32) -> Self::V;
    /// The lanes of `mask` from `at`, 0 in the others, whose memory is not touched.
    unsafe fn load_masked(at: *const f32, mask: Self::M) -> Self::V;
    /// `L − 1` consecutive elements, 0 in the last lane, whose memory is not touched.
    unsafe fn load_but_last(at: *const f32) -> Self::V;
    /// The even elements of the pair `a` (elements `0..L`), `b` (`L..2·L`), in the stride-2 order:
    /// a shuffle within 128-bit lanes, so each 128-bit lane takes two elements of `a` and two of
    /// `b` — lane `4i + m` holds output position `[2i, 2i + 1, L/2 + 2i, L/2 + 2i + 1][m]`
    /// ([`Lanes::unstride`] puts them back in order once per sum). Cheaper than a permute across
    /// the vector: a standalone loop of 3x3 stride-2 blocks of 4 rows over a 112x112 plane took
    /// 0.52–0.60 µs against 0.70–0.75 µs with `vpermt2ps` (AMD EPYC Zen 4, AVX-512).
    unsafe fn evens(a: Self::V, b: Self::V) -> Self::V;
    /// The odd elements of the pair, in the order of [`Lanes::evens`].
    unsafe fn odds(a: Self::V, b: Self::V) -> Self::V;
    /// A stride-2 sum's lanes in the order of output positions.
    unsafe fn unstride(x: Self::V) -> Self::V;
    /// `acc + x·w`, fused.
    unsafe fn fma(acc: Self::V, x: Self::V, w: Self::V) -> Self::V;
    /// `acc + x·w` in the lanes of `mask`, `acc` in the others.
    unsafe fn fma_masked(acc: Self::V, x: Self::V, w: Self::V, mask: Self::M) -> Self::V;
    /// Whether a border block masks its weights ([`Lanes::masked_weight`], once per tap) rather
    /// than its multiply-adds ([`Lanes::fma_masked`], once per tap and row): where a masked
    /// multiply-add costs a blend besides the FMA.
    const MASK_WEIGHTS: bool;
    /// Whether each block splats its window's weights from memory (once per block and input
    /// plane) rather than taking the first input plane's from registers its caller filled once
    /// per plane ([`sweep`] keeping them there from one block to the next). On AVX-512 splatting
    /// them again was faster: the window was otherwise a value live across the block's loop (a
    /// choice between the caller's registers and the next input plane's), which the register
    /// allocator shuffled and spilled in every block; alternating builds, 8 pairs: dw5_s1_c240_28
    /// 1.035×, dw3_s1_c144_56 1.05×, dw3_s1_c384_14 1.07×, relu6_dw3_c64_56 and g3_c128_g32_56
    /// 1.03×, dw3_s1_c32_112 1.00×. On AVX2 (the same host, `CONVGEN_MAX_ISA=avx2`)
    /// dw3_s1_c32_112 ran 0.94× and g3_c128_g32_56 0.97× so, and it keeps them. Only at stride 1
    /// ([`window_per_block`]).
    const WINDOW_PER_BLOCK: bool;
    /// `w` in the lanes of `mask`, −0 in the others. Where `x` is +0 outside `mask` (a masked
    /// load's lanes), `fma(acc, x, masked_weight(w, mask))` is `fma_masked(acc, x, w, mask)` bit for
    /// bit: the product there is −0, and `acc + (−0)` is `acc` for every `acc` (−0, NaN and
    /// infinities included) — unlike `+0`, which turns a −0 sum into +0.
    unsafe fn masked_weight(w: Self::V, mask: Self::M) -> Self::V;
    /// `act` applied (NaN: 0 through relu, NaN through relu6, as the tile kernels do).
    unsafe fn activate(x: Self::V, act: isize) -> Self::V;
    /// All `L` lanes to `at`.
    unsafe fn store(at: *mut f32, x: Self::V);
    /// The lanes of `mask` to `at`, the memory of the others untouched.
    unsafe fn store_masked(at: *mut f32, x: Self::V, mask: Self::M);
}

/// Bits `lo..hi` of a mask of `width` bits.
fn bits(lo: isize, hi: isize, width: isize) -> u64 {
    let (lo, hi) = (lo.clamp(0, width), hi.clamp(0, width));
    if hi <= lo { 0 } else { ((1u64 << hi) - 1) & !((1u64 << lo) - 1) }
}

/// AVX-512 F: 16 lanes, mask registers.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Avx512;

#[cfg(target_arch = "x86_64")]
impl Lanes for Avx512 {
    const L: isize = 16;
    type V = std::arch::x86_64::__m512;
    type M = u16;

    #[inline(always)]
    unsafe fn splat(x: f32) -> Self::V {
        unsafe { std::arch::x86_64::_mm512_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn mask(lo: isize, hi: isize) -> u16 {
        bits(lo, hi, 16) as u16
    }
    #[inline(always)]
    unsafe fn mask_of_bits(bits: u64) -> u16 {
        bits as u16
    }
    #[inline(always)]
    unsafe fn strided_mask(lo: isize, hi: isize) -> u16 {
        // Output positions 0..8 go to lanes 4i, 4i + 1 and positions 8..16 to 4i + 2, 4i + 3.
        let natural = bits(lo, hi, 16);
        (spread_pairs(natural & 0xff) | spread_pairs(natural >> 8) << 2) as u16
    }
    #[inline(always)]
    unsafe fn span_mask(lo: isize, hi: isize) -> (u16, u16) {
        (bits(lo, hi, 16) as u16, bits(lo - 16, hi - 16, 16) as u16)
    }
    #[inline(always)]
    unsafe fn load(at: *const f32) -> Self::V {
        unsafe { std::arch::x86_64::_mm512_loadu_ps(at) }
    }
    #[inline(always)]
    unsafe fn load_masked(at: *const f32, mask: u16) -> Self::V {
        unsafe { std::arch::x86_64::_mm512_maskz_loadu_ps(mask, at) }
    }
    #[inline(always)]
    unsafe fn load_but_last(at: *const f32) -> Self::V {
        unsafe { std::arch::x86_64::_mm512_maskz_loadu_ps(0x7fff, at) }
    }
    #[inline(always)]
    unsafe fn evens(a: Self::V, b: Self::V) -> Self::V {
        unsafe { std::arch::x86_64::_mm512_shuffle_ps::<0b10_00_10_00>(a, b) }
    }
    #[inline(always)]
    unsafe fn odds(a: Self::V, b: Self::V) -> Self::V {
        unsafe { std::arch::x86_64::_mm512_shuffle_ps::<0b11_01_11_01>(a, b) }
    }
    #[inline(always)]
    unsafe fn unstride(x: Self::V) -> Self::V {
        use std::arch::x86_64::{_mm512_permutexvar_ps, _mm512_setr_epi32};
        unsafe { _mm512_permutexvar_ps(_mm512_setr_epi32(0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15), x) }
    }
    #[inline(always)]
    unsafe fn fma(acc: Self::V, x: Self::V, w: Self::V) -> Self::V {
        unsafe { std::arch::x86_64::_mm512_fmadd_ps(x, w, acc) }
    }
    #[inline(always)]
    unsafe fn fma_masked(acc: Self::V, x: Self::V, w: Self::V, mask: u16) -> Self::V {
        unsafe { std::arch::x86_64::_mm512_mask3_fmadd_ps(x, w, acc, mask) }
    }
    // A masked FMA is one instruction.
    const MASK_WEIGHTS: bool = false;
    const WINDOW_PER_BLOCK: bool = true;
    #[inline(always)]
    unsafe fn masked_weight(w: Self::V, mask: u16) -> Self::V {
        unsafe { std::arch::x86_64::_mm512_mask_blend_ps(mask, std::arch::x86_64::_mm512_set1_ps(-0.0), w) }
    }
    #[inline(always)]
    unsafe fn activate(x: Self::V, act: isize) -> Self::V {
        use std::arch::x86_64::{_mm512_max_ps, _mm512_min_ps, _mm512_set1_ps, _mm512_setzero_ps};
        unsafe {
            match act {
                ACT_RELU => _mm512_max_ps(x, _mm512_setzero_ps()),
                ACT_RELU6 => _mm512_min_ps(_mm512_set1_ps(6.0), _mm512_max_ps(_mm512_setzero_ps(), x)),
                _ => x,
            }
        }
    }
    #[inline(always)]
    unsafe fn store(at: *mut f32, x: Self::V) {
        unsafe { std::arch::x86_64::_mm512_storeu_ps(at, x) }
    }
    #[inline(always)]
    unsafe fn store_masked(at: *mut f32, x: Self::V, mask: u16) {
        unsafe { std::arch::x86_64::_mm512_mask_storeu_ps(at, mask, x) }
    }
}

/// The bit pairs of an 8-bit mask spread to every other pair of 16 bits (pair `i` to bits
/// `4i, 4i + 1`).
fn spread_pairs(x: u64) -> u64 {
    let x = (x | x << 4) & 0x0f0f;
    (x | x << 2) & 0x3333
}

/// AVX2 + FMA: 8 lanes, masks as vectors of all-ones lanes.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Avx2;

#[cfg(target_arch = "x86_64")]
impl Lanes for Avx2 {
    const L: isize = 8;
    type V = std::arch::x86_64::__m256;
    type M = std::arch::x86_64::__m256i;

    #[inline(always)]
    unsafe fn splat(x: f32) -> Self::V {
        unsafe { std::arch::x86_64::_mm256_set1_ps(x) }
    }
    #[inline(always)]
    unsafe fn mask(lo: isize, hi: isize) -> Self::M {
        unsafe { lanes_between(std::arch::x86_64::_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), lo, hi) }
    }
    #[inline(always)]
    unsafe fn mask_of_bits(bits: u64) -> Self::M {
        use std::arch::x86_64::{_mm256_and_si256, _mm256_cmpeq_epi32, _mm256_set1_epi32, _mm256_setr_epi32};
        unsafe {
            let lane_bits = _mm256_setr_epi32(1, 2, 4, 8, 16, 32, 64, 128);
            _mm256_cmpeq_epi32(_mm256_and_si256(_mm256_set1_epi32(bits as i32), lane_bits), lane_bits)
        }
    }
    #[inline(always)]
    unsafe fn strided_mask(lo: isize, hi: isize) -> Self::M {
        unsafe { lanes_between(std::arch::x86_64::_mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7), lo, hi) }
    }
    #[inline(always)]
    unsafe fn span_mask(lo: isize, hi: isize) -> (Self::M, Self::M) {
        unsafe { (Self::mask(lo, hi), Self::mask(lo - 8, hi - 8)) }
    }
    #[inline(always)]
    unsafe fn load(at: *const f32) -> Self::V {
        unsafe { std::arch::x86_64::_mm256_loadu_ps(at) }
    }
    #[inline(always)]
    unsafe fn load_masked(at: *const f32, mask: Self::M) -> Self::V {
        unsafe { std::arch::x86_64::_mm256_maskload_ps(at, mask) }
    }
    #[inline(always)]
    unsafe fn load_but_last(at: *const f32) -> Self::V {
        unsafe { std::arch::x86_64::_mm256_maskload_ps(at, Self::mask(0, 7)) }
    }
    #[inline(always)]
    unsafe fn evens(a: Self::V, b: Self::V) -> Self::V {
        unsafe { std::arch::x86_64::_mm256_shuffle_ps::<0b10_00_10_00>(a, b) }
    }
    #[inline(always)]
    unsafe fn odds(a: Self::V, b: Self::V) -> Self::V {
        unsafe { std::arch::x86_64::_mm256_shuffle_ps::<0b11_01_11_01>(a, b) }
    }
    #[inline(always)]
    unsafe fn unstride(x: Self::V) -> Self::V {
        use std::arch::x86_64::{_mm256_permutevar8x32_ps, _mm256_setr_epi32};
        unsafe { _mm256_permutevar8x32_ps(x, _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7)) }
    }
    #[inline(always)]
    unsafe fn fma(acc: Self::V, x: Self::V, w: Self::V) -> Self::V {
        unsafe { std::arch::x86_64::_mm256_fmadd_ps(x, w, acc) }
    }
    #[inline(always)]
    unsafe fn fma_masked(acc: Self::V, x: Self::V, w: Self::V, mask: Self::M) -> Self::V {
        use std::arch::x86_64::{_mm256_blendv_ps, _mm256_castsi256_ps, _mm256_fmadd_ps};
        unsafe { _mm256_blendv_ps(acc, _mm256_fmadd_ps(x, w, acc), _mm256_castsi256_ps(mask)) }
    }
    // A masked FMA is an FMA and a blend.
    const MASK_WEIGHTS: bool = true;
    const WINDOW_PER_BLOCK: bool = false;
    #[inline(always)]
    unsafe fn masked_weight(w: Self::V, mask: Self::M) -> Self::V {
        use std::arch::x86_64::{_mm256_blendv_ps, _mm256_castsi256_ps, _mm256_set1_ps};
        unsafe { _mm256_blendv_ps(_mm256_set1_ps(-0.0), w, _mm256_castsi256_ps(mask)) }
    }
    #[inline(always)]
    unsafe fn activate(x: Self::V, act: isize) -> Self::V {
        use std::arch::x86_64::{_mm256_max_ps, _mm256_min_ps, _mm256_set1_ps, _mm256_setzero_ps};
        unsafe {
            match act {
                ACT_RELU => _mm256_max_ps(x, _mm256_setzero_ps()),
                ACT_RELU6 => _mm256_min_ps(_mm256_set1_ps(6.0), _mm256_max_ps(_mm256_setzero_ps(), x)),
                _ => x,
            }
        }
    }
    #[inline(always)]
    unsafe fn store(at: *mut f32, x: Self::V) {
        unsafe { std::arch::x86_64::_mm256_storeu_ps(at, x) }
    }
    #[inline(always)]
    unsafe fn store_masked(at: *mut f32, x: Self::V, mask: Self::M) {
        unsafe { std::arch::x86_64::_mm256_maskstore_ps(at, mask, x) }
    }
}

/// The lanes whose entry of `positions` lies in `lo..hi` (clamped to `0..8`), all ones.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn lanes_between(positions: std::arch::x86_64::__m256i, lo: isize, hi: isize) -> std::arch::x86_64::__m256i {
    use std::arch::x86_64::{_mm256_and_si256, _mm256_cmpgt_epi32, _mm256_set1_epi32};
    let (lo, hi) = (lo.clamp(0, 8) as i32, hi.clamp(0, 8) as i32);
    unsafe {
        _mm256_and_si256(
            _mm256_cmpgt_epi32(positions, _mm256_set1_epi32(lo - 1)),
            _mm256_cmpgt_epi32(_mm256_set1_epi32(hi), positions),
        )
    }
}

/// # Safety
/// As for [`portable_kernel`], and the host has AVX-512 F and VL, AVX2 and FMA ([`Isa::host`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe extern "C" fn avx512_kernel<const K: usize, const S: usize, const D: usize>(args: *const PlaneArgs) {
    // SAFETY: the caller's contract.
    let args = unsafe { &*args };
    if args.depth != FLAT {
        if !volume::applies::<Avx512>(args, K, S, D) {
            // SAFETY: the caller's contract.
            return unsafe { portable_kernel::<K, S, D>(args) };
        }
        // SAFETY: the caller's contract. (An opaque pointer: see `out_of_line`.)
        return unsafe { out_of_line(avx512_volumes::<D>)(args) };
    }
    if transposed::applies::<Avx512>(args, K, S, D) {
        // `applies` holds a 3 × 3 or 5 × 5 window (named as such, so that no other window makes
        // versions of its own) and rows of 2 to 13 (of 10 to 13 in taller planes: AVX2's banded
        // kernel).
        let planes = if K == 5 { transposed_rows::<5>(args, true) } else { transposed_rows::<3>(args, true) };
        // SAFETY: the caller's contract. (An opaque pointer: see `out_of_line`.)
        return unsafe { out_of_line(planes)(args) };
    }
    if flat::applies(args, S) {
        const { assert!(flat::CHUNK == 4, "a version for each chunk of 1 to 4 vectors") };
        let planes: unsafe fn(&PlaneArgs) = match (flat::chunk(args), args.planes >= flat::PLANES as isize) {
            (4, true) => avx512_flat::<K, D, 4, { flat::PLANES }>,
            (4, false) => avx512_flat::<K, D, 4, 1>,
            (3, true) => avx512_flat::<K, D, 3, { flat::PLANES }>,
            (3, false) => avx512_flat::<K, D, 3, 1>,
            (2, true) => avx512_flat::<K, D, 2, { flat::PLANES }>,
            (2, false) => avx512_flat::<K, D, 2, 1>,
            (_, true) => avx512_flat::<K, D, 1, { flat::PLANES }>,
            (_, false) => avx512_flat::<K, D, 1, 1>,
        };
        // SAFETY: the caller's contract. (An opaque pointer: see `out_of_line`.)
        return unsafe { out_of_line(planes)(args) };
    }
    if strided::applies(args, K, S, D) {
        // SAFETY: the caller's contract. (An opaque pointer: see `out_of_line`.)
        return unsafe { out_of_line(avx512_strided)(args) };
    }
    if stream::applies(args, K, S, D) {
        const { assert!(stream::together(K) <= 2, "a stream of 1 or 2 planes at a time") };
        let planes: unsafe fn(&PlaneArgs) =
            if stream::together(K) == 2 { avx512_stream::<K, 2> } else { avx512_stream::<K, 1> };
        // SAFETY: the caller's contract. (An opaque pointer: see `out_of_line`.)
        return unsafe { out_of_line(planes)(args) };
    }
    if columns::applies::<Avx512>(args, K, S, D) {
        // SAFETY: the caller's contract. (An opaque pointer: see `out_of_line`.)
        return unsafe { out_of_line(avx512_columns::<D>)(args) };
    }
    let planes: unsafe fn(&PlaneArgs) = match block_rows::<K>(args.output_size[0]) {
        8 => avx512_planes::<K, S, D, 8>,
        7 => avx512_planes::<K, S, D, 7>,
        4 => avx512_planes::<K, S, D, 4>,
        _ => avx512_planes::<K, S, D, 1>,
    };
    // SAFETY: the caller's contract. (An opaque pointer: see `out_of_line`.)
    unsafe { out_of_line(planes)(args) }
}

/// # Safety
/// As for [`portable_kernel`], and the host has AVX2 and FMA ([`Isa::host`]).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe extern "C" fn avx2_kernel<const K: usize, const S: usize, const D: usize>(args: *const PlaneArgs) {
    // SAFETY: the caller's contract.
    let args = unsafe { &*args };
    if args.depth != FLAT {
        if !volume::applies::<Avx2>(args, K, S, D) {
            // SAFETY: the caller's contract.
            return unsafe { portable_kernel::<K, S, D>(args) };
        }
        // SAFETY: the caller's contract. (An opaque pointer: see `out_of_line`.)
        return unsafe { out_of_line(avx2_volumes::<D>)(args) };
    }
    if transposed::applies::<Avx2>(args, K, S, D) {
        // `applies` holds a 3 × 3 or 5 × 5 window (named as such, so that no other window makes
        // versions of its own) and rows of 2 to 32.
        let planes = if K == 5 { transposed_rows::<5>(args, false) } else { transposed_rows::<3>(args, false) };
        // SAFETY: the caller's contract. (An opaque pointer: see `out_of_line`.)
        return unsafe { out_of_line(planes)(args) };
    }
    if strided::applies(args, K, S, D) {
        // SAFETY: the caller's contract. (An opaque pointer: see `out_of_line`.)
        return unsafe { out_of_line(avx2_strided)(args) };
    }
    if columns::applies::<Avx2>(args, K, S, D) {
        // SAFETY: the caller's contract. (An opaque pointer: see `out_of_line`.)
        return unsafe { out_of_line(avx2_columns::<D>)(args) };
    }
    let planes: unsafe fn(&PlaneArgs) = match block_rows::<K>(args.output_size[0]) {
        8 => avx2_planes::<K, S, D, 8>,
        7 => avx2_planes::<K, S, D, 7>,
        4 => avx2_planes::<K, S, D, 4>,
        _ => avx2_planes::<K, S, D, 1>,
    };
    // SAFETY: the caller's contract. (An opaque pointer: see `out_of_line`.)
    unsafe { out_of_line(planes)(args) }
}

/// `planes`, opaque to the optimiser, so that a call through it stays a call: each block size's
/// loop nest is then a function of its own, whose registers serve only its blocks.
/// `#[inline(never)]` does not do this for a `#[target_feature]` function called from another
/// with the same features (rustc 1.95 inlined it all the same). Inlined into one entry point, a
/// run-time choice among more sizes made every size slower (adding 12-row blocks: the 4-row
/// layer ran 2× slower, the window's weights and row offsets on the stack); and with the present
/// sizes, AVX2's loop nests inlined side by side ran 0.90–0.99× of separate functions on five
/// of six depthwise layers, 1.10× on dw3_d2_c64_56 (an AVX-512 AMD EPYC with
/// `CONVGEN_MAX_ISA=avx2`, 10 pairs of processes; AVX-512's: 0.98–1.01×).
#[cfg(target_arch = "x86_64")]
fn out_of_line(planes: unsafe fn(&PlaneArgs)) -> unsafe fn(&PlaneArgs) {
    std::hint::black_box(planes)
}

/// [`planes`] in blocks of `R` rows on AVX-512.
///
/// # Safety
/// As for [`avx512_kernel`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn avx512_planes<const K: usize, const S: usize, const D: usize, const R: usize>(args: &PlaneArgs) {
    // SAFETY: the caller's contract.
    unsafe { planes::<Avx512, K, S, D, R>(args) }
}

/// [`stream::planes`], `P` planes at a time ([`stream::together`]), on AVX-512 (the only version:
/// AVX2's 16 registers do not hold a 5 × 5 window beside its sums, nor two 3 × 3 ones).
///
/// # Safety
/// As for [`avx512_kernel`], with [`stream::applies`] true.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn avx512_stream<const K: usize, const P: usize>(args: &PlaneArgs) {
    #[cfg(test)]
    STREAM_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: the caller's contract.
    unsafe { stream::planes::<Avx512, K, P>(args) }
}

/// The version of [`transposed::planes`] for a `K × K` window and `args`' rows (2 to 13, or on
/// AVX2 also 14), on AVX-512 or on AVX2; or on AVX2 of [`banded::planes`] for longer rows, and
/// (on both) for rows of 10 to 14 in planes of more than 14 rows.
#[cfg(target_arch = "x86_64")]
fn transposed_rows<const K: usize>(args: &PlaneArgs, avx512: bool) -> unsafe fn(&PlaneArgs) {
    use conv_dsl::ir::{PLANE_TRANSPOSED_MAX_POSITIONS, PLANE_TRANSPOSED_ROWS};
    // Each version's tables hold its planes' positions (`N`).
    const SHORT: usize = PLANE_TRANSPOSED_MAX_POSITIONS as usize;
    const ROWS: usize = PLANE_TRANSPOSED_ROWS.1 as usize;
    const { assert!(PLANE_TRANSPOSED_ROWS.0 == 9 && ROWS == 14, "a version for each row length") };
    fn long<const K: usize, const W: usize, const C: usize, const N: usize>(avx512: bool) -> unsafe fn(&PlaneArgs) {
        if avx512 { avx512_transposed::<K, W, C, N> } else { avx2_transposed::<K, W, C, N> }
    }
    fn version<const K: usize, const W: usize>(avx512: bool) -> unsafe fn(&PlaneArgs) {
        long::<K, W, W, SHORT>(avx512)
    }
    // Rows of 10 to 14 (AVX-512: to 13) in planes of more rows than the tables hold (`applies`):
    // a row at a time, on AVX-512 too with AVX2's 8 lanes (blocks of 16 positions need rows of 16).
    // On AVX-512 (`CONVGEN_MAX_ISA` unset, the build before and this one alternating, 512 planes,
    // 4–6 pairs), against its planar code or tile kernel: 0.97–1.07× (3 × 3, 40 rows of 10), 1.23×
    // (30 of 11), 1.40–1.60× (24 of 12), 2.29× (5 × 5, 20 of 13); rows of 14 keep its stream and
    // row kernels (this kernel ran 0.57× and 0.64× of them at 28 rows of 14).
    let [h, w] = args.input_size;
    if w >= PLANE_TRANSPOSED_ROWS.0 as isize && h > ROWS as isize {
        return avx2_banded::<K>;
    }
    match w {
        2 => version::<K, 2>(avx512),
        3 => version::<K, 3>(avx512),
        4 => version::<K, 4>(avx512),
        5 => version::<K, 5>(avx512),
        6 => version::<K, 6>(avx512),
        7 => version::<K, 7>(avx512),
        8 => version::<K, 8>(avx512),
        // Rows of 9 to 14 (14 on AVX2 only: `applies`), in planes of at most 14 rows: at most 7
        // sums at a time beside the window in AVX2's 16 registers (a row's 14 at once ran 0.66×
        // under a 5 × 5 window, 1.01× under a 3 × 3 one), the row's sums in as even runs as that
        // allows; the same runs on AVX-512.
        9 => long::<K, 9, 5, { ROWS * 9 }>(avx512),
        10 => long::<K, 10, 5, { ROWS * 10 }>(avx512),
        11 => long::<K, 11, 6, { ROWS * 11 }>(avx512),
        12 => long::<K, 12, 6, { ROWS * 12 }>(avx512),
        13 => long::<K, 13, 7, { ROWS * 13 }>(avx512),
        14 => avx2_transposed::<K, 14, 7, { ROWS * 14 }>,
        // Longer rows, on AVX2 only (`applies`), a row at a time.
        _ => avx2_banded::<K>,
    }
}

/// [`transposed::planes`] for a `K × K` window on rows of `W` (`C` sums at a time), 16 planes at
/// a time on AVX-512.
///
/// # Safety
/// As for [`avx512_kernel`], with [`transposed::applies`] true for AVX-512, `K` and rows of `W`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn avx512_transposed<const K: usize, const W: usize, const C: usize, const N: usize>(args: &PlaneArgs) {
    #[cfg(test)]
    TRANSPOSED_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: the caller's contract.
    unsafe { transposed::planes::<Avx512, 16, K, W, C, N>(args) }
}

/// [`transposed::planes`] for a `K × K` window on rows of `W` (`C` sums at a time), 8 planes at a
/// time on AVX2.
///
/// # Safety
/// As for [`avx2_kernel`], with [`transposed::applies`] true for AVX2, `K` and rows of `W`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_transposed<const K: usize, const W: usize, const C: usize, const N: usize>(args: &PlaneArgs) {
    #[cfg(test)]
    TRANSPOSED_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: the caller's contract.
    unsafe { transposed::planes::<Avx2, 8, K, W, C, N>(args) }
}

/// [`banded::planes`] for a `K × K` window, 8 planes at a time on AVX2, an output row's sums
/// [`PLANE_TRANSPOSED_BANDED_RUN`](conv_dsl::ir::PLANE_TRANSPOSED_BANDED_RUN) at a time (7, as in
/// rows of 14: [`transposed_rows`]).
///
/// # Safety
/// As for [`avx2_kernel`], with [`transposed::applies`] true for AVX2 and `K`, and rows of `K` +
/// that run to [`PLANE_TRANSPOSED_BANDED_MOST`](conv_dsl::ir::PLANE_TRANSPOSED_BANDED_MOST).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_banded<const K: usize>(args: &PlaneArgs) {
    #[cfg(test)]
    TRANSPOSED_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    const RUN: usize = conv_dsl::ir::PLANE_TRANSPOSED_BANDED_RUN as usize;
    const MOST: usize = conv_dsl::ir::PLANE_TRANSPOSED_BANDED_MOST as usize;
    // SAFETY: the caller's contract.
    unsafe { banded::planes::<Avx2, 8, K, RUN, MOST>(args) }
}

/// [`strided::planes`] on AVX-512.
///
/// # Safety
/// As for [`avx512_kernel`], with [`strided::applies`] true.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn avx512_strided(args: &PlaneArgs) {
    #[cfg(test)]
    STREAM_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: the caller's contract.
    unsafe { strided::planes::<Avx512>(args) }
}

/// [`strided::planes`] on AVX2.
///
/// # Safety
/// As for [`avx2_kernel`], with [`strided::applies`] true.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_strided(args: &PlaneArgs) {
    #[cfg(test)]
    STREAM_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: the caller's contract.
    unsafe { strided::planes::<Avx2>(args) }
}

/// [`columns::planes`] on AVX-512.
///
/// # Safety
/// As for [`avx512_kernel`], with [`columns::applies`] true.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn avx512_columns<const D: usize>(args: &PlaneArgs) {
    #[cfg(test)]
    STREAM_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: the caller's contract.
    unsafe { columns::planes::<Avx512, D>(args) }
}

/// [`columns::planes`] on AVX2.
///
/// # Safety
/// As for [`avx2_kernel`], with [`columns::applies`] true.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_columns<const D: usize>(args: &PlaneArgs) {
    #[cfg(test)]
    STREAM_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: the caller's contract.
    unsafe { columns::planes::<Avx2, D>(args) }
}

/// [`volume::volumes`] on AVX-512.
///
/// # Safety
/// As for [`avx512_kernel`], with [`volume::applies`] true.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn avx512_volumes<const D: usize>(args: &PlaneArgs) {
    #[cfg(test)]
    VOLUME_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: the caller's contract.
    unsafe { volume::volumes::<Avx512, D>(args) }
}

/// [`volume::volumes`] on AVX2.
///
/// # Safety
/// As for [`avx2_kernel`], with [`volume::applies`] true.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_volumes<const D: usize>(args: &PlaneArgs) {
    #[cfg(test)]
    VOLUME_CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // SAFETY: the caller's contract.
    unsafe { volume::volumes::<Avx2, D>(args) }
}

/// How often a plane kernel streamed a 3D layer's volumes (tests check that the path runs).
#[cfg(test)]
pub(crate) static VOLUME_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How often a plane kernel computed a 1D layer's rows ([`rows`]; tests check that the path runs).
#[cfg(test)]
pub(crate) static ROWS_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How often a plane kernel transposed small planes ([`transposed`]; tests check that the path
/// runs).
#[cfg(test)]
static TRANSPOSED_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// How often a plane kernel streamed its planes (tests check that the path runs).
#[cfg(test)]
static STREAM_CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// [`planes`] in blocks of `R` rows on AVX2.
///
/// # Safety
/// As for [`avx2_kernel`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn avx2_planes<const K: usize, const S: usize, const D: usize, const R: usize>(args: &PlaneArgs) {
    // SAFETY: the caller's contract.
    unsafe { planes::<Avx2, K, S, D, R>(args) }
}

/// [`flat::planes`] in runs of `C` vectors of `P` planes at a time on AVX-512 (the only version:
/// AVX2's 8 lanes fill rows of 7 nearly, and its masked loads and multiply-adds cost a blend each —
/// flat 7 × 7 planes on AVX2 ran 0.70× its row kernel).
///
/// # Safety
/// As for [`avx512_kernel`], with [`flat::applies`] true.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn avx512_flat<const K: usize, const D: usize, const C: usize, const P: usize>(args: &PlaneArgs) {
    // SAFETY: the caller's contract.
    unsafe { flat::planes::<K, D, C, P>(args) }
}

/// Output rows per block where a plane has that many and no taller block suits it.
const ROWS: isize = 4;

/// Output rows per block in a plane of `oh` rows (the entry points compile a loop nest for each
/// size, the size a constant in it): more sums in flight than [`ROWS`] hide more of the FMA
/// latency. For a 3 × 3 window 8, or 7 where that computes fewer rows (7 divides 7, 14, 21 and
/// 28; 8 rows there overlap); for a 5 × 5 window 7, on 8 lanes its rows' weights splatted from
/// memory beside the sums, on 16 all in registers ([`in_registers`]).
///
/// 7 rows against 8 on an AVX-512 AMD EPYC (3 × 3 planes, `--schedule dw:kernel=plane`, each
/// against the default schedule, 100 alternating pairs, median ratios): 1.14× against 0.99× on
/// dw3_s1_c384_14 (rows of 14), 0.79× against 0.69× on dw3_s1_c960_7, 1.36× against 1.28× at
/// 28 × 28, 1.05× against 0.92× at 21 × 21; with `CONVGEN_MAX_ISA=avx2` 0.63× against 0.55× on
/// dw3_s1_c384_14 and 0.80× against 0.74× at 28 × 28.
///
/// Measured on an AVX2 Zen 3 (one process, alternating with 4-row blocks, median of 80–100 pair
/// ratios): 3 × 3 with 8 rows: dw3_s1_c144_56 1.18–1.20×, dw3_d2_c64_56 1.21–1.22×,
/// relu6_dw3_c64_56 1.14×, dw3_s1_c32_112 1.05–1.07×, dw3_s2_c96_112 1.00–1.06×,
/// dw3_s1_c384_14 1.00 (7 or 6 rows: no better); 5 × 5 with 7 rows: dw5_s1_c240_28 1.11–1.17×, 64
/// channels at 56 × 56 1.36× (8 rows: 1.05× and 1.13×).
///
/// On an AVX-512 AMD EPYC (`convgen bench` of the layer, this against 4-row blocks on 16 lanes
/// in the one loop nest of before, processes alternating, median of 8 pair ratios): 3 × 3 with 8
/// rows: dw3_s1_c144_56 1.14×, dw3_s1_c32_112 1.08×, dw3_s2_c96_112 1.14×, dw3_d2_c64_56 1.23×,
/// relu6_dw3_c64_56 1.13×, dw3_s1_c384_14 and dw3_s1_c960_7 1.01–1.02×. Against 8 rows in the
/// same build: 4, 5 or 6 rows 0.83–0.97×, 12 rows 0.96–1.00×. 5 × 5 with 7 or 8 rows: 0.87×, with
/// 4 rows 0.93× (the one regression: the old loop nest, restored for 5 × 5 alone, measured 1.00×;
/// hiding the size from its outer loops did not help). The same build on that host with
/// `CONVGEN_MAX_ISA=avx2` (8 lanes, block sizes as before, 10 pairs): 1.03–1.09×
/// (dw3_s1_c144_56 1.08×, dw3_s2_c96_112 1.09×, dw5_s1_c240_28 1.03×), dw3_d2_c64_56 1.00×.
///
/// 5 × 5 on 16 lanes, the window in registers in blocks of 7 rows against tap rows splatted from
/// memory in blocks of 4 (the AVX-512 AMD EPYC, `convgen bench` of the layer, two builds
/// alternating, median of 8–16 pair ratios): dw5_s1_c240_28 1.10×, 480 channels at 14 × 14
/// 1.19×, 64 at 56 × 56 1.05×, 32 at 112 × 112 0.98×, stride 2 144 at 56 × 56 1.22×; 8-row blocks
/// where they overlap less (56, 112 rows) 1.03× and 0.90× of 7.
#[cfg(target_arch = "x86_64")]
fn block_rows<const K: usize>(oh: isize) -> isize {
    let sizes: &[isize] = if K <= 3 { &[8, 7] } else { &[7] };
    // The size that computes the fewest rows (blocks overlap where it does not divide OH).
    let computed = |rows: isize| div_ceil(oh, rows) * rows;
    let fitting = sizes.iter().copied().filter(|&rows| rows <= oh);
    match fitting.min_by_key(|&rows| (computed(rows), -rows)) {
        Some(rows) => rows,
        None if oh >= ROWS => ROWS,
        None => 1,
    }
}

/// One block of output rows × one vector of output positions, and where it reads.
#[derive(Clone, Copy)]
struct Block {
    /// The group's first input plane.
    input: *const f32,
    /// Input planes the sums run over, `H·W` elements apart.
    group_inputs: isize,
    /// The output plane's first window (the next input plane's is `K·K` on).
    weight: *const f32,
    /// (H, W).
    size: [isize; 2],
    /// The input row of the block's first output row at tap 0 (may be above the plane).
    top: isize,
    /// The input column of the vector's first lane at tap 0 (may be left of the plane).
    left: isize,
    /// Where the block's first output row and lane go.
    output: *mut f32,
    /// OW: output elements from one row to the next.
    output_row: isize,
    /// Lanes that are output positions (`L`, or fewer in a row shorter than a vector).
    lanes: isize,
    /// The `ACT_*` code.
    act: isize,
}

/// Every plane of `args`: blocks of `R` output rows ([`block_rows`]; the last block overlaps the
/// one before where `OH` is not a multiple; 1 in a plane of fewer than [`ROWS`]) × vectors along
/// the row (the last overlapping likewise; one masked vector in a row shorter than a vector). A
/// block whose window lies inside the plane runs without checks (a run of them side by side in
/// one loop, [`sweep`]); one on a border skips the rows outside and masks the columns outside.
///
/// # Safety
/// As for [`portable_kernel`], and the host runs `X`'s instructions.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn planes<X: Lanes, const K: usize, const S: usize, const D: usize, const R: usize>(args: &PlaneArgs) {
    let ([h, w], [oh, ow], [pad_top, pad_left]) = (args.input_size, args.output_size, args.padding);
    let (k, s, d, l) = (K as isize, S as isize, D as isize, X::L);
    if oh <= 0 || ow <= 0 {
        return;
    }
    let (lanes, vectors) = if ow >= l { (l, div_ceil(ow, l)) } else { (ow, 1) };
    let rows = R as isize;
    // SAFETY: the caller's contract; `block` reads only inside the plane (see there).
    unsafe {
        for p in 0..args.planes {
            let input = args.input.offset(args.group(p) * args.group_inputs * h * w);
            let weight = args.weight.offset(p * args.group_inputs * k * k);
            let taps = if in_registers(X::L, K) && !window_per_block::<X, S>() {
                window::<X, K>(weight)
            } else {
                [[X::splat(0.0); K]; K]
            };
            let bias = X::splat(if args.bias.is_null() { 0.0 } else { *args.bias.offset(p) });
            let output = args.output.offset(p * oh * ow);
            let mut next = 0;
            while next < oh {
                let first = next.min(oh - rows);
                let top = first * s - pad_top;
                let rows_inside = top >= 0 && top + (rows - 1) * s + (k - 1) * d < h;
                let columns_inside = |column: isize| {
                    let left = column * s - pad_left;
                    lanes == l && left >= 0 && left + (l - 1) * s + (k - 1) * d < w
                };
                let mut v = 0;
                while v < vectors {
                    let column = (v * l).min(ow - lanes);
                    let left = column * s - pad_left;
                    let at = Block {
                        input,
                        group_inputs: args.group_inputs,
                        weight,
                        size: [h, w],
                        top,
                        left,
                        output: output.offset(first * ow + column),
                        output_row: ow,
                        lanes,
                        act: args.act,
                    };
                    let inside = (rows_inside, columns_inside(column));
                    if in_registers(X::L, K) && rows >= ROWS && inside.1 {
                        // The run of vectors inside from here, each `L` on from the one before.
                        let mut end = v + 1;
                        while end < vectors && end * l <= ow - lanes && columns_inside(end * l) {
                            end += 1;
                        }
                        sweep::<X, K, S, D, R>(&at, &taps, bias, rows_inside, end - v);
                        v = end;
                        continue;
                    }
                    if R == 1 {
                        block::<X, K, S, D, 1, true, true>(&at, &taps, bias);
                    } else {
                        rows_block::<X, K, S, D, R>(&at, &taps, bias, inside);
                    }
                    v += 1;
                }
                next += rows;
            }
        }
    }
}

/// A block of `R` rows: [`block`] with the checks its rows and columns need (`inside`: whether
/// every row, and every column, the block reads is inside the plane).
///
/// # Safety
/// As for [`block`], with `inside` true only where it holds.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn rows_block<X: Lanes, const K: usize, const S: usize, const D: usize, const R: usize>(
    at: &Block,
    taps: &[[X::V; K]; K],
    bias: X::V,
    inside: (bool, bool),
) {
    // SAFETY: the caller's contract: each version checks what `inside` does not promise.
    unsafe {
        match inside {
            (true, true) => block::<X, K, S, D, R, false, false>(at, taps, bias),
            (true, false) => block::<X, K, S, D, R, false, true>(at, taps, bias),
            (false, true) => block::<X, K, S, D, R, true, false>(at, taps, bias),
            (false, false) => block::<X, K, S, D, R, true, true>(at, taps, bias),
        }
    }
}

/// `count` blocks of `R` rows side by side from `at`, each a vector (`L` outputs, `L·S` input
/// columns) on from the one before, every column of which is inside the plane (`rows_inside`:
/// every row too): one loop, whose row offsets (and weights, but where
/// [`window_per_block`]) stay in registers from one block to the next. For windows in
/// registers ([`in_registers`]). Measured on an AVX2 Zen 3, together
/// with [`block`]'s order by input rows, against a call per block in the order by tap rows (one
/// process, alternating, median of 100–200 pair ratios; single planes): 3 × 3 over 112 × 112
/// 1.14–1.22×, 56 × 56 1.02–1.06×, stride 2 1.02–1.04×, dilation 2 1.05×; 5 × 5 (on 8 lanes,
/// not in registers) 0.96–0.99×, so those keep a call per block. 5 × 5 on 16 lanes, in
/// registers, against a call per block (AVX-512 AMD EPYC, 8 pairs): 1.02–1.05×.
///
/// # Safety
/// As for [`block`] without `MASK_COLUMNS`, for each of the blocks.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn sweep<X: Lanes, const K: usize, const S: usize, const D: usize, const R: usize>(
    at: &Block,
    taps: &[[X::V; K]; K],
    bias: X::V,
    rows_inside: bool,
    count: isize,
) {
    let mut at = *at;
    // SAFETY: the caller's contract, for each block.
    unsafe {
        if rows_inside {
            for _ in 0..count {
                block::<X, K, S, D, R, false, false>(&at, taps, bias);
                at.left += X::L * S as isize;
                at.output = at.output.offset(X::L);
            }
        } else {
            for _ in 0..count {
                block::<X, K, S, D, R, true, false>(&at, taps, bias);
                at.left += X::L * S as isize;
                at.output = at.output.offset(X::L);
            }
        }
    }
}

/// Whether [`planes`] keeps a `kernel × kernel` window's taps in registers on vectors of `lanes`:
/// a 3 × 3 window always; a 5 × 5 one on 16 lanes, whose 32 registers hold its 25 taps beside a
/// block's 7 sums and a load (a few taps spilled and reloaded, aligned, from the stack; where
/// only 5 sums are live, a depthwise plane at stride 1, [`stream`] does without spills), not on
/// 8 lanes, whose 16 registers do not (the compiler spilled most of them).
const fn in_registers(lanes: isize, kernel: usize) -> bool {
    kernel <= 3 || (lanes == 16 && kernel <= 5)
}

/// `$body` for `$kh` = 0, 1, … K - 1 as constants (K ≤ [`MAX_WINDOW`], which `block` asserts), so
/// that the compiler sees one straight block: it did not unroll a loop over a 5 × 5 window's
/// rows, and then loaded every input row once per tap row instead of once.
macro_rules! unroll_rows {
    ($kh:ident in $k:expr => $body:block) => {
        {
            let $kh: usize = 0;
            if $kh < $k $body
        }
        {
            let $kh: usize = 1;
            if $kh < $k $body
        }
        {
            let $kh: usize = 2;
            if $kh < $k $body
        }
        {
            let $kh: usize = 3;
            if $kh < $k $body
        }
        {
            let $kh: usize = 4;
            if $kh < $k $body
        }
    };
}

/// The widest window a kernel exists for ([`PLANE_WINDOWS`]), and the rows `unroll_rows!`
/// writes out.
const MAX_WINDOW: usize = 5;

/// `$body` for `$i` = 0, 1, … n − 1 as constants (n ≤ [`MAX_INPUT_ROWS`], which `block` asserts):
/// the input rows of a block, one straight block of code, as `unroll_rows!` the window's rows.
macro_rules! unroll_inputs {
    ($i:ident in $n:expr => $body:block) => {
        unroll_inputs!(@ $i ($n) $body 0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19)
    };
    (@ $i:ident $n:tt $body:block $($value:literal)*) => {
        $({
            let $i: usize = $value;
            if $i < $n $body
        })*
    };
}

/// The most input rows `unroll_inputs!` writes out: a block of 8 rows at stride 2 under a
/// 3 × 3 window reads 17.
const MAX_INPUT_ROWS: usize = 20;

/// One row of a window: `K` weights from `weight`, each in every lane.
///
/// # Safety
/// `weight` points to `K` readable elements.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn window_row<X: Lanes, const K: usize>(weight: *const f32) -> [X::V; K] {
    // SAFETY: the caller's contract.
    unsafe {
        let mut taps = [X::splat(0.0); K];
        for (kw, tap) in taps.iter_mut().enumerate() {
            *tap = X::splat(*weight.add(kw));
        }
        taps
    }
}

/// Whether each block of a window in registers splats the window itself
/// ([`Lanes::WINDOW_PER_BLOCK`]): at stride 1 only. Measured on an AVX-512 AMD EPYC Zen 4
/// (builds alternating, `convgen bench --runs 300`, medians of 4–6 pairs' ratios): splatting per
/// block made dw3_s2_c96_112 0.88× as fast (0.179 → 0.200–0.209 ms), while the stride-1 layers
/// gained there too (dw5_s1_c240_28 1.34×, dw3_s1_c32_112, dw3_d2_c64_56 and relu6_dw3_c64_56
/// 1.05×, g3_c128_g32_56 1.02×).
const fn window_per_block<X: Lanes, const S: usize>() -> bool {
    X::WINDOW_PER_BLOCK && S == 1
}

/// A window's taps with the lanes outside `masks` (per tap column) −0 ([`Lanes::masked_weight`]).
///
/// # Safety
/// The host runs `X`'s instructions.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn masked_window<X: Lanes, const K: usize>(mut taps: [[X::V; K]; K], masks: &[X::M; K]) -> [[X::V; K]; K] {
    // SAFETY: the caller's contract.
    unsafe {
        for row in taps.iter_mut() {
            for (tap, &mask) in row.iter_mut().zip(masks) {
                *tap = X::masked_weight(*tap, mask);
            }
        }
    }
    taps
}

/// A window's `K × K` weights from `weight`, each in every lane.
///
/// # Safety
/// `weight` points to `K·K` readable elements.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn window<X: Lanes, const K: usize>(weight: *const f32) -> [[X::V; K]; K] {
    // SAFETY: the caller's contract. (Loops, not `array::from_fn`, which is not always inlined.)
    unsafe {
        let mut taps = [[X::splat(0.0); K]; K];
        for (kh, row) in taps.iter_mut().enumerate() {
            for (kw, tap) in row.iter_mut().enumerate() {
                *tap = X::splat(*weight.add(kh * K + kw));
            }
        }
        taps
    }
}

/// `R` output rows × one vector: the sums start at the bias, take every input plane of the group
/// and every tap in order (rows, then columns of the window; the `R` rows share each input row's
/// loads), are activated and stored. `taps` is the first input plane's window, in registers (unless
/// [`window_per_block`], where the block splats it itself).
/// A window in registers goes input row by input row (each loaded once, its taps added to every
/// output row that reads it: a stride-2 window's shuffled inputs are not kept for a later tap
/// row); a larger one tap row by tap row (each row's weights splatted once). Either way each sum
/// takes its taps in the window's order.
/// `CHECK_ROWS`: skip the taps whose input row is outside the plane. `MASK_COLUMNS`: load and add
/// only the lanes whose input column is inside it (and that are output positions).
///
/// # Safety
/// As for [`planes`]; without `CHECK_ROWS` every row the block reads is inside the plane, without
/// `MASK_COLUMNS` every column.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn block<
    X: Lanes,
    const K: usize,
    const S: usize,
    const D: usize,
    const R: usize,
    const CHECK_ROWS: bool,
    const MASK_COLUMNS: bool,
>(
    at: &Block,
    taps: &[[X::V; K]; K],
    bias: X::V,
) {
    const { assert!(K <= MAX_WINDOW, "unroll_rows! covers MAX_WINDOW rows") };
    const { assert!(!in_registers(X::L, K) || (R - 1) * S + (K - 1) * D < MAX_INPUT_ROWS, "unroll_inputs! covers them") };
    let (s, d) = (S as isize, D as isize);
    let [h, w] = at.size;
    // SAFETY: the pointers formed with `wrapping_offset` are only dereferenced through the lanes
    // inside the plane: whole vectors where the block is inside, masked lanes elsewhere.
    unsafe {
        // Per tap column: the lanes whose input column is inside the row, `lo..hi`, as a mask of
        // lanes (in the stride-2 order at stride 2) and (stride 2) of the pair of loads' elements.
        // (Loops, not `array::from_fn`, which is not always inlined.)
        let (mut masks, mut spans) = ([X::mask(0, 0); K], [X::span_mask(0, 0); K]);
        if MASK_COLUMNS && S == 1 {
            masks = column_masks::<X, K>(at.left, w, at.lanes, d);
        } else if MASK_COLUMNS {
            for kw in 0..K {
                let start = at.left + kw as isize * d;
                let (lo, hi) = (div_ceil(-start, s), div_ceil(w - start, s).min(at.lanes));
                // An odd tap offset reads the odd elements of the pair one element back.
                let odd = (kw as isize * d) % 2;
                masks[kw] = X::strided_mask(lo, hi);
                spans[kw] = X::span_mask(2 * lo + odd, 2 * hi - 1 + odd);
            }
        }
        let mut sums = [bias; R];
        for k in 0..at.group_inputs {
            let weight = at.weight.offset(k * (K * K) as isize);
            let input = at.input.offset(k * h * w);
            if in_registers(X::L, K) {
                // The whole window in registers: input row after input row, unrolled, each
                // loaded once and taken by every output row whose window covers it (an output
                // row's taps still come in the window's order: its input rows are in order).
                let mut taps = if k == 0 && !window_per_block::<X, S>() { *taps } else { window::<X, K>(weight) };
                if MASK_COLUMNS && X::MASK_WEIGHTS {
                    taps = masked_window::<X, K>(taps, &masks);
                }
                unroll_inputs!(i in (R - 1) * S + (K - 1) * D + 1 => {
                    let row = at.top + i as isize;
                    if !CHECK_ROWS || (0..h).contains(&row) {
                        // Tap column after tap column: one input vector live at a time, added to
                        // every output row that reads it (each row takes one tap row of this
                        // input row, so its taps still come in the window's order).
                        for kw in 0..K {
                            let x = inputs::<X, K, S, D, MASK_COLUMNS>(input, row * w + at.left, kw, &masks, &spans);
                            for (kh, taps) in taps.iter().enumerate() {
                                // The output row that reads input row `i` at tap row `kh`, if any.
                                let Some(from_top) = i.checked_sub(kh * D) else { continue };
                                if from_top % S != 0 || from_top / S >= R {
                                    continue;
                                }
                                let sum = &mut sums[from_top / S];
                                *sum = if MASK_COLUMNS && !X::MASK_WEIGHTS {
                                    X::fma_masked(*sum, x, taps[kw], masks[kw])
                                } else {
                                    X::fma(*sum, x, taps[kw])
                                };
                            }
                        }
                    }
                });
                continue;
            }
            // A larger window (its taps do not fit in registers with the sums): tap row after
            // tap row, unrolled, each splatted from memory once and taken by every output row
            // (their loads of one input row shared).
            unroll_rows!(kh in K => {
                let mut taps = window_row::<X, K>(weight.add(kh * K));
                if MASK_COLUMNS && X::MASK_WEIGHTS {
                    for (tap, &mask) in taps.iter_mut().zip(&masks) {
                        *tap = X::masked_weight(*tap, mask);
                    }
                }
                for (r, sum) in sums.iter_mut().enumerate() {
                    let row = at.top + r as isize * s + kh as isize * d;
                    if CHECK_ROWS && !(0..h).contains(&row) {
                        continue;
                    }
                    for (kw, &weight) in taps.iter().enumerate() {
                        let x = inputs::<X, K, S, D, MASK_COLUMNS>(input, row * w + at.left, kw, &masks, &spans);
                        // Masked lanes of `x` are +0 (masked loads): a masked weight keeps the sum.
                        *sum = if MASK_COLUMNS && !X::MASK_WEIGHTS {
                            X::fma_masked(*sum, x, weight, masks[kw])
                        } else {
                            X::fma(*sum, x, weight)
                        };
                    }
                }
            });
        }
        for (r, sum) in sums.iter().enumerate() {
            let y = X::activate(*sum, at.act);
            let y = if S == 1 { y } else { X::unstride(y) };
            store_row::<X>(at.output.offset(r as isize * at.output_row), y, at.lanes, at.output_row, r + 1 < R);
        }
    }
}

/// Stores a row's `lanes` outputs, `y`'s first lanes, to `to`, in a plane of rows of `output_row`.
/// A row shorter than a vector is stored as a whole vector, its last lanes running into the next
/// row's first ones — which that row's store writes again, later (`next_stored_later`) — so only
/// the last row needs a masked store (AVX2's `vmaskmovps` store is slow on AMD: 7 × 7 planes
/// with `CONVGEN_MAX_ISA=avx2` ran 1.36× faster, 0.050 against 0.068 ms on dw3_s1_c960_7 with
/// `kernel=plane`; AVX-512 no different).
///
/// # Safety
/// `to` is where the row starts; the row, and where `next_stored_later` the next one, lies in
/// the output plane.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn store_row<X: Lanes>(to: *mut f32, y: X::V, lanes: isize, output_row: isize, next_stored_later: bool) {
    // SAFETY: the caller's contract: a whole vector from `to` runs at most into the next row.
    unsafe {
        if lanes == X::L || (next_stored_later && lanes == output_row && 2 * lanes >= X::L) {
            X::store(to, y)
        } else {
            X::store_masked(to, y, X::mask(0, lanes))
        }
    }
}

/// Per tap column of a window of dilation `d` at stride 1, the lanes (of the first `lanes`) whose
/// input column is inside a row of `w`, where the vector's first lane reads column `left` at tap
/// 0. Bit `j` of one word says whether column `left + j` is inside the row (`j < L + (K − 1)·D ≤
/// 24`); a tap column's lanes are those bits from its offset (one shift and mask per tap: made
/// per tap from `lo..hi`, the masks took ~9% of dw5_s1_c240_28's time, every block of which is on
/// a border column).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn column_masks<X: Lanes, const K: usize>(left: isize, w: isize, lanes: isize, d: isize) -> [X::M; K] {
    // SAFETY: `mask_of_bits` only builds a mask.
    unsafe {
        let inside = bits(-left, w - left, 63);
        let mut masks = [X::mask(0, 0); K];
        for (kw, mask) in masks.iter_mut().enumerate() {
            *mask = X::mask_of_bits((inside >> (kw as isize * d)) & bits(0, lanes, 63));
        }
        masks
    }
}

/// A vector of inputs for tap column `kw`, from the row whose first column of the block is `at`
/// elements from `input`: `L` consecutive ones (stride 1) or every second ([`strided`]), only the
/// lanes of `masks[kw]` (`spans[kw]` at stride 2) with `MASK`. (A function, not a closure in
/// `block`: a closure is not always inlined, and out of line it lacks the enclosing function's
/// target features — stride-2 planes ran 10× slower so.)
///
/// # Safety
/// As for [`block`]: the elements read are inside the plane.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn inputs<X: Lanes, const K: usize, const S: usize, const D: usize, const MASK: bool>(
    input: *const f32,
    at: isize,
    kw: usize,
    masks: &[X::M; K],
    spans: &[(X::M, X::M); K],
) -> X::V {
    let from = input.wrapping_offset(at + (kw * D) as isize);
    // SAFETY: the caller's contract; masked-off lanes touch no memory.
    unsafe {
        if S == 1 {
            if MASK { X::load_masked(from, masks[kw]) } else { X::load(from) }
        } else {
            strided::<X, MASK>(from, (kw * D) % 2 == 1, kw + 1 == K, spans[kw])
        }
    }
}

/// The elements `from + 2·j` for `j` in `0..L`, in the stride-2 order ([`Lanes::evens`]): the even
/// elements of the pair of loads from `from`, or where `odd` the odd ones of the pair from one
/// element back (each pair reads `2·L` elements, one past the last it needs where it starts at
/// `from`). With `MASK`, only the pair's elements in `span`; without, every element up to the
/// last needed is inside the row, and so is the one past it unless `last` (the window's last
/// column, read without it).
///
/// # Safety
/// As for [`block`]: the elements read are inside the plane.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn strided<X: Lanes, const MASK: bool>(from: *const f32, odd: bool, last: bool, span: (X::M, X::M)) -> X::V {
    // SAFETY: the caller's contract; masked-off lanes touch no memory.
    unsafe {
        let at = if odd { from.wrapping_offset(-1) } else { from };
        let (a, b) = if MASK {
            (X::load_masked(at, span.0), X::load_masked(at.wrapping_offset(X::L), span.1))
        } else if last && !odd {
            (X::load(at), X::load_but_last(at.wrapping_offset(X::L)))
        } else {
            (X::load(at), X::load(at.wrapping_offset(X::L)))
        };
        if odd { X::odds(a, b) } else { X::evens(a, b) }
    }
}

/// `⌈a / b⌉` for `b > 0`.
fn div_ceil(a: isize, b: isize) -> isize {
    a.div_euclid(b) + isize::from(a.rem_euclid(b) != 0)
}

/// The shape of a plane statement: everything of a [`conv_dsl::ir::Plane`] but its buffers and
/// indices (the `conv!` macro's code passes it to [`plane`]).
#[derive(Clone, Copy, Debug)]
pub struct PlaneShape {
    /// Output planes.
    pub planes: usize,
    /// Input planes per group, which each output plane sums over.
    pub group_inputs: usize,
    /// Output planes per group.
    pub group_outputs: usize,
    /// (H, W).
    pub input_size: [usize; 2],
    /// (OH, OW).
    pub output_size: [usize; 2],
    /// Taps along each axis.
    pub kernel: usize,
    /// Along each axis.
    pub stride: usize,
    /// Along each axis.
    pub dilation: usize,
    /// (top, left).
    pub padding: [usize; 2],
    /// Applied to every sum before it is stored.
    pub act: TileActivation,
    /// A 3D layer's depth axis ([`PlaneDepth::FLAT`] for a 2D one's).
    pub depth: PlaneDepth,
}

/// Runs a plane statement (the semantics of [`conv_dsl::ir::Plane`]) on slices, with the kernel
/// generated JIT code calls: AVX-512 or AVX2 + FMA where the CPU has them, the portable one (the
/// same fused sums) otherwise. The `conv!` macro's AVX2 code calls it.
///
/// # Panics
/// If the planes reach outside a slice, or no kernel exists for the window: the macro never emits
/// such a call (its plan is checked when it is lowered); the check makes this function safe to
/// call with anything.
pub fn plane(
    input: (&[f32], usize),
    weight: (&[f32], usize),
    bias: Option<(&[f32], usize)>,
    output: (&mut [f32], usize),
    shape: &PlaneShape,
) {
    run_checked(Isa::host(), input, weight, bias, output, shape);
}

/// [`plane`] with the kernels of `isa`, a version the host runs.
fn run_checked(
    isa: Isa,
    (input, input_index): (&[f32], usize),
    (weight, weight_index): (&[f32], usize),
    bias: Option<(&[f32], usize)>,
    (output, output_index): (&mut [f32], usize),
    shape: &PlaneShape,
) {
    use conv_dsl::ir::{BufferId, Index};
    let described = Plane {
        input: BufferId(0),
        input_index: Index::constant(0),
        weight: BufferId(1),
        weight_index: Index::constant(0),
        bias: bias.map(|_| (BufferId(2), Index::constant(0))),
        output: BufferId(3),
        output_index: Index::constant(0),
        planes: shape.planes as u64,
        group_inputs: shape.group_inputs as u64,
        group_outputs: shape.group_outputs as u64,
        input_size: shape.input_size.map(|size| size as u64),
        output_size: shape.output_size.map(|size| size as u64),
        kernel: shape.kernel as u64,
        stride: shape.stride as u64,
        dilation: shape.dilation as u64,
        padding: shape.padding.map(|pad| pad as u64),
        act: shape.act,
        depth: shape.depth,
    };
    let kernel = kernel_for(isa, (described.kernel, described.stride, described.dilation));
    let lengths = [input.len(), weight.len(), bias.map_or(0, |(bias, _)| bias.len()), output.len()];
    let bases = [input_index, weight_index, bias.map_or(0, |(_, index)| index), output_index];
    let inside = crate::microkernel::inside(described.extents(), bases, lengths);
    let depth = shape.depth.values();
    let counts = [shape.planes, shape.group_inputs, shape.group_outputs];
    let sane = shape.group_inputs >= 1
        && shape.group_outputs >= 1
        && counts.iter().all(|&n| n <= isize::MAX as usize)
        && depth.iter().all(|&n| n <= isize::MAX as u64);
    let Some(kernel) = kernel.filter(|_| inside && sane) else {
        panic!("a plane statement outside its buffers or of a window no kernel computes: {described:?}");
    };
    let signed = |value: usize| value as isize;
    let args = PlaneArgs {
        input: input.as_ptr().wrapping_add(input_index),
        weight: weight.as_ptr().wrapping_add(weight_index),
        bias: bias.map_or(std::ptr::null(), |(bias, index)| bias.as_ptr().wrapping_add(index)),
        output: output.as_mut_ptr().wrapping_add(output_index),
        planes: signed(shape.planes),
        group_inputs: signed(shape.group_inputs),
        group_outputs: signed(shape.group_outputs),
        input_size: shape.input_size.map(signed),
        output_size: shape.output_size.map(signed),
        padding: shape.padding.map(signed),
        depth: depth.map(|n| n as isize),
        act: act_code(shape.act),
    };
    // SAFETY: every plane lies inside its slice (checked just above with the definition the JIT's
    // checker uses, `Plane::extents`), `output` is an exclusive borrow distinct from the shared
    // ones, and the kernel is of a version the CPU runs (the caller's choice).
    unsafe { kernel(&args) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use conv_dsl::ir::PLANE_VOLUME_ROWS;
    use conv_dsl::random::SplitMix64;

    /// Every version has a kernel for each window the lowering may emit.
    #[test]
    fn every_window_has_a_kernel_on_every_isa() {
        for isa in [Isa::Portable, Isa::Avx2, Isa::Avx512] {
            let windows: Vec<_> = kernels(isa).into_iter().map(|(window, _)| window).collect();
            assert_eq!(windows, PLANE_WINDOWS, "{isa:?}");
        }
    }

    /// Blocks of 8 rows for a 3 × 3 window, of 7 where that computes fewer rows; a 5 × 5 window's
    /// one size per width; 4, then 1, in planes shorter than that.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn block_rows_overlap_least() {
        let three = [(56, 8), (112, 8), (16, 8), (15, 8), (14, 7), (28, 7), (21, 7), (9, 7), (7, 7), (6, 4), (3, 1)];
        for (oh, rows) in three {
            assert_eq!(block_rows::<3>(oh), rows, "{oh} rows");
        }
        assert_eq!([28, 14, 6, 3].map(block_rows::<5>), [7, 7, 4, 1]);
    }

    /// Random planes with every window, padding up to 3, rows of 1 to 64 outputs and 1 to 40 rows,
    /// depthwise with multipliers 1 to 3 or grouped (up to 4 inputs per group; a 1x1 window also
    /// unpadded, one group of up to 40 inputs and 20 outputs), with and without
    /// bias, every activation: each version the host runs writes exactly the portable kernel's
    /// results (the definition, `f32::mul_add`), and nothing outside the output planes.
    #[test]
    fn every_version_computes_the_definition_bit_for_bit() {
        let mut rng = SplitMix64::new(5);
        let mut below = |n: u64| (rng.next_u64() % n) as usize;
        let acts = [TileActivation::None, TileActivation::Relu, TileActivation::Relu6];
        for case in 0..480 {
            let (kernel, stride, dilation) =
                PLANE_WINDOWS.map(|(k, s, d)| (k as usize, s as usize, d as usize))[case % 6];
            // A 1x1 window mostly unpadded (its kernel's fast path), else padded (the fallback).
            let pointwise = kernel == 1;
            let padding = if pointwise && case % 4 != 0 { [0, 0] } else { [below(4), below(4)] };
            let reach = dilation * (kernel - 1) + 1;
            // Up to 40 rows: several blocks of 4, 7 or 8 rows, the last overlapping; up to 64
            // columns: runs of several vectors inside the plane (`sweep`), the last overlapping.
            let output_size = [1 + below(40), 1 + below(64)];
            // Inputs from the least that reaches every output's first tap to a few more.
            let input_size = [0, 1].map(|axis| {
                let least = ((output_size[axis] - 1) * stride + reach).saturating_sub(2 * padding[axis]).max(1);
                if padding == [0, 0] && pointwise { least } else { least + below(3) }
            });
            // Depthwise (one input per group) with a multiplier, or groups of up to 4 inputs; a
            // 1x1 window also one group of up to 40 inputs and 20 outputs (blocks of channels,
            // the last overlapping).
            let (group_inputs, group_outputs, groups) = if pointwise && case % 2 == 0 {
                (1 + below(40), 1 + below(20), 1)
            } else {
                (1 + below(4) * below(2), 1 + below(3), 1 + below(4))
            };
            let shape = PlaneShape {
                planes: groups * group_outputs,
                group_inputs,
                group_outputs,
                input_size,
                output_size,
                kernel,
                stride,
                dilation,
                padding,
                act: acts[below(3)],
                depth: PlaneDepth::FLAT,
            };
            versions_agree(&shape, case % 3 != 0, 3, &mut below);
        }
    }

    /// Runs `shape` on random planes (the input from index `at`), with a random bias or none, with
    /// every version the host runs: each writes exactly the portable kernel's results (the
    /// definition, `f32::mul_add`), and nothing outside the output planes.
    fn versions_agree(shape: &PlaneShape, with_bias: bool, at: usize, below: &mut impl FnMut(u64) -> usize) {
        let mut random = |len: usize| -> Vec<f32> { (0..len).map(|_| below(2001) as f32 / 1000.0 - 1.0).collect() };
        let ([h, w], [oh, ow]) = (shape.input_size, shape.output_size);
        let [depth_in, depth_out, depth_taps] =
            [shape.depth.input, shape.depth.output, shape.depth.kernel].map(|n| n as usize);
        let inputs = shape.planes / shape.group_outputs * shape.group_inputs * depth_in;
        let input = random(at + inputs * h * w);
        let weight = random(shape.planes * shape.group_inputs * depth_taps * shape.kernel * shape.kernel);
        let bias = random(shape.planes);
        let out_len = shape.planes * depth_out * oh * ow;
        let run = |isa: Isa| {
            // Guard elements on both sides of the output show any write outside it.
            let mut output = vec![f32::NAN; out_len + 40];
            let bias = with_bias.then_some((&bias[..], 0));
            run_checked(isa, (&input, at), (&weight, 0), bias, (&mut output, 20), shape);
            output.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
        };
        let expected = run(Isa::Portable);
        assert!(expected[..20].iter().chain(&expected[20 + out_len..]).all(|&x| f32::from_bits(x).is_nan()));
        for isa in Isa::on_host() {
            assert_eq!(run(isa), expected, "{isa:?} on {shape:?}");
        }
    }

    /// The 1×1 kernel's tiles start where its input vectors are aligned (`pointwise`'s
    /// `aligned_start`, on planes of a multiple of 16 elements), with one more tile at pixel 0:
    /// from an input at every offset within a vector (16 elements), each version still writes
    /// the portable kernel's results bit for bit, and nothing outside the output planes.
    #[test]
    fn a_pointwise_plane_at_any_offset_computes_the_definition_bit_for_bit() {
        let mut rng = SplitMix64::new(17);
        let mut below = |n: u64| (rng.next_u64() % n) as usize;
        for at in 0..17 {
            for size in [[8, 10], [7, 16], [4, 28], [12, 12]] {
                let shape = PlaneShape {
                    planes: 11,
                    group_inputs: 1 + below(9),
                    group_outputs: 11,
                    input_size: size,
                    output_size: size,
                    kernel: 1,
                    stride: 1,
                    dilation: 1,
                    padding: [0, 0],
                    act: TileActivation::Relu6,
                    depth: PlaneDepth::FLAT,
                };
                versions_agree(&shape, at % 2 == 0, at, &mut below);
            }
        }
    }

    /// Planes whose output is the input's size, with rows of at most 8 (AVX-512's flat planes,
    /// `flat`, and the row kernels elsewhere): every stride-1 window, padding that keeps the size
    /// (split unevenly too), 1 to 70 rows (runs of 4 vectors, the last overlapping; past 32
    /// vectors the row kernel), 1 to 9 planes (4 at a time, the last 4 overlapping; fewer one at a
    /// time), depthwise or grouped: each version writes the portable kernel's results bit for bit,
    /// and nothing outside the output planes.
    #[test]
    fn flat_planes_compute_the_definition_bit_for_bit() {
        let mut rng = SplitMix64::new(11);
        let mut below = |n: u64| (rng.next_u64() % n) as usize;
        let acts = [TileActivation::None, TileActivation::Relu, TileActivation::Relu6];
        let windows = PLANE_WINDOWS.map(|(k, s, d)| (k as usize, s as usize, d as usize));
        let stride_one: Vec<_> = windows.into_iter().filter(|&(kernel, stride, _)| stride == 1 && kernel > 1).collect();
        for case in 0..240 {
            let (kernel, stride, dilation) = stride_one[case % stride_one.len()];
            let reach = dilation * (kernel - 1);
            let top = below(reach as u64 + 1);
            let left = below(reach as u64 + 1);
            let size = [1 + below(70), 1 + below(8)];
            let (group_inputs, group_outputs, groups) =
                if case % 3 == 0 { (1 + below(3), 1 + below(2), 1 + below(3)) } else { (1, 1, 1 + below(9)) };
            let shape = PlaneShape {
                planes: groups * group_outputs,
                group_inputs,
                group_outputs,
                input_size: size,
                output_size: size,
                kernel,
                stride,
                dilation,
                padding: [top, left],
                act: acts[below(3)],
                depth: PlaneDepth::FLAT,
            };
            versions_agree(&shape, case % 2 == 0, 0, &mut below);
        }
    }

    /// Small depthwise 3 × 3 and 5 × 5 planes a vector's lanes at a time ([`transposed`]: 16 on
    /// AVX-512, 8 on AVX2; the flat or row kernels elsewhere): 8 to 40 planes (the last 16 or 8
    /// overlapping those before; fewer than 16 on the flat kernel with AVX-512), rows of 2 to 8, 1
    /// to 64 positions, or 1 to 14 rows of 9 to 14 (their sums in runs of 5 to 7, the last shorter
    /// in rows of 9, 11 and 13; 14 on AVX2 only) (blocks of 16 or 8; past the last whole block 1 or
    /// 2 positions gathered on AVX-512, 1 on AVX2, or else the plane's last 16 or 8 transposed; a
    /// plane of fewer one masked block), or 1 to 40 rows of 10 to 32 (a row at a time: [`banded`],
    /// 8 planes at a time, on AVX2 rows of 15 to 32 and past 14 rows of 10 to 14, on AVX-512 past
    /// 14 rows of 10 to 13; runs of 7 sums and blocks of 8 positions, the last of each overlapping
    /// the one before), every top padding that keeps the size and a left one of half the window's
    /// reach (of 0 or the whole reach now and then: the flat or row kernels), every activation:
    /// each version writes the portable kernel's results bit for bit, and nothing outside the
    /// output planes.
    /// Asserts that the transposed kernel ran on a host with AVX2.
    #[test]
    fn transposed_planes_compute_the_definition_bit_for_bit() {
        let mut rng = SplitMix64::new(29);
        let mut below = |n: u64| (rng.next_u64() % n) as usize;
        let acts = [TileActivation::None, TileActivation::Relu, TileActivation::Relu6];
        let transposed_before = TRANSPOSED_CALLS.load(std::sync::atomic::Ordering::Relaxed);
        for case in 0..240 {
            let kernel = [3, 5][case / 4 % 2];
            // Rows of 9 to 14 in planes of up to 14 rows, and of 10 to 32 in planes of up to 40,
            // now and then (the longer rows: 9 to 13 on both ISAs, 14 on AVX2, in planes of up to
            // 14 rows; 15 to 32 on AVX2 a row at a time, and so 10 to 14 (12 to 14 under a 5 × 5
            // window; AVX-512 to 13) in planes of more than 14 rows; the stream and row kernels
            // elsewhere).
            let (w, most) = match case % 12 {
                5 | 11 => (9 + below(6), 14),
                3 | 9 => (10 + below(23), 40),
                _ => {
                    let w = 2 + below(7);
                    (w, 64 / w)
                }
            };
            // Square planes now and then: 7 × 7 (a last block of 1 position), 6 × 6 (of 4),
            // 5 × 5 (of 9), 14 × 14 (of 4 past 8).
            let h = match case % 4 {
                0 => w,
                _ => 1 + below(most as u64),
            };
            let reach = kernel - 1;
            let left = if case % 10 == 9 { reach * below(2) } else { reach / 2 };
            let shape = PlaneShape {
                planes: 8 + below(33),
                group_inputs: 1,
                group_outputs: 1,
                input_size: [h, w],
                output_size: [h, w],
                kernel,
                stride: 1,
                dilation: 1,
                padding: [below(reach as u64 + 1), left],
                act: acts[below(3)],
                depth: PlaneDepth::FLAT,
            };
            versions_agree(&shape, case % 3 != 0, case % 5, &mut below);
        }
        if Isa::on_host().contains(&Isa::Avx2) {
            let calls = TRANSPOSED_CALLS.load(std::sync::atomic::Ordering::Relaxed);
            assert!(calls > transposed_before, "no plane was transposed");
        }
    }

    /// The streamed planes ([`stream`] on AVX-512, [`columns`] and [`strided`] on AVX-512 and
    /// AVX2): depthwise 5 × 5 windows at stride 1 in rows of 9 to 70 (one masked vector, or
    /// columns inside the plane and on its borders, the last overlapping), 3 × 3 ones in rows of 9
    /// to 128 (two planes at a time, an odd one alone, in rows of up to two vectors; groups of
    /// inside columns with or without a border one, border columns alone, in rows of 3 to 7
    /// vectors on AVX-512, 5 to 14 on AVX2, undilated or of dilation 2; blocks past them), and
    /// 3 × 3 ones at stride 2 in rows of 1 to 96 (groups of 1 to 4 inside columns with or
    /// without a border column, border columns alone); 1 to 30 rows, paddings of either parity up
    /// to 6 (taller than the window: output rows that read no input row), inputs short of and past
    /// what the outputs reach, a multiplier, every activation: each version writes the portable
    /// kernel's results bit for bit, and nothing outside the output planes. Asserts that a stream
    /// ran on a host with AVX2 (at stride 2, every version but the portable one streams).
    #[test]
    fn streamed_planes_compute_the_definition_bit_for_bit() {
        let mut rng = SplitMix64::new(23);
        let mut below = |n: u64| (rng.next_u64() % n) as usize;
        let acts = [TileActivation::None, TileActivation::Relu, TileActivation::Relu6];
        let streamed_before = STREAM_CALLS.load(std::sync::atomic::Ordering::Relaxed);
        for case in 0..540 {
            let (kernel, stride) = [(3, 1), (5, 1), (3, 2)][case % 3];
            let padding = [below(7), below(7)];
            let widths = match (kernel, stride) {
                (3, 1) => 9 + below(120),
                (5, 1) => 9 + below(62),
                _ => 1 + below(96),
            };
            let output_size = [1 + below(30), widths];
            let dilation = if (kernel, stride) == (3, 1) { 1 + below(2) } else { 1 };
            // From the least input that reaches every output's last tap, give or take 3.
            let least = |axis: usize| {
                ((output_size[axis] - 1) * stride + dilation * (kernel - 1) + 1)
                    .saturating_sub(2 * padding[axis])
                    .max(1)
            };
            let input_size = [0, 1].map(|axis| (least(axis) + below(4)).saturating_sub(below(4)).max(1));
            let group_outputs = 1 + below(2);
            let shape = PlaneShape {
                planes: (1 + below(3)) * group_outputs,
                group_inputs: 1,
                group_outputs,
                input_size,
                output_size,
                kernel,
                stride,
                dilation,
                padding,
                act: acts[below(3)],
                depth: PlaneDepth::FLAT,
            };
            versions_agree(&shape, case % 4 < 2, 1, &mut below);
        }
        if Isa::on_host().contains(&Isa::Avx2) {
            assert!(STREAM_CALLS.load(std::sync::atomic::Ordering::Relaxed) > streamed_before, "no plane was streamed");
        }
    }

    /// 3D layers' volumes ([`volume`] where it streams their planes, the portable kernel
    /// elsewhere): depthwise windows of every plane window (3 × 3 at stride 1, undilated or of
    /// dilation 2, mostly, in rows of 9 to 128: streamed where the rows are of 3 to 7 vectors on
    /// AVX-512, 5 to 14 on AVX2), 1 to 3 taps deep at depth stride 1 or 2 and dilation 1 or 2,
    /// padding in front up to 3 (output planes under no input plane: the bias), 1 to 6 input
    /// planes and 1 to 12 rows, a multiplier, grouped ones too, every activation: each version
    /// writes the portable kernel's results bit for bit, and nothing outside the output volumes.
    /// Asserts that a volume was streamed on a host with AVX2.
    #[test]
    fn volumes_compute_the_definition_bit_for_bit() {
        let mut rng = SplitMix64::new(29);
        let mut below = |n: u64| (rng.next_u64() % n) as usize;
        let acts = [TileActivation::None, TileActivation::Relu, TileActivation::Relu6];
        let windows = PLANE_WINDOWS.map(|(k, s, d)| (k as usize, s as usize, d as usize));
        let streamed_before = VOLUME_CALLS.load(std::sync::atomic::Ordering::Relaxed);
        for case in 0..160 {
            let (kernel, stride, dilation) = match case % 4 {
                0 => windows[below(windows.len() as u64 - 1)],
                _ => (3, 1, 1 + below(2)),
            };
            let padding = [below(3), below(3)];
            let output_size = [1 + below(12), 9 + below(120)];
            let least = |axis: usize| {
                ((output_size[axis] - 1) * stride + dilation * (kernel - 1) + 1)
                    .saturating_sub(2 * padding[axis])
                    .max(1)
            };
            let input_size = [0, 1].map(|axis| (least(axis) + below(3)).saturating_sub(below(3)).max(1));
            let (depth_kernel, depth_stride, depth_dilation) = (1 + below(3), 1 + below(2), 1 + below(2));
            let (depth_in, pad) = (1 + below(6), below(4));
            let reach = depth_dilation * (depth_kernel - 1) + 1;
            let depth_out = ((depth_in + 2 * pad).saturating_sub(reach) / depth_stride + 1).min(1 + below(8));
            let depth = PlaneDepth {
                input: depth_in as u64,
                output: depth_out as u64,
                kernel: depth_kernel as u64,
                stride: depth_stride as u64,
                dilation: depth_dilation as u64,
                pad: pad as u64,
            };
            let (group_inputs, group_outputs) = if case % 8 == 5 { (2, 1 + below(2)) } else { (1, 1 + below(2)) };
            let shape = PlaneShape {
                planes: (1 + below(3)) * group_outputs,
                group_inputs,
                group_outputs,
                input_size,
                output_size,
                kernel,
                stride,
                dilation,
                padding,
                act: acts[below(3)],
                depth,
            };
            versions_agree(&shape, case % 3 != 0, 2, &mut below);
        }
        if Isa::on_host().contains(&Isa::Avx2) {
            assert!(
                VOLUME_CALLS.load(std::sync::atomic::Ordering::Relaxed) > streamed_before,
                "no volume was streamed"
            );
        }
    }

    /// A 1D layer's rows ([`rows`]: single-element planes along the depth axis) on random shapes —
    /// 1 to 40 taps, dilation 1 to 3, padding up to 20, rows of 1 to 600 inputs (shorter than the
    /// window too), output rows of every length the window allows or shorter, a multiplier, groups
    /// of 2 inputs, every activation — and statements of 1 × 1 windows with a depth axis that
    /// [`rows`] leaves to the portable kernel (stride 2 along the depth, planes of more than one
    /// element), and rows long enough for waves of 2 to 4 blocks of taps: each version writes the
    /// portable kernel's results bit for bit, and nothing outside the output rows. Asserts that
    /// rows ran on a host with AVX2.
    #[test]
    fn rows_compute_the_definition_bit_for_bit() {
        let mut rng = SplitMix64::new(31);
        let mut below = |n: u64| (rng.next_u64() % n) as usize;
        let acts = [TileActivation::None, TileActivation::Relu, TileActivation::Relu6];
        let rows_before = ROWS_CALLS.load(std::sync::atomic::Ordering::Relaxed);
        // Rows long enough for waves (`rows::wave`) of 2, 3 and 4 blocks of taps on both widths.
        let waves = [(1000, 31, 15), (700, 20, 3), (300, 9, 4), (900, 64, 0), (520, 48, 30), (260, 24, 0)];
        for case in 0..200 + waves.len() {
            let (taps, dilation, pad) = (1 + below(40), 1 + below(3), below(21));
            let len_in = 1 + below(if case % 4 == 0 { 40 } else { 600 });
            let ((len_in, taps, pad), dilation) =
                waves.get(case.wrapping_sub(200)).map_or(((len_in, taps, pad), dilation), |&wave| (wave, 1));
            let stride = if case % 10 == 9 && case < 200 { 2 } else { 1 };
            let reach = dilation * (taps - 1) + 1;
            let Some(full) = (len_in + 2 * pad).checked_sub(reach).map(|span| span / stride + 1) else { continue };
            let len_out = if case % 3 == 0 { full.min(1 + below(full as u64)) } else { full };
            let depth = PlaneDepth {
                input: len_in as u64,
                output: len_out as u64,
                kernel: taps as u64,
                stride: stride as u64,
                dilation: dilation as u64,
                pad: pad as u64,
            };
            let (group_inputs, group_outputs) =
                if case % 8 == 5 && case < 200 { (2, 1 + below(2)) } else { (1, 1 + below(2)) };
            let plane = if case % 10 == 7 && case < 200 { [1 + below(3), 1 + below(3)] } else { [1, 1] };
            let shape = PlaneShape {
                planes: (1 + below(4)) * group_outputs,
                group_inputs,
                group_outputs,
                input_size: plane,
                output_size: plane,
                kernel: 1,
                stride: 1,
                dilation: 1,
                padding: [0, 0],
                act: acts[below(3)],
                depth,
            };
            versions_agree(&shape, case % 3 != 1, 2, &mut below);
        }
        if Isa::on_host().contains(&Isa::Avx2) {
            assert!(ROWS_CALLS.load(std::sync::atomic::Ordering::Relaxed) > rows_before, "no rows ran");
        }
    }

    /// The taps outside a row leave its end sums as they were, bit for bit: a −0 sum stays −0, and
    /// an infinite weight on such a tap adds no NaN (each tap infinite in turn), as
    /// [`taps_outside_the_plane_leave_the_sums_bit_for_bit`] checks for planes.
    #[test]
    fn taps_outside_a_row_leave_the_sums_bit_for_bit() {
        for (len, taps, dilation) in [(40, 31, 1), (100, 7, 3), (20, 31, 1)] {
            let pad = dilation * (taps - 1) / 2;
            let depth = PlaneDepth {
                input: len as u64,
                output: len as u64,
                kernel: taps as u64,
                stride: 1,
                dilation: dilation as u64,
                pad: pad as u64,
            };
            let shape = PlaneShape {
                planes: 2,
                group_inputs: 1,
                group_outputs: 1,
                input_size: [1, 1],
                output_size: [1, 1],
                kernel: 1,
                stride: 1,
                dilation: 1,
                padding: [0, 0],
                act: TileActivation::None,
                depth,
            };
            outside_taps_agree(&shape, len, taps, len);
        }
    }

    /// The lowering's rows for 3D layers on the plane kernel ([`PLANE_VOLUME_ROWS`]) are those the
    /// stride-1 stream takes on both vector widths ([`columns::ColumnGroups::VECTORS`]).
    #[test]
    fn volume_rows_are_the_streams() {
        fn rows<X: columns::ColumnGroups>() -> (u64, u64) {
            let (fewest, most) = X::VECTORS;
            (((fewest - 1) * X::L + 1) as u64, (most * X::L) as u64)
        }
        assert_eq!(rows::<Avx512>(), PLANE_VOLUME_ROWS);
        assert_eq!(rows::<Avx2>(), PLANE_VOLUME_ROWS);
    }

    /// The taps outside a plane leave a border sum as it was, bit for bit: a −0 sum stays −0 (the
    /// products inside are all −0: +0 inputs, negative weights, a −0 bias), and an infinite weight
    /// on such a tap adds no NaN — each tap of the window infinite in turn, so that every masked
    /// multiply-add is tried. (Random data rarely reaches either.)
    #[test]
    fn taps_outside_the_plane_leave_the_sums_bit_for_bit() {
        let windows = PLANE_WINDOWS.map(|(k, s, d)| (k as usize, s as usize, d as usize));
        // (A 1x1 window without padding has no taps outside.)
        for (kernel, stride, dilation) in windows.into_iter().filter(|&(kernel, ..)| kernel > 1) {
            // Rows of 19 (the row kernels; AVX-512 streams the 5 × 5 ones; at stride 2 a border
            // column alone), of 7 (AVX-512's flat planes at stride 1), of 70 (at stride 2 a border
            // column streamed beside inside ones); the padding that keeps the size, and one more
            // (the other parity at stride 2).
            for (size, more) in [19, 7, 70].into_iter().flat_map(|size| [(size, 0), (size, 1)]) {
                let pad = dilation * (kernel - 1) / 2 + more;
                let out = (size + 2 * pad - dilation * (kernel - 1) - 1) / stride + 1;
                let shape = PlaneShape {
                    planes: 2,
                    group_inputs: 1,
                    group_outputs: 1,
                    input_size: [size, size],
                    output_size: [out, out],
                    kernel,
                    stride,
                    dilation,
                    padding: [pad, pad],
                    act: TileActivation::None,
                    depth: PlaneDepth::FLAT,
                };
                outside_taps_agree(&shape, size * size, kernel * kernel, out * out);
            }
        }
    }

    /// Each version computes two planes of `shape` (`inputs`, `taps` weights and `outputs` per
    /// plane) from +0 inputs, a −0 bias and weights of −0.5, each tap infinite in turn, as the
    /// portable kernel does, bit for bit; the first output, whose first tap is outside, is −0.
    fn outside_taps_agree(shape: &PlaneShape, inputs: usize, taps: usize, outputs: usize) {
        let input = vec![0.0f32; 2 * inputs];
        for infinite in std::iter::once(None).chain((0..taps).map(Some)) {
            let mut weight = vec![-0.5f32; 2 * taps];
            if let Some(tap) = infinite {
                weight[tap] = f32::NEG_INFINITY;
                weight[taps + tap] = f32::NEG_INFINITY;
            }
            let bias = [-0.0f32; 2];
            let run = |isa: Isa| {
                let mut output = vec![f32::NAN; 2 * outputs];
                run_checked(isa, (&input, 0), (&weight, 0), Some((&bias, 0)), (&mut output, 0), shape);
                output.iter().map(|x| x.to_bits()).collect::<Vec<_>>()
            };
            let expected = run(Isa::Portable);
            // The first output reads the first tap outside the plane: −0, never NaN.
            if infinite.is_none_or(|tap| tap == 0) {
                assert_eq!(expected[0], (-0.0f32).to_bits(), "{shape:?}");
            }
            for isa in Isa::on_host() {
                assert_eq!(run(isa), expected, "{isa:?} on {shape:?}, tap {infinite:?} infinite");
            }
        }
    }

    /// A statement that reaches outside a slice, or names a window no kernel computes, panics
    /// before any kernel runs.
    #[test]
    fn a_plane_outside_its_slices_is_refused() {
        let shape = PlaneShape {
            planes: 2,
            group_inputs: 1,
            group_outputs: 1,
            input_size: [4, 4],
            output_size: [4, 4],
            kernel: 3,
            stride: 1,
            dilation: 1,
            padding: [1, 1],
            act: TileActivation::None,
            depth: PlaneDepth::FLAT,
        };
        let (input, weight) = (vec![0.0; 32], vec![0.0; 18]);
        let short = std::panic::catch_unwind(|| plane((&input, 1), (&weight, 0), None, (&mut [0.0; 32], 0), &shape));
        assert!(short.is_err(), "the input is one element short from index 1");
        let window = PlaneShape { kernel: 7, ..shape };
        let unknown =
            std::panic::catch_unwind(|| plane((&input, 0), (&vec![0.0; 98], 0), None, (&mut [0.0; 32], 0), &window));
        assert!(unknown.is_err(), "no 7x7 kernel");
        let depth = PlaneDepth { input: 2, output: 2, kernel: 3, stride: 1, dilation: 1, pad: 1 };
        let volumes = PlaneShape { depth, ..shape };
        let shallow =
            std::panic::catch_unwind(|| plane((&input, 0), (&vec![0.0; 54], 0), None, (&mut [0.0; 64], 0), &volumes));
        assert!(shallow.is_err(), "two channels of 2 planes of 4x4 need 64 inputs");
        let mut output = vec![0.0; 32];
        plane((&input, 0), (&weight, 0), None, (&mut output, 0), &shape);
    }
}
