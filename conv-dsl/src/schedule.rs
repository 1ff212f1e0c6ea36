//! How a convolution's loops are vectorised and tiled — never what they compute.
//!
//! Halide's separation: the [`crate::spec`] says *what* a layer computes; a [`Schedule`] says *how*
//! (vector width, register tile). Every schedule but one gives the same results, bit for bit: the
//! accumulation order of each output element is the same (input channels, then kernel taps, in
//! order) whatever the tile, which the differential tests check against the reference interpreter.
//! The exception is [`Kernel::Winograd`], an algorithm with fewer multiplies whose transforms
//! reassociate the sums: its results are the convolution's up to rounding (the tests hold it to the
//! same tolerance against the reference, and bit for bit to the IR interpreter on its own plan).

use std::fmt;

use crate::bind::BoundConv;
use crate::ir::{
    TILE_LANES, TILE_MAX_ACCUMULATORS, TILE_MAX_PIXELS, TILE_MAX_VECTORS, TileActivation, plane_kernel_exists,
    tile_shape_exists,
};
use crate::spec::Conv;

/// What the code generator can do: vector width and how many vector accumulators fit in registers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    /// f32 lanes per vector.
    pub lanes: u32,
    /// Vector accumulators that fit in registers without spilling (with room for the operands).
    pub accumulators: u32,
    /// Vector registers a dense tile may occupy: its accumulators plus one splat input per pixel
    /// and one weight vector per channel vector (`w·c + w + c`). Cranelift allocates registers
    /// without the slack LLVM finds, so for it this is the binding limit.
    pub registers: u32,
    /// Whether the code generator can call the tile microkernels ([`Kernel::Tile`]) and they run
    /// at full speed (AVX2 + FMA on the host).
    pub microkernels: bool,
    /// Whether the host's tile microkernels hold two vectors in one register and compute several
    /// tiles of a strip at once (AVX-512): the heuristic then prefers tiles of more vectors.
    pub wide_microkernels: bool,
    /// Threads a plan may run on at once: a large enough convolution stage is lowered to this many
    /// parts, each computing a contiguous window of the output on its own ([`crate::lower::Part`]).
    /// 1 (every target's default): one function per stage.
    pub threads: u32,
    /// Multiply-adds per thread below which a stage is not split: starting a part on another
    /// thread and waiting for it costs microseconds ([`Target::PART_MACS`] by default; tests
    /// lower it to split small layers).
    pub part_macs: u64,
    /// Bytes of one core's own (L2) cache: a dense stage split into parts by positions has every
    /// part stream all of its weights through it, so stages whose weights are several times it
    /// are cut by output channels instead (`WEIGHTS_BEYOND_L2` times, in `lower`); a
    /// plan whose weights fill it has its pointwise strips fetch the next panel of weights ahead
    /// ([`crate::ir::Tile::prefetch`]) ([`Target::L2_BYTES`] by default; the JIT's host target
    /// reads the host's).
    pub l2_bytes: u64,
    /// When a depthwise stage is computed inside the pointwise stage that reads it, on blocks of
    /// rows that stay in cache ([`Fusion::DEFAULT`] for every target; [`Fusion::OFF`] to measure
    /// or inspect each layer on its own; tests fuse small layers in small blocks).
    pub fusion: Fusion,
}

/// When and how a depthwise stage is fused into the pointwise stage that reads it
/// ([`crate::lower`]'s `fused`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fusion {
    /// The fewest elements (channels padded) the depthwise output of one image must have: a
    /// smaller tensor stays in cache between the two stages anyway.
    pub min_elements: u64,
    /// Elements of the depthwise output one block of rows may hold (as many whole rows as fit,
    /// at least one).
    pub block_elements: u64,
    /// The most pointwise weights per depthwise output of a block of rows: fused, the pointwise
    /// stage reads all its weights once per block.
    pub max_weights_per_output: u64,
}

impl Fusion {
    /// Fuse where the depthwise output is at least 2^17 elements (512 KiB, an L2 cache of the
    /// development machines), in blocks of up to 16384 elements (64 KiB). Measured on an AMD EPYC
    /// Zen 4 (`convgen bench --against --no-fusion`: fused and unfused run alternately in one
    /// process, medians of the per-pair ratios, six runs of 400 pairs; separate runs were too
    /// noisy to compare): MobileNet's 112×112×32 pair ran 1.11–1.16× faster fused, its stride-2
    /// 112×112×64 one and sep_c64_56 mostly 1.03–1.08× (one run each 0.98 and 0.89); blocks of
    /// 4096 or 65536 elements did no better. Its 14×14×512 pair, forced to fuse, ran 1–3% slower
    /// (the pointwise weights are read once per block instead of once).
    ///
    /// At most 8 pointwise weights per depthwise output of a block. Measured on an Intel Xeon
    /// (AVX-512, 2 MiB of L2; `convgen bench --runs 30..40 --against --no-fusion`, unfused ÷
    /// fused, of small models ending in a 3×3 depthwise + pointwise pair, channels-last): weights
    /// per output 55–73 (14×14, 768 → 768 and 1024 → 1024 channels) 0.63–0.68, 18 (14×14 1024 →
    /// 256; 28×28 512 → 512) 0.81 and 0.955, 14 (28×28 384 → 384) 0.946; 4.6 (56×56 128 → 512)
    /// 1.044, 3.4 (128 → 384) 1.10, 1.1–2.3 1.08–1.13 (56×56 128 → 128, 256; 112×112 64 → 256).
    /// (28×28 256 → 256, 4.6, ran 0.96: its depthwise output, 800 KiB, stays in that L2 anyway.)
    pub const DEFAULT: Fusion = Fusion { min_elements: 1 << 17, block_elements: 1 << 14, max_weights_per_output: 8 };
    /// Fuse every pair that can be fused, however small its depthwise output and however many
    /// its pointwise weights, in blocks of at most `block_elements` depthwise outputs (tests use it
    /// so that small images still fuse, in several blocks).
    pub const fn every_pair(block_elements: u64) -> Fusion {
        Fusion { min_elements: 0, block_elements, max_weights_per_output: u64::MAX }
    }
    /// Never fuse.
    pub const OFF: Fusion = Fusion { min_elements: u64::MAX, block_elements: 1 << 14, max_weights_per_output: 0 };
}

