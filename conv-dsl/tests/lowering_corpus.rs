//! Every model of the good corpus, lowered with several schedules and run by the IR interpreter,
//! matches the reference interpreter.

use conv_dsl::schedule::{Fusion, Kernel, Schedule, Target};
use conv_dsl::{Params, Tensor, bind, compile_source, interp, ir_interp, lower};

/// |ir − reference| ≤ TOLERANCE · (1 + |reference|): f32 accumulation (with FMA) against the
/// reference's f64 accumulation, for inputs and weights in [−1, 1] and at most a few hundred terms.
const TOLERANCE: f32 = 1e-4;

fn check_file(path: &std::path::Path) {
    let text = std::fs::read_to_string(path).expect("corpus files are readable");
    let network = compile_source(&path.display().to_string(), &text).expect("good corpus files check");
    let shape = network.example_input_shape(2, 11);
    let binding = bind(&network, &shape).expect("binds");
    let mut rng = conv_dsl::random::SplitMix64::new(9);
    let elements: u64 = shape.iter().product();
    let input =
        Tensor::new(shape.iter().map(|&d| d as usize).collect(), (0..elements).map(|_| rng.symmetric()).collect())
            .unwrap();
    let params = Params::random(&network, 4);
    let expected = interp::run(&network, &input, &params).expect("reference runs");
    let schedules: Vec<(&str, Target, Option<Schedule>)> = vec![
        ("auto/cranelift", Target::CRANELIFT_X86_64, None),
        ("auto/scalar", Target::SCALAR, None),
        ("auto/tile kernels", Target { microkernels: true, ..Target::CRANELIFT_X86_64 }, None),
        (
            "auto/wide tile kernels",
            Target { microkernels: true, wide_microkernels: true, ..Target::CRANELIFT_X86_64 },
            None,
        ),
        // The macro's target: 8-lane values, stages of 8 or (groups of 4 outputs) 4 lanes.
        ("auto/macro", conv_dsl::emit_rust::TARGET, None),
        ("auto/macro, AVX-512 plan", conv_dsl::emit_rust::WIDE_TARGET, None),
        // Every depthwise → pointwise pair fused, in blocks of a row or two; and in parts.
        ("auto, fused", fusing(64), None),
        ("auto, fused, 3 parts", Target { microkernels: true, threads: 3, part_macs: 0, ..fusing(64) }, None),
        // Every stage split into parts (windows of uneven sizes with 3).
        ("auto, 3 parts", Target { microkernels: true, threads: 3, part_macs: 0, ..Target::CRANELIFT_X86_64 }, None),
        (
            "tile kernel 5x2, 2 parts",
            Target { threads: 2, part_macs: 0, ..Target::CRANELIFT_X86_64 },
            Some(Schedule::tile_kernel(5, 2)),
        ),
        ("tile kernel 5x2", Target::CRANELIFT_X86_64, Some(Schedule::tile_kernel(5, 2))),
        ("1x1 tiles", Target::CRANELIFT_X86_64, Some(Schedule::new(4, 1, 1))),
        ("3x2 tiles", Target::CRANELIFT_X86_64, Some(Schedule::new(4, 3, 2))),
        ("scalar 5x3", Target::CRANELIFT_X86_64, Some(Schedule::new(1, 5, 3))),
        // The user's layout, where a model is one depthwise layer (else a scalar fallback).
        ("planar 3x2", Target::CRANELIFT_X86_64, Some(Schedule::planar(4, 3, 2))),
        (
            "planar scalar 2x1, 2 parts",
            Target { threads: 2, part_macs: 0, ..Target::CRANELIFT_X86_64 },
            Some(Schedule::planar(1, 2, 1)),
        ),
    ];
    for (label, target, forced) in schedules {
        let plan = lower::lower(&network, &binding, target, &|_| forced.filter(|_| true));
        let plan = match plan {
            Ok(plan) => plan,
            // A forced vector schedule may not fit a grouping; auto always does.
            Err(conv_dsl::Error::Schedule { .. }) if forced.is_some() => {
                let fallback = forced.map(|s| Schedule::new(1, s.tile_width, s.tile_channels));
                lower::lower(&network, &binding, target, &|_| fallback).expect("scalar schedules always fit")
            }
            Err(error) => panic!("{}: {label}: {error}", path.display()),
        };
        let packed = ir_interp::pack_params(&plan, &params);
        let output = ir_interp::run_plan(&plan, input.data(), &packed)
            .unwrap_or_else(|e| panic!("{}: {label}: {e}", path.display()));
        assert_eq!(output.len(), expected.data().len());
        for (i, (got, want)) in output.iter().zip(expected.data()).enumerate() {
            assert!(
                (got - want).abs() <= TOLERANCE * (1.0 + want.abs()),
                "{}: {label}: element {i}: {got} vs {want}",
                path.display()
            );
        }
    }
}

#[test]
fn good_corpus_lowers_correctly() {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/corpus/good");
    let mut paths: Vec<_> = std::fs::read_dir(directory).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    for path in paths {
        check_file(&path);
    }
}

/// An `add` whose operand is a convolution used nowhere else is computed in that convolution's
/// store (no step of its own); otherwise it stays a step. Both give the reference's results.
#[test]
fn residual_adds_fuse_into_the_convolution_store() {
    let cases = [
        // `p` feeds only the add, `x` is ready before it: fused.
        ("input x: [1, 4, 5, 5]; pointwise p(x) { out: 4 } add r(p, x) { act: relu }", true),
        // `c` is ready before `p`: fused into `p`, whichever side it is on.
        ("input x: [1, 4, 5, 5]; conv c(x) { out: 4, kernel: 3, pad: 1 } pointwise p(c) { out: 4 } add r(c, p);", true),
        // `p` is also the output of another add: not fused.
        ("input x: [1, 4, 5, 5]; pointwise p(x) { out: 4 } add r(p, x); add s(p, r);", false),
        // `p` is the network's output too: not fused.
        ("input x: [1, 4, 5, 5]; pointwise p(x) { out: 4 } add r(p, x); output p;", false),
    ];
    for (text, fused) in cases {
        let network = compile_source("model.conv", text).expect("the case checks");
        let binding = bind(&network, &[1, 4, 5, 5]).expect("binds");
        let plan = lower::lower(&network, &binding, Target::CRANELIFT_X86_64, &|_| None).expect("lowers");
        let has_add_step = plan.steps.iter().any(|step| step.layer == "r");
        assert_eq!(!has_add_step, fused, "{text}");
        let params = Params::random(&network, 2);
        let mut rng = conv_dsl::random::SplitMix64::new(3);
        let input = Tensor::new(vec![1, 4, 5, 5], (0..100).map(|_| rng.symmetric()).collect()).unwrap();
        let expected = interp::run(&network, &input, &params).unwrap();
        let output = ir_interp::run_plan(&plan, input.data(), &ir_interp::pack_params(&plan, &params)).unwrap();
        for (got, want) in output.iter().zip(expected.data()) {
            assert!((got - want).abs() <= TOLERANCE * (1.0 + want.abs()), "{text}: {got} vs {want}");
        }
    }
}

