//! The `CompiledModel` API: dynamic shapes and the cache, checked buffers, schedules, threads.

use std::sync::Arc;

use convgen::conv_dsl::random::SplitMix64;
use convgen::conv_dsl::schedule::Schedule;
use convgen::{Backend, CompiledModel, Error, Params, Tensor, compile_source};

/// |jit − reference| ≤ TOLERANCE · (1 + |reference|): f32 accumulation with FMA against the
/// reference's f64 accumulation, inputs and weights in [−1, 1].
const TOLERANCE: f32 = 1e-4;

const MODEL: &str = "
    input x: [N, 6, H, W];
    conv c(x)        { out: 12, kernel: 3, stride: 2, pad: same, groups: 3, act: relu }
    separable s(c)   { out: 12, kernel: 3, pad: 1, act: hardswish, dw_act: relu6 }
    add r(s, c)      { act: silu }
";

fn random(shape: &[usize], seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..shape.iter().product::<usize>()).map(|_| rng.symmetric()).collect()
}

fn output_shape(input: &[usize]) -> Vec<usize> {
    vec![input[0], 12, input[2].div_ceil(2), input[3].div_ceil(2)]
}

fn run(model: &CompiledModel, packed: &convgen::PackedParams, input: &[usize], data: &[f32]) -> Vec<f32> {
    let shape = output_shape(input);
    let mut output = vec![f32::NAN; shape.iter().product()];
    model.run((input, data), packed, (&shape, &mut output)).expect("the model runs");
    output
}

fn assert_close(got: &[f32], want: &[f32], context: &str) {
    assert_eq!(got.len(), want.len(), "{context}");
    for (index, (got, want)) in got.iter().zip(want).enumerate() {
        assert!((got - want).abs() <= TOLERANCE * (1.0 + want.abs()), "{context}: element {index}: {got} vs {want}");
    }
}

#[test]
fn every_shape_matches_the_reference_and_is_compiled_once() {
    let network = compile_source("model.conv", MODEL).unwrap();
    let params = Params::random(&network, 3);
    let jit = CompiledModel::new(network.clone(), Backend::Jit);
    let reference = CompiledModel::new(network, Backend::Interpreter);
    let (jit_params, reference_params) = (jit.pack(&params).unwrap(), reference.pack(&params).unwrap());
    for (round, input) in [[1, 6, 9, 9], [2, 6, 4, 7], [1, 6, 1, 1], [1, 6, 9, 9]].iter().enumerate() {
        let data = random(input, round as u64);
        let got = run(&jit, &jit_params, input, &data);
        let want = run(&reference, &reference_params, input, &data);
        assert_close(&got, &want, &format!("input {input:?}"));
    }
    assert_eq!(jit.cached_shapes(), 3, "the repeated shape hits the cache");
}

#[test]
fn the_cache_keeps_a_bounded_number_of_shapes() {
    let network = compile_source("model.conv", MODEL).unwrap();
    let model = CompiledModel::new(network.clone(), Backend::Jit);
    let packed = model.pack(&Params::random(&network, 1)).unwrap();
    for width in 1..=(convgen::model::SHAPE_CACHE_CAPACITY + 4) {
        let input = [1, 6, 3, width];
        let output = run(&model, &packed, &input, &random(&input, width as u64));
        assert!(output.iter().all(|value| value.is_finite()));
    }
    assert_eq!(model.cached_shapes(), convgen::model::SHAPE_CACHE_CAPACITY);
}

#[test]
fn schedules_do_not_change_results() {
    let network = compile_source("model.conv", MODEL).unwrap();
    let params = Params::random(&network, 5);
    let input = [1, 6, 11, 13];
    let data = random(&input, 8);
    let auto = CompiledModel::new(network.clone(), Backend::Jit);
    let expected = run(&auto, &auto.pack(&params).unwrap(), &input, &data);
    for schedule in [Schedule::new(4, 1, 1), Schedule::new(1, 3, 2), Schedule::new(4, 5, 1)] {
        let tuned = CompiledModel::new(network.clone(), Backend::Jit)
            .with_schedule("c", Schedule::new(1, schedule.tile_width, schedule.tile_channels))
            .and_then(|model| model.with_schedule("s.dw", schedule))
            .and_then(|model| model.with_schedule("s.pw", schedule))
            .unwrap();
        let got = run(&tuned, &tuned.pack(&params).unwrap(), &input, &data);
        assert_eq!(got, expected, "schedule {schedule}");
    }
}

