//! Every kind of layer through `convgen::conv!`, run by the generated `forward` and compared with
//! the reference interpreter: ranks 1–3, both layouts, groups (scalar and vectorised), depthwise
//! multipliers, stride (also larger than the kernel), dilation, every padding form (also wider than
//! the kernel), every activation, separable layers, residual adds, batch > 1, size-1 dims, and
//! channel counts and widths that leave tails of vectors and register tiles.
//!
//! Each model checks:
//! - `Params::random(seed)` is `convgen::Params::random` for the same model and seed;
//! - `forward` and `forward_portable` are within `1e-4·(1 + |ref|)` of the reference interpreter
//!   (f32 accumulation against its f64), also when the workspace is reused for a second input;
//! - on a CPU with AVX2 and FMA, `forward` equals the IR interpreter on the same plan bit for bit
//!   (both fuse every multiply-add).

use convgen::conv_dsl::{emit_rust, ir_interp};
use convgen::macro_support::PlanFor;
use convgen::{Params, Tensor, interp};

/// |y − ref| ≤ TOLERANCE · (1 + |ref|).
const TOLERANCE: f32 = 1e-4;

convgen::conv! {
    /// conv1d: batch 2, channel tails, stride, dilation, asymmetric padding, a depthwise
    /// multiplier, `same` padding, and three activations.
    mod rank1 {
        input x: [2, 5, 19];
        conv c(x) { out: 11, kernel: 4, stride: 2, dilation: 2, pad: [[2, 1]], act: relu }
        depthwise d(c) { kernel: 3, multiplier: 2, pad: same, act: leaky_relu(0.1) }
        pointwise p(d) { out: 9, act: hardswish }
    }
}

convgen::conv! {
    /// conv1d, channels last.
    mod rank1_nwc {
        input x: [1, 23, 6] layout nwc;
        depthwise d(x) { kernel: 7, pad: 3, act: relu }
        pointwise p(d) { out: 10, act: silu }
    }
}

convgen::conv! {
    /// conv2d: scalar grouped conv (4 outputs per group), per-axis kernel/stride/dilation/pad,
    /// strided depthwise with `same` padding, a separable layer with a multiplier and its own
    /// `dw_act`, a bias-free pointwise and a residual add.
    mod rank2 {
        input x: [1, 6, 13, 11];
        conv g(x) { out: 12, kernel: [3, 2], groups: 3, stride: [2, 1], dilation: [1, 2], pad: [1, 2], act: silu }
        depthwise dw(g) { kernel: 5, stride: 2, pad: same, act: relu6 }
        separable s(dw) { out: 16, kernel: 3, pad: 1, multiplier: 2, dw_act: sigmoid, act: none }
        pointwise p(s) { out: 16, bias: false }
        add r(p, s) { act: relu }
    }
}

convgen::conv! {
    /// conv2d: vectorised grouped convs (8 and 16 outputs per group), `valid` padding, padding
    /// wider than the kernel, stride larger than the kernel, and an add of a value with itself.
    mod rank2_groups {
        input x: [1, 16, 9, 10];
        conv g(x) { out: 32, kernel: 3, groups: 2, pad: valid, act: relu }
        pointwise p(g) { out: 32, groups: 4, act: leaky_relu(0.2) }
        conv wide(p) { out: 8, kernel: 2, pad: 4 }
        conv skip(wide) { out: 8, kernel: 2, stride: 3 }
        add twice(skip, skip);
    }
}

convgen::conv! {
    /// conv2d, channels last, with an explicit output that is not the last layer.
    mod rank2_nhwc {
        input x: [1, 7, 9, 10] layout nhwc;
        conv c(x) { out: 8, kernel: 3, stride: 2, pad: [[0, 2], [1, 1]], act: sigmoid }
        depthwise d(c) { kernel: 3, pad: 1, act: hardswish }
        pointwise unused(d) { out: 4 }
        output d;
    }
}

convgen::conv! {
    /// Size-1 dims: one channel, one row.
    mod size_one {
        input x: [1, 1, 1, 7];
        conv c(x) { out: 3, kernel: [1, 3], pad: [0, 1], act: relu }
        pointwise p(c) { out: 1 }
    }
}

convgen::conv! {
    /// conv3d: per-axis kernel, stride, dilation and padding, depthwise, pointwise.
    mod rank3 {
        input x: [1, 3, 5, 7, 6];
        conv c(x) { out: 8, kernel: [2, 3, 3], stride: [1, 2, 1], pad: [[1, 0], [1, 1], [0, 2]], act: relu }
        depthwise d(c) { kernel: 3, dilation: [1, 1, 2], pad: same, act: relu6 }
        pointwise p(d) { out: 12, act: silu }
    }
}