/// `kernel=planar` is refused, with the reason, where it cannot run: a layer that is not the
/// model's one layer, a stride along w, rows too short for the vectors.
#[test]
fn planar_schedules_are_refused_where_they_cannot_run() {
    let planar = conv_dsl::schedule::Schedule::planar(4, 2, 1);
    let cases = [
        ("input x: [1, 4, 9, 20]; depthwise d(x) { kernel: 3, pad: 1 } pointwise p(d) { out: 4 }", "only a one-stage"),
        ("input x: [1, 4, 9, 20] layout nhwc; depthwise d(x) { kernel: 3, pad: 1 }", "only a one-stage"),
        (
            "input x: [1, 4, 9, 40]; depthwise d(x) { kernel: 3, stride: 3, pad: 1 }",
            "stride 1 or 2 along the innermost",
        ),
        ("input x: [1, 4, 9, 5]; depthwise d(x) { kernel: 3, pad: 1 }", "these rows have 3"),
    ];
    for (text, expected) in cases {
        let network = compile_source("model.conv", text).expect("the case checks");
        let binding = bind(&network, &network.example_input_shape(1, 9)).expect("binds");
        let error = lower::lower(&network, &binding, Target::CRANELIFT_X86_64, &|_| Some(planar))
            .expect_err("planar does not fit");
        assert!(
            matches!(error, conv_dsl::Error::Schedule { .. }) && error.to_string().contains(expected),
            "{text}: {error}"
        );
    }
}

/// `kernel=plane` is refused, with the reason, where no plane kernel computes the layer.
#[test]
fn plane_schedules_are_refused_where_no_kernel_computes_the_layer() {
    let cases = [
        (
            "input x: [1, 4, 9, 40]; depthwise d(x) { kernel: 3, pad: 1 } pointwise p(d) { out: 4 } pointwise q(p) { out: 4 }",
            "only a one-stage",
        ),
        ("input x: [1, 4, 40]; depthwise d(x) { kernel: 3, stride: 2, pad: 1 }", "1D windows at stride 1"),
        ("input x: [1, 4, 9, 40]; depthwise d(x) { kernel: [3, 5], pad: 1 }", "2D windows"),
        ("input x: [1, 4, 9, 40]; depthwise d(x) { kernel: 7, pad: 3 }", "2D windows"),
        ("input x: [1, 4, 9, 40]; depthwise d(x) { kernel: 3, stride: [1, 2], pad: 1 }", "2D windows"),
        ("input x: [1, 4, 9, 40]; depthwise d(x) { kernel: 5, dilation: 2, pad: 4 }", "2D windows"),
        ("input x: [1, 4, 9, 40]; depthwise d(x) { kernel: 3, pad: 1, act: silu }", "not silu"),
    ];
    for (text, expected) in cases {
        let network = compile_source("model.conv", text).expect("the case checks");
        let binding = bind(&network, &network.example_input_shape(1, 9)).expect("binds");
        let error = lower::lower(&network, &binding, Target::CRANELIFT_X86_64, &|_| Some(Schedule::plane()))
            .expect_err("plane does not fit");
        assert!(
            matches!(error, conv_dsl::Error::Schedule { .. }) && error.to_string().contains(expected),
            "{text}: {error}"
        );
    }
}

