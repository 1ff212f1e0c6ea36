//! The loop IR shared by the code generators: loop nests over flat f32 buffers with vector
//! accumulators kept in registers.
//!
//! A [`Function`] is what one code generator turns into one machine function (the JIT) or one Rust
//! `fn` (the `conv!` macro). It is deliberately small:
//!
//! - buffers are flat f32 arrays with a length known when the function is built;
//! - loops count `0..count` with constant counts (a function is built for one concrete shape);
//!   anything a schedule unrolls — kernel windows, register tiles, border positions — is already
//!   unrolled here, so code generators never decide what to unroll;
//! - every index is affine in the enclosing loop variables ([`Index`]), so address arithmetic is
//!   strength-reducible and the interior of a convolution has no bounds checks;
//! - values are vectors of [`Function::lanes`] f32 lanes (1 = scalar code): loads, splats, sums,
//!   differences, activations; accumulators ([`Acc`]) are registers, never memory (scalar
//!   replacement), and also hold the intermediate values of Winograd's transforms;
//! - the epilogue (bias is the accumulator's initial value; activation, residual add) is fused into
//!   the [`Stmt::Store`];
//! - three statements are not per-lane operations: [`Stmt::Tile`], a register tile (or a strip of
//!   them) computed by a named microkernel, which leaves its sums in a scratch buffer for the
//!   IR's epilogue, [`Stmt::Plane`], whole channel planes of a depthwise layer computed by another
//!   (border, bias and activation included), and [`Stmt::Transpose`], a 4×4 block moved
//!   transposed (layout conversions);
//!   one value gathers: [`Value::LoadEven`], every other element of a row (stride 2).
//!
//! The IR has a canonical text form (`Display`) for snapshots and `convgen inspect --emit ir`, and
//! an interpreter ([`crate::ir_interp`]) so that lowering is checked against the reference
//! interpreter independently of any code generator.

use std::fmt;

use crate::spec::Activation;

/// One generated function: `fn name(buffers…)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Function {
    /// A name unique within its plan (`dw1`, `s.pw`, `input_to_nhwc4`).
    pub name: String,
    /// Lanes of every vector value (1, 4 or 8).
    pub lanes: u32,
    /// The parameters, in call order.
    pub buffers: Vec<Buffer>,
    /// The loop nest.
    pub body: Vec<Stmt>,
    /// How many accumulators the body uses (`Acc(0)..Acc(accumulators)`).
    pub accumulators: u32,
    /// How many loop variables the body uses.
    pub loop_vars: u32,
}

/// A function parameter: a flat f32 buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// Its name in the text form.
    pub name: String,
    /// Its length in f32 elements; every access of the function stays within it.
    pub len: u64,
    /// Whether the function writes it.
    pub writes: bool,
}

/// A buffer, by position in [`Function::buffers`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufferId(pub u32);

/// A loop variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LoopVar(pub u32);

/// A vector accumulator (a register).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Acc(pub u32);

/// A statement.
#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// `for var in 0..count { body }`.
    Loop {
        /// The variable.
        var: LoopVar,
        /// Trip count (≥ 1).
        count: u64,
        /// The body.
        body: Vec<Stmt>,
    },
    /// `acc = value`.
    Init {
        /// The accumulator.
        acc: Acc,
        /// Its new value.
        value: Value,
    },
    /// `acc += a * b` (a fused multiply-add where the target has one).
    Fma {
        /// The accumulator.
        acc: Acc,
        /// One factor.
        a: Value,
        /// The other.
        b: Value,
    },
    /// `buffer[index .. index + lanes] = value`.
    Store {
        /// The buffer written.
        buffer: BufferId,
        /// Where the first lane goes.
        index: Index,
        /// What is stored.
        value: Value,
    },
    /// A [`TRANSPOSE`]×[`TRANSPOSE`] block copied transposed, whatever [`Function::lanes`] is (layout
    /// conversions use it between channels-first and channels-last tensors):
    /// `to[to_index + c·to_stride + r] = from[from_index + r·from_stride + c]` for `r, c` in
    /// `0..TRANSPOSE`. Row `r` of the source and row `c` of the destination are contiguous.
    Transpose {
        /// The buffer read.
        from: BufferId,
        /// Its first element (row 0, column 0).
        from_index: Index,
        /// Elements from one source row to the next (≥ [`TRANSPOSE`]).
        from_stride: i64,
        /// The buffer written (all four rows are read before any is written).
        to: BufferId,
        /// Its first element.
        to_index: Index,
        /// Elements from one destination row to the next (≥ [`TRANSPOSE`]).
        to_stride: i64,
    },
    /// One register tile of a dense convolution computed by a microkernel (a named intrinsic of
    /// the code generators; see [`Tile`]).
    Tile(Box<Tile>),
    /// Whole channel planes of a depthwise convolution in the channels-first layout, computed by
    /// a microkernel (a named intrinsic of the code generators; see [`Plane`]).
    Plane(Box<Plane>),
}

/// The side of a [`Stmt::Transpose`] block: 4 f32, one 128-bit vector, a row.
pub const TRANSPOSE: u32 = 4;

