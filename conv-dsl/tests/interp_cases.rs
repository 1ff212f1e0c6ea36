//! Hand-computed cases of the reference interpreter (`conv_dsl::interp::run`).
//!
//! The interpreter is the oracle every backend is checked against, so it cannot be checked against
//! itself: every expected number here is worked out by hand, with the arithmetic in a comment next
//! to it. The inputs are small integers wherever possible, so that the expected values are exact in
//! f32 and a wrong index (a transposed kernel, padding on the wrong side, the wrong group) changes
//! the result. The error cases assert the `conv_dsl::Error` value, never a panic.

use conv_dsl::{Error, Network, Params, Tensor, compile_source, interp};

/// Expected values are exact, or the f32 nearest to the exact value (worked out to 9 digits in the
/// comment). The interpreter accumulates in f64 and rounds once to f32 (relative error 2^-24 ≈ 6e-8),
/// so `|actual - expected| <= 1e-6 · (1 + |expected|)` separates rounding from a real difference.
const TOLERANCE: f32 = 1e-6;

fn compile(text: &str) -> Network {
    compile_source("case.conv", text).unwrap_or_else(|error| panic!("the model must check:\n{error}"))
}

fn tensor(shape: &[usize], data: &[f32]) -> Tensor {
    Tensor::new(shape.to_vec(), data.to_vec()).expect("the test's data matches its shape")
}

fn param_set(tensors: &[(&str, &[usize], &[f32])]) -> Params {
    let mut params = Params::new();
    for &(name, shape, data) in tensors {
        params.insert(name, tensor(shape, data));
    }
    params
}

fn run(network: &Network, input: &Tensor, params: &Params) -> Tensor {
    interp::run(network, input, params).unwrap_or_else(|error| panic!("the run must succeed: {error}"))
}

#[track_caller]
fn assert_output(actual: &Tensor, shape: &[usize], expected: &[f32]) {
    assert_eq!(actual.shape(), shape, "output shape");
    assert_eq!(actual.data().len(), expected.len(), "output length");
    for (index, (&got, &want)) in actual.data().iter().zip(expected).enumerate() {
        assert!(
            (got - want).abs() <= TOLERANCE * (1.0 + want.abs()),
            "element {index}: got {got}, expected {want}\n  actual:   {:?}\n  expected: {expected:?}",
            actual.data()
        );
    }
}

/// 1..=n as f32.
fn counting(n: usize) -> Vec<f32> {
    (1..=n).map(|value| value as f32).collect()
}

// The 3x3 input used by several cases:
//     1 2 3
//     4 5 6
//     7 8 9
// and the 2x2 kernel
//     1 2
//     3 4
const KERNEL_2X2: [f32; 4] = [1.0, 2.0, 3.0, 4.0];

#[test]
fn conv2d_2x2_kernel_stride_1_no_padding() {
    let network = compile("input x: [1, 1, 3, 3]; conv c(x) { out: 1, kernel: 2, bias: false }");
    let params = param_set(&[("c.weight", &[1, 1, 2, 2], &KERNEL_2X2)]);
    let output = run(&network, &tensor(&[1, 1, 3, 3], &counting(9)), &params);
    // (0,0): 1·1 + 2·2 + 4·3 + 5·4 = 1 + 4 + 12 + 20 = 37
    // (0,1): 2·1 + 3·2 + 5·3 + 6·4 = 2 + 6 + 15 + 24 = 47
    // (1,0): 4·1 + 5·2 + 7·3 + 8·4 = 4 + 10 + 21 + 32 = 67
    // (1,1): 5·1 + 6·2 + 8·3 + 9·4 = 5 + 12 + 24 + 36 = 77
    assert_output(&output, &[1, 1, 2, 2], &[37.0, 47.0, 67.0, 77.0]);
}

#[test]
fn conv2d_padding_1_reads_zeros_at_the_borders() {
    let network = compile("input x: [1, 1, 3, 3]; conv c(x) { out: 1, kernel: 2, pad: 1, bias: false }");
    let params = param_set(&[("c.weight", &[1, 1, 2, 2], &KERNEL_2X2)]);
    let output = run(&network, &tensor(&[1, 1, 3, 3], &counting(9)), &params);
    // Padded to 5x5, output 4x4: out[i][j] = 1·x[i-1][j-1] + 2·x[i-1][j] + 3·x[i][j-1] + 4·x[i][j],
    // with x = 0 outside 0..3.
    // row 0: only x[0][·] with weights 3, 4:
    //   4·1 = 4;  3·1 + 4·2 = 11;  3·2 + 4·3 = 18;  3·3 = 9
    // row 1: 2·1 + 4·4 = 18;  1 + 4 + 12 + 20 = 37;  2 + 6 + 15 + 24 = 47;  1·3 + 3·6 = 21
    // row 2: 2·4 + 4·7 = 36;  4 + 10 + 21 + 32 = 67;  5 + 12 + 24 + 36 = 77;  1·6 + 3·9 = 33
    // row 3: only x[2][·] with weights 1, 2:
    //   2·7 = 14;  7 + 2·8 = 23;  8 + 2·9 = 26;  9
    #[rustfmt::skip]
    let expected = [
        4.0, 11.0, 18.0, 9.0,
        18.0, 37.0, 47.0, 21.0,
        36.0, 67.0, 77.0, 33.0,
        14.0, 23.0, 26.0, 9.0,
    ];
    assert_output(&output, &[1, 1, 4, 4], &expected);
}