convgen::conv! {
    /// conv3d, channels last, grouped.
    mod rank3_ndhwc {
        input x: [1, 3, 6, 5, 4] layout ndhwc;
        conv c(x) { out: 8, kernel: 3, pad: 1, groups: 2, act: leaky_relu(0.01) }
        depthwise d(c) { kernel: [1, 3, 3], stride: [1, 2, 2], pad: [0, 1, 1] }
    }
}

convgen::conv! {
    /// One depthwise layer of a channels-first input, computed in the user's layout (planar:
    /// vectors of 8 along w, border vectors overwritten by the interior's), with a multiplier,
    /// dilation along w and batch 2.
    mod planar {
        input x: [2, 3, 7, 21];
        depthwise d(x) { kernel: 3, dilation: [1, 2], pad: same, multiplier: 2, act: relu6 }
    }
}

convgen::conv! {
    /// One depthwise 3×3 layer of a channels-first input with rows of at least 32: the plane
    /// microkernel (one call per image), with a multiplier, a tail vector and overlapping rows.
    mod plane {
        input x: [2, 3, 9, 37];
        depthwise d(x) { kernel: 3, pad: 1, multiplier: 2, act: relu6 }
    }
}

convgen::conv! {
    /// A pointwise layer of a channels-first input on a plane of at least 28 × 28: the 1×1 plane
    /// kernel (one call per image), its channel blocks and pixel tiles overlapping at the ends.
    mod plane_pointwise {
        input x: [1, 5, 29, 29];
        pointwise p(x) { out: 27, act: relu6 }
    }
}

convgen::conv! {
    /// The same pair on planes of whole cache lines (32 × 32): the value between the two plane
    /// kernels starts where the caller's output does within a line (`conv_dsl::follow`).
    mod plane_pair_lines {
        input x: [1, 16, 32, 32];
        depthwise d(x) { kernel: 3, pad: 1, act: relu6 }
        pointwise p(d) { out: 24, act: relu6 }
    }
}

convgen::conv! {
    /// A depthwise layer read only by the pointwise output layer, both on the plane kernels: two
    /// steps in the user's layout, a channels-first value between them.
    mod plane_pair {
        input x: [2, 3, 28, 33];
        depthwise d(x) { kernel: 3, pad: 1, multiplier: 2, act: relu6 }
        pointwise p(d) { out: 26, act: relu }
    }
}

convgen::conv! {
    /// Planar on rows of 14, where vectors of 8 do not fit twice: vectors of 4.
    mod planar_narrow {
        input x: [1, 3, 6, 14];
        depthwise d(x) { kernel: 3, pad: 1, act: relu }
    }
}

convgen::conv! {
    /// Planar with stride 2 along w (every other input element in a vector) and along h.
    mod planar_stride2 {
        input x: [1, 3, 9, 24];
        depthwise d(x) { kernel: 3, stride: 2, pad: 1, act: relu }
    }
}

convgen::conv! {
    /// A depthwise output large enough (60·56·44 elements) for the default to fuse it into the
    /// pointwise layer, on blocks of rows; the pointwise layer's 20 outputs take the tile kernel.
    /// (Channels-last: of a channels-first input the two layers would take the plane kernels.)
    mod fused {
        input x: [1, 60, 56, 44] layout nhwc;
        depthwise d(x) { kernel: 3, pad: 1, act: relu6 }
        pointwise p(d) { out: 20, act: relu }
    }
}

convgen::conv! {
    /// Channels-last with whole vectors of channels (8 and 16): the steps read the user's input
    /// and write the user's output in place, with no conversion.
    mod channels_last_in_place {
        input x: [1, 5, 7, 8] layout nhwc;
        depthwise d(x) { kernel: 3, pad: 1, act: relu6 }
        pointwise p(d) { out: 16 }
        add r(p, p);
    }
}

convgen::conv! {
    /// Groups of 4 and 12 outputs (not whole 8-lane vectors): stages of 4-lane vectors inside the
    /// macro's 8-lane plan, with a tail pixel and a residual add.
    mod four_lane_groups {
        input x: [1, 16, 6, 9];
        conv g(x) { out: 16, kernel: 3, groups: 4, pad: 1, act: relu }
        conv h(g) { out: 48, kernel: [1, 3], groups: 4, pad: [0, 1] }
        conv k(h) { out: 16, kernel: 1, groups: 4 }
        add r(k, g);
    }
}