impl Target {
    /// The default [`Target::part_macs`]: 2^19 multiply-adds, 5–50 µs of work here. Measured on
    /// 2 threads (`convgen bench --threads 2`): at 2^19 the 1.8 M-MAC depthwise layers of the
    /// suite gain up to 1.3x and none of the smaller ones lose; at 2^18 a 0.7 M-MAC layer
    /// (dw3_s1_c384_14) ran 1.25x slower, waking the other thread costing more than it saved.
    pub const PART_MACS: u64 = 1 << 19;
    /// The default [`Target::l2_bytes`]: 512 KiB, an AMD Zen 3 core's L2 cache.
    pub const L2_BYTES: u64 = 512 << 10;
    /// This target for a stage that starts right after a split one: the other threads have just
    /// finished their parts (awake, no wake-up to wait for) and each holds its rows of the data
    /// in its cache, so splitting pays from a quarter of [`Target::part_macs`]. Measured in
    /// MobileNetV1 on 2 threads (`convgen bench --steps --threads 2`): its 14×14×512 depthwise
    /// layers (0.9 M MACs, unsplit by the default) ran 0.057 ms whole and 0.035 ms split, while
    /// the same layer on its own (dw3_s1_c384_14, a cold start after the unsplit input conversion)
    /// ran 0.83× as fast split as whole. The whole model on 2 threads: 1.045× faster (old and
    /// new builds alternating, 16 pairs, median of the ratios), 1.82× its one-thread time.
    pub fn warm(self) -> Target {
        Target { part_macs: self.part_macs / 4, ..self }
    }
    /// Cranelift 0.135 on x86-64: 128-bit vectors, 16 xmm registers of which 2 stay free for
    /// temporaries (its FMA lowering copies the accumulator). Measured on the development machine
    /// (`convgen bench`, medians, same session): a dense tile of 4 pixels × 2 channel vectors
    /// (8 + 4 + 2 = 14 registers) instead of 4 × 3 (19, which spills) runs MobileNetV1 in 39.5 ms
    /// instead of 48 ms and pw_64to64_56 in 0.93 ms instead of 1.20 ms; g3_c256_g2_28 is 8% slower.
    pub const CRANELIFT_X86_64: Target = Target {
        lanes: 4,
        accumulators: 12,
        registers: 14,
        microkernels: false,
        wide_microkernels: false,
        threads: 1,
        part_macs: Target::PART_MACS,
        l2_bytes: Target::L2_BYTES,
        fusion: Fusion::DEFAULT,
    };
    /// x86-64 with AVX2 and FMA, for the `conv!` macro's Rust: 256-bit vectors (8 f32 lanes) and
    /// 16 of them, of which 12 hold accumulators, leaving room for the operands. The macro's portable
    /// fallback runs the same plan (the compiler splits each 8-lane operation into two of 4).
    pub const AVX2: Target = Target {
        lanes: 8,
        accumulators: 12,
        registers: 32,
        microkernels: false,
        wide_microkernels: false,
        threads: 1,
        part_macs: Target::PART_MACS,
        l2_bytes: Target::L2_BYTES,
        fusion: Fusion::DEFAULT,
    };
    /// Scalar code (lanes 1), for tests and targets without vectors.
    pub const SCALAR: Target = Target {
        lanes: 1,
        accumulators: 12,
        registers: 32,
        microkernels: false,
        wide_microkernels: false,
        threads: 1,
        part_macs: Target::PART_MACS,
        l2_bytes: Target::L2_BYTES,
        fusion: Fusion::DEFAULT,
    };
}

/// The schedule of one convolution stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Schedule {
    /// f32 lanes per vector (1 = scalar code). The output channels are the vector axis.
    pub lanes: u32,
    /// Output pixels along the innermost spatial axis per register tile.
    pub tile_width: u32,
    /// Vectors of output channels per register tile.
    pub tile_channels: u32,
    /// Who computes a register tile's sums.
    pub kernel: Kernel,
    /// Which loops are outermost: pixels or channel blocks.
    pub order: Order,
}

/// The order of a convolution's loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Order {
    /// Pixels outermost: every tile of pixels computes all channel blocks (the input of a tile is
    /// read once; all weights once per tile).
    #[default]
    Pixels,
    /// Channel blocks outermost: each block of output channels runs over every pixel (its weights
    /// are read once; the input once per block). For layers whose weights do not fit in cache.
    Channels,
}