#[test]
fn conv2d_stride_2_drops_the_last_row_and_column() {
    // 5x5 input x[r][c] = 5r + c + 1 (1..=25); output floor((5 - 2) / 2) + 1 = 2 per axis, so row 4
    // and column 4 are never read.
    let network = compile("input x: [1, 1, 5, 5]; conv c(x) { out: 1, kernel: 2, stride: 2, bias: false }");
    let params = param_set(&[("c.weight", &[1, 1, 2, 2], &KERNEL_2X2)]);
    let output = run(&network, &tensor(&[1, 1, 5, 5], &counting(25)), &params);
    // out[i][j] = x[2i][2j] + 2·x[2i][2j+1] + 3·x[2i+1][2j] + 4·x[2i+1][2j+1]; with b = x[2i][2j]:
    //   b + 2(b + 1) + 3(b + 5) + 4(b + 6) = 10b + 41
    // b = 1, 3, 11, 13 → 51, 71, 151, 171   (check (0,0): 1 + 2·2 + 3·6 + 4·7 = 51)
    assert_output(&output, &[1, 1, 2, 2], &[51.0, 71.0, 151.0, 171.0]);
}

#[test]
fn conv2d_stride_larger_than_the_kernel_skips_inputs() {
    // 1D view along the width: input [1, 2, 3, 4, 5, 6, 7], kernel 2 [1, 10], stride 3:
    // output floor((7 - 2) / 3) + 1 = 2; windows start at 0 and 3, input 3 and 7 are never read.
    let network = compile("input x: [1, 1, 1, 7]; conv c(x) { out: 1, kernel: [1, 2], stride: [1, 3], bias: false }");
    let params = param_set(&[("c.weight", &[1, 1, 1, 2], &[1.0, 10.0])]);
    let output = run(&network, &tensor(&[1, 1, 1, 7], &counting(7)), &params);
    // out[0] = 1 + 10·2 = 21; out[1] = 4 + 10·5 = 54
    assert_output(&output, &[1, 1, 1, 2], &[21.0, 54.0]);
}

#[test]
fn conv2d_dilation_2_spreads_the_taps() {
    // 5x5 input x[r][c] = 5r + c + 1; effective kernel 2·(2 - 1) + 1 = 3, output 3x3.
    let network = compile("input x: [1, 1, 5, 5]; conv c(x) { out: 1, kernel: 2, dilation: 2, bias: false }");
    let params = param_set(&[("c.weight", &[1, 1, 2, 2], &KERNEL_2X2)]);
    let output = run(&network, &tensor(&[1, 1, 5, 5], &counting(25)), &params);
    // out[i][j] = x[i][j] + 2·x[i][j+2] + 3·x[i+2][j] + 4·x[i+2][j+2]; with b = x[i][j]:
    //   b + 2(b + 2) + 3(b + 10) + 4(b + 12) = 10b + 82
    // b = 1 2 3 / 6 7 8 / 11 12 13  (check (0,0): 1 + 2·3 + 3·11 + 4·13 = 92)
    #[rustfmt::skip]
    let expected = [
        92.0, 102.0, 112.0,
        142.0, 152.0, 162.0,
        192.0, 202.0, 212.0,
    ];
    assert_output(&output, &[1, 1, 3, 3], &expected);
}

#[test]
fn conv2d_asymmetric_padding_puts_each_side_where_it_says() {
    // pad [[0, 1], [1, 0]]: height 0 before, 1 after; width 1 before, 0 after → padded 4x4, output 3x3.
    let network = compile("input x: [1, 1, 3, 3]; conv c(x) { out: 1, kernel: 2, pad: [[0, 1], [1, 0]], bias: false }");
    let params = param_set(&[("c.weight", &[1, 1, 2, 2], &KERNEL_2X2)]);
    let output = run(&network, &tensor(&[1, 1, 3, 3], &counting(9)), &params);
    // out[i][j] = 1·x[i][j-1] + 2·x[i][j] + 3·x[i+1][j-1] + 4·x[i+1][j]  (x = 0 outside 0..3)
    // row 0: 2·1 + 4·4 = 18;  1 + 2·2 + 3·4 + 4·5 = 37;  2 + 6 + 15 + 24 = 47
    // row 1: 2·4 + 4·7 = 36;  4 + 10 + 21 + 32 = 67;     5 + 12 + 24 + 36 = 77
    // row 2: 2·7 = 14;        7 + 2·8 = 23;              8 + 2·9 = 26
    // (rows 1..4, columns 0..3 of the pad-1 case; the mirrored padding would give 11, 18, 9, … instead)
    #[rustfmt::skip]
    let expected = [
        18.0, 37.0, 47.0,
        36.0, 67.0, 77.0,
        14.0, 23.0, 26.0,
    ];
    assert_output(&output, &[1, 1, 3, 3], &expected);
}