/// On a target with microkernels, a one-layer depthwise model (or grouped, with groups of fewer
/// than 8 output channels) takes the plane kernel by default only with rows of at least 32
/// outputs (where it was measured faster; 14 for a 3×3 depthwise window at stride 1 on a target
/// with wide microkernels, or a 5×5 window; 10 for an undilated 3×3 one at stride 1 keeping the
/// size, transposed 8 planes at a time, in planes of more than 14 rows, and 15 in any; a 1D window
/// at stride 1, any); otherwise the planar
/// code or the channels-last kernels as before. Without microkernels, never.
#[test]
fn the_plane_kernel_is_the_default_for_long_rows() {
    let cases = [
        ("input x: [1, 8, 20, 32]; depthwise d(x) { kernel: 3, pad: 1, act: relu6 }", true),
        ("input x: [1, 8, 20, 40]; depthwise d(x) { kernel: 3, dilation: 2, pad: 2 }", true),
        ("input x: [1, 8, 20, 31]; depthwise d(x) { kernel: 3, pad: 1 }", true),
        ("input x: [1, 8, 20, 31]; depthwise d(x) { kernel: 3, dilation: 2, pad: 2 }", false),
        ("input x: [1, 8, 40, 80]; depthwise d(x) { kernel: 3, stride: 2, pad: 1 }", true),
        ("input x: [1, 8, 20, 40]; depthwise d(x) { kernel: 3, pad: 1, act: hardswish }", false),
        ("input x: [1, 8, 20, 40]; conv c(x) { out: 8, kernel: 3, pad: 1, groups: 2 }", true),
        ("input x: [1, 16, 20, 40]; conv c(x) { out: 16, kernel: 3, pad: 1, groups: 2 }", false),
        ("input x: [1, 8, 300]; depthwise d(x) { kernel: 31, pad: 15 }", true),
        ("input x: [1, 8, 64]; depthwise d(x) { kernel: 3, dilation: 4, pad: 4, act: relu }", true),
        ("input x: [1, 8, 40]; conv c(x) { out: 8, kernel: 5, pad: 2, groups: 4 }", true),
        ("input x: [1, 8, 31]; depthwise d(x) { kernel: 3, pad: 1 }", false),
        ("input x: [1, 8, 80]; depthwise d(x) { kernel: 3, stride: 2, pad: 1 }", false),
    ];
    let with_kernels = Target { microkernels: true, ..Target::CRANELIFT_X86_64 };
    for (text, plane) in cases {
        let (network, shape, binding) = bound(text);
        for (target, expected) in [(with_kernels, plane), (Target::CRANELIFT_X86_64, false)] {
            let plan = lower::lower(&network, &binding, target, &|_| None).unwrap();
            let kernels = stage_kernels(&plan);
            assert_eq!(kernels == [Kernel::Plane], expected, "{text}: {kernels:?}");
            runs_like_the_reference(text, &network, &shape, &plan);
        }
    }
    // Small planes of at least 8 channels, their 3×3 or 5×5 window at stride 1 keeping their size
    // with the left padding half its reach: transposed 8 at a time (rows of 2 to 8, at most 64
    // positions, or up to 14 rows of 9 to 14, or any number of rows of 15 to 32, or more than 14
    // rows of 10 to 14 — of 12 to 14 under 5×5; not dilated, not for a multiplier or groups);
    // otherwise rows of 14 in planes of more than 14 rows take the planar code with vectors of 4
    // (the JIT's, and the macro's where its 8 do not fit twice). 5×5 windows: rows of 14 at
    // stride 1, 28 at stride 2. 3×3 at stride 2 (streamed): rows of 14, not 13; not for groups.
    let macro_target = Target { microkernels: true, ..Target::AVX2 };
    let cases = [
        ("input x: [1, 8, 15, 14]; depthwise d(x) { kernel: 3, pad: 1 }", true, true),
        ("input x: [1, 7, 15, 14]; depthwise d(x) { kernel: 3, pad: 1 }", false, false),
        ("input x: [1, 8, 14, 14]; depthwise d(x) { kernel: 3, pad: 1 }", true, true),
        ("input x: [1, 8, 3, 14]; depthwise d(x) { kernel: 3, pad: 1, act: relu }", true, true),
        ("input x: [1, 8, 14, 13]; depthwise d(x) { kernel: 3, pad: 1 }", true, true),
        ("input x: [1, 8, 10, 10]; depthwise d(x) { kernel: 3, pad: 1, act: relu6 }", true, true),
        ("input x: [1, 8, 15, 10]; depthwise d(x) { kernel: 3, pad: 1 }", true, true),
        ("input x: [1, 8, 40, 10]; depthwise d(x) { kernel: 3, pad: 1, act: relu6 }", true, true),
        ("input x: [1, 8, 15, 9]; depthwise d(x) { kernel: 3, pad: 1 }", false, false),
        ("input x: [1, 8, 20, 12]; depthwise d(x) { kernel: 5, pad: 2 }", true, true),
        ("input x: [1, 8, 20, 11]; depthwise d(x) { kernel: 5, pad: 2 }", false, false),
        ("input x: [1, 8, 20, 12]; depthwise d(x) { kernel: 3, pad: 2, dilation: 2 }", false, false),
        ("input x: [1, 8, 12, 12]; depthwise d(x) { kernel: 5, pad: 2 }", true, true),
        ("input x: [1, 8, 11, 15]; depthwise d(x) { kernel: 3, pad: 1 }", true, true),
        ("input x: [1, 8, 40, 16]; depthwise d(x) { kernel: 3, pad: 1 }", true, true),
        ("input x: [1, 8, 28, 28]; depthwise d(x) { kernel: 3, pad: 1, act: relu6 }", true, true),
        ("input x: [1, 8, 32, 32]; depthwise d(x) { kernel: 3, pad: 1 }", true, true),
        ("input x: [1, 7, 20, 20]; depthwise d(x) { kernel: 3, pad: 1 }", false, false),
        ("input x: [1, 8, 20, 20]; depthwise d(x) { kernel: 3, pad: 1, multiplier: 2 }", false, false),
        ("input x: [1, 8, 20, 20]; depthwise d(x) { kernel: 5, pad: 2, act: relu }", true, true),
        ("input x: [1, 8, 7, 7]; depthwise d(x) { kernel: 3, pad: 1 }", true, true),
        ("input x: [1, 7, 7, 7]; depthwise d(x) { kernel: 3, pad: 1 }", false, false),
        ("input x: [1, 8, 8, 8]; depthwise d(x) { kernel: 3, pad: 1, act: relu6 }", true, true),
        ("input x: [1, 8, 9, 8]; depthwise d(x) { kernel: 3, pad: 1 }", false, false),
        ("input x: [1, 8, 7, 9]; depthwise d(x) { kernel: 3, pad: 1 }", true, true),
        ("input x: [1, 8, 32, 2]; depthwise d(x) { kernel: 3, pad: 1 }", true, true),
        ("input x: [1, 8, 7, 7]; depthwise d(x) { kernel: 3 }", false, false),
        ("input x: [1, 8, 7, 7]; depthwise d(x) { kernel: 3, pad: 2, dilation: 2 }", false, false),
        ("input x: [1, 8, 7, 7]; depthwise d(x) { kernel: 3, pad: 1, multiplier: 2 }", false, false),
        ("input x: [1, 8, 7, 7]; conv c(x) { out: 8, kernel: 3, pad: 1, groups: 4 }", false, false),
        ("input x: [1, 8, 7, 7]; depthwise d(x) { kernel: 5, pad: 2 }", true, true),
        ("input x: [1, 8, 6, 6]; depthwise d(x) { kernel: 5, pad: 2, act: relu }", true, true),
        ("input x: [1, 8, 28, 28]; depthwise d(x) { kernel: 5, pad: 2 }", true, true),
        ("input x: [1, 8, 14, 14]; depthwise d(x) { kernel: 5, pad: 2 }", true, true),
        ("input x: [1, 8, 13, 13]; depthwise d(x) { kernel: 5, pad: 2 }", true, true),
        ("input x: [1, 8, 56, 56]; depthwise d(x) { kernel: 5, stride: 2, pad: 2 }", true, true),
        ("input x: [1, 8, 54, 54]; depthwise d(x) { kernel: 5, stride: 2, pad: 2 }", false, false),
        ("input x: [1, 8, 64, 64]; depthwise d(x) { kernel: 3, stride: 2, pad: 1 }", true, true),
        ("input x: [1, 8, 62, 62]; depthwise d(x) { kernel: 3, stride: 2, pad: 1 }", true, true),
        ("input x: [1, 8, 28, 28]; depthwise d(x) { kernel: 3, stride: 2, pad: 1 }", true, true),
        ("input x: [1, 8, 26, 26]; depthwise d(x) { kernel: 3, stride: 2, pad: 1 }", false, false),
        ("input x: [1, 8, 28, 28]; conv c(x) { out: 8, kernel: 3, stride: 2, pad: 1, groups: 2 }", false, false),
    ];
    for (text, jit, rust) in cases {
        let (network, shape, binding) = bound(text);
        for (target, expected) in [(with_kernels, jit), (macro_target, rust)] {
            let plan = lower::lower(&network, &binding, target, &|_| None).unwrap();
            let step = plan.steps.iter().find(|step| !step.schedules.is_empty()).expect("a conv step");
            assert_eq!(step.schedules[0].kernel == Kernel::Plane, expected, "{text}, {} lanes", target.lanes);
            runs_like_the_reference(text, &network, &shape, &plan);
        }
    }
    // The macro's planar code on rows of 14 takes vectors of 4 (its 8 do not fit twice).
    let text = "input x: [1, 7, 15, 14]; depthwise d(x) { kernel: 3, pad: 1 }";
    let (network, _, binding) = bound(text);
    let plan = lower::lower(&network, &binding, macro_target, &|_| None).unwrap();
    let schedules: Vec<_> = plan.steps.iter().flat_map(|step| &step.schedules).collect();
    assert_eq!(schedules.len(), 1);
    assert_eq!((schedules[0].kernel, schedules[0].lanes), (Kernel::Planar, 4), "{schedules:?}");
    // With wide (AVX-512) microkernels, a depthwise 3×3 window at stride 1 takes the plane kernel
    // from rows of 14 (one vector of 16 lanes), and on rows of at most 8 where the output plane is
    // the input's size, of at most 512 positions (flat runs of vectors); not for groups; rows of 9
    // to 13 in planes of at most 14 rows, 16 or more of them (transposed 16 at a time), or of 10 to
    // 13 in taller ones (AVX2's banded kernel), not 9. At stride 2 (streamed) from rows of 7, not
    // 6, not dilated. A 5×5 depthwise window on flat planes too, on those rows of 9 to 13 (12 to 13
    // in taller planes, not 11), and at stride 2 from rows of 14 (not 13, not 7).
    let wide = Target { wide_microkernels: true, ..with_kernels };
    let cases = [
        ("input x: [1, 8, 14, 14]; depthwise d(x) { kernel: 3, pad: 1 }", true),
        ("input x: [1, 8, 14, 21]; depthwise d(x) { kernel: 3, pad: 2, dilation: 2 }", true),
        ("input x: [1, 8, 14, 13]; depthwise d(x) { kernel: 3, pad: 1 }", false),
        ("input x: [1, 8, 14, 9]; depthwise d(x) { kernel: 3, pad: 1 }", false),
        ("input x: [1, 16, 14, 9]; depthwise d(x) { kernel: 3, pad: 1 }", true),
        ("input x: [1, 16, 10, 10]; depthwise d(x) { kernel: 3, pad: 1, act: relu6 }", true),
        ("input x: [1, 15, 10, 10]; depthwise d(x) { kernel: 3, pad: 1 }", false),
        ("input x: [1, 16, 15, 12]; depthwise d(x) { kernel: 3, pad: 1 }", true),
        ("input x: [1, 16, 40, 10]; depthwise d(x) { kernel: 3, pad: 1, act: relu6 }", true),
        ("input x: [1, 16, 15, 9]; depthwise d(x) { kernel: 3, pad: 1 }", false),
        ("input x: [1, 16, 28, 14]; depthwise d(x) { kernel: 5, pad: 2 }", true),
        ("input x: [1, 16, 20, 13]; depthwise d(x) { kernel: 5, pad: 2 }", true),
        ("input x: [1, 16, 20, 11]; depthwise d(x) { kernel: 5, pad: 2 }", false),
        ("input x: [1, 8, 20, 12]; depthwise d(x) { kernel: 3, pad: 1 }", false),
        ("input x: [1, 16, 13, 13]; depthwise d(x) { kernel: 5, pad: 2 }", true),
        ("input x: [1, 8, 7, 7]; depthwise d(x) { kernel: 3, pad: 1 }", true),
        ("input x: [1, 8, 7, 7]; depthwise d(x) { kernel: 3, pad: 2, dilation: 2, act: relu }", true),
        ("input x: [1, 8, 64, 8]; depthwise d(x) { kernel: 3, pad: 1 }", true),
        ("input x: [1, 8, 65, 8]; depthwise d(x) { kernel: 3, pad: 1 }", false),
        ("input x: [1, 8, 7, 7]; depthwise d(x) { kernel: 3 }", false),
        ("input x: [1, 8, 7, 7]; depthwise d(x) { kernel: 5, pad: 2 }", true),
        ("input x: [1, 8, 10, 10]; depthwise d(x) { kernel: 5, pad: 2 }", false),
        ("input x: [1, 8, 28, 28]; depthwise d(x) { kernel: 5, stride: 2, pad: 2 }", true),
        ("input x: [1, 8, 26, 26]; depthwise d(x) { kernel: 5, stride: 2, pad: 2 }", false),
        ("input x: [1, 8, 14, 14]; depthwise d(x) { kernel: 5, stride: 2, pad: 2 }", false),
        ("input x: [1, 8, 7, 7]; conv c(x) { out: 8, kernel: 5, pad: 2, groups: 2 }", false),
        ("input x: [1, 8, 28, 28]; depthwise d(x) { kernel: 3, stride: 2, pad: 1 }", true),
        ("input x: [1, 8, 14, 13]; depthwise d(x) { kernel: 3, stride: 2, pad: 1 }", true),
        ("input x: [1, 8, 14, 12]; depthwise d(x) { kernel: 3, stride: 2, pad: 1 }", false),
        ("input x: [1, 8, 28, 28]; depthwise d(x) { kernel: 3, stride: 2, pad: 2, dilation: 2 }", false),
        ("input x: [1, 8, 28, 28]; conv c(x) { out: 8, kernel: 3, stride: 2, pad: 1, groups: 2 }", false),
        ("input x: [1, 8, 14, 14]; conv c(x) { out: 8, kernel: 3, pad: 1, groups: 2 }", false),
        ("input x: [1, 8, 7, 7]; conv c(x) { out: 8, kernel: 3, pad: 1, groups: 2 }", false),
    ];
    for (text, expected) in cases {
        let (network, shape, binding) = bound(text);
        let plan = lower::lower(&network, &binding, wide, &|_| None).unwrap();
        let step = plan.steps.iter().find(|step| !step.schedules.is_empty()).expect("a conv step");
        assert_eq!(step.schedules[0].kernel == Kernel::Plane, expected, "{text}, wide");
        runs_like_the_reference(text, &network, &shape, &plan);
    }
}