/// Lanes of the tile microkernel's vectors (AVX2: 256 bits).
pub const TILE_LANES: u32 = 8;
/// The most pixels of a [`Tile`].
pub const TILE_MAX_PIXELS: u32 = 6;
/// The most vectors of a [`Tile`].
pub const TILE_MAX_VECTORS: u32 = 4;
/// The most accumulators (`pixels × vectors`) of a [`Tile`]: with one weight vector per vector
/// and a broadcast input, they fit AVX2's 16 registers.
pub const TILE_MAX_ACCUMULATORS: u32 = 12;

/// Whether a tile kernel exists for `pixels × vectors` tiles: 1 to [`TILE_MAX_PIXELS`] pixels,
/// 1 to [`TILE_MAX_VECTORS`] vectors, at most [`TILE_MAX_ACCUMULATORS`] accumulators.
pub fn tile_shape_exists(pixels: u32, vectors: u32) -> bool {
    (1..=TILE_MAX_PIXELS).contains(&pixels)
        && (1..=TILE_MAX_VECTORS).contains(&vectors)
        && pixels * vectors <= TILE_MAX_ACCUMULATORS
}

/// A convolution's register tile, computed by a tile microkernel: `pixels` × `vectors`
/// accumulators of [`TILE_LANES`] lanes, which start as the bias (or 0) and end in `acc`:
///
/// ```text
/// for r in 0..repeat, p, v, lane:
///   acc[acc_index + ((r·pixels + p)·vectors + v)·8 + lane] =
///       bias[bias_index + r·repeat_bias_stride + v·8 + lane] +
///     Σ over k in 0..reduce, then taps (d, h, w) in order:
///         input[input_index + r·repeat_input_stride + p·pixel_stride + k·reduce_input_stride
///               + Σ tap·tap_input_stride
///               (+ v·8 + lane if depthwise)]
///       · weight[weight_index + r·repeat_weight_stride + k·reduce_weight_stride
///                + Σ tap·tap_weight_stride + v·8 + lane]
/// ```
///
/// A dense tile broadcasts one input element to all lanes (every output channel reads every input
/// channel of its group); a depthwise one reads a vector of input channels, one per lane.
///
/// Each sum is a chain of fused multiply-adds in exactly that order (input channels, then taps):
/// the order the inline loops use, so that a schedule never changes results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tile {
    /// Depthwise (lane `l` reads input channel `l`) or dense (every lane reads the same input).
    pub depthwise: bool,
    /// Pixels (1 to [`TILE_MAX_PIXELS`]).
    pub pixels: u32,
    /// Tiles side by side, computed one after the other in one call (≥ 1): a strip of
    /// `repeat · pixels` pixels.
    pub repeat: u64,
    /// Input elements from one tile of the strip to the next.
    pub repeat_input_stride: i64,
    /// Weight elements from one tile of the strip to the next (0 for a strip of pixels; a
    /// depthwise strip of channel blocks moves along the channels).
    pub repeat_weight_stride: i64,
    /// Bias elements from one tile of the strip to the next.
    pub repeat_bias_stride: i64,
    /// Vectors of output channels (1 to [`TILE_MAX_VECTORS`]).
    pub vectors: u32,
    /// The input buffer, read one element at a time (broadcast to the lanes), or a vector at a
    /// time for a depthwise tile.
    pub input: BufferId,
    /// Pixel 0's element for k = 0 at the first tap.
    pub input_index: Index,
    /// Input elements from one pixel of the tile to the next.
    pub pixel_stride: i64,
    /// The packed weights, read a vector at a time.
    pub weight: BufferId,
    /// Vector 0's first lane for k = 0 at the first tap.
    pub weight_index: Index,
    /// The initial value of every pixel's sums, `vectors · 8` elements from its index; none: 0.
    pub bias: Option<(BufferId, Index)>,
    /// Where the sums go, `vectors · 8` consecutive elements per pixel (only written).
    pub acc: BufferId,
    /// The first accumulator's first lane.
    pub acc_index: Index,
    /// `acc` elements from one pixel's sums to the next's (`vectors · 8` in a scratch buffer;
    /// an output's pixel stride where the kernel stores the results itself).
    pub acc_pixel_stride: i64,
    /// `acc` elements from one tile's sums to the next's (`pixels · acc_pixel_stride` along a
    /// strip of pixels; `vectors · 8` along a strip of channel blocks written in place).
    pub acc_repeat_stride: i64,
    /// Applied to every sum before it is stored.
    pub act: TileActivation,
    /// Whether the kernel fetches the next panel of weights into the L2 cache while it computes
    /// the strip: the `reduce · reduce_weight_stride` elements after the strip's own, which the
    /// next strip of a pointwise stage reads. A hint (nothing is read for it, and results do not
    /// depend on it), set where a plan's weights do not stay in a core's cache between runs
    /// ([`crate::lower::lower`]).
    pub prefetch: bool,
    /// How many input channels (k) each sum runs over.
    pub reduce: u64,
    /// Input elements from one k to the next.
    pub reduce_input_stride: i64,
    /// Weight elements from one k to the next.
    pub reduce_weight_stride: i64,
    /// Taps per axis (d, h, w): a box, so a border tile's taps are a smaller box.
    pub taps: [u64; 3],
    /// Input elements from one tap to the next, per axis.
    pub tap_input_strides: [i64; 3],
    /// Weight elements from one tap to the next, per axis.
    pub tap_weight_strides: [i64; 3],
}

