//! Metamorphic properties of the reference interpreter (`conv_dsl::interp::run`).
//!
//! The interpreter is the oracle, so there is no outside oracle to compare it with. Instead each
//! property runs it twice (or more) on models that must agree by the definition of a convolution: a
//! grouped conv against its groups run one by one, `separable` against its two halves, a one-hot
//! kernel against the identity, linearity, a conv1d against a conv2d of height 1, a layout against
//! its transpose, `add` against its mirror. The models are generated as DSL text from random small
//! shapes (rank 1–3, 1–6 channels, groups and multipliers, kernels 1–4, strides 1–3 so that the
//! stride may exceed the kernel, dilation 1–2, padding up to 4 on a side, wider than the kernel,
//! symmetric, asymmetric, `same` and `valid`), and every input size is chosen so that the output is
//! never empty. Values are uniform in [-1, 1) from `SplitMix64`, seeded by proptest.

use conv_dsl::random::SplitMix64;
use conv_dsl::{Network, Params, Tensor, compile_source, interp};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// Two results agree when `|actual - expected| <= TOLERANCE * (1 + |expected|)`.
///
/// The interpreter accumulates in f64 and rounds each output once to f32, so the two sides of a
/// property differ only by f32 rounding: of an output (2^-24 ≈ 6e-8 relative), and, for linearity,
/// of the combined inputs or weights `a·x + b·y` fed to one side, which reaches the output as a
/// sum of at most 6 channels × 64 taps = 384 terms, each off by at most 2 · 6e-8. That error is a
/// random-sign sum: the largest seen over 5,000 cases of each property was 5e-7 relative, so 1e-5
/// leaves a 20× margin and is still far below any indexing mistake, which changes outputs by O(0.1).
const TOLERANCE: f32 = 1e-5;

/// Cases per property: each case is a few interpreter runs of at most ~2M multiply-adds, so the
/// whole file stays within seconds at the test profile's opt-level 1.
const CASES: u32 = 128;

fn config() -> ProptestConfig {
    // No regression files: this test writes nothing next to the sources. A failure prints the
    // minimal case (and its seed) instead.
    ProptestConfig { failure_persistence: None, ..ProptestConfig::with_cases(CASES) }
}

/// Activations a generated layer may use (as DSL text).
const ACTIVATIONS: [&str; 8] =
    ["none", "relu", "relu6", "leaky_relu(0.1)", "leaky_relu(2.5)", "hardswish", "silu", "sigmoid"];

// ---- generated models ----

/// How a generated layer writes its padding.
#[derive(Clone, Debug)]
enum Pad {
    /// `pad: p`
    Uniform(usize),
    /// `pad: [p0, p1, …]`
    PerAxis(Vec<usize>),
    /// `pad: [[b0, a0], [b1, a1], …]`
    Pairs(Vec<[usize; 2]>),
    /// `pad: same`
    Same,
    /// `pad: valid`
    Valid,
}

/// The spatial hyper-parameters of one convolution.
#[derive(Clone, Debug)]
struct Geometry {
    kernel: Vec<usize>,
    stride: Vec<usize>,
    dilation: Vec<usize>,
    pad: Pad,
}

impl Geometry {
    fn rank(&self) -> usize {
        self.kernel.len()
    }

    fn effective_kernel(&self, axis: usize) -> usize {
        self.dilation[axis] * (self.kernel[axis] - 1) + 1
    }

    /// `[before, after]` per axis, or `None` for `same`.
    fn explicit_pads(&self) -> Option<Vec<[usize; 2]>> {
        let rank = self.rank();
        match &self.pad {
            Pad::Uniform(pad) => Some(vec![[*pad, *pad]; rank]),
            Pad::PerAxis(pads) => Some(pads.iter().map(|&pad| [pad, pad]).collect()),
            Pad::Pairs(pairs) => Some(pairs.clone()),
            Pad::Same => None,
            Pad::Valid => Some(vec![[0, 0]; rank]),
        }
    }

    /// The smallest input size on `axis` with a non-empty output.
    fn min_input(&self, axis: usize) -> usize {
        match self.explicit_pads() {
            None => 1,
            Some(pads) => self.effective_kernel(axis).saturating_sub(pads[axis][0] + pads[axis][1]).max(1),
        }
    }