/// On a target with wide microkernels, a pointwise output layer reading the model's channels-first
/// input takes the 1×1 plane kernel (no conversion at either end) on planes of at least 28 × 28,
/// unpadded and of one group; in parts of whole runs of 8 output channels for threads. Otherwise
/// the channels-last tile kernel as before. With narrow (AVX2) ones, only from 24 output channels.
#[test]
fn a_pointwise_layer_on_a_large_plane_takes_the_plane_kernel() {
    let narrow = Target { microkernels: true, ..Target::CRANELIFT_X86_64 };
    for (text, expected) in [
        ("input x: [1, 5, 28, 28]; pointwise p(x) { out: 24 }", true),
        ("input x: [1, 5, 28, 28]; pointwise p(x) { out: 23 }", false),
    ] {
        let (network, _, binding) = bound(text);
        let plan = lower::lower(&network, &binding, narrow, &|_| None).unwrap();
        let kernels = stage_kernels(&plan);
        assert_eq!(kernels == [Kernel::Plane], expected, "{text}: {kernels:?}");
    }
    let with_kernels = Target { wide_microkernels: true, ..narrow };
    let cases = [
        ("input x: [1, 5, 28, 28]; pointwise p(x) { out: 19, act: relu6 }", true),
        ("input x: [2, 5, 8, 98]; pointwise p(x) { out: 3 }", true),
        ("input x: [1, 5, 27, 28]; pointwise p(x) { out: 19 }", false),
        ("input x: [1, 8, 28, 28]; pointwise p(x) { out: 8, groups: 2 }", false),
        ("input x: [1, 5, 28, 28]; conv c(x) { out: 7, kernel: 1, pad: 1 }", false),
        ("input x: [1, 5, 28, 28]; pointwise p(x) { out: 7 } add a(p, p)", false),
    ];
    for (text, expected) in cases {
        let (network, shape, binding) = bound(text);
        for threads in [1, 3] {
            let target = Target { threads, part_macs: 0, ..with_kernels };
            let plan = lower::lower(&network, &binding, target, &|_| None).unwrap();
            let kernels = stage_kernels(&plan);
            let parts = if threads == 1 || shape[0] > 1 { shape[0].min(u64::from(threads)) } else { 3 };
            let planes = vec![Kernel::Plane; parts as usize];
            assert_eq!(kernels == planes, expected, "{text}, {threads} threads: {kernels:?}");
            runs_like_the_reference(text, &network, &shape, &plan);
        }
    }
}