#[test]
fn pad_same_with_an_even_kernel_and_stride_2_pads_more_at_the_end() {
    // conv1d, input [1, 2, 3, 4, 5], kernel 2 [1, 10], stride 2, pad same:
    // out = ceil(5 / 2) = 3; total = (3 - 1)·2 + 2 - 5 = 1 → [0 before, 1 after] (SAME_UPPER).
    // padded [1, 2, 3, 4, 5, 0]: 1 + 10·2 = 21; 3 + 10·4 = 43; 5 + 10·0 = 5.
    // (SAME_LOWER, [1, 0], would give 10, 32, 54.)
    let network = compile("input x: [1, 1, 5]; conv c(x) { out: 1, kernel: 2, stride: 2, pad: same, bias: false }");
    let params = param_set(&[("c.weight", &[1, 1, 2], &[1.0, 10.0])]);
    let output = run(&network, &tensor(&[1, 1, 5], &counting(5)), &params);
    assert_output(&output, &[1, 1, 3], &[21.0, 43.0, 5.0]);

    // conv2d, input 5x1 (column 1..=5), kernel [4, 1] of ones, stride [2, 1], pad same:
    // height: out = ceil(5 / 2) = 3; total = (3 - 1)·2 + 4 - 5 = 3 → [1, 2];
    //   padded [0, 1, 2, 3, 4, 5, 0, 0]: 0+1+2+3 = 6; 2+3+4+5 = 14; 4+5+0+0 = 9.
    //   (SAME_LOWER, [2, 1], would give 3, 10, 12.)
    // width: out = 1; total = 0 + 1 - 1 = 0.
    let network =
        compile("input x: [1, 1, 5, 1]; conv c(x) { out: 1, kernel: [4, 1], stride: [2, 1], pad: same, bias: false }");
    let params = param_set(&[("c.weight", &[1, 1, 4, 1], &[1.0; 4])]);
    let output = run(&network, &tensor(&[1, 1, 5, 1], &counting(5)), &params);
    assert_output(&output, &[1, 1, 3, 1], &[6.0, 14.0, 9.0]);
}

#[test]
fn grouped_conv_reads_only_its_group() {
    // 4 input channels, 4 outputs, groups 2: outputs 0, 1 read inputs 0, 1; outputs 2, 3 read 2, 3.
    // Input [1, 4, 1, 2]: channel c holds [c + 1, c + 5].
    let network = compile("input x: [1, 4, 1, 2]; conv c(x) { out: 4, kernel: 1, groups: 2, bias: false }");
    // weight [4, 2, 1, 1]: w[o] = [w_o0, w_o1] over the group's two input channels.
    let weight = [1.0, 10.0, 100.0, 1000.0, 2.0, 20.0, 200.0, 2000.0];
    let params = param_set(&[("c.weight", &[4, 2, 1, 1], &weight)]);
    let input = tensor(&[1, 4, 1, 2], &[1.0, 5.0, 2.0, 6.0, 3.0, 7.0, 4.0, 8.0]);
    let output = run(&network, &input, &params);
    // out0 = 1·ch0 + 10·ch1       = [1 + 20, 5 + 60]               = [21, 65]
    // out1 = 100·ch0 + 1000·ch1   = [100 + 2000, 500 + 6000]       = [2100, 6500]
    // out2 = 2·ch2 + 20·ch3       = [6 + 80, 14 + 160]             = [86, 174]
    // out3 = 200·ch2 + 2000·ch3   = [600 + 8000, 1400 + 16000]     = [8600, 17400]
    // (out2 reading channels 0, 1 would give 2 + 40 = 42.)
    assert_output(&output, &[1, 4, 1, 2], &[21.0, 65.0, 2100.0, 6500.0, 86.0, 174.0, 8600.0, 17400.0]);
}

#[test]
fn depthwise_multiplier_2_orders_outputs_like_pytorch() {
    // Output channel o reads input channel o / 2 (PyTorch, groups = 2): 0, 1 ← ch0; 2, 3 ← ch1.
    let network = compile("input x: [1, 2, 1, 2]; depthwise d(x) { kernel: 1, multiplier: 2, bias: false }");
    let params = param_set(&[("d.weight", &[4, 1, 1, 1], &[1.0, 10.0, 100.0, 1000.0])]);
    let output = run(&network, &tensor(&[1, 2, 1, 2], &[1.0, 2.0, 3.0, 4.0]), &params);
    // out0 = 1·[1, 2] = [1, 2];   out1 = 10·[1, 2] = [10, 20]
    // out2 = 100·[3, 4] = [300, 400];   out3 = 1000·[3, 4] = [3000, 4000]
    // (the TF order, o reading o % 2, would give out1 = 10·[3, 4] = [30, 40].)
    assert_output(&output, &[1, 4, 1, 2], &[1.0, 2.0, 10.0, 20.0, 300.0, 400.0, 3000.0, 4000.0]);
}

#[test]
fn depthwise_with_a_spatial_kernel_and_padding() {
    // 2 channels of width 3, kernel [1, 3], pad [0, 1]: each channel convolved with its own filter.
    let network = compile("input x: [1, 2, 1, 3]; depthwise d(x) { kernel: [1, 3], pad: [0, 1], bias: false }");
    let params = param_set(&[("d.weight", &[2, 1, 1, 3], &[1.0, 2.0, 3.0, 1.0, 0.0, -1.0])]);
    let output = run(&network, &tensor(&[1, 2, 1, 3], &[1.0, 2.0, 3.0, 10.0, 20.0, 30.0]), &params);
    // ch0 padded [0, 1, 2, 3, 0] · [1, 2, 3]: 0 + 2 + 6 = 8; 1 + 4 + 9 = 14; 2 + 6 + 0 = 8
    // ch1 padded [0, 10, 20, 30, 0] · [1, 0, -1]: 0 - 20 = -20; 10 - 30 = -20; 20 - 0 = 20
    assert_output(&output, &[1, 2, 1, 3], &[8.0, 14.0, 8.0, -20.0, -20.0, 20.0]);
}

#[test]
fn bias_is_added_per_output_channel() {
    // `bias` defaults to true.
    let network = compile("input x: [1, 1, 2, 2]; conv c(x) { out: 2, kernel: 1 }");
    let params = param_set(&[("c.weight", &[2, 1, 1, 1], &[1.0, -1.0]), ("c.bias", &[2], &[0.5, 10.0])]);
    let output = run(&network, &tensor(&[1, 1, 2, 2], &[1.0, 2.0, 3.0, 4.0]), &params);
    // out0 = x + 0.5 = [1.5, 2.5, 3.5, 4.5];  out1 = -x + 10 = [9, 8, 7, 6]
    assert_output(&output, &[1, 2, 2, 2], &[1.5, 2.5, 3.5, 4.5, 9.0, 8.0, 7.0, 6.0]);
}