    /// PyTorch's output size (`ceil(input / stride)` for `same`), written out independently.
    fn output_size(&self, axis: usize, input: usize) -> usize {
        match self.explicit_pads() {
            None => input.div_ceil(self.stride[axis]),
            Some(pads) => (input + pads[axis][0] + pads[axis][1] - self.effective_kernel(axis)) / self.stride[axis] + 1,
        }
    }

    /// `kernel: …, stride: …, dilation: …, pad: …`
    fn keys(&self) -> String {
        let pad = match &self.pad {
            Pad::Uniform(pad) => pad.to_string(),
            Pad::PerAxis(pads) => list(pads),
            Pad::Pairs(pairs) => {
                let pairs: Vec<String> = pairs.iter().map(|[before, after]| format!("[{before}, {after}]")).collect();
                format!("[{}]", pairs.join(", "))
            }
            Pad::Same => "same".to_string(),
            Pad::Valid => "valid".to_string(),
        };
        format!(
            "kernel: {}, stride: {}, dilation: {}, pad: {pad}",
            list(&self.kernel),
            list(&self.stride),
            list(&self.dilation)
        )
    }

    /// This geometry with one more leading spatial axis of kernel 1 (so that, on an input of size 1,
    /// the new axis changes nothing whatever its stride and dilation).
    fn with_leading_unit_axis(&self, stride: usize, dilation: usize) -> Geometry {
        let prepend = |first: usize, rest: &[usize]| -> Vec<usize> {
            let mut values = vec![first];
            values.extend_from_slice(rest);
            values
        };
        let pad = match self.explicit_pads() {
            None => Pad::Same,
            Some(pads) => {
                let mut pairs = vec![[0, 0]];
                pairs.extend(pads);
                Pad::Pairs(pairs)
            }
        };
        Geometry {
            kernel: prepend(1, &self.kernel),
            stride: prepend(stride, &self.stride),
            dilation: prepend(dilation, &self.dilation),
            pad,
        }
    }
}

fn list(values: &[usize]) -> String {
    let values: Vec<String> = values.iter().map(ToString::to_string).collect();
    format!("[{}]", values.join(", "))
}

fn pad_strategy(rank: usize) -> impl Strategy<Value = Pad> {
    let pad = || 0usize..=4;
    prop_oneof![
        pad().prop_map(Pad::Uniform),
        proptest::collection::vec(pad(), rank).prop_map(Pad::PerAxis),
        proptest::collection::vec((pad(), pad()).prop_map(|(before, after)| [before, after]), rank)
            .prop_map(Pad::Pairs),
        Just(Pad::Same),
        Just(Pad::Valid),
    ]
}

/// A geometry of `rank` and an input spatial size per axis for which the output is not empty
/// (from the smallest such size up to 3 more).
fn shaped(rank: usize) -> impl Strategy<Value = (Geometry, Vec<usize>)> {
    let axes = |values| proptest::collection::vec(values, rank);
    (axes(1usize..=4), axes(1usize..=3), axes(1usize..=2), pad_strategy(rank))
        .prop_map(|(kernel, stride, dilation, pad)| Geometry { kernel, stride, dilation, pad })
        .prop_flat_map(|geometry| {
            let sizes: Vec<_> = (0..geometry.rank())
                .map(|axis| {
                    let min = geometry.min_input(axis);
                    min..=min + 3
                })
                .collect();
            (Just(geometry), sizes)
        })
}

/// One (possibly grouped) `conv` layer on a random input.
#[derive(Clone, Debug)]
struct ConvCase {
    batch: usize,
    groups: usize,
    in_per_group: usize,
    out_per_group: usize,
    geometry: Geometry,
    /// Input spatial sizes.
    spatial: Vec<usize>,
    bias: bool,
    act: &'static str,
    /// Whether the input declares `N` and the spatial dims as symbols.
    symbolic: bool,
    seed: u64,
}

impl ConvCase {
    fn in_channels(&self) -> usize {
        self.groups * self.in_per_group
    }

    fn out_channels(&self) -> usize {
        self.groups * self.out_per_group
    }

    fn input_shape(&self) -> Vec<usize> {
        logical_shape(self.batch, self.in_channels(), &self.spatial)
    }

    /// The layer's keys (everything inside the braces).
    fn keys(&self) -> String {
        format!(
            "out: {}, groups: {}, {}, bias: {}, act: {}",
            self.out_channels(),
            self.groups,
            self.geometry.keys(),
            self.bias,
            self.act
        )
    }