/// The activations a tile kernel applies to its sums itself, as [`Activation::apply`] defines
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum TileActivation {
    /// The sums as they are.
    #[default]
    None,
    /// `max(x, 0)`.
    Relu,
    /// `clamp(x, 0, 6)`.
    Relu6,
}

impl TileActivation {
    /// The kernels' form of `act`, if they apply it.
    pub fn of(act: Activation) -> Option<TileActivation> {
        match act {
            Activation::None => Some(TileActivation::None),
            Activation::Relu => Some(TileActivation::Relu),
            Activation::Relu6 => Some(TileActivation::Relu6),
            _ => None,
        }
    }

    /// The activation it is.
    pub fn activation(self) -> Activation {
        match self {
            TileActivation::None => Activation::None,
            TileActivation::Relu => Activation::Relu,
            TileActivation::Relu6 => Activation::Relu6,
        }
    }
}

impl Tile {
    /// `(buffer, lowest offset, highest offset + 1)` from the statement's index of each buffer it
    /// touches: input, weight, acc, and the bias if it has one (the fourth entry, else `None`).
    /// Every element accessed lies in between (for every value of the index). Allocates nothing
    /// (the `conv!` macro's `forward` checks its tiles with it).
    pub fn extents(&self) -> [Option<(BufferId, i64, i64)>; 4] {
        // Σ over (count, stride) of the lowest and highest count·stride reached.
        let span = |terms: &[(u64, i64)]| -> (i64, i64) {
            terms.iter().fold((0, 0), |(low, high), &(count, stride)| {
                let far = (count.saturating_sub(1) as i64).saturating_mul(stride);
                (low + far.min(0), high + far.max(0))
            })
        };
        let [taps_d, taps_h, taps_w] = self.taps;
        let (input_strides, weight_strides) = (self.tap_input_strides, self.tap_weight_strides);
        let (input_low, input_high) = span(&[
            (self.repeat, self.repeat_input_stride),
            (u64::from(self.pixels), self.pixel_stride),
            (self.reduce, self.reduce_input_stride),
            (taps_d, input_strides[0]),
            (taps_h, input_strides[1]),
            (taps_w, input_strides[2]),
        ]);
        let (weight_low, weight_high) = span(&[
            (self.repeat, self.repeat_weight_stride),
            (self.reduce, self.reduce_weight_stride),
            (taps_d, weight_strides[0]),
            (taps_h, weight_strides[1]),
            (taps_w, weight_strides[2]),
        ]);
        let lanes = i64::from(TILE_LANES);
        let width = i64::from(self.vectors) * lanes;
        let (acc_low, acc_high) =
            span(&[(self.repeat, self.acc_repeat_stride), (u64::from(self.pixels), self.acc_pixel_stride)]);
        let input_width = if self.depthwise { width } else { 1 };
        let bias = self.bias.as_ref().map(|(bias, _)| {
            let (bias_low, bias_high) = span(&[(self.repeat, self.repeat_bias_stride)]);
            (*bias, bias_low, bias_high + width)
        });
        [
            Some((self.input, input_low, input_high + input_width)),
            Some((self.weight, weight_low, weight_high + width)),
            Some((self.acc, acc_low, acc_high + width)),
            bias,
        ]
    }
}

/// The square windows a plane kernel exists for ([`Plane`]), `(kernel, stride, dilation)` along
/// both axes: 3×3 with stride 1 or 2 or dilation 2, 5×5 with stride 1 or 2 — the depthwise
/// windows of MobileNet, EfficientNet and the suite — and 1×1 (pointwise, stride 1).
pub const PLANE_WINDOWS: [(u64, u64, u64); 6] = [(3, 1, 1), (3, 2, 1), (3, 1, 2), (5, 1, 1), (5, 2, 1), (1, 1, 1)];

/// The longest rows of the planes AVX-512's plane kernel computes as flat runs of vectors across
/// their rows (`conv_jit`'s `plane/flat.rs`: stride 1, the output plane the input's size), half
/// its 16 lanes. The lowering's default for small planes (`lower`'s `planar::plane_pays`) and the
/// kernel's own choice both read it.
pub const PLANE_FLAT_MAX_ROW: u64 = 8;

/// The most positions (H·W) of such a flat plane: 32 vectors of 16 (the kernel keeps a mask per
/// vector and tap in a table on its stack).
pub const PLANE_FLAT_MAX_POSITIONS: u64 = 512;

/// The output rows (OW, fewest and most) of the 3D layers a plane kernel computes fast: those whose
/// planes its 3 × 3 stride-1 stream covers (`conv_jit`'s `plane/columns.rs`: rows of 3 to 7
/// vectors of 16 lanes on AVX-512, 5 to 14 of 8 on AVX2 — both 33 to 112). The lowering's default
/// for 3D layers (`lower`'s `planar::volume_pays`) reads it; a test of the kernel checks it
/// against the stream's own bounds.
pub const PLANE_VOLUME_ROWS: (u64, u64) = (33, 112);

/// The most positions (H·W) of the small depthwise planes, in rows of 2 to [`PLANE_FLAT_MAX_ROW`],
/// that a plane kernel transposes, a vector's lanes of planes at a time (`conv_jit`'s
/// `plane/transposed.rs`).
pub const PLANE_TRANSPOSED_MAX_POSITIONS: u64 = 64;