/// Runs `act` elementwise over `points` through a 1→1 pointwise layer with weight 1 and no bias.
fn activate(act: &str, points: &[f32]) -> Tensor {
    let text = format!("input x: [1, 1, {}]; pointwise p(x) {{ out: 1, bias: false, act: {act} }}", points.len());
    let params = param_set(&[("p.weight", &[1, 1, 1], &[1.0])]);
    run(&compile(&text), &tensor(&[1, 1, points.len()], points), &params)
}

#[test]
fn every_activation_at_chosen_points() {
    let n = |count: usize| [1, 1, count];
    assert_output(&activate("none", &[-2.0, 0.0, 3.5]), &n(3), &[-2.0, 0.0, 3.5]);
    // relu: max(x, 0)
    assert_output(&activate("relu", &[-2.0, -0.5, 0.0, 3.0]), &n(4), &[0.0, 0.0, 0.0, 3.0]);
    // relu6: min(max(x, 0), 6)
    assert_output(&activate("relu6", &[-1.0, 3.0, 6.0, 7.0]), &n(4), &[0.0, 3.0, 6.0, 6.0]);
    // leaky_relu(0.1): 0.1·(-2) = -0.2; 0 and 5 unchanged
    assert_output(&activate("leaky_relu(0.1)", &[-2.0, 0.0, 5.0]), &n(3), &[-0.2, 0.0, 5.0]);
    // hardswish x·relu6(x + 3)/6:
    //   -4·relu6(-1)/6 = 0;  -3·0/6 = 0;  -1·2/6 = -1/3;  1·4/6 = 2/3;  3·6/6 = 3;  4·relu6(7)/6 = 4·6/6 = 4
    assert_output(
        &activate("hardswish", &[-4.0, -3.0, -1.0, 1.0, 3.0, 4.0]),
        &n(6),
        &[0.0, 0.0, -1.0 / 3.0, 2.0 / 3.0, 3.0, 4.0],
    );
    // sigmoid 1/(1 + e^-x): e^-1 = 0.367879441, e^-2 = 0.135335283
    //   σ(0) = 0.5;  σ(1) = 1/1.367879441 = 0.731058579;  σ(-1) = 1 - σ(1) = 0.268941421;
    //   σ(2) = 1/1.135335283 = 0.880797078
    assert_output(&activate("sigmoid", &[0.0, 1.0, -1.0, 2.0]), &n(4), &[0.5, 0.731_058_6, 0.268_941_43, 0.880_797_1]);
    // silu x·σ(x): 0;  0.731058579;  -0.268941421;  2·0.880797078 = 1.761594156
    assert_output(&activate("silu", &[0.0, 1.0, -1.0, 2.0]), &n(4), &[0.0, 0.731_058_6, -0.268_941_43, 1.761_594_2]);
}

#[test]
fn activation_applies_after_the_bias() {
    // relu(x·1 - 2) at x = 1, 2, 5: relu(-1) = 0, relu(0) = 0, relu(3) = 3
    // (the bias added after the activation would give -2, 0, 3)
    let network = compile("input x: [1, 1, 3]; pointwise p(x) { out: 1, act: relu }");
    let params = param_set(&[("p.weight", &[1, 1, 1], &[1.0]), ("p.bias", &[1], &[-2.0])]);
    let output = run(&network, &tensor(&[1, 1, 3], &[1.0, 2.0, 5.0]), &params);
    assert_output(&output, &[1, 1, 3], &[0.0, 0.0, 3.0]);
}

#[test]
fn add_sums_then_activates() {
    // p = 2·x; r = relu(x + p) = relu(3x); x = [1, -2, 3] → relu([3, -6, 9]) = [3, 0, 9]
    let network = compile(
        "input x: [1, 1, 1, 3];
         pointwise p(x) { out: 1, bias: false }
         add r(x, p) { act: relu }",
    );
    let params = param_set(&[("p.weight", &[1, 1, 1, 1], &[2.0])]);
    let output = run(&network, &tensor(&[1, 1, 1, 3], &[1.0, -2.0, 3.0]), &params);
    assert_output(&output, &[1, 1, 1, 3], &[3.0, 0.0, 9.0]);

    // Without braces the activation is `none`: x + p = [3, -6, 9].
    let network = compile(
        "input x: [1, 1, 1, 3];
         pointwise p(x) { out: 1, bias: false }
         add r(x, p);",
    );
    let output = run(&network, &tensor(&[1, 1, 1, 3], &[1.0, -2.0, 3.0]), &params);
    assert_output(&output, &[1, 1, 1, 3], &[3.0, -6.0, 9.0]);
}

#[test]
fn output_statement_selects_an_earlier_layer() {
    // `output p;` returns p = 2·x, not the later add.
    let network = compile(
        "input x: [1, 1, 2];
         pointwise p(x) { out: 1, bias: false }
         add r(x, p);
         output p;",
    );
    let params = param_set(&[("p.weight", &[1, 1, 1], &[2.0])]);
    let output = run(&network, &tensor(&[1, 1, 2], &[1.0, -3.0]), &params);
    assert_output(&output, &[1, 1, 2], &[2.0, -6.0]);
}