convgen::conv! {
    /// Dense 3×3 stride-1 layers of at least 16 inputs per group take Winograd's F(2×2, 3×3):
    /// grouped, odd sizes (half tiles), a residual `add` fused into the output transform's store,
    /// asymmetric padding.
    mod winograd {
        input x: [1, 32, 9, 11];
        conv w(x) { out: 32, kernel: 3, pad: 1, groups: 2, act: relu }
        conv v(w) { out: 32, kernel: 3, pad: 1, bias: false }
        add r(v, x) { act: relu6 }
        conv u(r) { out: 16, kernel: 3, pad: [[0, 2], [1, 0]] }
    }
}

convgen::conv! {
    /// A depthwise 3×3 layer on small planes (48 channels at 7×7): two plans, both calling the
    /// plane kernel in the user's layout (its small planes transposed, 8 or 16 at a time).
    mod flat {
        input x: [1, 48, 7, 7];
        depthwise d(x) { kernel: 3, pad: 1, act: relu }
    }
}

convgen::conv_file!(
    /// The depthwise-separable block at [1, 32, 56, 56], from its file.
    mod block = "examples/models/block.conv"
);

convgen::conv_file!(
    /// A grouped 3D convolution whose border regions read the input and weights 128 times or more
    /// per loop body: its expansion reads them through windows (`macro_support::window`; the
    /// corpus snapshot `emit_rust__good_corpus_expansions@layout_ndhwc.conv` shows them).
    mod windowed = "tests/corpus/good/layout_ndhwc.conv"
);

/// Deterministic input values in [-1, 1).
fn fill(values: &mut [f32], seed: u64) {
    let mut rng = convgen::conv_dsl::random::SplitMix64::new(seed);
    for value in values {
        *value = rng.symmetric();
    }
}

fn assert_close(label: &str, found: &[f32], expected: &[f32]) {
    assert_eq!(found.len(), expected.len(), "{label}: length");
    for (index, (y, reference)) in found.iter().zip(expected).enumerate() {
        assert!(
            (y - reference).abs() <= TOLERANCE * (1.0 + reference.abs()),
            "{label}: element {index}: {y} vs reference {reference}"
        );
    }
}

fn avx2_fma() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        convgen::macro_support::avx2_fma_detected()
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64")))]
    {
        false
    }
}

/// Runs the differential checks on a generated module.
macro_rules! differential {
    ($test:ident, $model:ident) => {
        #[test]
        fn $test() {
            use $model as model;
            let name = stringify!($model);
            let network = convgen::compile_source(name, model::MODEL_SOURCE).expect("the macro's model checks");
            let params = model::Params::random(3);
            assert_eq!(params.to_params(), Params::random(&network, 3), "{name}: random parameters");
            assert_eq!(model::PARAMETERS as u64, convgen::cost_report(&network).total_params());
            for host in PlanFor::ALL {
                let packed = model::Packed::with_plan(&params, host);
                let plan = emit_rust::plan(&network, host).expect("lowers");
                let ir_params = ir_interp::pack_params(&plan, &params.to_params());
                let mut workspace = model::Workspace::for_packed(&packed);
                let mut input = model::new_input();
                let mut output = model::new_output();
                let mut portable = model::new_output();
                for seed in [1, 2] {
                    fill(&mut input[..], seed);
                    let tensor = Tensor::new(model::INPUT_SHAPE.to_vec(), input.to_vec()).expect("INPUT_SHAPE fits");
                    let reference = interp::run(&network, &tensor, &params.to_params()).expect("reference runs");
                    assert_eq!(reference.shape(), &model::OUTPUT_SHAPE[..], "{name}: OUTPUT_SHAPE");
                    model::forward(&input, &packed, &mut output, &mut workspace);
                    assert_close(&format!("{name} {host:?} plan forward, input {seed}"), &output[..], reference.data());
                    model::forward_portable(&input, &packed, &mut portable, &mut workspace);
                    let label = format!("{name} {host:?} plan forward_portable, input {seed}");
                    assert_close(&label, &portable[..], reference.data());
                    if avx2_fma() {
                        let ir = ir_interp::run_plan(&plan, &input[..], &ir_params).expect("the IR interpreter runs");
                        let bits = |values: &[f32]| values.iter().map(|value| value.to_bits()).collect::<Vec<u32>>();
                        assert_eq!(
                            bits(&output[..]),
                            bits(&ir),
                            "{name}: {host:?} plan's AVX2 forward vs the IR interpreter"
                        );
                    }
                }
            }
        }
    };
}