/// A pointwise layer on the plane kernel, split by runs of 8 output planes, is split only into
/// parts of about even size (each part reads the whole input): 3 runs on 2 threads stay whole, 4
/// on 3 threads make 2 parts.
#[test]
fn a_plane_pointwise_layer_splits_only_into_even_parts() {
    let target = Target { microkernels: true, wide_microkernels: true, part_macs: 0, ..Target::CRANELIFT_X86_64 };
    for (outputs, threads, parts) in [(24, 2, 1), (16, 2, 2), (32, 3, 2), (24, 3, 3), (64, 2, 2)] {
        let text = format!("input x: [1, 5, 28, 28]; pointwise p(x) {{ out: {outputs} }}");
        let (network, shape, binding) = bound(&text);
        let plan = lower::lower(&network, &binding, Target { threads, ..target }, &|_| None).unwrap();
        assert_eq!(stage_kernels(&plan), vec![Kernel::Plane; parts], "{text}, {threads} threads");
        runs_like_the_reference(&text, &network, &shape, &plan);
    }
}

/// A depthwise layer of a channels-first input read only by the pointwise output layer, or a
/// separable output layer of that input, both stages on the plane kernels: two steps in the
/// user's layout (a channels-first value between them), no conversion, no fusion; alone and in
/// parts. Otherwise (another reader, an `add`, a plane too small for either kernel, an activation
/// the kernels lack, a channels-last input) the internal layout as before.
#[test]
fn a_depthwise_then_pointwise_pair_runs_in_the_users_layout() {
    let with_kernels = Target { microkernels: true, wide_microkernels: true, ..Target::CRANELIFT_X86_64 };
    let pair = "input x: [1, 5, 28, 32]; depthwise d(x) { kernel: 3, pad: 1, act: relu6 } pointwise p(d) { out: 11 }";
    let cases = [
        (pair, true),
        ("input x: [1, 5, 28, 32]; separable s(x) { kernel: 3, pad: 1, out: 11, dw_act: relu }", true),
        ("input x: [1, 5, 28, 32]; separable s(x) { kernel: 3, pad: 1, out: 11, dw_act: silu }", false),
        (
            "input x: [2, 3, 28, 40]; depthwise d(x) { kernel: 3, stride: 2, pad: 1, multiplier: 2 } \
          pointwise p(d) { out: 5, act: relu }",
            false,
        ),
        (
            "input x: [2, 3, 56, 64]; depthwise d(x) { kernel: 5, stride: 2, pad: 2, multiplier: 2 } \
          pointwise p(d) { out: 5, act: relu }",
            true,
        ),
        ("input x: [1, 5, 28, 32]; depthwise d(x) { kernel: 3, pad: 1 } pointwise p(d) { out: 11 } add a(p, p)", false),
        ("input x: [1, 5, 28, 32]; depthwise d(x) { kernel: 3, pad: 1 } pointwise p(d) { out: 5 } add a(p, d)", false),
        ("input x: [1, 5, 20, 32]; depthwise d(x) { kernel: 3, pad: 1 } pointwise p(d) { out: 11 }", false),
        (
            "input x: [1, 5, 28, 32]; depthwise d(x) { kernel: 3, pad: 1 } pointwise p(d) { out: 12, groups: 1 } \
          pointwise q(p) { out: 4 }",
            false,
        ),
        ("input x: [1, 28, 32, 8] layout nhwc; depthwise d(x) { kernel: 3, pad: 1 } pointwise p(d) { out: 11 }", false),
    ];
    for (text, expected) in cases {
        let (network, shape, binding) = bound(text);
        for threads in [1, 3] {
            let target = Target { threads, part_macs: 0, ..with_kernels };
            let plan = lower::lower(&network, &binding, target, &|_| None).unwrap();
            let names: Vec<&str> = plan.steps.iter().map(|step| step.layer.as_str()).collect();
            let kernels = stage_kernels(&plan);
            let in_user_layout = names.iter().all(|name| ["d", "p", "s.dw", "s.pw"].contains(name))
                && kernels.iter().all(|&kernel| kernel == Kernel::Plane)
                && plan.steps.first().is_some_and(|step| step.args[0] == lower::Arg::Input)
                && plan.steps.last().is_some_and(|step| step.args[1] == lower::Arg::Output);
            assert_eq!(in_user_layout, expected, "{text}, {threads} threads: {names:?} {kernels:?}");
            runs_like_the_reference(text, &network, &shape, &plan);
        }
    }
}

