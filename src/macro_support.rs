//! Run-time support for the code that [`conv!`](crate::conv) and [`conv_file!`](crate::conv_file)
//! expand to. Not meant to be called by hand: the expansion refers to these items as
//! `::convgen::macro_support::…`, and they may change with the macro.
//!
//! - Vector helpers over `[f32; L]` arrays (`L` = 1 or 8), all `#[inline(always)]`, so that each is
//!   compiled into the generated kernel that calls it — with AVX2 and FMA inside the kernels'
//!   `#[target_feature(enable = "avx2,fma")]` versions, with the baseline features in the portable
//!   ones. Their arithmetic is the loop IR's ([`conv_dsl::ir_interp`]): `fma::<true, L>` is a fused
//!   multiply-add, activations are [`crate::Activation::apply`] (the cheap ones are exact in f32, the
//!   others computed in f64 and rounded once).
//! - Filling a generated `Params` from a flat slice, a [`crate::Params`] or a `.safetensors` file
//!   (names and shapes checked), PyTorch-like random parameters equal to [`crate::Params::random`],
//!   and packing them for the kernels ([`Packing`]).
//! - Run-time CPU feature detection for the AVX2 + FMA dispatch, and the choice between a model's
//!   two plans ([`host_plan`]).

use std::path::Path;

use conv_dsl::dim::fmt_shape;
use conv_dsl::random::SplitMix64;

pub use conv_dsl::emit_rust::PlanFor;
pub use conv_dsl::lower::Packing;

use crate::{Error, Params, Tensor};

/// One parameter tensor of a generated model: PyTorch name, PyTorch shape, and the fan-in used by
/// the random initialisation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// `dw.weight`, `s.pw.bias`.
    pub name: &'static str,
    /// `[out, in/groups, *kernel]` or `[out]`.
    pub shape: &'static [usize],
    /// `in/groups · prod(kernel)` of the convolution it belongs to.
    pub fan_in: usize,
}

impl TensorSpec {
    /// Elements of the tensor.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether it has no elements (never, for a checked model).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether this CPU has AVX2 and FMA (cached by the standard library after the first call).
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
#[inline]
pub fn avx2_fma_detected() -> bool {
    std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
}

/// Proof that this CPU has AVX2 and FMA: made only by [`Avx2Fma::detect`]. A generated module's
/// AVX-512 plan, whose kernels exist only in their AVX2 + FMA version, keeps one with its packed
/// parameters and runs them on its strength.
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
#[derive(Clone, Copy, Debug)]
pub struct Avx2Fma(());

#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
impl Avx2Fma {
    /// The proof, where the CPU has both.
    pub fn detect() -> Option<Avx2Fma> {
        avx2_fma_detected().then_some(Avx2Fma(()))
    }
}

/// Proof of AVX2 and FMA where `plan` is the AVX-512 one and the CPU has both: where a generated
/// module packs its AVX-512 plan (else its AVX2 one).
#[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
pub fn avx512_plan_cpu(plan: PlanFor) -> Option<Avx2Fma> {
    if plan == PlanFor::Avx512 { Avx2Fma::detect() } else { None }
}

/// The plan a generated module packs for on this host ([`PlanFor`]): the AVX-512 one where the
/// tile and plane kernels run on AVX-512 (as for the JIT, at most the version
/// [`conv_jit::MAX_ISA_VARIABLE`] allows), else the AVX2 one.
pub fn host_plan() -> PlanFor {
    if conv_jit::host_target().wide_microkernels { PlanFor::Avx512 } else { PlanFor::Avx2 }
}

/// `N` zeros on the heap (a large array is never built on the stack).
pub fn zeroed<const N: usize>() -> Box<[f32; N]> {
    vec![0.0; N].into_boxed_slice().try_into().expect("the vector was built with exactly N elements")
}

/// `N` f32s of a generated model's packed parameters or intermediate values, seen as an array: a
/// [`conv_jit::AlignedBuffer`], so that a large one lives on huge pages, as the JIT's do (its
/// kernels stream them; measured in the JIT, MobileNetV1 ran 1.15–1.19x faster).
pub struct Buffer<const N: usize>(conv_jit::AlignedBuffer);

impl<const N: usize> Buffer<N> {
    /// `N` zeros.
    pub fn zeroed() -> Buffer<N> {
        Buffer(conv_jit::AlignedBuffer::zeroed(N))
    }