/// The longer rows (fewest and most elements) a plane kernel transposes, in planes of at most as
/// many rows as the most (MobileNets' 14 × 14 layers at 224 px, 10 × 10 and 12 × 12 at 160 and
/// 192 px); where its vectors have 16 lanes (AVX-512), rows one shorter than the most at most (its
/// stream kernels run 14 × 14 faster). Measured on an Intel Xeon (the builds alternating, 6–8
/// pairs): with 8 lanes (`CONVGEN_MAX_ISA=avx2`) the transposed kernel ran 1.32× the planar code
/// on dw3_s1_c384_14, 2.04× the row kernel under a 5 × 5 window on 480 planes of 14 × 14, and
/// 1.34–2.31× the planar code or the row kernels under a 3 × 3 window on 512 planes of 9 × 9 to 13
/// × 13 (2.36–2.72× under a 5 × 5 one); with 16 lanes, against the planar code or the
/// channels-last tile kernel, 1.78–3.09× under a 3 × 3 window on 9 × 9 to 13 × 13 (2.84–3.66×
/// under a 5 × 5 one), but at 14 × 14 0.61–0.91× of the stream and row kernels (dw3_s1_c384_14
/// 0.61×, 512 planes 0.72×, under a 5 × 5 window 0.91×).
pub const PLANE_TRANSPOSED_ROWS: (u64, u64) = (9, 14);

/// The longest rows a plane kernel transposes a row at a time where its vectors have 8 lanes
/// (AVX2), in planes of any height (`conv_jit`'s `plane/banded.rs`): up to the shortest rows its
/// stride-1 stream takes ([`PLANE_VOLUME_ROWS`]); the shortest are those that hold a run of
/// [`PLANE_TRANSPOSED_BANDED_RUN`] sums and the window ([`plane_transposed`]: 10 under a 3 × 3
/// window, 12 under a 5 × 5 one), where [`PLANE_TRANSPOSED_ROWS`]' whole planes do not take them
/// (planes of more than 14 rows; on AVX-512 too, up to rows of 13, with AVX2's kernel: its 16
/// lanes' blocks need rows of 16). Measured on an Intel Xeon with `CONVGEN_MAX_ISA=avx2` (the build
/// before and this one alternating, `convgen bench MODEL --runs 300`, 4 pairs, 512 planes of each
/// size): under a 3 × 3 window against the planar code of 4 lanes, 1.74× (16 × 16), 1.58× (20 ×
/// 20), 1.22× (24 × 24), 1.49× (28 × 28), 1.25× (32 × 32); under a 5 × 5 one against the row
/// kernel 2.50×, 2.41×, 1.68× and 1.64× (16 to 32 but 28), and at 28 × 28 1.29× the whole planes
/// transposed at once ([`PLANE_TRANSPOSED_ROWS`]' kernel, which took EfficientNets' 28 × 28
/// layers before: dw5_s1_c240_28 1.20× the row kernel).
pub const PLANE_TRANSPOSED_BANDED_MOST: u64 = 32;

/// The sums of an output row that `conv_jit`'s `plane/banded.rs` keeps in registers at a time,
/// beside the window's taps in AVX2's 16 (the runs of [`PLANE_TRANSPOSED_ROWS`]' rows of 14).
pub const PLANE_TRANSPOSED_BANDED_RUN: u64 = 7;

/// Whether a plane kernel whose vectors have `lanes` lanes computes a depthwise layer's planes
/// transposed, that many planes at a time (`conv_jit`'s `plane/transposed.rs`), given at least that
/// many planes: a `kernel × kernel` window of 3 or 5 at stride 1, undilated, padded on the left by
/// half its reach and on the top by at most its reach, over `[h, w]` planes in rows of 2 to
/// [`PLANE_FLAT_MAX_ROW`] of at most [`PLANE_TRANSPOSED_MAX_POSITIONS`] positions, or in the rows
/// of [`PLANE_TRANSPOSED_ROWS`] (on 16 lanes but its longest) in planes of at most as many rows as
/// its longest, or in rows of `kernel` + [`PLANE_TRANSPOSED_BANDED_RUN`] to
/// [`PLANE_TRANSPOSED_BANDED_MOST`] (on 16 lanes to one shorter than [`PLANE_TRANSPOSED_ROWS`]'
/// longest) in planes of any height, each output plane its input's size. The lowering's default
/// for such planes (`lower`'s `planar::transposed_planes`) and the kernel's own choice both ask it.
pub fn plane_transposed(
    window: (u64, u64, u64),
    input: [u64; 2],
    output: [u64; 2],
    [top, left]: [u64; 2],
    lanes: u64,
) -> bool {
    let (kernel, stride, dilation) = window;
    let ([h, w], reach) = (input, kernel.saturating_sub(1));
    let short = (2..=PLANE_FLAT_MAX_ROW).contains(&w) && h.saturating_mul(w) <= PLANE_TRANSPOSED_MAX_POSITIONS;
    let (fewest, most) = PLANE_TRANSPOSED_ROWS;
    let banded = (kernel.saturating_add(PLANE_TRANSPOSED_BANDED_RUN)..=PLANE_TRANSPOSED_BANDED_MOST).contains(&w);
    let long = match lanes {
        8 => ((fewest..=most).contains(&w) && h <= most) || banded,
        16 => (fewest..most).contains(&w) && (h <= most || banded),
        _ => false,
    };
    let size = output == input && h >= 1 && (short || long);
    let padding = left == reach / 2 && top <= reach;
    matches!(kernel, 3 | 5) && (stride, dilation) == (1, 1) && size && padding
}