differential!(conv1d_matches_the_reference, rank1);
differential!(conv1d_channels_last_matches_the_reference, rank1_nwc);
differential!(conv2d_matches_the_reference, rank2);
differential!(grouped_conv2d_matches_the_reference, rank2_groups);
differential!(conv2d_channels_last_matches_the_reference, rank2_nhwc);
differential!(size_one_dims_match_the_reference, size_one);
differential!(conv3d_matches_the_reference, rank3);
differential!(conv3d_channels_last_matches_the_reference, rank3_ndhwc);
differential!(planar_depthwise_matches_the_reference, planar);
differential!(channels_last_in_place_matches_the_reference, channels_last_in_place);
differential!(planar_stride2_depthwise_matches_the_reference, planar_stride2);
differential!(plane_kernel_depthwise_matches_the_reference, plane);
differential!(planar_narrow_depthwise_matches_the_reference, planar_narrow);
differential!(plane_kernel_pointwise_matches_the_reference, plane_pointwise);
differential!(plane_pair_matches_the_reference, plane_pair);
differential!(conv_file_block_matches_the_reference, block);
differential!(four_lane_groups_match_the_reference, four_lane_groups);
differential!(fused_depthwise_pointwise_matches_the_reference, fused);
differential!(windowed_reads_match_the_reference, windowed);
differential!(winograd_matches_the_reference, winograd);
differential!(flat_depthwise_planes_match_the_reference, flat);

#[test]
fn a_plane_pair_writes_an_output_at_any_offset_within_a_line_like_the_interpreter() {
    use plane_pair_lines as model;
    let network = convgen::compile_source("pair", model::MODEL_SOURCE).expect("the macro's model checks");
    let params = model::Params::random(3);
    let mut input = model::new_input();
    fill(&mut input[..], 4);
    let tensor = Tensor::new(model::INPUT_SHAPE.to_vec(), input.to_vec()).expect("INPUT_SHAPE fits");
    let reference = interp::run(&network, &tensor, &params.to_params()).expect("reference runs");
    for host in PlanFor::ALL {
        let plan = emit_rust::plan(&network, host).expect("lowers");
        assert!(convgen::conv_dsl::follow::follow_output(&plan).contains(&true), "{host:?}: a value follows");
        let ir = ir_interp::run_plan(&plan, &input[..], &ir_interp::pack_params(&plan, &params.to_params()))
            .expect("the IR interpreter runs");
        let packed = model::Packed::with_plan(&params, host);
        let mut workspace = model::Workspace::for_packed(&packed);
        let mut memory = vec![f32::NAN; model::OUTPUT_LEN + 32];
        let line = (16 - memory.as_ptr() as usize % 64 / 4) % 16;
        for offset in [0, 5, 5, 1, 15, 0, 8] {
            let output: &mut [f32; model::OUTPUT_LEN] =
                (&mut memory[line + offset..][..model::OUTPUT_LEN]).try_into().expect("the output's length");
            model::forward(&input, &packed, output, &mut workspace);
            let label = format!("{host:?} plan, output {offset} past a line");
            assert_close(&label, &output[..], reference.data());
            if avx2_fma() {
                assert!(output.iter().zip(&ir).all(|(a, b)| a.to_bits() == b.to_bits()), "{label}: bit for bit");
            }
            model::forward_portable(&input, &packed, output, &mut workspace);
            assert_close(&format!("{label}, portable"), &output[..], reference.data());
        }
    }
}

#[test]
fn a_large_depthwise_output_is_fused_into_its_pointwise_reader() {
    let network = convgen::compile_source("fused", fused::MODEL_SOURCE).expect("the macro's model checks");
    let plan = emit_rust::plan(&network, PlanFor::Avx2).expect("lowers");
    let names: Vec<&str> = plan.steps.iter().map(|step| step.layer.as_str()).collect();
    assert_eq!(names, ["x.to_internal", "d+p", "p.to_user"]);
}

#[test]
fn groups_of_four_outputs_take_four_lane_vectors() {
    let network = convgen::compile_source("four", four_lane_groups::MODEL_SOURCE).expect("the macro's model checks");
    let plan = emit_rust::plan(&network, PlanFor::Avx2).expect("lowers");
    assert_eq!(plan.lanes, 8);
    for step in plan.steps.iter().filter(|step| ["g", "h", "k"].contains(&step.layer.as_str())) {
        let lanes: Vec<u32> = step.schedules.iter().map(|schedule| schedule.lanes).collect();
        assert_eq!(lanes, [4], "`{}`", step.layer);
    }
}