    /// `N` zeros, in a buffer whose start [`Buffer::follow`] can move within its first cache line.
    pub fn zeroed_movable() -> Buffer<N> {
        Buffer(conv_jit::AlignedBuffer::zeroed_movable(N))
    }

    /// Moves the start of a movable buffer to where `other` starts within its cache line (zeroing
    /// it if it moves; see `conv_dsl::follow`): `forward` does so for the input of a 1×1 plane
    /// kernel that writes the caller's output.
    pub fn follow(&mut self, other: &[f32]) {
        self.0.follow(other);
    }

    /// The PyTorch tensor `data` packed with `packing` into `N` elements.
    pub fn packed(packing: &Packing, data: &[f32]) -> Buffer<N> {
        let mut buffer = Buffer::zeroed();
        packing.pack_into(data, &mut buffer.0);
        buffer
    }
}

impl<const N: usize> std::ops::Deref for Buffer<N> {
    type Target = [f32; N];

    fn deref(&self) -> &[f32; N] {
        (&*self.0).try_into().expect("the buffer was made with exactly N elements")
    }
}

impl<const N: usize> std::ops::DerefMut for Buffer<N> {
    fn deref_mut(&mut self) -> &mut [f32; N] {
        (&mut *self.0).try_into().expect("the buffer was made with exactly N elements")
    }
}

/// Copies `values` — every tensor of `specs` in order, each in C order, concatenated — into
/// `destinations` (one per spec, of the spec's length).
pub fn fill_from_flat(specs: &[TensorSpec], values: &[f32], destinations: &mut [&mut [f32]]) -> Result<(), Error> {
    let total: usize = specs.iter().map(TensorSpec::len).sum();
    if values.len() != total {
        return Err(Error::Shape(format!(
            "the flat parameter slice has {} values; the model's {} parameter tensors have {total}",
            values.len(),
            specs.len()
        )));
    }
    let mut rest = values;
    for (spec, destination) in specs.iter().zip(destinations.iter_mut()) {
        let (head, tail) = rest.split_at(spec.len());
        destination.copy_from_slice(head);
        rest = tail;
    }
    Ok(())
}

/// Copies the tensors of `params` into `destinations` (one per spec), after checking that `params`
/// holds exactly the tensors of `specs` with their shapes. The error names the first problem (in
/// the model's order) and counts the others, as [`crate::Params::validate`] does.
pub fn fill_from_params(specs: &[TensorSpec], params: &Params, destinations: &mut [&mut [f32]]) -> Result<(), Error> {
    let mut problems: Vec<conv_dsl::Error> = Vec::new();
    for spec in specs {
        match params.get(spec.name) {
            None => problems.push(conv_dsl::Error::MissingParam {
                name: spec.name.to_string(),
                expected: fmt_shape(spec.shape),
                more: String::new(),
            }),
            Some(tensor) if tensor.shape() != spec.shape => problems.push(conv_dsl::Error::ParamShape {
                name: spec.name.to_string(),
                found: fmt_shape(tensor.shape()),
                expected: fmt_shape(spec.shape),
                more: String::new(),
            }),
            Some(_) => {}
        }
    }
    for (name, tensor) in params.iter() {
        if !specs.iter().any(|spec| spec.name == name) {
            problems.push(conv_dsl::Error::UnexpectedParam {
                name: name.to_string(),
                found: fmt_shape(tensor.shape()),
                more: String::new(),
            });
        }
    }
    let others = problems.len().saturating_sub(1);
    if let Some(mut first) = problems.into_iter().next() {
        if others > 0 {
            let note = format!(" (and {others} more parameter problem{})", if others == 1 { "" } else { "s" });
            if let conv_dsl::Error::MissingParam { more, .. }
            | conv_dsl::Error::UnexpectedParam { more, .. }
            | conv_dsl::Error::ParamShape { more, .. } = &mut first
            {
                *more = note;
            }
        }
        return Err(first.into());
    }
    for (spec, destination) in specs.iter().zip(destinations.iter_mut()) {
        let tensor = params.get(spec.name).expect("every spec's tensor was found just above");
        destination.copy_from_slice(tensor.data());
    }
    Ok(())
}

/// Reads a `.safetensors` file (PyTorch names, f32) into `destinations`, checked as by
/// [`fill_from_params`].
pub fn fill_from_safetensors(specs: &[TensorSpec], path: &Path, destinations: &mut [&mut [f32]]) -> Result<(), Error> {
    let params = crate::read_safetensors(path)?;
    fill_from_params(specs, &params, destinations)
}

/// PyTorch-like random parameters, the same values as [`crate::Params::random`] gives for the
/// model with the same seed: uniform in ±1/√fan_in, one SplitMix64 stream over the tensors in order.
pub fn fill_random(specs: &[TensorSpec], seed: u64, destinations: &mut [&mut [f32]]) {
    let mut rng = SplitMix64::new(seed);
    for (spec, destination) in specs.iter().zip(destinations.iter_mut()) {
        let bound = 1.0 / (spec.fan_in as f32).sqrt();
        for value in destination.iter_mut() {
            *value = bound * rng.symmetric();
        }
    }
}

/// The tensors as a [`crate::Params`] (`sources` one per spec, in order).
pub fn to_params(specs: &[TensorSpec], sources: &[&[f32]]) -> Params {
    let mut params = Params::new();
    for (spec, data) in specs.iter().zip(sources) {
        let tensor = Tensor::new(spec.shape.to_vec(), data.to_vec()).expect("a tensor's length is its spec's");
        params.insert(spec.name, tensor);
    }
    params
}

/// `buffer[index .. index + L]`.
#[inline(always)]
pub fn load<const L: usize>(buffer: &[f32], index: usize) -> [f32; L] {
    let mut vector = [0.0; L];
    vector.copy_from_slice(&buffer[index..index + L]);
    vector
}

/// `buffer[index + 2·l]` in lane `l`.
#[inline(always)]
pub fn load_even<const L: usize>(buffer: &[f32], index: usize) -> [f32; L] {
    let row = &buffer[index..index + 2 * L - 1];
    std::array::from_fn(|lane| row[2 * lane])
}

/// `buffer[index]` in every lane.
#[inline(always)]
pub fn splat<const L: usize>(buffer: &[f32], index: usize) -> [f32; L] {
    [buffer[index]; L]
}

/// `buffer[start .. start + N]` as an array: the generated code reads a large loop body's elements
/// of a buffer through one window at constant offsets, so one bounds check covers them all. The
/// start passes through `black_box` so that the compiler treats the window as an opaque base and
/// does not analyse each read's address as a function of the loop variables, which made large
/// bodies take minutes to compile (see `conv_dsl::emit_rust`).
///
/// # Panics
/// If the window reaches past the buffer's end (the generated code's plan is checked so that it
/// never does).
#[inline(always)]
pub fn window<const N: usize>(buffer: &[f32], start: usize) -> &[f32; N] {
    let start = std::hint::black_box(start);
    match buffer[start..start + N].try_into() {
        Ok(window) => window,
        Err(_) => unreachable!("a slice of N elements is an array of N"),
    }
}

/// `buffer[index .. index + L] = vector`.
#[inline(always)]
pub fn store<const L: usize>(buffer: &mut [f32], index: usize, vector: [f32; L]) {
    buffer[index..index + L].copy_from_slice(&vector);
}

/// `conv_dsl::ir::Stmt::Transpose`: the 4×4 block whose rows start at `from[from_index + r·from_stride]`
/// stored transposed, `to[to_index + c·to_stride + r] = from[from_index + r·from_stride + c]`.
#[inline(always)]
pub fn transpose(
    from: &[f32],
    from_index: usize,
    from_stride: usize,
    to: &mut [f32],
    to_index: usize,
    to_stride: usize,
) {
    let rows: [[f32; 4]; 4] = std::array::from_fn(|r| load(from, from_index + r * from_stride));
    for (c, column) in transpose4(rows).into_iter().enumerate() {
        store(to, to_index + c * to_stride, column);
    }
}

/// The 4×4 block `rows` transposed: with SSE shuffles on x86-64 (element by element, the compiler
/// copied the block with 16 scalar loads and stores; the layout conversions around the macro's
/// channels-last layers took 20% of pw_64to64_56's time).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn transpose4(rows: [[f32; 4]; 4]) -> [[f32; 4]; 4] {
    use safe_arch::{m128, move_high_low_m128, move_low_high_m128, unpack_high_m128, unpack_low_m128};
    let [a, b, c, d] = rows.map(m128::from_array);
    let (ab_low, cd_low) = (unpack_low_m128(a, b), unpack_low_m128(c, d)); // a0 b0 a1 b1, c0 d0 c1 d1
    let (ab_high, cd_high) = (unpack_high_m128(a, b), unpack_high_m128(c, d)); // a2 b2 a3 b3, c2 d2 c3 d3
    let columns = [
        move_low_high_m128(ab_low, cd_low),
        move_high_low_m128(cd_low, ab_low),
        move_low_high_m128(ab_high, cd_high),
        move_high_low_m128(cd_high, ab_high),
    ];
    columns.map(m128::to_array)
}