    /// `input x: […]; conv c(x) { … }` in the default layout.
    fn model(&self) -> String {
        format!(
            "{}\nconv c(x) {{ {} }}",
            input_decl(self.batch, self.in_channels(), &self.spatial, self.symbolic, false),
            self.keys()
        )
    }
}

/// Random convolutions of a rank in `ranks` with a group count in `groups` (1–6 channels in total).
fn conv_case(
    ranks: std::ops::RangeInclusive<usize>,
    groups: std::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = ConvCase> {
    (ranks, groups)
        .prop_flat_map(|(rank, groups)| {
            let per_group = 1..=6 / groups;
            (
                shaped(rank),
                1usize..=2,
                Just(groups),
                per_group.clone(),
                per_group,
                any::<bool>(),
                proptest::sample::select(&ACTIVATIONS[..]),
                any::<bool>(),
                any::<u64>(),
            )
        })
        .prop_map(|((geometry, spatial), batch, groups, in_per_group, out_per_group, bias, act, symbolic, seed)| {
            ConvCase { batch, groups, in_per_group, out_per_group, geometry, spatial, bias, act, symbolic, seed }
        })
}

/// `[batch, channels, spatial…]`.
fn logical_shape(batch: usize, channels: usize, spatial: &[usize]) -> Vec<usize> {
    let mut shape = vec![batch, channels];
    shape.extend_from_slice(spatial);
    shape
}

/// `input x: [...] (layout …);`, with `N`, `D`, `H`, `W` for the batch and spatial dims when
/// `symbolic`, channels last when `channels_last`.
fn input_decl(batch: usize, channels: usize, spatial: &[usize], symbolic: bool, channels_last: bool) -> String {
    let names = &["D", "H", "W"][3 - spatial.len()..];
    let batch = if symbolic { "N".to_string() } else { batch.to_string() };
    let spatial: Vec<String> = spatial
        .iter()
        .zip(names)
        .map(|(size, name)| if symbolic { name.to_string() } else { size.to_string() })
        .collect();
    let channels = channels.to_string();
    let mut dims = vec![batch];
    if channels_last {
        dims.extend(spatial);
        dims.push(channels);
    } else {
        dims.push(channels);
        dims.extend(spatial);
    }
    let layout = match (channels_last, names.len()) {
        (false, _) => "",
        (true, 1) => " layout nwc",
        (true, 2) => " layout nhwc",
        (true, _) => " layout ndhwc",
    };
    format!("input x: [{}]{layout};", dims.join(", "))
}

// ---- running ----

fn compile(text: &str) -> Result<Network, TestCaseError> {
    compile_source("generated.conv", text)
        .map_err(|error| TestCaseError::fail(format!("the generated model must check:\n{text}\n{error}")))
}

fn run(network: &Network, input: &Tensor, params: &Params) -> Result<Tensor, TestCaseError> {
    interp::run(network, input, params).map_err(|error| TestCaseError::fail(format!("the run must succeed: {error}")))
}

fn uniform(rng: &mut SplitMix64, len: usize) -> Vec<f32> {
    (0..len).map(|_| rng.symmetric()).collect()
}

fn random_tensor(rng: &mut SplitMix64, shape: &[usize]) -> Tensor {
    let len = shape.iter().product();
    Tensor::new(shape.to_vec(), uniform(rng, len)).expect("the length is the shape's product")
}

/// Every parameter of `network`, uniform in [-1, 1).
fn random_params(rng: &mut SplitMix64, network: &Network) -> Params {
    let mut params = Params::new();
    for param in network.parameters() {
        let shape: Vec<usize> = param.shape.iter().map(|&dim| dim as usize).collect();
        params.insert(param.name, random_tensor(rng, &shape));
    }
    params
}

/// `params`' values under `network`'s names and shapes, each name mapped by `rename` (the element
/// counts must agree: the same data viewed with another shape).
fn carry_params(params: &Params, network: &Network, rename: impl Fn(&str) -> String) -> Params {
    let mut carried = Params::new();
    for (name, tensor) in params.iter() {
        let new_name = rename(name);
        let spec = network.parameters().into_iter().find(|param| param.name == new_name);
        let spec = spec.unwrap_or_else(|| panic!("the target model has a parameter `{new_name}`"));
        let shape: Vec<usize> = spec.shape.iter().map(|&dim| dim as usize).collect();
        carried.insert(new_name, Tensor::new(shape, tensor.data().to_vec()).expect("same element count"));
    }
    carried
}

fn assert_close(actual: &[f32], expected: &[f32], what: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(actual.len(), expected.len(), "{}: lengths differ", what);
    for (index, (&got, &want)) in actual.iter().zip(expected).enumerate() {
        prop_assert!(
            (got - want).abs() <= TOLERANCE * (1.0 + want.abs()),
            "{}: element {} is {}, expected {} (difference {})",
            what,
            index,
            got,
            want,
            (got - want).abs()
        );
    }
    Ok(())
}

/// A `[N, C, positions…]` buffer as `[N, positions…, C]`, written out independently of the
/// interpreter's own conversion.
fn to_channels_last(data: &[f32], logical: &[usize]) -> Vec<f32> {
    let (batch, channels) = (logical[0], logical[1]);
    let positions: usize = logical[2..].iter().product();
    let mut out = Vec::with_capacity(data.len());
    for n in 0..batch {
        for p in 0..positions {
            for c in 0..channels {
                out.push(data[(n * channels + c) * positions + p]);
            }
        }
    }
    out
}

/// Channels `first..first + count` of a `[N, C, positions…]` buffer.
fn channel_slice(data: &[f32], logical: &[usize], first: usize, count: usize) -> Vec<f32> {
    let (batch, channels) = (logical[0], logical[1]);
    let positions: usize = logical[2..].iter().product();
    let mut out = Vec::with_capacity(batch * count * positions);
    for n in 0..batch {
        let start = (n * channels + first) * positions;
        out.extend_from_slice(&data[start..start + count * positions]);
    }
    out
}

// ---- properties ----

proptest! {
    #![proptest_config(config())]

    /// A grouped conv is the channel-concatenation of `groups` ungrouped convs, group g reading
    /// input channels [g·in/groups, (g+1)·in/groups) with weight rows [g·out/groups, (g+1)·out/groups).
    /// Also checks the output shape against PyTorch's formula.
    #[test]
    fn grouped_conv_is_the_concatenation_of_its_groups(case in conv_case(1..=3, 2..=3)) {
        let mut rng = SplitMix64::new(case.seed);
        let grouped = compile(&case.model())?;
        let params = random_params(&mut rng, &grouped);
        let input = random_tensor(&mut rng, &case.input_shape());
        let output = run(&grouped, &input, &params)?;

        let out_spatial: Vec<usize> =
            case.spatial.iter().enumerate().map(|(axis, &size)| case.geometry.output_size(axis, size)).collect();
        let out_shape = logical_shape(case.batch, case.out_channels(), &out_spatial);
        prop_assert_eq!(output.shape(), &out_shape[..]);

        let single = ConvCase { groups: 1, ..case.clone() };
        let single_network = compile(&single.model())?;
        let weight = params.get("c.weight").expect("the model has a weight").data();
        let weight_rows = weight.len() / case.out_channels(); // [out, in/groups, *kernel]
        let mut expected_parts = Vec::new();
        for group in 0..case.groups {
            let rows = group * case.out_per_group..(group + 1) * case.out_per_group;
            let mut group_params = Params::new();
            let mut weight_shape = vec![case.out_per_group, case.in_per_group];
            weight_shape.extend_from_slice(&case.geometry.kernel);
            let group_weight = weight[rows.start * weight_rows..rows.end * weight_rows].to_vec();
            group_params.insert("c.weight", Tensor::new(weight_shape, group_weight).expect("a slice of rows"));
            if case.bias {
                let bias = &params.get("c.bias").expect("bias: true").data()[rows];
                let bias = Tensor::new(vec![case.out_per_group], bias.to_vec()).expect("[out/groups]");
                group_params.insert("c.bias", bias);
            }
            let group_input = channel_slice(
                input.data(),
                &case.input_shape(),
                group * case.in_per_group,
                case.in_per_group,
            );
            let group_input = Tensor::new(single.input_shape(), group_input).expect("a slice of channels");
            expected_parts.push(run(&single_network, &group_input, &group_params)?);
        }
        // Concatenate along channels, batch by batch.
        let mut expected = Vec::new();
        for n in 0..case.batch {
            for part in &expected_parts {
                let per_batch = part.data().len() / case.batch;
                expected.extend_from_slice(&part.data()[n * per_batch..(n + 1) * per_batch]);
            }
        }
        assert_close(output.data(), &expected, "grouped vs concatenated groups")?;
    }

    /// `separable s` equals `depthwise d` then `pointwise p` with the same parameters
    /// (`s.dw.*` → `d.*`, `s.pw.*` → `p.*`), the depthwise half using `dw_act` (default: `act`).
    #[test]
    fn separable_is_depthwise_then_pointwise(
        (geometry, spatial) in (1usize..=3).prop_flat_map(shaped),
        batch in 1usize..=2,
        channels in 1usize..=6,
        multiplier in 1usize..=3,
        out in 1usize..=6,
        bias in any::<bool>(),
        act in proptest::sample::select(&ACTIVATIONS[..]),
        dw_act in proptest::option::of(proptest::sample::select(&ACTIVATIONS[..])),
        symbolic in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let input_text = input_decl(batch, channels, &spatial, symbolic, false);
        let dw_act_key = dw_act.map_or(String::new(), |dw_act| format!(", dw_act: {dw_act}"));
        let separable = compile(&format!(
            "{input_text}\nseparable s(x) {{ out: {out}, {}, multiplier: {multiplier}, bias: {bias}, act: {act}{dw_act_key} }}",
            geometry.keys()
        ))?;
        let two_layers = compile(&format!(
            "{input_text}\ndepthwise d(x) {{ {}, multiplier: {multiplier}, bias: {bias}, act: {} }}\n\
             pointwise p(d) {{ out: {out}, bias: {bias}, act: {act} }}",
            geometry.keys(),
            dw_act.unwrap_or(act)
        ))?;
        let mut rng = SplitMix64::new(seed);
        let params = random_params(&mut rng, &separable);
        let input = random_tensor(&mut rng, &logical_shape(batch, channels, &spatial));
        let renamed = carry_params(&params, &two_layers, |name| {
            name.replacen("s.dw.", "d.", 1).replacen("s.pw.", "p.", 1)
        });
        let expected = run(&two_layers, &input, &renamed)?;
        let output = run(&separable, &input, &params)?;
        prop_assert_eq!(output.shape(), expected.shape());
        assert_close(output.data(), expected.data(), "separable vs depthwise + pointwise")?;
    }

    /// A conv whose kernel is 1 at the centre tap for input channel == output channel (and 0
    /// elsewhere), with `pad = dilation·(kernel − 1)/2`, stride 1 and no bias, returns its input.
    #[test]
    fn centered_one_hot_kernel_is_the_identity(
        rank in 1usize..=3,
        batch in 1usize..=2,
        (channels, groups) in (1usize..=6).prop_flat_map(|channels| {
            let divisors: Vec<usize> = (1..=channels).filter(|groups| channels % groups == 0).collect();
            (Just(channels), proptest::sample::select(divisors))
        }),
        half_kernel in proptest::collection::vec(0usize..=2, 3),
        dilation in proptest::collection::vec(1usize..=2, 3),
        spatial in proptest::collection::vec(1usize..=5, 3),
        symbolic in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let kernel: Vec<usize> = half_kernel[..rank].iter().map(|half| 2 * half + 1).collect();
        let dilation = &dilation[..rank];
        let spatial = &spatial[..rank];
        let pads: Vec<usize> = kernel.iter().zip(dilation).map(|(k, d)| d * (k - 1) / 2).collect();
        let network = compile(&format!(
            "{}\nconv c(x) {{ out: {channels}, groups: {groups}, kernel: {}, dilation: {}, pad: {}, bias: false }}",
            input_decl(batch, channels, spatial, symbolic, false),
            list(&kernel),
            list(dilation),
            list(&pads)
        ))?;
        // weight [channels, channels/groups, *kernel]: output o's group starts at input channel
        // (o / per_group)·per_group, so o reads itself at local index o % per_group.
        let per_group = channels / groups;
        let taps: usize = kernel.iter().product();
        let center: usize = kernel.iter().fold(0, |index, &k| index * k + k / 2);
        let mut weight = vec![0.0f32; channels * per_group * taps];
        for o in 0..channels {
            weight[(o * per_group + o % per_group) * taps + center] = 1.0;
        }
        let mut weight_shape = vec![channels, per_group];
        weight_shape.extend_from_slice(&kernel);
        let mut params = Params::new();
        params.insert("c.weight", Tensor::new(weight_shape, weight).expect("sized above"));

        let input = random_tensor(&mut SplitMix64::new(seed), &logical_shape(batch, channels, spatial));
        let output = run(&network, &input, &params)?;
        prop_assert_eq!(output.shape(), input.shape());
        // x·1 plus exact zeros, summed in f64 and rounded back: exactly x.
        prop_assert_eq!(output.data(), input.data());
    }

    /// With no bias and no activation, f(a·x + b·y) = a·f(x) + b·f(y).
    #[test]
    fn conv_is_linear_in_the_input(
        case in conv_case(1..=3, 1..=3),
        a in -1.0f32..=1.0,
        b in -1.0f32..=1.0,
    ) {
        let case = ConvCase { bias: false, act: "none", ..case };
        let network = compile(&case.model())?;
        let mut rng = SplitMix64::new(case.seed);
        let params = random_params(&mut rng, &network);
        let x = random_tensor(&mut rng, &case.input_shape());
        let y = random_tensor(&mut rng, &case.input_shape());
        let combined: Vec<f32> = x.data().iter().zip(y.data()).map(|(x, y)| a * x + b * y).collect();
        let combined = Tensor::new(case.input_shape(), combined).expect("same shape as x");
        let f_combined = run(&network, &combined, &params)?;
        let (f_x, f_y) = (run(&network, &x, &params)?, run(&network, &y, &params)?);
        let expected: Vec<f32> = f_x.data().iter().zip(f_y.data()).map(|(fx, fy)| a * fx + b * fy).collect();
        assert_close(f_combined.data(), &expected, "f(a·x + b·y) vs a·f(x) + b·f(y)")?;
    }

    /// With no activation, the output is linear in the parameters (weights and bias together):
    /// f[a·W1 + b·W2](x) = a·f[W1](x) + b·f[W2](x).
    #[test]
    fn conv_is_linear_in_the_parameters(
        case in conv_case(1..=3, 1..=3),
        a in -1.0f32..=1.0,
        b in -1.0f32..=1.0,
    ) {
        let case = ConvCase { act: "none", ..case };
        let network = compile(&case.model())?;
        let mut rng = SplitMix64::new(case.seed);
        let first = random_params(&mut rng, &network);
        let second = random_params(&mut rng, &network);
        let mut combined = Params::new();
        for (name, tensor) in first.iter() {
            let other = second.get(name).expect("both sets have every parameter").data();
            let values = tensor.data().iter().zip(other).map(|(w1, w2)| a * w1 + b * w2).collect();
            combined.insert(name, Tensor::new(tensor.shape().to_vec(), values).expect("same shape"));
        }
        let input = random_tensor(&mut rng, &case.input_shape());
        let f_combined = run(&network, &input, &combined)?;
        let (f_first, f_second) = (run(&network, &input, &first)?, run(&network, &input, &second)?);
        let expected: Vec<f32> =
            f_first.data().iter().zip(f_second.data()).map(|(f1, f2)| a * f1 + b * f2).collect();
        assert_close(f_combined.data(), &expected, "f[a·W1 + b·W2] vs a·f[W1] + b·f[W2]")?;
    }

    /// A conv1d equals a conv2d on a height-1 input with kernel [1, k] (any stride and dilation
    /// on the new axis, no padding on it), with the same weights viewed as [out, in/groups, 1, k].
    #[test]
    fn conv1d_is_conv2d_with_height_1(
        case in conv_case(1..=1, 1..=3),
        unit_stride in 1usize..=3,
        unit_dilation in 1usize..=2,
    ) {
        leading_unit_axis_changes_nothing(&case, unit_stride, unit_dilation)?;
    }

    /// A conv2d equals a conv3d on a depth-1 input with kernel [1, kh, kw].
    #[test]
    fn conv2d_is_conv3d_with_depth_1(
        case in conv_case(2..=2, 1..=3),
        unit_stride in 1usize..=3,
        unit_dilation in 1usize..=2,
    ) {
        leading_unit_axis_changes_nothing(&case, unit_stride, unit_dilation)?;
    }

    /// `layout nwc/nhwc/ndhwc` equals the default layout with the input transposed to channels
    /// first and the output transposed back.
    #[test]
    fn channels_last_is_channels_first_transposed(case in conv_case(1..=3, 1..=3)) {
        let channels_first = compile(&case.model())?;
        let channels_last = compile(&format!(
            "{}\nconv c(x) {{ {} }}",
            input_decl(case.batch, case.in_channels(), &case.spatial, case.symbolic, true),
            case.keys()
        ))?;
        let mut rng = SplitMix64::new(case.seed);
        let params = random_params(&mut rng, &channels_first);
        let input = random_tensor(&mut rng, &case.input_shape());
        let expected = run(&channels_first, &input, &params)?;

        let mut last_shape = vec![case.batch];
        last_shape.extend_from_slice(&case.spatial);
        last_shape.push(case.in_channels());
        let input_last = Tensor::new(last_shape, to_channels_last(input.data(), &case.input_shape()))
            .expect("a permutation of the input");
        let output = run(&channels_last, &input_last, &params)?;

        let logical = expected.shape();
        let mut expected_shape = vec![logical[0]];
        expected_shape.extend_from_slice(&logical[2..]);
        expected_shape.push(logical[1]);
        prop_assert_eq!(output.shape(), &expected_shape[..]);
        assert_close(output.data(), &to_channels_last(expected.data(), logical), "nhwc vs transposed nchw")?;
    }

    /// `add r(a, b)` equals `add r(b, a)`, and with `act: none` it equals the elementwise sum of
    /// the two operands (each taken as the model's output).
    #[test]
    fn add_is_commutative(
        case in conv_case(1..=3, 1..=3),
        add_act in proptest::sample::select(&ACTIVATIONS[..]),
    ) {
        let body = format!(
            "{}\nconv a(x) {{ {} }}\nconv b(x) {{ {} }}\n",
            input_decl(case.batch, case.in_channels(), &case.spatial, case.symbolic, false),
            case.keys(),
            case.keys()
        );
        let forward = compile(&format!("{body}add r(a, b) {{ act: {add_act} }}"))?;
        let backward = compile(&format!("{body}add r(b, a) {{ act: {add_act} }}"))?;
        let mut rng = SplitMix64::new(case.seed);
        let params = random_params(&mut rng, &forward);
        let input = random_tensor(&mut rng, &case.input_shape());
        let ab = run(&forward, &input, &params)?;
        let ba = run(&backward, &input, &params)?;
        prop_assert_eq!(ab.shape(), ba.shape());
        assert_close(ab.data(), ba.data(), "add(a, b) vs add(b, a)")?;

        let plain = run(&compile(&format!("{body}add r(a, b);"))?, &input, &params)?;
        let a = run(&compile(&format!("{body}add r(a, b);\noutput a;"))?, &input, &params)?;
        let b = run(&compile(&format!("{body}add r(a, b);\noutput b;"))?, &input, &params)?;
        let sum: Vec<f32> = a.data().iter().zip(b.data()).map(|(a, b)| a + b).collect();
        assert_close(plain.data(), &sum, "add(a, b) vs a + b")?;
    }
}

/// The model of `case` against the same model with a leading spatial axis of size 1 and kernel 1
/// (stride `unit_stride`, dilation `unit_dilation`): the same numbers, with a 1 inserted in the
/// output shape.
fn leading_unit_axis_changes_nothing(
    case: &ConvCase,
    unit_stride: usize,
    unit_dilation: usize,
) -> Result<(), TestCaseError> {
    let lower = compile(&case.model())?;
    let mut spatial = vec![1];
    spatial.extend_from_slice(&case.spatial);
    let geometry = case.geometry.with_leading_unit_axis(unit_stride, unit_dilation);
    let higher_case = ConvCase { geometry, spatial, ..case.clone() };
    let higher = compile(&higher_case.model())?;

    let mut rng = SplitMix64::new(case.seed);
    let params = random_params(&mut rng, &lower);
    let input = random_tensor(&mut rng, &case.input_shape());
    let expected = run(&lower, &input, &params)?;

    let higher_params = carry_params(&params, &higher, str::to_string);
    let higher_input = Tensor::new(higher_case.input_shape(), input.data().to_vec()).expect("one more axis of size 1");
    let output = run(&higher, &higher_input, &higher_params)?;
    let mut expected_shape = expected.shape().to_vec();
    expected_shape.insert(2, 1);
    prop_assert_eq!(output.shape(), &expected_shape[..]);
    assert_close(output.data(), expected.data(), "with a leading unit axis vs without")
}