/// The kernels of a plan's convolution stages, step by step.
fn stage_kernels(plan: &convgen::conv_dsl::lower::Plan) -> Vec<convgen::conv_dsl::schedule::Kernel> {
    plan.steps.iter().flat_map(|step| step.schedules.iter().map(|schedule| schedule.kernel)).collect()
}

#[test]
fn one_depthwise_layer_is_computed_in_the_users_layout() {
    for source in [planar::MODEL_SOURCE, planar_stride2::MODEL_SOURCE] {
        let network = convgen::compile_source("planar", source).expect("the macro's model checks");
        let plan = emit_rust::plan(&network, PlanFor::Avx2).expect("lowers");
        let kernels = stage_kernels(&plan);
        assert_eq!(kernels, [convgen::conv_dsl::schedule::Kernel::Planar], "{source}: one planar step");
    }
    let network = convgen::compile_source("narrow", planar_narrow::MODEL_SOURCE).expect("the macro's model checks");
    let plan = emit_rust::plan(&network, PlanFor::Avx2).expect("lowers");
    let lanes: Vec<u32> =
        plan.steps.iter().flat_map(|step| step.schedules.iter().map(|schedule| schedule.lanes)).collect();
    assert_eq!(lanes, [4], "rows of 14: vectors of 4");
}

#[test]
fn dense_3x3_layers_of_16_inputs_take_winograd() {
    let network = convgen::compile_source("winograd", winograd::MODEL_SOURCE).expect("the macro's model checks");
    let plan = emit_rust::plan(&network, PlanFor::Avx2).expect("lowers");
    assert_eq!(stage_kernels(&plan), [convgen::conv_dsl::schedule::Kernel::Winograd; 3]);
    let names: Vec<&str> = plan.steps.iter().map(|step| step.layer.as_str()).collect();
    assert_eq!(names, ["x.to_internal", "w", "v", "u", "u.to_user"], "the add is in v's store");
}

#[test]
fn long_depthwise_rows_and_large_pointwise_planes_take_the_plane_kernel() {
    for source in [plane::MODEL_SOURCE, plane_pointwise::MODEL_SOURCE] {
        let network = convgen::compile_source("plane", source).expect("the macro's model checks");
        let plan = emit_rust::plan(&network, PlanFor::Avx2).expect("lowers");
        let kernels = stage_kernels(&plan);
        assert_eq!(kernels, [convgen::conv_dsl::schedule::Kernel::Plane], "{source}: one plane step");
    }
    let network = convgen::compile_source("pair", plane_pair::MODEL_SOURCE).expect("the macro's model checks");
    let plan = emit_rust::plan(&network, PlanFor::Avx2).expect("lowers");
    let kernels = stage_kernels(&plan);
    assert_eq!(kernels, [convgen::conv_dsl::schedule::Kernel::Plane; 2], "two plane steps, no conversion");
}

#[test]
fn small_depthwise_planes_take_the_plane_kernel_in_both_plans() {
    use convgen::conv_dsl::schedule::Kernel;
    let network = convgen::compile_source("flat", flat::MODEL_SOURCE).expect("the macro's model checks");
    for plan_for in [PlanFor::Avx2, PlanFor::Avx512] {
        let plan = emit_rust::plan(&network, plan_for).expect("lowers");
        let names = plan.steps.iter().map(|step| step.layer.clone()).collect::<Vec<_>>();
        assert_eq!(names, ["d"], "{plan_for:?}: one step, no conversion");
        assert_eq!(stage_kernels(&plan), [Kernel::Plane], "{plan_for:?}");
    }
}