/// The 4×4 block `rows` transposed.
#[cfg(not(target_arch = "x86_64"))]
#[inline(always)]
fn transpose4(rows: [[f32; 4]; 4]) -> [[f32; 4]; 4] {
    std::array::from_fn(|c| std::array::from_fn(|r| rows[r][c]))
}

pub use conv_dsl::ir::{PlaneDepth, TileActivation};
pub use conv_jit::{PlaneShape, TileShape};

/// `conv_dsl::ir::Stmt::Tile` (dense, or `depthwise`): `P` pixels × `V` vectors of 8 sums,
/// starting at the bias (or 0) and written to `acc` (activated by `shape.act`, each pixel's
/// `shape.acc_pixel_stride` and each tile's `shape.acc_repeat_stride` elements on), each the chain
/// of multiply-adds in the statement's order. Fused (`fused`, the AVX2 + FMA kernels): the JIT's tile kernels
/// ([`conv_jit::tile`]); otherwise the same sums with a separate multiply and add, inline.
#[inline(always)]
pub fn tile<const P: usize, const V: usize>(
    fused: bool,
    depthwise: bool,
    (input, input_index): (&[f32], usize),
    (weight, weight_index): (&[f32], usize),
    bias: Option<(&[f32], usize)>,
    (acc, acc_index): (&mut [f32], usize),
    shape: &TileShape,
) {
    if fused {
        conv_jit::tile::<P, V>(depthwise, (input, input_index), (weight, weight_index), bias, (acc, acc_index), shape);
        return;
    }
    for r in 0..shape.repeat {
        let step = |index: usize, stride: isize| index.wrapping_add_signed(r as isize * stride);
        tile_of_strip::<P, V>(
            depthwise,
            (input, step(input_index, shape.repeat_input_stride)),
            (weight, step(weight_index, shape.repeat_weight_stride)),
            bias.map(|(bias, index)| (bias, step(index, shape.repeat_bias_stride))),
            (acc, step(acc_index, shape.acc_repeat_stride)),
            shape,
        );
    }
}