/// Whether a plane kernel exists for a square `kernel × kernel` window with `stride` and
/// `dilation` along both axes: one of [`PLANE_WINDOWS`].
pub fn plane_kernel_exists(kernel: u64, stride: u64, dilation: u64) -> bool {
    PLANE_WINDOWS.contains(&(kernel, stride, dilation))
}

/// Consecutive channel planes of a depthwise (or grouped) 2D convolution in the channels-first
/// layout, computed by a plane microkernel — the border, the bias and the activation included; of
/// a 3D one, each channel a volume of [`PlaneDepth`] planes. Output plane `p` is in group
/// `g = p / group_outputs`, which reads input planes `g·group_inputs + k` (a depthwise layer:
/// `group_inputs` 1, `group_outputs` its multiplier):
///
/// ```text
/// for p in 0..planes, od in 0..OD, oh, ow:
///   output[output_index + ((p·OD + od)·OH + oh)·OW + ow] = act(
///     bias[bias_index + p] (or 0) +
///     Σ over k in 0..group_inputs, then kd in 0..KD, then kh, then kw in 0..kernel, where
///       id = od·SD − pad_front + kd·DD lies inside 0..ID, and ih = oh·stride − pad_top + kh·dilation
///       and iw = ow·stride − pad_left + kw·dilation inside the H × W plane:
///       input[input_index + (((g·group_inputs + k)·ID + id)·H + ih)·W + iw]
///         · weight[weight_index + (((p·group_inputs + k)·KD + kd)·kernel + kh)·kernel + kw])
/// ```
///
/// (a 2D layer's depth is [`PlaneDepth::FLAT`]: ID = OD = KD = 1). Each sum is a chain of fused
/// multiply-adds in that order (input channels, then the taps in order, those outside the input
/// skipped): the order of the inline code and of the reference interpreter, so results do not
/// depend on who computes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plane {
    /// The input buffer: `⌈planes / group_outputs⌉ · group_inputs` planes of `H × W` from its
    /// index.
    pub input: BufferId,
    /// Plane 0's first element.
    pub input_index: Index,
    /// The weights, `group_inputs` windows of `kernel × kernel` per output plane.
    pub weight: BufferId,
    /// Plane 0's first weight.
    pub weight_index: Index,
    /// One initial value per output plane; none: 0.
    pub bias: Option<(BufferId, Index)>,
    /// The output buffer (only written): `planes` planes of `OH × OW` from its index.
    pub output: BufferId,
    /// Plane 0's first element.
    pub output_index: Index,
    /// Output planes.
    pub planes: u64,
    /// Input planes per group, which each output plane sums over.
    pub group_inputs: u64,
    /// Output planes per group.
    pub group_outputs: u64,
    /// The input plane's size, (H, W).
    pub input_size: [u64; 2],
    /// The output plane's size, (OH, OW).
    pub output_size: [u64; 2],
    /// Taps along each axis ([`plane_kernel_exists`]).
    pub kernel: u64,
    /// Input positions from one output position to the next, along each axis.
    pub stride: u64,
    /// Input positions from one tap to the next, along each axis.
    pub dilation: u64,
    /// Zero padding before the plane, (top, left): output position 0 reads input position
    /// `−pad` at tap 0.
    pub padding: [u64; 2],
    /// Applied to every sum before it is stored.
    pub act: TileActivation,
    /// The depth axis of a 3D layer's volumes ([`PlaneDepth::FLAT`] for a 2D layer's planes).
    pub depth: PlaneDepth,
}

/// The depth axis of a [`Plane`] statement: each channel's input is `input` planes of `H × W`
/// and its output `output` planes of `OH × OW`, and its window `kernel` planes deep (any window
/// along the depth; across each plane it is the statement's square one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlaneDepth {
    /// Input planes per channel (ID).
    pub input: u64,
    /// Output planes per channel (OD).
    pub output: u64,
    /// Taps along the depth (KD).
    pub kernel: u64,
    /// Input planes from one output plane to the next (SD).
    pub stride: u64,
    /// Input planes from one tap to the next (DD).
    pub dilation: u64,
    /// Zero planes before the input: output plane 0 reads input plane `−pad` at tap 0.
    pub pad: u64,
}

impl PlaneDepth {
    /// A 2D layer's: one plane per channel, one tap.
    pub const FLAT: PlaneDepth = PlaneDepth { input: 1, output: 1, kernel: 1, stride: 1, dilation: 1, pad: 0 };

    /// `[input, output, kernel, stride, dilation, pad]`, the order of the kernels' arguments.
    pub fn values(self) -> [u64; 6] {
        [self.input, self.output, self.kernel, self.stride, self.dilation, self.pad]
    }
}