#[test]
fn the_default_pack_and_workspace_agree_and_a_workspace_of_the_other_plan_is_replaced() {
    let network = convgen::compile_source("flat", flat::MODEL_SOURCE).expect("the macro's model checks");
    let params = flat::Params::random(5);
    let mut input = flat::new_input();
    fill(&mut input[..], 9);
    let tensor = Tensor::new(flat::INPUT_SHAPE.to_vec(), input.to_vec()).expect("INPUT_SHAPE fits");
    let reference = interp::run(&network, &tensor, &params.to_params()).expect("reference runs");
    let mut output = flat::new_output();
    flat::forward(&input, &params.pack(), &mut output, &mut flat::Workspace::new());
    assert_close("the host's plan", &output[..], reference.data());
    for (host, other) in [(PlanFor::Avx2, PlanFor::Avx512), (PlanFor::Avx512, PlanFor::Avx2)] {
        let packed = flat::Packed::with_plan(&params, host);
        let mut workspace = flat::Workspace::for_packed(&flat::Packed::with_plan(&params, other));
        output.fill(f32::NAN);
        flat::forward(&input, &packed, &mut output, &mut workspace);
        assert_close(&format!("{host:?} plan, {other:?} workspace"), &output[..], reference.data());
        output.fill(f32::NAN);
        flat::forward_portable(&input, &packed, &mut output, &mut workspace);
        assert_close(&format!("{host:?} plan, portable, reused workspace"), &output[..], reference.data());
    }
}

#[test]
fn shape_constants_describe_the_model() {
    assert_eq!(rank2_nhwc::INPUT_SHAPE, [1, 7, 9, 10]);
    assert_eq!(rank2_nhwc::OUTPUT_SHAPE, [1, 4, 5, 8]); // output `d`, NHWC
    assert_eq!(rank2_nhwc::INPUT_LEN, 630);
    assert_eq!(rank2_nhwc::OUTPUT_LEN, 160);
    assert_eq!(block::INPUT_SHAPE, [1, 32, 56, 56]);
    assert_eq!(block::OUTPUT_SHAPE, [1, 64, 56, 56]);
    assert_eq!(block::PARAMETERS, 32 * 9 + 32 + 64 * 32 + 64);
    assert_eq!(block::MACS, 56 * 56 * (32 * 9 + 64 * 32));
    assert!(block::COST_REPORT.contains("depthwise 3x3"), "{}", block::COST_REPORT);
    let names: Vec<&str> = rank2::TENSORS.iter().map(|tensor| tensor.name).collect();
    assert_eq!(
        names,
        [
            "g.weight",
            "g.bias",
            "dw.weight",
            "dw.bias",
            "s.dw.weight",
            "s.dw.bias",
            "s.pw.weight",
            "s.pw.bias",
            "p.weight"
        ]
    );
    assert_eq!(rank2::TENSORS[0].shape, &[12, 2, 3, 2]);
}

#[test]
fn params_fields_follow_pytorch_names_and_layouts() {
    let params = rank2::Params::random(5);
    let named = params.to_params();
    assert_eq!(named.get("s.dw.weight").unwrap().data(), &params.s.dw.weight[..]);
    assert_eq!(named.get("s.pw.bias").unwrap().data(), &params.s.pw.bias[..]);
    assert_eq!(named.get("g.weight").unwrap().shape(), &[12, 2, 3, 2]);
    assert_eq!(params.g.weight.len(), 12 * 2 * 3 * 2);
}

#[test]
fn params_fill_from_a_flat_slice_a_params_set_and_a_safetensors_file() {
    let random = rank1::Params::random(9);
    let flat: Vec<f32> = random.tensors().concat();
    assert_eq!(flat.len(), rank1::PARAMETERS);
    let from_flat = rank1::Params::from_flat(&flat).unwrap();
    assert_eq!(from_flat.to_params(), random.to_params());

    let from_params = rank1::Params::from_params(&random.to_params()).unwrap();
    assert_eq!(from_params.to_params(), random.to_params());

    let directory = tempfile::tempdir().unwrap();
    let path = directory.path().join("p.safetensors");
    convgen::write_safetensors(&path, &random.to_params()).unwrap();
    let from_file = rank1::Params::from_safetensors(&path).unwrap();
    assert_eq!(from_file.to_params(), random.to_params());
}

#[test]
fn params_fill_errors_name_the_problem() {
    let error = rank1::Params::from_flat(&[0.0; 3]).err().expect("too short");
    assert_eq!(
        error.to_string(),
        format!("the flat parameter slice has 3 values; the model's 6 parameter tensors have {}", rank1::PARAMETERS)
    );
    let mut named = rank1::Params::random(1).to_params();
    named.insert("d.weight", Tensor::new(vec![22, 1, 2], vec![0.0; 44]).unwrap());
    let error = rank1::Params::from_params(&named).err().expect("wrong shape");
    assert_eq!(error.to_string(), "parameter `d.weight` has shape [22, 1, 2]; the model expects [22, 1, 3]");
    let error = rank1::Params::from_safetensors("/nonexistent/p.safetensors").err().expect("no file");
    assert!(error.to_string().starts_with("/nonexistent/p.safetensors: "), "{error}");
}