/// [`tile`] for a dense strip of one tap along d whose strides and window are these constants
/// (as the macro emits them from the statement): fused, the JIT's kernel for constant strides
/// ([`conv_jit::tile_fixed`]), else [`tile`]'s inline sums.
#[inline(always)]
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
    fused: bool,
    input: (&[f32], usize),
    weight: (&[f32], usize),
    bias: Option<(&[f32], usize)>,
    acc: (&mut [f32], usize),
    shape: &TileShape,
) {
    if fused {
        conv_jit::tile_fixed::<P, V, PIXEL, REDUCE_IN, REDUCE_W, TH, TW, IN_H, IN_W, W_H, W_W>(
            input, weight, bias, acc, shape,
        );
        return;
    }
    tile::<P, V>(false, false, input, weight, bias, acc, shape);
}

/// `conv_dsl::ir::Stmt::Plane`: whole channel planes of a depthwise convolution. Fused (`fused`,
/// the AVX2 + FMA kernels): the JIT's plane kernels ([`conv_jit::plane`]); otherwise the same
/// sums with a separate multiply and add, element by element.
#[inline(always)]
pub fn plane(
    fused: bool,
    input: (&[f32], usize),
    weight: (&[f32], usize),
    bias: Option<(&[f32], usize)>,
    output: (&mut [f32], usize),
    shape: &PlaneShape,
) {
    if fused {
        conv_jit::plane(input, weight, bias, output, shape);
    } else {
        plane_unfused(input, weight, bias, output, shape);
    }
}