impl Plane {
    /// A 1D layer's statement — each channel a row along the depth axis, every plane a single
    /// element under a 1 × 1 window — its window's taps along the row; any other: `None`.
    fn row_window(&self) -> Option<u64> {
        let single = self.input_size == [1, 1] && self.output_size == [1, 1] && self.kernel == 1;
        (single && self.padding == [0, 0] && self.depth != PlaneDepth::FLAT).then_some(self.depth.kernel)
    }

    /// `(buffer, lowest offset, highest offset + 1)` from the statement's index of each buffer it
    /// touches: input, weight, output, and the bias if it has one (the fourth entry, else `None`).
    pub fn extents(&self) -> [Option<(BufferId, i64, i64)>; 4] {
        let as_i64 = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        let [h, w] = self.input_size.map(as_i64);
        let [oh, ow] = self.output_size.map(as_i64);
        let planes = as_i64(self.planes);
        let group_inputs = as_i64(self.group_inputs);
        let inputs = as_i64(self.planes.div_ceil(self.group_outputs.max(1))).saturating_mul(group_inputs);
        let depth = self.depth;
        let taps = as_i64(self.kernel).saturating_mul(as_i64(self.kernel)).saturating_mul(as_i64(depth.kernel));
        let (inputs, planes_out) =
            (inputs.saturating_mul(as_i64(depth.input)), planes.saturating_mul(as_i64(depth.output)));
        [
            Some((self.input, 0, inputs.saturating_mul(h).saturating_mul(w))),
            Some((self.weight, 0, planes.saturating_mul(group_inputs).saturating_mul(taps))),
            Some((self.output, 0, planes_out.saturating_mul(oh).saturating_mul(ow))),
            self.bias.as_ref().map(|(bias, _)| (*bias, 0, planes)),
        ]
    }
}

/// A vector value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// An accumulator's current value.
    Acc(Acc),
    /// `lanes` consecutive elements starting at `index`.
    Load {
        /// The buffer read.
        buffer: BufferId,
        /// The first element.
        index: Index,
    },
    /// Every other element: lane `l` is element `index + 2·l` (a stride-2 row; the access spans
    /// `index .. index + 2·lanes − 1`).
    LoadEven {
        /// The buffer read.
        buffer: BufferId,
        /// The first element.
        index: Index,
    },
    /// One element, in every lane.
    Splat {
        /// The buffer read.
        buffer: BufferId,
        /// The element.
        index: Index,
    },
    /// All lanes 0.
    Zero,
    /// Lane-wise sum.
    Add(Box<Value>, Box<Value>),
    /// Lane-wise difference, the first minus the second (Winograd's transforms).
    Sub(Box<Value>, Box<Value>),
    /// Lane-wise activation. `silu` and `sigmoid` need `exp`, which code generators call as a
    /// named intrinsic where the target has no instruction for it.
    Activate(Activation, Box<Value>),
}

/// An affine index: `offset + Σ coefficient · var`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Index {
    /// The constant part.
    pub offset: i64,
    /// `(var, coefficient)` pairs, sorted by var, no zero coefficients.
    pub terms: Vec<(LoopVar, i64)>,
}

impl Index {
    /// A constant index.
    pub fn constant(offset: i64) -> Index {
        Index { offset, terms: Vec::new() }
    }

    /// `coefficient · var`.
    pub fn var(var: LoopVar, coefficient: i64) -> Index {
        Index::constant(0).plus_var(var, coefficient)
    }

    /// `self + coefficient · var`.
    pub fn plus_var(mut self, var: LoopVar, coefficient: i64) -> Index {
        match self.terms.binary_search_by_key(&var, |(existing, _)| *existing) {
            Ok(position) => {
                self.terms[position].1 += coefficient;
                if self.terms[position].1 == 0 {
                    self.terms.remove(position);
                }
            }
            Err(position) if coefficient != 0 => self.terms.insert(position, (var, coefficient)),
            Err(_) => {}
        }
        self
    }

    /// `self + other`.
    pub fn plus(self, other: &Index) -> Index {
        let mut sum = other.terms.iter().fold(self, |sum, &(var, coefficient)| sum.plus_var(var, coefficient));
        sum.offset += other.offset;
        sum
    }

    /// `self + offset`.
    pub fn plus_constant(mut self, offset: i64) -> Index {
        self.offset += offset;
        self
    }

    /// `factor · self`.
    pub fn times(mut self, factor: i64) -> Index {
        if factor == 0 {
            return Index::constant(0);
        }
        self.offset *= factor;
        for term in &mut self.terms {
            term.1 *= factor;
        }
        self
    }

    /// The index's value for the given loop variable values (indexed by `LoopVar.0`).
    pub fn eval(&self, vars: &[i64]) -> i64 {
        self.terms.iter().fold(self.offset, |sum, &(var, coefficient)| sum + coefficient * vars[var.0 as usize])
    }
}

impl Function {
    /// Visits every statement, depth first, with the loop counts enclosing it.
    pub fn visit(&self, visitor: &mut impl FnMut(&Stmt, &[(LoopVar, u64)])) {
        fn walk(body: &[Stmt], loops: &mut Vec<(LoopVar, u64)>, visitor: &mut impl FnMut(&Stmt, &[(LoopVar, u64)])) {
            for stmt in body {
                visitor(stmt, loops);
                if let Stmt::Loop { var, count, body } = stmt {
                    loops.push((*var, *count));
                    walk(body, loops, visitor);
                    loops.pop();
                }
            }
        }
        walk(&self.body, &mut Vec::new(), visitor);
    }
}