/// Parameters of the separable cases: input [1, 2, 1, 3], ch0 = [1, 2, 3], ch1 = [2, -3, 1].
/// dw weight [2, 1, 1, 2]: ch0 [1, 1], ch1 [2, -1]; dw bias [0, 1].
/// Depthwise before its activation (kernel [1, 2], output width 2):
///   ch0: [1 + 2, 2 + 3] + 0 = [3, 5]
///   ch1: [2·2 - 1·(-3), 2·(-3) - 1·1] + 1 = [4 + 3 + 1, -6 - 1 + 1] = [8, -6]
fn separable_params(pointwise_weight: [f32; 2], pointwise_bias: f32) -> Params {
    param_set(&[
        ("s.dw.weight", &[2, 1, 1, 2], &[1.0, 1.0, 2.0, -1.0]),
        ("s.dw.bias", &[2], &[0.0, 1.0]),
        ("s.pw.weight", &[1, 2, 1, 1], &pointwise_weight),
        ("s.pw.bias", &[1], &[pointwise_bias]),
    ])
}

#[test]
fn separable_is_depthwise_then_pointwise_with_dw_act() {
    let input = tensor(&[1, 2, 1, 3], &[1.0, 2.0, 3.0, 2.0, -3.0, 1.0]);

    // dw_act relu, act none: dw = [3, 5] / relu([8, -6]) = [8, 0];
    // pw weight [1, 10], bias 0.5: [3 + 80 + 0.5, 5 + 0 + 0.5] = [83.5, 5.5]
    // (without the dw relu the second would be 5 - 60 + 0.5 = -54.5)
    let network = compile("input x: [1, 2, 1, 3]; separable s(x) { out: 1, kernel: [1, 2], dw_act: relu, act: none }");
    let output = run(&network, &input, &separable_params([1.0, 10.0], 0.5));
    assert_output(&output, &[1, 1, 1, 2], &[83.5, 5.5]);

    // act relu and no dw_act: relu on both halves. dw = [3, 5] / [8, 0];
    // pw weight [1, -10], bias 0: relu([3 - 80, 5 - 0]) = [0, 5]
    // (without the dw relu the second would be relu(5 + 60) = 65)
    let network = compile("input x: [1, 2, 1, 3]; separable s(x) { out: 1, kernel: [1, 2], act: relu }");
    let output = run(&network, &input, &separable_params([1.0, -10.0], 0.0));
    assert_output(&output, &[1, 1, 1, 2], &[0.0, 5.0]);
}

#[test]
fn conv1d_sums_over_channels_and_taps() {
    // in ch0 = [1, 2, 3], ch1 = [4, 5, 6]; weight [1, 2, 2]: ch0 [1, 2], ch1 [3, 4]; bias 1
    // out[0] = 1·1 + 2·2 + 3·4 + 4·5 + 1 = 1 + 4 + 12 + 20 + 1 = 38
    // out[1] = 1·2 + 2·3 + 3·5 + 4·6 + 1 = 2 + 6 + 15 + 24 + 1 = 48
    let network = compile("input x: [1, 2, 3]; conv c(x) { out: 1, kernel: 2 }");
    let params = param_set(&[("c.weight", &[1, 2, 2], &[1.0, 2.0, 3.0, 4.0]), ("c.bias", &[1], &[1.0])]);
    let output = run(&network, &tensor(&[1, 2, 3], &counting(6)), &params);
    assert_output(&output, &[1, 1, 2], &[38.0, 48.0]);
}

#[test]
fn conv3d_with_padding_on_the_depth_axis() {
    // Input [1, 1, 2, 2, 2], x[d][h][w] = 4d + 2h + w + 1 (1..=8); kernel [2, 1, 2]:
    //   w[kd][0][kw] = [[1, 2], [3, 4]]
    let params = param_set(&[("c.weight", &[1, 1, 2, 1, 2], &KERNEL_2X2)]);
    let input = tensor(&[1, 1, 2, 2, 2], &counting(8));

    // No padding: output [1, 1, 1, 2, 1];
    //   out[0][h][0] = x[0][h][0] + 2·x[0][h][1] + 3·x[1][h][0] + 4·x[1][h][1]
    //   h = 0: 1 + 2·2 + 3·5 + 4·6 = 1 + 4 + 15 + 24 = 44
    //   h = 1: 3 + 2·4 + 3·7 + 4·8 = 3 + 8 + 21 + 32 = 64
    let network = compile("input x: [1, 1, 2, 2, 2]; conv c(x) { out: 1, kernel: [2, 1, 2], bias: false }");
    assert_output(&run(&network, &input, &params), &[1, 1, 1, 2, 1], &[44.0, 64.0]);

    // pad [1, 0, 0]: depth padded to 4, output depth 3.
    //   d = 0 reads [zeros, x[0]] → weights 3, 4 only: h0: 3·1 + 4·2 = 11; h1: 3·3 + 4·4 = 25
    //   d = 1 reads [x[0], x[1]] → 44, 64 as above
    //   d = 2 reads [x[1], zeros] → weights 1, 2 only: h0: 5 + 2·6 = 17; h1: 7 + 2·8 = 23
    let network =
        compile("input x: [1, 1, 2, 2, 2]; conv c(x) { out: 1, kernel: [2, 1, 2], pad: [1, 0, 0], bias: false }");
    assert_output(&run(&network, &input, &params), &[1, 1, 3, 2, 1], &[11.0, 25.0, 44.0, 64.0, 17.0, 23.0]);
}