/// Who computes a register tile's sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Kernel {
    /// The loop IR itself: every multiply-add is an IR statement (`Stmt::Fma`).
    #[default]
    Inline,
    /// A tile microkernel ([`crate::ir::Stmt::Tile`]): one IR statement per tile, which a code
    /// generator emits as a call to a kernel compiled for AVX2 + FMA (the JIT, whose own vectors
    /// are 128-bit) or inline. Vectors of [`crate::ir::TILE_LANES`] output channels.
    Tile,
    /// A depthwise or grouped stage computed in the user's channels-first layout, vectors along
    /// the innermost spatial axis (w), a small depthwise window's weights in registers; a tile is
    /// `tile_width` output rows, which share their input rows, × `tile_channels` vectors along w,
    /// for up to 4 output channels of a group that share the input vectors (as many as fit in
    /// [`PLANAR_MAX_ACCUMULATORS`]; one for a depthwise layer) ([`crate::lower`]'s `planar`).
    /// Only for a stage that reads the model's channels-first input and is its output, so that
    /// neither needs a layout conversion; chosen by [`crate::lower::lower`] there, not by
    /// [`Schedule::auto`].
    Planar,
    /// A depthwise, grouped or pointwise 2D stage in the user's channels-first layout, as
    /// [`Kernel::Planar`], whose channel planes are computed by a plane microkernel
    /// ([`crate::ir::Stmt::Plane`]): one IR statement per image (or part), which a code generator
    /// emits as a call to a kernel compiled for AVX-512 or AVX2 + FMA. Square windows the kernels
    /// exist for ([`crate::ir::plane_kernel_exists`]), an activation they apply
    /// ([`TileActivation::of`]); a 3D stage too where its last two axes are such a window (not
    /// 1×1), each channel a volume of planes ([`crate::ir::PlaneDepth`]); a 1D stage at stride 1,
    /// any window, each channel's row the depth axis of single-element planes. Chosen by
    /// [`crate::lower::lower`] on a target with microkernels where it was measured to pay
    /// (depthwise or groups of fewer than 8 outputs with rows long enough, pointwise on large
    /// planes, 3D depthwise 3×3 stride-1 planes in rows of [`crate::ir::PLANE_VOLUME_ROWS`], 1D
    /// depthwise rows of at least 32: `planar::plane_pays`). Its lanes and tile are the kernel's
    /// own (`kernel=plane` alone).
    Plane,
    /// A dense 3×3, stride-1 2D stage by Winograd's F(2×2, 3×3) ([`crate::lower::winograd`]):
    /// transforms in the loop IR, the 16 matrix products by the tile microkernel on tiles of
    /// `tile_width` 2×2 output tiles × `tile_channels` vectors of [`crate::ir::TILE_LANES`] output
    /// channels. 2.25× fewer multiply-adds; the one kernel whose results differ from the direct
    /// sums, by rounding (the transforms reassociate them).
    Winograd,
}

impl Schedule {
    /// A schedule whose tiles are computed by the loop IR itself.
    pub const fn new(lanes: u32, tile_width: u32, tile_channels: u32) -> Schedule {
        Schedule { lanes, tile_width, tile_channels, kernel: Kernel::Inline, order: Order::Pixels }
    }

    /// A schedule whose tiles of `tile_width` pixels × `tile_channels` vectors of 8 output channels
    /// are computed by the tile microkernel.
    pub const fn tile_kernel(tile_width: u32, tile_channels: u32) -> Schedule {
        Schedule { lanes: TILE_LANES, tile_width, tile_channels, kernel: Kernel::Tile, order: Order::Pixels }
    }