impl Function {
    /// Makes buffer `buffer` a window of `len` elements starting at element `start` of what it
    /// was: every index into it moves down by `start`. Used for a step that computes one part of a
    /// stage's output ([`crate::lower::Part`]); the code generators' bounds proof then covers
    /// the window exactly, so a part that reached outside its window would not compile.
    pub fn rebase(&mut self, buffer: BufferId, start: u64, len: u64) {
        fn rebase_value(value: &mut Value, buffer: BufferId, start: i64) {
            match value {
                Value::Load { buffer: read, index }
                | Value::LoadEven { buffer: read, index }
                | Value::Splat { buffer: read, index } => {
                    if *read == buffer {
                        index.offset -= start;
                    }
                }
                Value::Add(a, b) | Value::Sub(a, b) => {
                    rebase_value(a, buffer, start);
                    rebase_value(b, buffer, start);
                }
                Value::Activate(_, inner) => rebase_value(inner, buffer, start),
                Value::Acc(_) | Value::Zero => {}
            }
        }
        fn block(body: &mut [Stmt], buffer: BufferId, start: i64) {
            let index = |of: BufferId, index: &mut Index| {
                if of == buffer {
                    index.offset -= start;
                }
            };
            for stmt in body {
                match stmt {
                    Stmt::Loop { body, .. } => block(body, buffer, start),
                    Stmt::Init { value: v, .. } => rebase_value(v, buffer, start),
                    Stmt::Fma { a, b, .. } => {
                        rebase_value(a, buffer, start);
                        rebase_value(b, buffer, start);
                    }
                    Stmt::Store { buffer: to, index: at, value: v } => {
                        index(*to, at);
                        rebase_value(v, buffer, start);
                    }
                    Stmt::Transpose { from, from_index, to, to_index, .. } => {
                        index(*from, from_index);
                        index(*to, to_index);
                    }
                    Stmt::Tile(tile) => {
                        let tile = &mut **tile;
                        index(tile.input, &mut tile.input_index);
                        index(tile.weight, &mut tile.weight_index);
                        index(tile.acc, &mut tile.acc_index);
                        if let Some((bias, at)) = &mut tile.bias {
                            index(*bias, at);
                        }
                    }
                    Stmt::Plane(plane) => {
                        let plane = &mut **plane;
                        index(plane.input, &mut plane.input_index);
                        index(plane.weight, &mut plane.weight_index);
                        index(plane.output, &mut plane.output_index);
                        if let Some((bias, at)) = &mut plane.bias {
                            index(*bias, at);
                        }
                    }
                }
            }
        }
        block(&mut self.body, buffer, start as i64);
        if let Some(declared) = self.buffers.get_mut(buffer.0 as usize) {
            declared.len = len;
        }
    }
}

impl fmt::Display for Index {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .terms
            .iter()
            .map(|&(var, coefficient)| match coefficient {
                1 => format!("i{}", var.0),
                _ => format!("{coefficient}*i{}", var.0),
            })
            .collect();
        if self.offset != 0 || parts.is_empty() {
            parts.push(self.offset.to_string());
        }
        write!(f, "{}", parts.join(" + ").replace("+ -", "- "))
    }
}

impl Value {
    fn write(&self, f: &mut fmt::Formatter<'_>, buffers: &[Buffer]) -> fmt::Result {
        let name = |buffer: &BufferId| buffers.get(buffer.0 as usize).map_or("?", |buffer| buffer.name.as_str());
        match self {
            Value::Acc(acc) => write!(f, "a{}", acc.0),
            Value::Load { buffer, index } => write!(f, "{}[{index}]", name(buffer)),
            Value::LoadEven { buffer, index } => write!(f, "even {}[{index}]", name(buffer)),
            Value::Splat { buffer, index } => write!(f, "splat {}[{index}]", name(buffer)),
            Value::Zero => write!(f, "0"),
            Value::Add(a, b) | Value::Sub(a, b) => {
                write!(f, "(")?;
                a.write(f, buffers)?;
                write!(f, "{}", if matches!(self, Value::Add(..)) { " + " } else { " - " })?;
                b.write(f, buffers)?;
                write!(f, ")")
            }
            Value::Activate(act, value) => {
                write!(f, "{act}(")?;
                value.write(f, buffers)?;
                write!(f, ")")
            }
        }
    }
}

/// The canonical text form (`convgen inspect --emit ir`, snapshots).
impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let params: Vec<String> = self
            .buffers
            .iter()
            .map(|buffer| format!("{}: {}[{}]", buffer.name, if buffer.writes { "out f32" } else { "f32" }, buffer.len))
            .collect();
        writeln!(f, "fn {}({}) lanes {} {{", self.name, params.join(", "), self.lanes)?;
        write_block(f, &self.body, 1, &self.buffers)?;
        writeln!(f, "}}")
    }
}