#[test]
fn stride_and_dilation_act_on_every_axis_of_every_rank() {
    // For each rank and each spatial axis: an input of size 5 on that axis (values 1..=5) and 1 on
    // the others, a kernel of 2 taps [1, 10] on that axis and 1 on the others.
    //   stride 2:   out = floor((5 - 2) / 2) + 1 = 2:  x0 + 10·x1 = 1 + 20 = 21;  x2 + 10·x3 = 3 + 40 = 43
    //   dilation 2: out = 5 - 3 + 1 = 3:  x[i] + 10·x[i+2] = 1 + 30 = 31;  2 + 40 = 42;  3 + 50 = 53
    //   pad [1, 0] with stride 3: padded [0, 1, 2, 3, 4, 5], out = floor((6 - 2) / 3) + 1 = 2:
    //               0 + 10·1 = 10;  x2 + 10·x3 = 3 + 40 = 43
    let cases: [(&str, &[f32]); 3] = [
        ("stride: {axis 2}", &[21.0, 43.0]),
        ("dilation: {axis 2}", &[31.0, 42.0, 53.0]),
        ("stride: {axis 3}, pad: {pair}", &[10.0, 43.0]),
    ];
    for rank in 1..=3 {
        for axis in 0..rank {
            let per_axis = |on_axis: usize| {
                let values: Vec<String> =
                    (0..rank).map(|other| if other == axis { on_axis } else { 1 }.to_string()).collect();
                format!("[{}]", values.join(", "))
            };
            let pads: Vec<&str> = (0..rank).map(|other| if other == axis { "[1, 0]" } else { "0" }).collect();
            let mut input_shape = vec![1, 1];
            input_shape.extend((0..rank).map(|other| if other == axis { 5 } else { 1 }));
            let mut weight_shape = vec![1, 1];
            weight_shape.extend((0..rank).map(|other| if other == axis { 2 } else { 1 }));
            let params = param_set(&[("c.weight", &weight_shape, &[1.0, 10.0])]);
            let input = tensor(&input_shape, &counting(5));
            for (keys, expected) in cases {
                let keys = keys
                    .replace("{axis 2}", &per_axis(2))
                    .replace("{axis 3}", &per_axis(3))
                    .replace("{pair}", &format!("[{}]", pads.join(", ")));
                let text = format!(
                    "input x: {:?}; conv c(x) {{ out: 1, kernel: {}, {keys}, bias: false }}",
                    input_shape,
                    per_axis(2)
                );
                let mut output_shape = input_shape.clone();
                output_shape[2 + axis] = expected.len();
                let output = run(&compile(&text), &input, &params);
                assert_eq!(output.shape(), &output_shape[..], "{text}");
                assert_eq!(output.data(), expected, "{text}");
            }
        }
    }
}

#[test]
fn nhwc_input_gives_nhwc_output() {
    // Input listed as [N, H, W, C] = [1, 2, 3, 2]; value v(h, w, c) = 100(c + 1) + 10h + w, stored at
    // (h·3 + w)·2 + c: [100, 200, 101, 201, 102, 202, 110, 210, 111, 211, 112, 212].
    let network = compile("input x: [1, 2, 3, 2] layout nhwc; conv c(x) { out: 3, kernel: [1, 2], bias: false }");
    let mut input_data = Vec::new();
    for h in 0..2 {
        for w in 0..3 {
            for c in 0..2 {
                input_data.push((100 * (c + 1) + 10 * h + w) as f32);
            }
        }
    }
    // weight [3, 2, 1, 2] (PyTorch's layout whatever the input's):
    //   o0: c0 [1, 0], c1 [0, 0] → v(h, w, 0)
    //   o1: c0 [0, 0], c1 [0, 1] → v(h, w + 1, 1)
    //   o2: c0 [0, 1], c1 [1, 0] → v(h, w + 1, 0) + v(h, w, 1)
    let weight = [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0];
    let params = param_set(&[("c.weight", &[3, 2, 1, 2], &weight)]);
    let output = run(&network, &tensor(&[1, 2, 3, 2], &input_data), &params);
    // Output [N, H, W, C] = [1, 2, 2, 3], element (h, w, o) at (h·2 + w)·3 + o:
    //   (0,0): 100, 201, 101 + 200 = 301     (0,1): 101, 202, 102 + 201 = 303
    //   (1,0): 110, 211, 111 + 210 = 321     (1,1): 111, 212, 112 + 211 = 323
    #[rustfmt::skip]
    let expected = [
        100.0, 201.0, 301.0,   101.0, 202.0, 303.0,
        110.0, 211.0, 321.0,   111.0, 212.0, 323.0,
    ];
    assert_output(&output, &[1, 2, 2, 3], &expected);
    // Spot-check positions: channel 2 at (h = 1, w = 0) is element (1·2 + 0)·3 + 2 = 8.
    assert_eq!(output.data()[8], 321.0);
    assert_eq!(output.data()[(2 + 1) * 3 + 1], 212.0); // (h = 1, w = 1, o = 1)
}

#[test]
fn nwc_and_ndhwc_inputs_round_trip_the_layout() {
    // nwc, [N, W, C] = [1, 3, 2]: positions (w, c) hold 10w + c: [0, 1, 10, 11, 20, 21].
    // depthwise kernel 1 with weights [1, -1]: c0 kept, c1 negated → [0, -1, 10, -11, 20, -21].
    let network = compile("input x: [1, 3, 2] layout nwc; depthwise d(x) { kernel: 1, bias: false }");
    let params = param_set(&[("d.weight", &[2, 1, 1], &[1.0, -1.0])]);
    let output = run(&network, &tensor(&[1, 3, 2], &[0.0, 1.0, 10.0, 11.0, 20.0, 21.0]), &params);
    assert_output(&output, &[1, 3, 2], &[0.0, -1.0, 10.0, -11.0, 20.0, -21.0]);

    // ndhwc, [N, D, H, W, C] = [1, 2, 1, 1, 2]: (d, c) hold 10d + c + 1: [1, 2, 11, 12].
    // conv kernel [2, 1, 1], out 1, weights c0 [1, 100], c1 [0, 0]: x(0, 0) + 100·x(1, 0) = 1 + 1100 = 1101
    let network =
        compile("input x: [1, 2, 1, 1, 2] layout ndhwc; conv c(x) { out: 1, kernel: [2, 1, 1], bias: false }");
    let params = param_set(&[("c.weight", &[1, 2, 2, 1, 1], &[1.0, 100.0, 0.0, 0.0])]);
    let output = run(&network, &tensor(&[1, 2, 1, 1, 2], &[1.0, 2.0, 11.0, 12.0]), &params);
    assert_output(&output, &[1, 1, 1, 1, 1], &[1101.0]);
}

