//! Cranelift IR before optimisation, for the good corpus.
//!
//! The whole corpus's CLIF is about 90,000 lines (every border position of every layer is
//! unrolled), too much to review; the snapshot holds, for each model, the CLIF of its first
//! convolution step, which exercises everything the code generator emits for that kind of layer
//! (loops, affine addresses, loads, splats, FMAs, the fused epilogue). The differential tests run
//! every step of every model. Re-bless with `INSTA_UPDATE=always cargo test -p conv-jit --test
//! clif_snapshots`.

use conv_dsl::schedule::Target;
use conv_dsl::{bind, compile_source, lower};

#[test]
fn good_corpus_clif_of_the_first_convolution() {
    insta::glob!("../../tests/corpus/good", "*.conv", |path| {
        let text = std::fs::read_to_string(path).expect("corpus files are readable");
        let network = compile_source("model.conv", &text).expect("good corpus files check");
        let shape = network.example_input_shape(1, 9);
        let binding = bind(&network, &shape).expect("binds");
        let plan = lower::lower(&network, &binding, Target::CRANELIFT_X86_64, &|_| None).expect("lowers");
        let step = plan.steps.iter().find(|step| !step.schedules.is_empty()).expect("every corpus model has a conv");
        let clif = conv_jit::clif(&step.function).expect("the corpus compiles");
        let schedules = step.schedules_text().expect("a conv step");
        insta::assert_snapshot!(format!("// step {} ({schedules})\n{clif}", step.layer));
    });
}

/// A depthwise layer fused into the pointwise layer that reads it, in blocks of two rows: the
/// depthwise rows written to the `rows` buffer, then the pointwise stage over them, in one
/// function.
#[test]
fn fused_depthwise_pointwise_clif() {
    let text = "input x: [1, 4, 5, 3]; depthwise d(x) { kernel: 3, pad: 1, act: relu } pointwise p(d) { out: 4 }";
    let network = compile_source("model.conv", text).expect("the model checks");
    let binding = bind(&network, &[1, 4, 5, 3]).expect("binds");
    let fusion = conv_dsl::schedule::Fusion::every_pair(24);
    let plan =
        lower::lower(&network, &binding, Target { fusion, ..Target::CRANELIFT_X86_64 }, &|_| None).expect("lowers");
    let step = plan.steps.iter().find(|step| step.layer == "d+p").expect("fused");
    let clif = conv_jit::clif(&step.function).expect("compiles");
    let schedules = step.schedules_text().expect("a conv step");
    insta::assert_snapshot!(format!("// {text}\n// step {} ({schedules})\n{}\n{clif}", step.layer, step.function));
}

/// A depthwise layer computed by the plane microkernel (`kernel=plane`): per image, one call with
/// its arguments stored in the stack slot (the IR's `Stmt::Plane`, then its CLIF).
#[test]
fn plane_kernel_call_clif() {
    let text = "input x: [2, 3, 6, 40]; depthwise d(x) { kernel: 3, pad: 1, multiplier: 2, act: relu }";
    let network = compile_source("model.conv", text).expect("the model checks");
    let binding = bind(&network, &[2, 3, 6, 40]).expect("binds");
    let plane = conv_dsl::schedule::Schedule::plane();
    let plan = lower::lower(&network, &binding, Target::CRANELIFT_X86_64, &|_| Some(plane)).expect("lowers");
    let [step] = &plan.steps[..] else { panic!("one step: {:?}", plan.steps) };
    let clif = conv_jit::clif(&step.function).expect("compiles");
    insta::assert_snapshot!(format!("// {text}\n// step {} ({plane})\n{}\n{clif}", step.layer, step.function));
}

/// A depthwise 1D layer and a 3D one by the plane microkernel (`kernel=plane`): the 1D layer's
/// channels are rows along the statement's depth axis, each plane one element (the IR prints them
/// as rows), the 3D layer's volumes of planes.
#[test]
fn plane_kernel_rows_and_volumes_clif() {
    for (text, shape) in [
        ("input x: [1, 3, 40]; depthwise d(x) { kernel: 9, pad: 4 }", &[1, 3, 40][..]),
        ("input x: [1, 2, 4, 5, 6]; depthwise d(x) { kernel: 3, pad: 1, act: relu6 }", &[1, 2, 4, 5, 6][..]),
    ] {
        let network = compile_source("model.conv", text).expect("the model checks");
        let binding = bind(&network, shape).expect("binds");
        let plane = conv_dsl::schedule::Schedule::plane();
        let plan = lower::lower(&network, &binding, Target::CRANELIFT_X86_64, &|_| Some(plane)).expect("lowers");
        let [step] = &plan.steps[..] else { panic!("one step: {:?}", plan.steps) };
        let clif = conv_jit::clif(&step.function).expect("compiles");
        let name = if shape.len() == 3 { "plane_kernel_rows_clif" } else { "plane_kernel_volumes_clif" };
        insta::assert_snapshot!(
            name,
            format!("// {text}\n// step {} ({plane})\n{}\n{clif}", step.layer, step.function)
        );
    }
}

/// A dense 3×3 layer by Winograd's F(2×2, 3×3) (`kernel=winograd`): per block of tile rows, the
/// input transform (subtractions and additions of loaded vectors, stored to `wv`), the 16 matrix
/// products as tile-kernel calls, the output transform with the bias and activation.
#[test]
fn winograd_clif() {
    let text = "input x: [1, 16, 5, 7]; conv c(x) { out: 8, kernel: 3, pad: 1, act: relu }";
    let network = compile_source("model.conv", text).expect("the model checks");
    let binding = bind(&network, &[1, 16, 5, 7]).expect("binds");
    let winograd = conv_dsl::schedule::Schedule::winograd(2, 1);
    let plan = lower::lower(&network, &binding, Target::CRANELIFT_X86_64, &|_| Some(winograd)).expect("lowers");
    let step = plan.steps.iter().find(|step| step.layer == "c").expect("a step for c");
    let clif = conv_jit::clif(&step.function).expect("compiles");
    insta::assert_snapshot!(format!("// {text}\n// step {} ({winograd})\n{}\n{clif}", step.layer, step.function));
}