fn write_block(f: &mut fmt::Formatter<'_>, body: &[Stmt], depth: usize, buffers: &[Buffer]) -> fmt::Result {
    let indent = "    ".repeat(depth);
    for stmt in body {
        match stmt {
            Stmt::Loop { var, count, body } => {
                writeln!(f, "{indent}for i{} in 0..{count} {{", var.0)?;
                write_block(f, body, depth + 1, buffers)?;
                writeln!(f, "{indent}}}")?;
            }
            Stmt::Init { acc, value } => {
                write!(f, "{indent}a{} = ", acc.0)?;
                value.write(f, buffers)?;
                writeln!(f)?;
            }
            Stmt::Fma { acc, a, b } => {
                write!(f, "{indent}a{} += ", acc.0)?;
                a.write(f, buffers)?;
                write!(f, " * ")?;
                b.write(f, buffers)?;
                writeln!(f)?;
            }
            Stmt::Store { buffer, index, value } => {
                let name = buffers.get(buffer.0 as usize).map_or("?", |buffer| buffer.name.as_str());
                write!(f, "{indent}{name}[{index}] = ")?;
                value.write(f, buffers)?;
                writeln!(f)?;
            }
            Stmt::Tile(tile) => {
                let name =
                    |buffer: &BufferId| buffers.get(buffer.0 as usize).map_or("?", |buffer| buffer.name.as_str());
                let axes = |values: &[i64; 3]| values.map(|value| value.to_string()).join(", ");
                writeln!(
                    f,
                    "{indent}{}[{}; pixels {}, tiles {}] = {} + tile{}{}x{} repeat {} ({}) {}[{}; pixels {}] * {}[{}] over k {} ({}, {}) taps [{}] ([{}], [{}]){}{}",
                    name(&tile.acc),
                    tile.acc_index,
                    tile.acc_pixel_stride,
                    tile.acc_repeat_stride,
                    tile.bias.as_ref().map_or("0".to_string(), |(bias, index)| format!("{}[{index}]", name(bias))),
                    if tile.depthwise { "_dw" } else { "" },
                    tile.pixels,
                    tile.vectors,
                    tile.repeat,
                    tile.repeat_input_stride,
                    name(&tile.input),
                    tile.input_index,
                    tile.pixel_stride,
                    name(&tile.weight),
                    tile.weight_index,
                    tile.reduce,
                    tile.reduce_input_stride,
                    tile.reduce_weight_stride,
                    tile.taps.map(|count| count.to_string()).join(", "),
                    axes(&tile.tap_input_strides),
                    axes(&tile.tap_weight_strides),
                    match tile.act {
                        TileActivation::None => String::new(),
                        act => format!(", then {}", act.activation()),
                    },
                    if tile.prefetch { ", fetching the next panel" } else { "" },
                )?;
            }
            Stmt::Plane(plane) => {
                let name =
                    |buffer: &BufferId| buffers.get(buffer.0 as usize).map_or("?", |buffer| buffer.name.as_str());
                let bias =
                    plane.bias.as_ref().map_or("0".to_string(), |(bias, index)| format!("{}[{index}]", name(bias)));
                let groups = match (plane.group_inputs, plane.group_outputs) {
                    (1, 1) => String::new(),
                    (inputs, outputs) => format!(", groups of {inputs} in, {outputs} out"),
                };
                let act = match plane.act {
                    TileActivation::None => String::new(),
                    act => format!(", then {}", act.activation()),
                };
                let (output, input, weight) = (name(&plane.output), name(&plane.input), name(&plane.weight));
                let (output_index, input_index, weight_index) =
                    (&plane.output_index, &plane.input_index, &plane.weight_index);
                if let Some(window) = plane.row_window() {
                    // A 1D layer's: a row per channel along the depth axis, each plane one element.
                    let PlaneDepth { input: length, output: out_length, stride, dilation, pad, .. } = plane.depth;
                    writeln!(
                        f,
                        "{indent}{output}[{output_index}; {} rows of {out_length}] = {bias} + row{window} stride {stride} \
                         dilation {dilation} pad {pad} {input}[{input_index}; rows of {length}{groups}] * \
                         {weight}[{weight_index}]{act}",
                        plane.planes,
                    )?;
                    continue;
                }
                let [h, w] = plane.input_size;
                let [oh, ow] = plane.output_size;
                let volumes = match plane.depth {
                    PlaneDepth::FLAT => String::new(),
                    PlaneDepth { input, output, kernel, stride, dilation, pad } => format!(
                        ", volumes of {input} planes to {output}: depth {kernel} stride {stride} dilation \
                         {dilation} pad {pad}"
                    ),
                };
                writeln!(
                    f,
                    "{indent}{output}[{output_index}; {} planes {oh}x{ow}] = {bias} + plane{k}x{k} stride {} dilation {} \
                     pad [{}, {}] {input}[{input_index}; {h}x{w}{groups}] * {weight}[{weight_index}]{act}{volumes}",
                    plane.planes,
                    plane.stride,
                    plane.dilation,
                    plane.padding[0],
                    plane.padding[1],
                    k = plane.kernel,
                )?;
            }
            Stmt::Transpose { from, from_index, from_stride, to, to_index, to_stride } => {
                let name =
                    |buffer: &BufferId| buffers.get(buffer.0 as usize).map_or("?", |buffer| buffer.name.as_str());
                writeln!(
                    f,
                    "{indent}{}[{to_index}; rows {to_stride}] = transpose{TRANSPOSE} {}[{from_index}; rows {from_stride}]",
                    name(to),
                    name(from)
                )?;
            }
        }
    }
    Ok(())
}