#[test]
fn bad_schedules_are_errors() {
    let network = compile_source("model.conv", MODEL).unwrap();
    let unknown = CompiledModel::new(network.clone(), Backend::Jit).with_schedule("nope", Schedule::new(4, 1, 1));
    assert!(matches!(unknown, Err(Error::Model(convgen::conv_dsl::Error::Schedule { .. }))));
    // `c` has 4 output channels per group: vectors of 4 fit, 8 do not (and the target has 4).
    let model = CompiledModel::new(network.clone(), Backend::Jit).with_schedule("c", Schedule::new(8, 1, 1)).unwrap();
    let packed = model.pack(&Params::random(&network, 1)).unwrap();
    let input = [1, 6, 4, 4];
    let shape = output_shape(&input);
    let mut output = vec![0.0; shape.iter().product()];
    let error = model.run((&input, &random(&input, 1)), &packed, (&shape, &mut output)).unwrap_err();
    assert!(error.to_string().contains("schedule for layer `c`"), "{error}");
}

#[test]
fn buffers_are_checked_before_any_code_runs() {
    let network = compile_source("model.conv", MODEL).unwrap();
    let model = CompiledModel::new(network.clone(), Backend::Jit);
    let packed = model.pack(&Params::random(&network, 1)).unwrap();
    let input = [1, 6, 4, 4];
    let data = random(&input, 1);
    let shape = output_shape(&input);
    let mut output = vec![0.0; shape.iter().product()];

    let short = model.run((&input, &data[1..]), &packed, (&shape, &mut output)).unwrap_err();
    assert!(short.to_string().contains("input buffer has 95 values"), "{short}");
    let wrong_output = model.run((&input, &data), &packed, (&[1, 12, 2, 1], &mut output[..24])).unwrap_err();
    assert!(wrong_output.to_string().contains("the model's output is [1, 12, 2, 2]"), "{wrong_output}");
    let wrong_channels = model.run((&[1, 5, 4, 4], &data[..80]), &packed, (&shape, &mut output)).unwrap_err();
    assert!(wrong_channels.to_string().contains("dim 1 is 5, not 6"), "{wrong_channels}");
    assert_eq!(model.cached_shapes(), 0, "nothing was compiled for rejected calls");

    let mut params = Params::random(&network, 1);
    params.insert("c.weight", Tensor::new(vec![12, 2, 3, 1], vec![0.0; 72]).unwrap());
    let error = model.pack(&params).err().expect("a wrongly shaped weight is rejected");
    assert!(error.to_string().contains("`c.weight` has shape [12, 2, 3, 1]"), "{error}");
}

#[test]
fn a_model_on_two_threads_computes_what_it_does_on_one() {
    // 9.4 M and 3.5 M MACs: both convolutions are split into 2 parts (the conversions, of 32 Ki
    // elements, are not).
    let network = compile_source(
        "wide.conv",
        "input x: [N, 32, 32, 32];
         conv c(x) { out: 128, kernel: 3, pad: 1, act: relu6 }
         conv p(c) { out: 12, kernel: 3, stride: 2, pad: 1 }",
    )
    .unwrap();
    let one = CompiledModel::new(network.clone(), Backend::Jit);
    let two = CompiledModel::new(network.clone(), Backend::Jit).with_threads(2);
    let packed = one.pack(&Params::random(&network, 3)).unwrap();
    let parts = two.plan(&[1, 32, 32, 32]).unwrap().steps.iter().filter(|step| step.part.is_some()).count();
    assert_eq!(parts, 4, "both convolutions are split");
    for input in [[1, 32, 32, 32], [3, 32, 32, 32]] {
        let data = random(&input, 6);
        assert_eq!(run(&two, &packed, &input, &data), run(&one, &packed, &input, &data), "input {input:?}");
    }
}

#[test]
fn one_model_runs_from_several_threads_at_once() {
    let network = compile_source("model.conv", MODEL).unwrap();
    let model = Arc::new(CompiledModel::new(network.clone(), Backend::Jit));
    let packed = Arc::new(model.pack(&Params::random(&network, 2)).unwrap());
    let inputs: Vec<[usize; 4]> = vec![[1, 6, 8, 8], [2, 6, 5, 9]];
    let expected: Vec<Vec<f32>> = inputs.iter().map(|input| run(&model, &packed, input, &random(input, 4))).collect();
    let threads: Vec<_> = (0..4)
        .map(|thread| {
            let (model, packed, inputs) = (model.clone(), packed.clone(), inputs.clone());
            std::thread::spawn(move || {
                (0..10)
                    .map(|round| {
                        let input = inputs[(thread + round) % inputs.len()];
                        (input, run(&model, &packed, &input, &random(&input, 4)))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for thread in threads {
        for (input, output) in thread.join().expect("no thread panics") {
            let index = inputs.iter().position(|candidate| *candidate == input).unwrap();
            assert_eq!(output, expected[index], "input {input:?}");
        }
    }
}