/// [`plane`]'s sums with a separate multiply and add (the portable kernels).
fn plane_unfused(
    (input, input_index): (&[f32], usize),
    (weight, weight_index): (&[f32], usize),
    bias: Option<(&[f32], usize)>,
    (output, output_index): (&mut [f32], usize),
    shape: &PlaneShape,
) {
    let ([h, w], [oh, ow], [top, left]) = (shape.input_size, shape.output_size, shape.padding);
    let (k, s, d) = (shape.kernel, shape.stride, shape.dilation);
    let (group_inputs, group_outputs) = (shape.group_inputs, shape.group_outputs);
    let [id, od, kd, sd, dd, front] = shape.depth.values().map(|n| n as usize);
    for (p, z) in (0..shape.planes).flat_map(|p| (0..od).map(move |z| (p, z))) {
        let input = &input[input_index + p / group_outputs * group_inputs * id * h * w..];
        let weight = &weight[weight_index + p * group_inputs * kd * k * k..];
        let output_plane = p * od + z;
        for (y, x) in (0..oh).flat_map(|y| (0..ow).map(move |x| (y, x))) {
            let mut sum = bias.map_or(0.0, |(bias, index)| bias[index + p]);
            let taps = (0..kd).flat_map(|td| (0..k).flat_map(move |kh| (0..k).map(move |kw| (td, kh, kw))));
            for (g, (td, kh, kw)) in (0..group_inputs).flat_map(|g| taps.clone().map(move |tap| (g, tap))) {
                let iz = (z * sd + td * dd).checked_sub(front).filter(|&iz| iz < id);
                let (ih, iw) = ((y * s + kh * d).checked_sub(top), (x * s + kw * d).checked_sub(left));
                if let (Some(iz), Some(ih), Some(iw)) = (iz, ih.filter(|&ih| ih < h), iw.filter(|&iw| iw < w)) {
                    sum += input[((g * id + iz) * h + ih) * w + iw] * weight[((g * kd + td) * k + kh) * k + kw];
                }
            }
            let sum = match shape.act {
                TileActivation::None => sum,
                TileActivation::Relu => sum.max(0.0),
                TileActivation::Relu6 => sum.clamp(0.0, 6.0),
            };
            output[output_index + (output_plane * oh + y) * ow + x] = sum;
        }
    }
}

/// One tile of [`tile`]'s strip.
#[inline(always)]
fn tile_of_strip<const P: usize, const V: usize>(
    depthwise: bool,
    (input, input_index): (&[f32], usize),
    (weight, weight_index): (&[f32], usize),
    bias: Option<(&[f32], usize)>,
    (acc, acc_index): (&mut [f32], usize),
    shape: &TileShape,
) {
    let at = |base: usize, offset: isize| base.wrapping_add_signed(offset);
    let initial: [[f32; 8]; V] = std::array::from_fn(|vector| match bias {
        Some((bias, index)) => load(bias, index + vector * 8),
        None => [0.0; 8],
    });
    let mut sums: [[[f32; 8]; V]; P] = [initial; P];
    let [taps_d, taps_h, taps_w] = shape.taps;
    let (input_strides, weight_strides) = (shape.tap_input_strides, shape.tap_weight_strides);
    for k in 0..shape.reduce as isize {
        for td in 0..taps_d as isize {
            for th in 0..taps_h as isize {
                for tw in 0..taps_w as isize {
                    let x = k * shape.reduce_input_stride
                        + td * input_strides[0]
                        + th * input_strides[1]
                        + tw * input_strides[2];
                    let y = k * shape.reduce_weight_stride
                        + td * weight_strides[0]
                        + th * weight_strides[1]
                        + tw * weight_strides[2];
                    let weights: [[f32; 8]; V] =
                        std::array::from_fn(|vector| load(weight, at(weight_index, y) + vector * 8));
                    for (pixel, vectors) in sums.iter_mut().enumerate() {
                        let at_pixel = at(input_index, x + pixel as isize * shape.pixel_stride);
                        for (vector, (sum, weights)) in vectors.iter_mut().zip(&weights).enumerate() {
                            let x: [f32; 8] =
                                if depthwise { load(input, at_pixel + vector * 8) } else { splat(input, at_pixel) };
                            *sum = fma(false, *sum, x, *weights);
                        }
                    }
                }
            }
        }
    }
    for (pixel, vectors) in sums.iter().enumerate() {
        let at_pixel = at(acc_index, pixel as isize * shape.acc_pixel_stride);
        for (vector, sum) in vectors.iter().enumerate() {
            let sum = match shape.act {
                TileActivation::None => *sum,
                TileActivation::Relu => relu(*sum),
                TileActivation::Relu6 => relu6(*sum),
            };
            store(acc, at_pixel + vector * 8, sum);
        }
    }
}