    /// The heuristic schedule for `conv` at the shapes `bound` on `target`:
    /// - where the target has tile microkernels and the layer is a dense 3×3 window with stride 1
    ///   and no dilation, with whole vectors of 8 output channels and at least
    ///   `WINOGRAD_MIN_INPUTS` (16) input channels per group (and scratch buffers within the tensor
    ///   limit): Winograd's F(2×2, 3×3) ([`Kernel::Winograd`]), its matrix products on the tile
    ///   kernel's default pointwise tiles (below);
    /// - where the target has tile microkernels and the layer is dense with whole vectors of 8
    ///   output channels per group: the tile kernel, on tiles of up to 6 pixels × 2 vectors
    ///   (3 × 4 for wide kernels; 5 × 2 for a window of several taps on a target of 8-lane
    ///   vectors, the macro's, whose dense strips take the kernel with constant strides, or where
    ///   the stage reads the model's channels-first input in place (`input_in_place`), whose
    ///   strips take the kernel with unrolled rows; a row's full tiles in one call); a
    ///   depthwise layer with whole vectors of 8 channels and a window of at least 9 taps whose
    ///   activation the kernels apply (none, relu, relu6), on a target with narrower vectors of its own (the JIT): the
    ///   depthwise tile kernel, 6 pixels × 2 vectors (3 × 4 for rows of at most 16; fewer pixels
    ///   without wide microkernels where that lets a 5- or 7-tap window slide); otherwise a
    ///   window of at least 10 taps: 4 (6 for wide kernels) pixels × 2 vectors;
    /// - otherwise vectorise over output channels with the target's lanes when a vector of output channels
    ///   reads one input channel per lane (depthwise, multiplier 1) or one input channel for all
    ///   lanes (a standard conv, or a grouped conv whose groups have a multiple of `lanes` outputs);
    ///   else with 4 lanes if the groups have a multiple of 4 outputs; otherwise scalar code
    ///   (lanes 1), which handles any grouping;
    /// - a register tile of `tile_width × tile_channels` accumulators within the target's budgets
    ///   (accumulators, and registers for accumulators plus operands): up to 4 pixels, and as many
    ///   channel vectors as the budgets and the channels allow — except
    ///   for depthwise layers, whose channel vectors share no inputs: one vector, up to 4 pixels.
    pub fn auto(conv: &Conv, bound: &BoundConv, target: Target, input_in_place: bool) -> Schedule {
        let out_width = *bound.output.last().unwrap_or(&1);
        let depthwise = conv.is_depthwise();
        let taps: u64 = conv.kernel.iter().product();
        // A depthwise layer takes the tile kernel only for large windows, where a call has enough
        // multiply-adds: measured with `convgen bench --schedule` (medians, development machine),
        // dw1d_k31_c256_l1000 ran 1.54 ms inline and 0.59 ms with 4x2 tiles, dw3d_k3_c32_16x56
        // 9.4 / 5.2 ms, dw5_s1_c240_28 0.65 / 0.32 ms, but the 3×3 dw3_d2_c64_56 0.21 / 0.26 ms and
        // dw3_s1_c144_56 0.28 / 0.33 ms (its step alone).
        // Where the kernel also applies the activation and stores the results (no epilogue through
        // memory) and the target's own vectors are narrower than the kernel's (the JIT's 128-bit
        // ones), a 3×3 window is enough. (The macro's inline 8-lane code ran dw3_s1_c384_14 and
        // dw3_s1_c960_7 in 0.063 and 0.044 ms, the tile kernel in 0.108 and 0.065.)
        let stores = TileActivation::of(conv.act).is_some() && target.lanes < TILE_LANES;
        let min_taps = if stores { TILE_DEPTHWISE_STORING_MIN_TAPS } else { TILE_DEPTHWISE_MIN_TAPS };
        let tile_depthwise = depthwise && taps >= min_taps;
        if target.microkernels && winograd_pays(conv) && crate::lower::winograd::scratch_fits(conv, bound, target.lanes)
        {
            let vectors = channel_vectors(conv, TILE_LANES) as u32;
            let (pixels, vectors) = if target.wide_microkernels {
                let vectors = vectors.min(TILE_WIDE_VECTORS);
                (tile_wide_pixels(vectors), vectors)
            } else {
                (TILE_AUTO.0, vectors.min(TILE_AUTO.1))
            };
            return Schedule::winograd(pixels, vectors);
        }
        if target.microkernels && tile_kernel_fits(conv) && (!depthwise || tile_depthwise) {
            // Tiles of at most the layer's vectors (a wide dense tile's pixels depend on them).
            let vectors = channel_vectors(conv, TILE_LANES) as u32;
            let (pixels, vectors) = match (depthwise, target.wide_microkernels) {
                (true, wide) if stores => {
                    let (pixels, most) = depthwise_storing_tile(out_width, vectors);
                    let vectors = vectors.min(most);
                    let window = *conv.kernel.last().unwrap_or(&1);
                    (if wide { pixels } else { narrow_sliding_pixels(pixels, vectors, window) }, vectors)
                }
                (true, false) => (TILE_AUTO_DEPTHWISE.0, vectors.min(TILE_AUTO_DEPTHWISE.1)),
                (true, true) => (TILE_AUTO_DEPTHWISE_WIDE.0, vectors.min(TILE_AUTO_DEPTHWISE_WIDE.1)),
                (false, false) if taps > 1 && (target.lanes >= TILE_LANES || input_in_place) => {
                    (TILE_AUTO_WINDOW.0, vectors.min(TILE_AUTO_WINDOW.1))
                }
                (false, false) => (TILE_AUTO.0, vectors.min(TILE_AUTO.1)),
                (false, true) => {
                    let vectors = vectors.min(TILE_WIDE_VECTORS);
                    (tile_wide_pixels(vectors), vectors)
                }
            };
            return Schedule::tile_kernel((out_width as u32).clamp(1, pixels), vectors);
        }
        // The target's vectors, else vectors of 4 lanes (groups of 4 outputs on an 8-lane target:
        // g3_c128_g32_56 through the macro), else scalars.
        let lanes = [target.lanes, 4]
            .into_iter()
            .find(|&lanes| lanes <= target.lanes && vectorizable(conv, lanes))
            .unwrap_or(1);
        let tile_width = out_width.clamp(1, 4) as u32;
        if conv.is_depthwise() {
            // Depthwise: each channel vector reads its own input, so a tile of several channel
            // vectors shares nothing and only multiplies code size; pixels along w share inputs.
            return Schedule::new(lanes, tile_width, 1);
        }
        let channel_vectors = channel_vectors(conv, lanes);
        // The most channel vectors c with w·c ≤ accumulators and w·c + w + c ≤ registers.
        let by_accumulators = target.accumulators / tile_width;
        let by_registers = target.registers.saturating_sub(tile_width) / (tile_width + 1);
        let budget = by_accumulators.min(by_registers).max(1);
        let tile_channels = channel_vectors.clamp(1, u64::from(budget)) as u32;
        Schedule::new(lanes, tile_width, tile_channels)
    }