#[test]
fn batch_2_keeps_the_batches_apart() {
    // n0 = [1, 2, 3], n1 = [10, 20, 30]; kernel [1, 2]; o0 = [1, 1] + 0.5, o1 = [1, -1] + 0
    // n0: o0 [1 + 2 + 0.5, 2 + 3 + 0.5] = [3.5, 5.5]; o1 [1 - 2, 2 - 3] = [-1, -1]
    // n1: o0 [10 + 20 + 0.5, 20 + 30 + 0.5] = [30.5, 50.5]; o1 [-10, -10]
    let network = compile("input x: [2, 1, 1, 3]; conv c(x) { out: 2, kernel: [1, 2] }");
    let params = param_set(&[("c.weight", &[2, 1, 1, 2], &[1.0, 1.0, 1.0, -1.0]), ("c.bias", &[2], &[0.5, 0.0])]);
    let output = run(&network, &tensor(&[2, 1, 1, 3], &[1.0, 2.0, 3.0, 10.0, 20.0, 30.0]), &params);
    assert_output(&output, &[2, 2, 1, 2], &[3.5, 5.5, -1.0, -1.0, 30.5, 50.5, -10.0, -10.0]);
}

#[test]
fn symbolic_dims_are_bound_from_the_input() {
    // The weight sums a 2x2 window of channel 0 and ignores channel 1 (which holds 1000s, so any
    // leak shows).
    let network = compile("input x: [N, 2, H, W]; conv c(x) { out: 1, kernel: 2, bias: false }");
    let params = param_set(&[("c.weight", &[1, 2, 2, 2], &[1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0])]);

    // N = 1, H = W = 3: ch0 = 1..=9 → 1+2+4+5 = 12, 2+3+5+6 = 16, 4+5+7+8 = 24, 5+6+8+9 = 28
    let mut data = counting(9);
    data.extend([1000.0; 9]);
    let output = run(&network, &tensor(&[1, 2, 3, 3], &data), &params);
    assert_output(&output, &[1, 1, 2, 2], &[12.0, 16.0, 24.0, 28.0]);

    // N = 2, H = 2, W = 4: n0 ch0 = [1 2 3 4 / 5 6 7 8] → 1+2+5+6 = 14, 2+3+6+7 = 18, 3+4+7+8 = 22;
    // n1 ch0 = 10 × n0 ch0 → 140, 180, 220.
    let mut data = counting(8);
    data.extend([1000.0; 8]);
    data.extend(counting(8).iter().map(|value| 10.0 * value));
    data.extend([1000.0; 8]);
    let output = run(&network, &tensor(&[2, 2, 2, 4], &data), &params);
    assert_output(&output, &[2, 1, 1, 3], &[14.0, 18.0, 22.0, 140.0, 180.0, 220.0]);
}

// ---- errors: each is a value of `conv_dsl::Error`, never a panic ----

fn run_err(network: &Network, input: &Tensor, params: &Params) -> Error {
    match interp::run(network, input, params) {
        Ok(output) => panic!("the run must fail, but returned shape {:?}", output.shape()),
        Err(error) => error,
    }
}

const ONE_CONV: &str = "input x: [1, 1, 3, 3]; conv c(x) { out: 1, kernel: 2 }";

#[test]
fn missing_parameter_is_reported() {
    let network = compile(ONE_CONV);
    let params = param_set(&[("c.weight", &[1, 1, 2, 2], &KERNEL_2X2)]);
    let error = run_err(&network, &tensor(&[1, 1, 3, 3], &counting(9)), &params);
    assert_eq!(error, Error::MissingParam { name: "c.bias".into(), expected: "[1]".into(), more: String::new() });

    // Nothing at all: the first missing one (the weight), counting the other.
    let error = run_err(&network, &tensor(&[1, 1, 3, 3], &counting(9)), &Params::new());
    let Error::MissingParam { name, expected, more } = error else { panic!("expected MissingParam, got {error:?}") };
    assert_eq!((name.as_str(), expected.as_str()), ("c.weight", "[1, 1, 2, 2]"));
    assert!(more.contains('1'), "the note counts the one other problem: {more:?}");
}

#[test]
fn unexpected_parameter_is_reported() {
    // `bias: false`, yet a bias is given.
    let network = compile("input x: [1, 1, 3, 3]; conv c(x) { out: 1, kernel: 2, bias: false }");
    let params = param_set(&[("c.weight", &[1, 1, 2, 2], &KERNEL_2X2), ("c.bias", &[1], &[0.0])]);
    let error = run_err(&network, &tensor(&[1, 1, 3, 3], &counting(9)), &params);
    assert_eq!(error, Error::UnexpectedParam { name: "c.bias".into(), found: "[1]".into(), more: String::new() });
}