/// `acc + a·b` lane-wise: rounded once (`f32::mul_add`) when `fused` (the AVX2 + FMA kernels),
/// else a product and a sum (the portable kernels, where `mul_add` would be a library call).
/// `fused` is a constant in every caller, so the test disappears when this is inlined.
#[inline(always)]
pub fn fma<const L: usize>(fused: bool, acc: [f32; L], a: [f32; L], b: [f32; L]) -> [f32; L] {
    let mut sum = acc;
    for lane in 0..L {
        sum[lane] = if fused { a[lane].mul_add(b[lane], acc[lane]) } else { a[lane] * b[lane] + acc[lane] };
    }
    sum
}

/// `a + b` lane-wise.
#[inline(always)]
pub fn add<const L: usize>(a: [f32; L], b: [f32; L]) -> [f32; L] {
    let mut sum = a;
    for lane in 0..L {
        sum[lane] = a[lane] + b[lane];
    }
    sum
}

/// `a − b` lane-wise.
#[inline(always)]
pub fn sub<const L: usize>(a: [f32; L], b: [f32; L]) -> [f32; L] {
    let mut difference = a;
    for lane in 0..L {
        difference[lane] = a[lane] - b[lane];
    }
    difference
}

/// `max(x, 0)`; NaN gives 0 (as `f64::max` in the interpreter).
#[inline(always)]
pub fn relu<const L: usize>(x: [f32; L]) -> [f32; L] {
    x.map(|x| if x > 0.0 { x } else { 0.0 })
}

/// `clamp(x, 0, 6)`; NaN stays NaN.
#[inline(always)]
pub fn relu6<const L: usize>(x: [f32; L]) -> [f32; L] {
    x.map(|x| {
        let low = if x < 0.0 { 0.0 } else { x };
        if low > 6.0 { 6.0 } else { low }
    })
}

/// `x` if `x ≥ 0`, else `α·x` (exact in f32: the f64 product of two f32 values rounds to the f32
/// product).
#[inline(always)]
pub fn leaky_relu<const L: usize>(x: [f32; L], alpha: f32) -> [f32; L] {
    x.map(|x| if x >= 0.0 { x } else { alpha * x })
}

/// `x · clamp(x + 3, 0, 6) / 6`, in f64, rounded once.
#[inline(always)]
pub fn hardswish<const L: usize>(x: [f32; L]) -> [f32; L] {
    x.map(|x| {
        let x = f64::from(x);
        (x * (x + 3.0).clamp(0.0, 6.0) / 6.0) as f32
    })
}

/// `x / (1 + e^−x)`, in f64, rounded once.
#[inline(always)]
pub fn silu<const L: usize>(x: [f32; L]) -> [f32; L] {
    x.map(|x| {
        let x = f64::from(x);
        (x / (1.0 + (-x).exp())) as f32
    })
}