    /// A [`Kernel::Planar`] schedule: vectors of `lanes` positions along w, tiles of `rows` output
    /// rows × `vectors` vectors side by side (`tile_width` × `tile_channels`).
    pub const fn planar(lanes: u32, rows: u32, vectors: u32) -> Schedule {
        Schedule { lanes, tile_width: rows, tile_channels: vectors, kernel: Kernel::Planar, order: Order::Pixels }
    }

    /// A [`Kernel::Winograd`] schedule whose matrix products run on tiles of `tile_width` tiles ×
    /// `tile_channels` vectors of 8 output channels.
    pub const fn winograd(tile_width: u32, tile_channels: u32) -> Schedule {
        Schedule { lanes: TILE_LANES, tile_width, tile_channels, kernel: Kernel::Winograd, order: Order::Pixels }
    }

    /// The [`Kernel::Plane`] schedule (lanes and tile are the kernel's: 1 and 1×1 here).
    pub const fn plane() -> Schedule {
        Schedule { lanes: 1, tile_width: 1, tile_channels: 1, kernel: Kernel::Plane, order: Order::Pixels }
    }

    /// Checks that this schedule can run `conv` (a vector width that the grouping allows, tiles of
    /// at least 1).
    pub fn validate(&self, conv: &Conv) -> Result<(), String> {
        if self.kernel == Kernel::Plane {
            return validate_plane(conv);
        }
        if self.kernel == Kernel::Tile {
            return self.validate_tile(conv);
        }
        if self.kernel == Kernel::Winograd {
            if !crate::lower::winograd::fits(conv) {
                return Err("kernel=winograd computes dense (not depthwise) 2D 3x3 windows with stride 1 and no \
                            dilation"
                    .into());
            }
            if self.order != Order::Pixels {
                return Err("kernel=winograd runs its points, channel blocks and tiles in its own order".into());
            }
            return self.validate_tile(conv);
        }
        if self.kernel == Kernel::Planar {
            return self.validate_planar(conv);
        }
        if ![1, 4, 8].contains(&self.lanes) {
            return Err(format!("lanes must be 1, 4 or 8, not {}", self.lanes));
        }
        if self.tile_width == 0 || self.tile_channels == 0 || self.tile_width * self.tile_channels > 64 {
            return Err(format!(
                "a register tile is 1 to 64 accumulators; {}x{} is not",
                self.tile_width, self.tile_channels
            ));
        }
        if self.lanes > 1 && !vectorizable(conv, self.lanes) {
            let per_group = conv.out_channels / conv.groups;
            return Err(format!(
                "{} output channels per group cannot be split into vectors of {} lanes",
                per_group, self.lanes
            ));
        }
        Ok(())
    }
}

impl Schedule {
    fn validate_planar(&self, conv: &Conv) -> Result<(), String> {
        if ![1, 4, 8].contains(&self.lanes) {
            return Err(format!("lanes must be 1, 4 or 8, not {}", self.lanes));
        }
        let (rows, vectors) = (self.tile_width, self.tile_channels);
        if rows == 0 || vectors == 0 || rows * vectors > PLANAR_MAX_ACCUMULATORS {
            return Err(format!(
                "a planar tile is R rows × V vectors along w (`tile=RxV`), 1 to {PLANAR_MAX_ACCUMULATORS} \
                 accumulators; {rows}x{vectors} is not"
            ));
        }
        if conv.stride.last().is_some_and(|&stride| stride > 2) {
            return Err("kernel=planar needs stride 1 or 2 along the innermost axis (its vectors run along it)".into());
        }
        Ok(())
    }

    fn validate_tile(&self, conv: &Conv) -> Result<(), String> {
        if self.lanes != TILE_LANES {
            return Err(format!("the tile kernel computes vectors of {TILE_LANES} lanes, not {}", self.lanes));
        }
        let (width, channels) = (self.tile_width, self.tile_channels);
        if !tile_shape_exists(width, channels) {
            return Err(format!(
                "the tile kernel takes 1 to {TILE_MAX_PIXELS} pixels × 1 to {TILE_MAX_VECTORS} vectors, at most \
                 {TILE_MAX_ACCUMULATORS} accumulators; {width}x{channels} is not"
            ));
        }
        if !tile_kernel_fits(conv) {
            return Err(format!(
                "the tile kernels need whole vectors of {TILE_LANES} output channels per group (dense) or of \
                 channels (depthwise, multiplier 1); this layer has {} in {} groups",
                conv.out_channels, conv.groups
            ));
        }
        Ok(())
    }
}