/// Where a model is one depthwise layer of a channels-first input, the automatic schedule
/// computes it in the user's layout: one step, reading the input and writing the output.
#[test]
fn one_depthwise_layer_needs_no_conversions() {
    let network = compile_source("model.conv", "input x: [1, 4, 9, 20]; depthwise d(x) { kernel: 3, pad: 1 }").unwrap();
    let binding = bind(&network, &[1, 4, 9, 20]).unwrap();
    let plan = lower::lower(&network, &binding, Target::CRANELIFT_X86_64, &|_| None).unwrap();
    assert_eq!(plan.steps.len(), 1);
    assert_eq!(plan.steps[0].args[..2], [lower::Arg::Input, lower::Arg::Output]);
    assert!(plan.values.is_empty(), "no internal buffer: {:?}", plan.values);
}

/// A depthwise layer whose window's weights do not fit in registers is computed in the user's
/// layout only when its tensors are too large for the caches (from 2 MiB of input): a 5×5 window
/// over 240 channels at 28×28 keeps the conversions, at 56×56 it is planar.
#[test]
fn large_windows_are_planar_only_on_large_tensors() {
    for (side, planar) in [(28, false), (56, true)] {
        let text = format!("input x: [1, 240, {side}, {side}]; depthwise d(x) {{ kernel: 5, pad: 2 }}");
        let network = compile_source("model.conv", &text).unwrap();
        let binding = bind(&network, &[1, 240, side, side]).unwrap();
        let plan = lower::lower(&network, &binding, Target::CRANELIFT_X86_64, &|_| None).unwrap();
        let kernels = stage_kernels(&plan);
        assert_eq!(kernels == [Kernel::Planar], planar, "{text}: {kernels:?}");
        assert_eq!(plan.steps.len(), if planar { 1 } else { 3 }, "{text}: two conversions or none");
    }
}

/// The model `text`, its example input shape (batch 1, symbolic dims 9) and its binding to it.
fn bound(text: &str) -> (conv_dsl::Network, Vec<u64>, conv_dsl::Binding) {
    let network = compile_source("model.conv", text).unwrap();
    let shape = network.example_input_shape(1, 9);
    let binding = bind(&network, &shape).unwrap();
    (network, shape, binding)
}

/// The kernels of a plan's convolution stages, step by step.
fn stage_kernels(plan: &lower::Plan) -> Vec<Kernel> {
    plan.steps.iter().flat_map(|step| step.schedules.iter().map(|schedule| schedule.kernel)).collect()
}

/// Runs `plan` (of `network`, the model `text`, at `shape`) in the IR interpreter on a random
/// input and checks it against the reference interpreter.
fn runs_like_the_reference(text: &str, network: &conv_dsl::Network, shape: &[u64], plan: &lower::Plan) {
    let params = Params::random(network, 2);
    let mut rng = conv_dsl::random::SplitMix64::new(3);
    let elements: u64 = shape.iter().product();
    let input =
        Tensor::new(shape.iter().map(|&d| d as usize).collect(), (0..elements).map(|_| rng.symmetric()).collect())
            .unwrap();
    let expected = interp::run(network, &input, &params).unwrap();
    let output = ir_interp::run_plan(plan, input.data(), &ir_interp::pack_params(plan, &params)).unwrap();
    for (got, want) in output.iter().zip(expected.data()) {
        assert!((got - want).abs() <= TOLERANCE * (1.0 + want.abs()), "{text}: {got} vs {want}");
    }
}

/// A dense tile-kernel layer reads a channels-first model input as it is (its kernel broadcasts
/// one element at a time): no conversion to the internal layout, unless another layer reads the
/// input too — or the layer is not a tile-kernel one.
#[test]
fn dense_tile_layers_read_a_channels_first_input_in_place() {
    let tiles = Target { microkernels: true, ..Target::CRANELIFT_X86_64 };
    let cases = [
        ("input x: [2, 5, 7, 9]; conv c(x) { out: 16, kernel: 3, stride: [1, 2], pad: 1, act: relu }", tiles, false),
        ("input x: [1, 12, 3, 4, 5]; pointwise p(x) { out: 16, groups: 2 }", tiles, false),
        ("input x: [1, 6, 11]; conv c(x) { out: 8, kernel: 5, dilation: 2, pad: same }", tiles, false),
        // `a` reads the input too: it is converted for `a`; `c` still reads it in place.
        ("input x: [1, 8, 5, 6]; conv c(x) { out: 8, kernel: 3, pad: 1 } add a(c, x);", tiles, true),
        // Without tile kernels the layer reads the converted input.
        ("input x: [1, 8, 5, 6]; pointwise p(x) { out: 8 }", Target::CRANELIFT_X86_64, true),
    ];
    for (text, target, converted) in cases {
        let network = compile_source("model.conv", text).expect("the case checks");
        let shape = network.example_input_shape(1, 9);
        let binding = bind(&network, &shape).expect("binds");
        let plan = lower::lower(&network, &binding, target, &|_| None).expect("lowers");
        let names: Vec<&str> = plan.steps.iter().map(|step| step.layer.as_str()).collect();
        assert_eq!(names.contains(&"x.to_internal"), converted, "{text}: {names:?}");
        let in_place =
            plan.steps.iter().any(|step| step.layer != "x.to_internal" && step.args.contains(&lower::Arg::Input));
        assert_eq!(in_place, target.microkernels, "{text}: the tile-kernel layer reads the input as it is");
        runs_like_the_reference(text, &network, &shape, &plan);
    }
}