#[test]
fn wrong_parameter_shape_is_reported() {
    let network = compile(ONE_CONV);
    let params = param_set(&[("c.weight", &[1, 1, 3, 3], &[0.0; 9]), ("c.bias", &[1], &[0.0])]);
    let error = run_err(&network, &tensor(&[1, 1, 3, 3], &counting(9)), &params);
    assert_eq!(
        error,
        Error::ParamShape {
            name: "c.weight".into(),
            found: "[1, 1, 3, 3]".into(),
            expected: "[1, 1, 2, 2]".into(),
            more: String::new()
        }
    );
}

#[test]
fn wrong_input_rank_is_reported() {
    let network = compile(ONE_CONV);
    let params = param_set(&[("c.weight", &[1, 1, 2, 2], &KERNEL_2X2), ("c.bias", &[1], &[0.0])]);
    let error = run_err(&network, &tensor(&[1, 1, 9], &counting(9)), &params);
    let Error::InputShape { name, expected, found, detail } = error else {
        panic!("expected InputShape, got {error:?}")
    };
    assert_eq!((name.as_str(), expected.as_str(), found.as_str()), ("x", "[1, 1, 3, 3]", "[1, 1, 9]"));
    assert!(detail.contains("rank"), "{detail:?}");
}

#[test]
fn wrong_concrete_dim_is_reported() {
    let network = compile(ONE_CONV);
    let params = param_set(&[("c.weight", &[1, 1, 2, 2], &KERNEL_2X2), ("c.bias", &[1], &[0.0])]);
    // Width 4 instead of 3 (dim 3).
    let error = run_err(&network, &tensor(&[1, 1, 3, 4], &counting(12)), &params);
    let Error::InputShape { name, expected, found, detail } = error else {
        panic!("expected InputShape, got {error:?}")
    };
    assert_eq!((name.as_str(), expected.as_str(), found.as_str()), ("x", "[1, 1, 3, 3]", "[1, 1, 3, 4]"));
    assert!(detail.contains('3') && detail.contains('4'), "{detail:?}");
}

#[test]
fn inconsistent_symbol_is_reported() {
    let network = compile("input x: [N, 2, S, S]; conv c(x) { out: 1, kernel: 1, bias: false }");
    let params = param_set(&[("c.weight", &[1, 2, 1, 1], &[1.0, 1.0])]);
    // S = 3 square works: out = ch0 + ch1 = (1..=9) + 1 = 2..=10.
    let mut data = counting(9);
    data.extend([1.0; 9]);
    let output = run(&network, &tensor(&[1, 2, 3, 3], &data), &params);
    assert_output(&output, &[1, 1, 3, 3], &counting(10)[1..]);
    // H = 3, W = 4 does not.
    let error = run_err(&network, &tensor(&[1, 2, 3, 4], &[0.0; 24]), &params);
    let Error::InputShape { name, expected, found, detail } = error else {
        panic!("expected InputShape, got {error:?}")
    };
    assert_eq!((name.as_str(), expected.as_str(), found.as_str()), ("x", "[N, 2, S, S]", "[1, 2, 3, 4]"));
    assert!(detail.contains("`S`") && detail.contains('3') && detail.contains('4'), "{detail:?}");
}

#[test]
fn empty_output_with_symbolic_dims_is_reported_at_bind_time() {
    // The checker cannot know H; with H = 2 the 3-tall kernel does not fit (padded 2 < 3) on axis 0.
    let network = compile("input x: [1, 1, H, W]; conv c(x) { out: 1, kernel: 3, bias: false }");
    let params = param_set(&[("c.weight", &[1, 1, 3, 3], &[1.0; 9])]);
    // H = W = 3 works: one output, the sum 1 + … + 9 = 45.
    assert_output(&run(&network, &tensor(&[1, 1, 3, 3], &counting(9)), &params), &[1, 1, 1, 1], &[45.0]);
    let error = run_err(&network, &tensor(&[1, 1, 2, 5], &counting(10)), &params);
    assert_eq!(
        error,
        Error::EmptyOutput { layer: "c".into(), input: "[1, 1, 2, 5]".into(), axis: 0, padded: 2, effective_kernel: 3 }
    );
}

#[test]
fn add_of_shapes_that_differ_only_at_bind_time_is_reported() {
    // c's height is (H - 1)/2 + 1, equal to H only when H = 1: the checker accepts the add, bind
    // decides.
    let text = "input x: [1, 1, H, W];
                conv c(x) { out: 1, kernel: 1, stride: [2, 1], bias: false }
                add r(x, c);";
    let network = compile(text);
    let params = param_set(&[("c.weight", &[1, 1, 1, 1], &[3.0])]);
    // H = 1, W = 2: r = x + 3x = 4x = [4, 8]
    assert_output(&run(&network, &tensor(&[1, 1, 1, 2], &[1.0, 2.0]), &params), &[1, 1, 1, 2], &[4.0, 8.0]);
    // H = 3: x is [1, 1, 3, 2], c is [1, 1, 2, 2].
    let error = run_err(&network, &tensor(&[1, 1, 3, 2], &counting(6)), &params);
    assert_eq!(
        error,
        Error::AddShapes {
            layer: "r".into(),
            left: "x".into(),
            left_shape: "[1, 1, 3, 2]".into(),
            right: "c".into(),
            right_shape: "[1, 1, 2, 2]".into()
        }
    );
}

#[test]
fn tensor_length_must_match_its_shape() {
    let error = Tensor::new(vec![1, 1, 3, 3], vec![0.0; 8]).unwrap_err();
    assert_eq!(error, Error::TensorLength { shape: "[1, 1, 3, 3]".into(), expected: 9, found: 8 });
}