/// Whether the plane kernels can compute `conv` ([`Kernel::Plane`]), or why not.
fn validate_plane(conv: &Conv) -> Result<(), String> {
    if TileActivation::of(conv.act).is_none() {
        return Err(format!("kernel=plane applies none, relu or relu6, not {}", conv.act));
    }
    // A 1D layer's rows: any window at stride 1.
    if conv.kernel.len() == 1 {
        if conv.stride[0] != 1 {
            return Err(format!("kernel=plane computes 1D windows at stride 1, not {}", conv.stride[0]));
        }
        return Ok(());
    }
    // A 3D layer's window across each plane (its last two axes); along the depth, any.
    let across = conv.kernel.len().saturating_sub(2);
    let (kernel, stride, dilation) = (&conv.kernel[across..], &conv.stride[across..], &conv.dilation[across..]);
    let square = kernel.len() == 2 && kernel[0] == kernel[1] && stride[0] == stride[1] && dilation[0] == dilation[1];
    if !square || !plane_kernel_exists(kernel[0], stride[0], dilation[0]) {
        return Err("kernel=plane computes 2D windows of 3x3 (stride 1 or 2, or dilation 2), 5x5 (stride 1 or 2) or \
                    1x1 (stride 1), the same along both axes (and 3D ones whose last two axes are such a window, \
                    but 1x1, and 1D ones at stride 1)"
            .into());
    }
    if conv.kernel.len() == 3 && kernel[0] == 1 {
        return Err("kernel=plane computes 3D windows of 3x3 or 5x5 across each plane, not 1x1".into());
    }
    Ok(())
}

/// The most accumulators (rows × vectors, and × output channels for a grouped layer) of a
/// [`Kernel::Planar`] tile.
pub const PLANAR_MAX_ACCUMULATORS: u32 = 8;

/// The tile kernel's default tile: pixels × vectors of [`TILE_LANES`] channels.
const TILE_AUTO: (u32, u32) = (6, 2);
/// The tile kernel's default tile for a window of several taps whose strips unroll it (AVX2): the
/// `conv!` macro's 8-lane target, whose dense strips call `tile_fixed` (every stride a constant),
/// and a stage reading the model's channels-first input in place, whose strips the JIT's kernel
/// runs with the window's rows unrolled. Measured on an AVX2 Zen 3 (one process, bit-identical
/// outputs): the macro's std3_64to64_56 with constant strides and 6 × 2 tiles ran 1.24–1.26× the
/// JIT's speed with run-time strides, with 5 × 2 tiles 1.47–1.53× (ten accumulators leave
/// registers for the loads the unrolled window issues ahead); the JIT's unrolled rows on 5 × 2
/// tiles ran std3_64to64_56 1.60× and g3_c256_g2_28 1.45× as fast as its run-time window on 6 × 2
/// tiles (0.83× on 6 × 2 tiles: LLVM spills accumulators). Pointwise layers gain nothing from it
/// (pw_64to64_56 0.98–1.01× with constant strides).
const TILE_AUTO_WINDOW: (u32, u32) = (5, 2);
/// The depthwise tile kernel's default tile.
const TILE_AUTO_DEPTHWISE: (u32, u32) = (4, 2);
/// The most vectors of a dense tile for wide microkernels ([`Target::wide_microkernels`]): 2
/// registers of 16 lanes, several tiles at once. Measured on an AVX-512 host (Zen 5,
/// `convgen bench --schedule pw:lanes=8,tile=PxV,kernel=tile`, medians, pw 64→64 at 56×56
/// channels-last): 3×4 ran at 208 GFLOP/s, 2×4 at 212, 6×2 at 175, 4×3 at 167.
const TILE_WIDE_VECTORS: u32 = 4;
/// The depthwise tile for wide microkernels: on the same host dw5_s1_c240_28 ran 6×2 tiles at 52
/// GFLOP/s, 3×4 at 47, 4×2 at 35.
const TILE_AUTO_DEPTHWISE_WIDE: (u32, u32) = (6, 2);

/// Pixels of a wide dense tile of `vectors` vectors (a registered shape: 3×4, 4×3, 6×2, 6×1).
fn tile_wide_pixels(vectors: u32) -> u32 {
    match vectors {
        4 => 3,
        3 => 4,
        _ => 6,
    }
}
/// The smallest window (taps) for which a depthwise layer takes the tile kernel when its sums go
/// through memory to the IR's epilogue (an activation the kernels do not apply).
const TILE_DEPTHWISE_MIN_TAPS: u64 = 10;

/// The smallest window for which a depthwise layer takes the tile kernel when the kernel applies
/// its activation and stores the results itself: a 3×3 one. Measured on an AMD EPYC Zen 4
/// (`convgen bench --schedule dw:lanes=8,tile=PxV,kernel=tile --against ""`, 400 pairs, 3×3
/// relu layers of MobileNet's shapes, channels-last in place): 1.25–1.92× the inline code with
/// 6×2 tiles and the AVX-512 kernels, 1.23–1.42× with the AVX2 ones (`CONVGEN_MAX_ISA=avx2`).
const TILE_DEPTHWISE_STORING_MIN_TAPS: u64 = 9;

/// The tile (pixels, most vectors) of a depthwise layer whose kernel stores its results, for
/// rows of `width` outputs and `vectors` channel vectors: 3 × 4 for rows of at most 16 outputs
/// with at least 4 vectors (fewer pixels in a row's tail tile), else 6 × 2. Measured as above:
/// 7×7×1024 and 14×14×512 ran 1.4–2.4× the inline code with 3×4 tiles against 1.3–1.9× with 6×2;
/// 112×112×32 0.96–1.04× with 3×4 against 1.25–1.29× with 6×2.
fn depthwise_storing_tile(width: u64, vectors: u32) -> (u32, u32) {
    if width <= 16 && vectors >= 4 { (3, 4) } else { (6, 2) }
}