/// A channels-last input or output whose channels fill whole vectors is used in place (no
/// conversion step); an output that a step reads still gets its own value and a conversion.
#[test]
fn channels_last_tensors_of_whole_vectors_are_used_in_place() {
    let cases = [
        ("input x: [1, 5, 6, 8] layout nhwc; pointwise p(x) { out: 4 }", 1),
        // 6 channels are padded to 8: both conversions stay.
        ("input x: [1, 5, 6, 6] layout nhwc; pointwise p(x) { out: 6 }", 3),
        // `p` is the output and read by `q`: written to a value, then converted.
        ("input x: [1, 5, 6, 8] layout nhwc; pointwise p(x) { out: 4 } pointwise q(p) { out: 4 } output p;", 3),
        // Channels-first: both conversions stay.
        ("input x: [1, 8, 5, 6]; pointwise p(x) { out: 4 }", 3),
    ];
    for (text, steps) in cases {
        let network = compile_source("model.conv", text).expect("the case checks");
        let shape = network.example_input_shape(1, 9);
        let binding = bind(&network, &shape).expect("binds");
        let plan = lower::lower(&network, &binding, Target::CRANELIFT_X86_64, &|_| None).expect("lowers");
        let names: Vec<&str> = plan.steps.iter().map(|step| step.layer.as_str()).collect();
        assert_eq!(plan.steps.len(), steps, "{text}: {names:?}");
        runs_like_the_reference(text, &network, &shape, &plan);
    }
}

/// The Cranelift target fusing every depthwise → pointwise pair, however small, in blocks of at
/// most `block_elements` depthwise outputs (so small test images still take several blocks).
fn fusing(block_elements: u64) -> Target {
    Target { fusion: Fusion::every_pair(block_elements), ..Target::CRANELIFT_X86_64 }
}

/// A depthwise layer read only by a pointwise one is computed inside it on blocks of rows (one
/// step, `dw+pw`, with no value of its own for the depthwise output), bit for bit as the two
/// steps compute it apart; not where the depthwise output is read by another layer or is the
/// output, where a forced schedule puts channel blocks outermost, where the stages' vectors
/// differ, nor with fusion off.
#[test]
fn depthwise_layers_fuse_into_the_pointwise_layer_that_reads_them() {
    let channels_outer =
        conv_dsl::schedule::Schedule { order: conv_dsl::schedule::Order::Channels, ..Schedule::new(4, 2, 1) };
    let cases: [(&str, Target, Option<Schedule>, &[&str]); 9] = [
        (
            "input x: [2, 6, 9, 7]; depthwise d(x) { kernel: 3, pad: 1, act: relu6 } pointwise p(d) { out: 5, act: silu }",
            fusing(64),
            None,
            &["d+p"],
        ),
        // Stride 2, dilation, a residual `add` fused into the pointwise store, several blocks.
        (
            "input x: [1, 8, 11, 10]; conv c(x) { out: 8, kernel: 1 } conv e(x) { out: 8, kernel: 3, stride: 2, pad: 1 } \
             depthwise d(c) { kernel: 3, stride: 2, dilation: 2, pad: 2 } pointwise p(d) { out: 8 } add r(p, e) { act: relu }",
            fusing(100),
            None,
            &["c", "e", "d+p"],
        ),
        // A separable layer's two stages; a 3D and a 1D pair, and tile kernels.
        ("input x: [1, 8, 6, 9]; separable s(x) { out: 16, kernel: 3, pad: 1 }", fusing(80), None, &["s.dw+s.pw"]),
        (
            "input x: [1, 8, 3, 4, 5]; depthwise d(x) { kernel: 3, pad: 1 } pointwise p(d) { out: 16 }",
            Target { microkernels: true, ..fusing(50) },
            None,
            &["d+p"],
        ),
        (
            "input x: [2, 5, 13]; depthwise d(x) { kernel: 5, pad: 2 } pointwise p(d) { out: 3 }",
            fusing(8),
            None,
            &["d+p"],
        ),
        // Not fused: `d` is read twice, or is the output.
        (
            "input x: [1, 4, 6, 7]; depthwise d(x) { kernel: 3, pad: 1 } pointwise p(d) { out: 4 } add a(p, d);",
            fusing(64),
            None,
            &["d", "p"],
        ),
        (
            "input x: [1, 4, 6, 7]; depthwise d(x) { kernel: 3, pad: 1 } pointwise p(d) { out: 4 } output d;",
            fusing(64),
            None,
            &["d", "p"],
        ),
        // Channel blocks outermost, and fusion off.
        (
            "input x: [1, 4, 6, 7]; depthwise d(x) { kernel: 3, pad: 1 } pointwise p(d) { out: 4 }",
            fusing(64),
            Some(channels_outer),
            &["d", "p"],
        ),
        (
            "input x: [1, 4, 6, 7]; depthwise d(x) { kernel: 3, pad: 1 } pointwise p(d) { out: 4 }",
            Target::CRANELIFT_X86_64,
            None,
            &["d", "p"],
        ),
    ];
    for (text, target, forced, expected) in cases {
        let network = compile_source("model.conv", text).expect("the case checks");
        let shape = network.example_input_shape(1, 9);
        let binding = bind(&network, &shape).expect("binds");
        let plan = lower::lower(&network, &binding, target, &|_| forced).expect("lowers");
        let names: Vec<&str> = plan.steps.iter().map(|step| step.layer.as_str()).collect();
        let computed: Vec<&str> = names
            .iter()
            .copied()
            .filter(|name| !name.ends_with(".to_internal") && !name.ends_with(".to_user"))
            .collect();
        assert_eq!(computed, expected, "{text}: {names:?}");
        runs_like_the_reference(text, &network, &shape, &plan);
        // Bit for bit the plan with every layer on its own.
        let apart = Target { fusion: Fusion::OFF, ..target };
        let unfused = lower::lower(&network, &binding, apart, &|_| forced).expect("lowers");
        let params = Params::random(&network, 2);
        let input = vec![0.25f32; shape.iter().product::<u64>() as usize];
        let run = |plan: &lower::Plan| ir_interp::run_plan(plan, &input, &ir_interp::pack_params(plan, &params));
        assert_eq!(run(&plan).unwrap(), run(&unfused).unwrap(), "{text}");
    }
}