/// `1 / (1 + e^−x)`, in f64, rounded once.
#[inline(always)]
pub fn sigmoid<const L: usize>(x: [f32; L]) -> [f32; L] {
    x.map(|x| {
        let x = f64::from(x);
        (1.0 / (1.0 + (-x).exp())) as f32
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Activation;

    #[test]
    fn transpose_stores_the_block_transposed() {
        // A 4×4 block at index 1 with rows 5 apart, into rows 6 apart from index 2; the other
        // elements of `to` stay as they were.
        let from: Vec<f32> = (0..25).map(|i| i as f32).collect();
        let mut to = vec![-1.0; 30];
        transpose(&from, 1, 5, &mut to, 2, 6);
        for (i, &value) in to.iter().enumerate() {
            let (c, r) = ((i as isize - 2).div_euclid(6), (i as isize - 2).rem_euclid(6));
            let expected = if (0..4).contains(&c) && (0..4).contains(&r) { (1 + r * 5 + c) as f32 } else { -1.0 };
            assert_eq!(value, expected, "to[{i}]");
        }
    }

    #[test]
    fn activations_match_the_interpreter_bit_for_bit() {
        let values = [-7.5f32, -3.0, -1.25, -0.0, 0.0, 0.3, 2.9, 6.0, 6.5, 40.0, f32::NAN, f32::INFINITY];
        type Case = (Activation, fn([f32; 12]) -> [f32; 12]);
        let cases: [Case; 6] = [
            (Activation::Relu, relu::<12>),
            (Activation::Relu6, relu6::<12>),
            (Activation::LeakyRelu(0.1), |x| leaky_relu::<12>(x, 0.1)),
            (Activation::Hardswish, hardswish::<12>),
            (Activation::Silu, silu::<12>),
            (Activation::Sigmoid, sigmoid::<12>),
        ];
        for (act, f) in cases {
            for (x, y) in values.iter().zip(f(values)) {
                let expected = act.apply(f64::from(*x)) as f32;
                assert!(y.to_bits() == expected.to_bits() || (y.is_nan() && expected.is_nan()), "{act} {x}: {y}");
            }
        }
    }

    #[test]
    fn fused_and_unfused_multiply_add() {
        let (a, b, c) = ([0.1f32; 8], [3.0f32; 8], [1e-8f32; 8]);
        assert_eq!(fma::<8>(true, c, a, b)[3], 0.1f32.mul_add(3.0, 1e-8));
        assert_eq!(fma::<8>(false, c, a, b)[3], 0.1f32 * 3.0 + 1e-8);
    }

    #[test]
    fn flat_fill_checks_the_length() {
        let specs = [
            TensorSpec { name: "c.weight", shape: &[2, 1, 1], fan_in: 1 },
            TensorSpec { name: "c.bias", shape: &[2], fan_in: 1 },
        ];
        let (mut weight, mut bias) = ([0.0f32; 2], [0.0f32; 2]);
        fill_from_flat(&specs, &[1.0, 2.0, 3.0, 4.0], &mut [&mut weight, &mut bias]).unwrap();
        assert_eq!((weight, bias), ([1.0, 2.0], [3.0, 4.0]));
        let error = fill_from_flat(&specs, &[1.0; 3], &mut [&mut weight, &mut bias]).unwrap_err();
        assert_eq!(error.to_string(), "the flat parameter slice has 3 values; the model's 2 parameter tensors have 4");
    }

    #[test]
    fn params_fill_reports_the_first_problem_and_counts_the_rest() {
        let specs = [
            TensorSpec { name: "c.weight", shape: &[2, 1, 1], fan_in: 1 },
            TensorSpec { name: "c.bias", shape: &[2], fan_in: 1 },
        ];
        let mut params = Params::new();
        params.insert("c.weight", Tensor::new(vec![2, 1], vec![1.0, 2.0]).unwrap());
        params.insert("extra", Tensor::new(vec![1], vec![0.0]).unwrap());
        let (mut weight, mut bias) = ([0.0f32; 2], [0.0f32; 2]);
        let error = fill_from_params(&specs, &params, &mut [&mut weight, &mut bias]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "parameter `c.weight` has shape [2, 1]; the model expects [2, 1, 1] (and 2 more parameter problems)"
        );
    }
}