/// The pixels of a depthwise tile of `vectors` vectors for the AVX2 kernel (16 registers), which
/// slides a window of 3, 5 or 7 taps along w across the tile's pixels (each input vector loaded
/// once per row of taps) only where the accumulators and one vector's weights of the window fit
/// (pixels · vectors + window < 16): at most `pixels`, fewer where that makes the window slide.
/// Measured on an AMD EPYC Zen 4 with `CONVGEN_MAX_ISA=avx2` (`convgen bench --steps --schedule
/// dw:lanes=8,tile=PxV,kernel=tile`, medians): dw5_s1_c240_28's step ran 5×2 tiles (sliding) in
/// 0.177–0.186 ms, 6×2 (not) in 0.219–0.221, 4×2 (sliding, more loads per tap) in 0.227–0.236.
fn narrow_sliding_pixels(pixels: u32, vectors: u32, window: u64) -> u32 {
    let window = window as u32;
    let slides = |pixels: u32| pixels * vectors + window < 16;
    if !matches!(window, 3 | 5 | 7) || slides(pixels) {
        return pixels;
    }
    (1..pixels).rev().find(|&fewer| slides(fewer)).unwrap_or(pixels)
}

/// The fewest input channels per group for which a dense 3×3 stride-1 layer takes Winograd's
/// F(2×2, 3×3) ([`Kernel::Winograd`]): the input transform's cost is per input channel and tile,
/// the saving per input and output channel. Measured on an AVX-512 AMD EPYC (`convgen bench
/// M --schedule c:lanes=8,tile=…,kernel=winograd --against ""`, medians of 30 alternating pairs;
/// AVX2 kernels with `CONVGEN_MAX_ISA=avx2` in brackets; relu, pad 1, channels-first input):
/// 16→8 at 56×56 1.08× (1.29×) the tile kernel, 16→16 at 112×112 1.25× (1.20×), 32→32 at 56×56
/// 1.56× (1.55×), 64→64 at 56×56 1.81× (1.76×), 128→128 at 28×28 1.99× (1.90×), 256→256 at
/// 14×14 2.24× (2.02×), 512→512 at 7×7 1.90× (1.26×), 32→32 at 7×7 1.39× (1.26×); with 8 inputs
/// about even (8→8 at 112×112 1.02× (1.01×), 8→16 at 56×56 1.04× (0.98×)), with 3 slower
/// (0.66× (0.57×)).
const WINOGRAD_MIN_INPUTS: u64 = 16;

/// Whether [`Kernel::Winograd`] computes `conv` by default: a window it exists for, whole
/// vectors of output channels per group, and at least [`WINOGRAD_MIN_INPUTS`] input channels per
/// group.
fn winograd_pays(conv: &Conv) -> bool {
    let in_per_group = conv.in_channels / conv.groups;
    crate::lower::winograd::fits(conv) && tile_kernel_fits(conv) && in_per_group >= WINOGRAD_MIN_INPUTS
}

/// Whether the tile kernels can compute `conv`: whole vectors of output channels per group
/// (dense), or of channels (depthwise with multiplier 1).
fn tile_kernel_fits(conv: &Conv) -> bool {
    let lanes = u64::from(TILE_LANES);
    if conv.is_depthwise() {
        conv.out_channels.is_multiple_of(lanes)
    } else {
        (conv.out_channels / conv.groups).is_multiple_of(lanes)
    }
}

/// `lanes=4,tile=4x3` (and `,kernel=tile` or `,kernel=planar`, `,order=channels` where not the
/// default), or `kernel=plane`: the form that [`Schedule`]'s [`FromStr`](std::str::FromStr) reads.
impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.kernel == Kernel::Plane {
            return write!(f, "kernel=plane");
        }
        write!(f, "lanes={},tile={}x{}", self.lanes, self.tile_width, self.tile_channels)?;
        match self.kernel {
            Kernel::Inline => {}
            Kernel::Tile => write!(f, ",kernel=tile")?,
            Kernel::Planar => write!(f, ",kernel=planar")?,
            Kernel::Winograd => write!(f, ",kernel=winograd")?,
            Kernel::Plane => unreachable!("written above"),
        }
        match self.order {
            Order::Pixels => Ok(()),
            Order::Channels => write!(f, ",order=channels"),
        }
    }
}

/// Reads `lanes=L,tile=WxC[,kernel=K][,order=O]` (`lanes` and `tile` required, in any order): `L`
/// lanes per vector, a register tile of `W` pixels by `C` channel vectors, computed by the loop IR
/// (`kernel=inline`, the default), the tile microkernel (`kernel=tile`, `L` = 8) or in the user's
/// channels-first layout (`kernel=planar`, `tile=RxV`: `R` rows × `V` vectors along w), with pixels
/// (`order=pixels`, the default) or channel blocks (`order=channels`) outermost; or `kernel=plane`
/// alone (the plane microkernel, [`Kernel::Plane`]). Whether the schedule fits a layer is checked
/// when the layer is lowered ([`Schedule::validate`]).
impl std::str::FromStr for Schedule {
    type Err = String;