/// A depthwise output too small to leave the cache, or with rows too long to stay in it, or read
/// by a pointwise layer of more than 8 weights per depthwise output of a block (blocks of 2^14
/// elements: at 14×14×1024 one row, 73 weights per output; at 28×28×256 two rows, 9.1), is not
/// fused by default; MobileNet-sized ones are (56×56×128 → 512: two rows, 4.6 weights per output).
#[test]
fn the_default_fuses_large_depthwise_outputs() {
    let cases = [
        ("input x: [1, 64, 56, 56]; depthwise d(x) { kernel: 3, pad: 1 } pointwise p(d) { out: 128 }", true),
        ("input x: [1, 128, 56, 56]; depthwise d(x) { kernel: 3, pad: 1 } pointwise p(d) { out: 512 }", true),
        ("input x: [1, 1024, 14, 14]; depthwise d(x) { kernel: 3, pad: 1 } pointwise p(d) { out: 1024 }", false),
        ("input x: [1, 256, 28, 28]; depthwise d(x) { kernel: 3, pad: 1 } pointwise p(d) { out: 512 }", false),
        ("input x: [1, 512, 14, 14]; depthwise d(x) { kernel: 3, pad: 1 } pointwise p(d) { out: 512 }", false),
        ("input x: [1, 256, 1000]; depthwise d(x) { kernel: 31, pad: 15 } pointwise p(d) { out: 64 }", false),
    ];
    for (text, fused) in cases {
        let network = compile_source("model.conv", text).expect("the case checks");
        let binding = bind(&network, &network.example_input_shape(1, 9)).expect("binds");
        let plan = lower::lower(&network, &binding, Target::CRANELIFT_X86_64, &|_| None).expect("lowers");
        assert_eq!(plan.steps.iter().any(|step| step.layer == "d+p"), fused, "{text}");
    }
}

/// Values whose lifetimes do not overlap share buffers: a chain of layers takes turns in two
/// buffers (the converted input's, free once the first layer has read it, and one more), each as
/// long as the longest value it holds, and computes what the reference does.
#[test]
fn a_chain_of_layers_takes_turns_in_two_buffers() {
    let text = "input x: [1, 8, 6, 7];
        pointwise a(x) { out: 16 } pointwise b(a) { out: 8 } pointwise c(b) { out: 24 } pointwise d(c) { out: 8 }";
    let network = compile_source("chain.conv", text).unwrap();
    let shape = [1, 8, 6, 7];
    let binding = bind(&network, &shape).unwrap();
    let plan = lower::lower(&network, &binding, Target::CRANELIFT_X86_64, &|_| None).unwrap();
    let names: Vec<&str> = plan.steps.iter().map(|step| step.layer.as_str()).collect();
    assert_eq!(names, ["x.to_internal", "a", "b", "c", "d", "d.to_user"]);
    // x, b, d take one buffer; a, c the other, as long as c's 24 channels.
    assert_eq!(plan.values, [6 * 7 * 8, 6 * 7 * 24]);
    let buffers: Vec<Vec<lower::Arg>> = plan.steps.iter().map(|step| step.args[..2].to_vec()).collect();
    let (first, second) = (lower::Arg::Value(0), lower::Arg::Value(1));
    assert_eq!(buffers[1..5], [vec![first, second], vec![second, first], vec![first, second], vec![second, first]]);
    runs_like_the_reference(text, &network, &shape, &plan);
}

/// A stage right after a split one is split from a quarter of `part_macs` (`Target::warm`): the
/// other threads are awake then. The same stage at the start of a plan is not.
#[test]
fn a_stage_after_a_split_one_splits_from_a_quarter_of_the_work() {
    // On 8 × 8 positions `a` has 65536 MACs, `d` 36864; 2 threads need 2 · 20000 (cold) or
    // 2 · 5000 (warm).
    let target = Target { threads: 2, part_macs: 20_000, fusion: Fusion::OFF, ..Target::CRANELIFT_X86_64 };
    let cases = [
        ("input x: [1, 16, 8, 8]; pointwise a(x) { out: 64 } depthwise d(a) { kernel: 3, pad: 1 }", [2, 2]),
        ("input x: [1, 64, 8, 8]; depthwise d(x) { kernel: 3, pad: 1 } pointwise a(d) { out: 16 }", [2, 1]),
    ];
    for (text, parts) in cases {
        let (network, shape, binding) = bound(text);
        let plan = lower::lower(&network, &binding, target, &|_| None).unwrap();
        let count = |layer: &str| plan.steps.iter().filter(|step| step.layer == layer).count();
        assert_eq!([count("a"), count("d")], parts, "{text}");
        runs_like_the_reference(text, &network, &shape, &plan);
    }
}

/// Winograd's F(2×2, 3×3) is the default for dense 3×3 stride-1 layers of at least 16 inputs per
/// group and whole vectors of 8 outputs per group, on targets with microkernels, unless a block
/// (at least a row of tiles) would need a scratch buffer beyond the limit of every tensor (2^31
/// elements); a forced `kernel=winograd` is refused there, and where no Winograd kernel computes
/// the layer.
#[test]
fn dense_3x3_layers_take_winograd_where_it_pays() {
    let cases = [
        ("input x: [1, 16, 9, 12]; conv c(x) { out: 8, kernel: 3, pad: 1 }", true),
        ("input x: [1, 32, 9, 12]; conv c(x) { out: 16, kernel: 3, pad: 1, groups: 2 }", true),
        ("input x: [1, 8, 9, 12]; conv c(x) { out: 16, kernel: 3, pad: 1 }", false),
        ("input x: [1, 16, 9, 12]; conv c(x) { out: 12, kernel: 3, pad: 1 }", false),
        ("input x: [1, 16, 9, 12]; conv c(x) { out: 8, kernel: 3, stride: 2, pad: 1 }", false),
        ("input x: [1, 16, 9, 12]; conv c(x) { out: 8, kernel: 3, dilation: 2, pad: 2 }", false),
        ("input x: [1, 16, 9, 12]; conv c(x) { out: 8, kernel: 5, pad: 2 }", false),
        ("input x: [1, 2048, 1, 200000]; conv c(x) { out: 2048, kernel: 3, pad: 1 }", false),
    ];
    let with_kernels = Target { microkernels: true, ..Target::CRANELIFT_X86_64 };
    let macro_target = Target { microkernels: true, ..Target::AVX2 };
    for (text, winograd) in cases {
        let (network, shape, binding) = bound(text);
        for (target, expected) in
            [(with_kernels, winograd), (macro_target, winograd), (Target::CRANELIFT_X86_64, false)]
        {
            let plan = lower::lower(&network, &binding, target, &|_| None).unwrap();
            let kernels = stage_kernels(&plan);
            assert_eq!(kernels == [Kernel::Winograd], expected, "{text}: {kernels:?}");
            if shape.iter().product::<u64>() < 10_000 {
                runs_like_the_reference(text, &network, &shape, &plan);
            }
        }
        let forced = lower::lower(&network, &binding, with_kernels, &|_| Some(Schedule::winograd(6, 1)));
        let fits = !text.contains("stride") && !text.contains("dilation") && !text.contains("kernel: 5");
        let fits = fits && !text.contains("out: 12") && !text.contains("200000");
        assert_eq!(forced.is_ok(), fits, "{text}: {forced:?}");
    }
}