    fn from_str(text: &str) -> Result<Schedule, String> {
        let number = |value: &str, what: &str| -> Result<u32, String> {
            value.trim().parse::<u32>().map_err(|_| format!("{what} must be a whole number, not `{}`", value.trim()))
        };
        let (mut lanes, mut tile, mut kernel, mut order) = (None, None, Kernel::Inline, Order::Pixels);
        for part in text.split(',') {
            let (key, value) = part
                .split_once('=')
                .ok_or_else(|| format!("expected `lanes=L,tile=WxC`; `{}` has no `=`", part.trim()))?;
            match key.trim() {
                "lanes" => lanes = Some(number(value, "lanes")?),
                "tile" => {
                    let (width, channels) = value
                        .split_once('x')
                        .ok_or_else(|| format!("`tile` is `WxC` (pixels x channel vectors), not `{}`", value.trim()))?;
                    tile = Some((number(width, "the tile width")?, number(channels, "the tile's channel vectors")?));
                }
                "kernel" => {
                    kernel = match value.trim() {
                        "inline" => Kernel::Inline,
                        "tile" => Kernel::Tile,
                        "planar" => Kernel::Planar,
                        "plane" => Kernel::Plane,
                        "winograd" => Kernel::Winograd,
                        other => {
                            return Err(format!(
                                "`kernel` is `inline`, `tile`, `planar`, `plane` or `winograd`, not `{other}`"
                            ));
                        }
                    }
                }
                "order" => {
                    order = match value.trim() {
                        "pixels" => Order::Pixels,
                        "channels" => Order::Channels,
                        other => return Err(format!("`order` is `pixels` or `channels`, not `{other}`")),
                    }
                }
                other => {
                    return Err(format!(
                        "unknown schedule key `{other}`; expected `lanes`, `tile`, `kernel` and `order`"
                    ));
                }
            }
        }
        if kernel == Kernel::Plane {
            return match (lanes, tile, order) {
                (None, None, Order::Pixels) => Ok(Schedule::plane()),
                _ => Err("`kernel=plane` stands alone: the plane kernel chooses its own lanes, tile and order".into()),
            };
        }
        let lanes = lanes.ok_or("the schedule needs `lanes=L`")?;
        let (tile_width, tile_channels) = tile.ok_or("the schedule needs `tile=WxC`")?;
        Ok(Schedule { lanes, tile_width, tile_channels, kernel, order })
    }
}

/// Whether vectors of `lanes` output channels can be computed together.
pub(crate) fn vectorizable(conv: &Conv, lanes: u32) -> bool {
    let out_per_group = conv.out_channels / conv.groups;
    conv.is_depthwise() || conv.groups == 1 || out_per_group.is_multiple_of(u64::from(lanes))
}

/// How many vectors of output channels one group's (padded) output channels make.
pub(crate) fn channel_vectors(conv: &Conv, lanes: u32) -> u64 {
    let out_per_group = conv.out_channels / conv.groups;
    let lanes = u64::from(lanes);
    if conv.is_depthwise() || conv.groups == 1 {
        conv.out_channels.div_ceil(lanes)
    } else {
        out_per_group.div_ceil(lanes)
    }
}

#[cfg(test)]
mod tests {
    use super::{Order, Schedule, narrow_sliding_pixels};

    #[test]
    fn narrow_tiles_shrink_only_to_let_a_window_slide() {
        // (pixels, vectors, window) → pixels: 6 × 2 + 3 taps fit in 15 registers; 5 and 7 taps
        // need 5 and 4 pixels; 4 taps never slide; 3 × 4 with 5 taps goes down to 2 pixels.
        let cases = [((6, 2, 3), 6), ((6, 2, 5), 5), ((6, 2, 7), 4), ((6, 2, 4), 6), ((3, 4, 5), 2), ((6, 1, 7), 6)];
        for ((pixels, vectors, window), expected) in cases {
            assert_eq!(narrow_sliding_pixels(pixels, vectors, window), expected, "{pixels}x{vectors}, {window} taps");
        }
    }

    #[test]
    fn text_form_round_trips() {
        let channels_outer = Schedule { order: Order::Channels, ..Schedule::tile_kernel(4, 3) };
        let schedules = [
            Schedule::new(4, 3, 2),
            Schedule::tile_kernel(4, 3),
            channels_outer,
            Schedule::planar(4, 4, 1),
            Schedule::plane(),
            Schedule::winograd(6, 2),
        ];
        for schedule in schedules {
            assert_eq!(schedule.to_string().parse::<Schedule>(), Ok(schedule));
        }
        assert_eq!(" tile = 1x1 , lanes=1".parse::<Schedule>(), Ok(Schedule::new(1, 1, 1)));
    }

    #[test]
    fn malformed_text_is_an_error() {
        for (text, expected) in [
            ("lanes=4", "needs `tile=WxC`"),
            ("tile=4x3", "needs `lanes=L`"),
            ("lanes=four,tile=4x3", "lanes must be a whole number"),
            ("lanes=4,tile=43", "`tile` is `WxC`"),
            ("lanes=4,tile=4x3,unroll=2", "unknown schedule key `unroll`"),
            ("lanes=8,tile=4x3,kernel=avx2", "`kernel` is `inline`, `tile`, `planar`, `plane` or `winograd`"),
            ("kernel=plane,lanes=8", "`kernel=plane` stands alone"),
            ("", "has no `=`"),
        ] {
            let error = text.parse::<Schedule>().unwrap_err();
            assert!(error.contains(expected), "{text}: {error}");
        }
    }
}
