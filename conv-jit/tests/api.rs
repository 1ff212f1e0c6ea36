//! The JIT's contract beyond the corpus: exact activations on special values, errors instead of
//! crashes for wrong buffers and malformed IR, concurrent runs, and the CLIF text.

use conv_dsl::Activation;
use conv_dsl::ir::{Acc, Buffer, BufferId, Function, Index, LoopVar, Stmt, Value};
use conv_dsl::lower::{Arg, Plan, Runs, Step};
use conv_dsl::random::SplitMix64;
use conv_dsl::schedule::Target;
use conv_dsl::{Params, bind, compile_source, ir_interp, lower};
use conv_jit::{Error, compile};

/// The packed parameters of a plan that has none.
const NO_PARAMS: &[Vec<f32>] = &[];

const ACTIVATIONS: [Activation; 9] = [
    Activation::None,
    Activation::Relu,
    Activation::Relu6,
    Activation::LeakyRelu(0.1),
    Activation::LeakyRelu(-2.5),
    Activation::Hardswish,
    Activation::Silu,
    Activation::Sigmoid,
    Activation::LeakyRelu(0.0),
];

/// Inputs where activations are easy to get wrong: NaN, signed zeros, infinities, subnormals,
/// extremes, the breakpoints of relu6 and hardswish and their neighbours, where `exp` overflows.
const SPECIAL: [f32; 36] = [
    f32::NAN,
    -f32::NAN,
    0.0,
    -0.0,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::MIN_POSITIVE,
    -f32::MIN_POSITIVE,
    1e-45,
    -1e-45,
    f32::MAX,
    f32::MIN,
    1.0,
    -1.0,
    3.0,
    -3.0,
    6.0,
    -6.0,
    6.000_000_5,
    5.999_999_5,
    -3.000_000_2,
    -2.999_999_8,
    0.5,
    -0.5,
    88.72,
    -88.72,
    100.0,
    -100.0,
    1e-8,
    -1e-8,
    20.0,
    -20.0,
    104.0,
    -104.0,
    0.333_333_34,
    -0.333_333_34,
];

/// `for i0 in 0..len/lanes { out[lanes·i0] = act(in[lanes·i0]) }`.
fn elementwise(lanes: u32, len: u64, act: Activation) -> Function {
    let index = Index::var(LoopVar(0), i64::from(lanes));
    Function {
        name: format!("{act}_x{lanes}"),
        lanes,
        buffers: vec![
            Buffer { name: "in".into(), len, writes: false },
            Buffer { name: "out".into(), len, writes: true },
        ],
        body: vec![Stmt::Loop {
            var: LoopVar(0),
            count: len / u64::from(lanes),
            body: vec![Stmt::Store {
                buffer: BufferId(1),
                index: index.clone(),
                value: Value::Activate(act, Box::new(Value::Load { buffer: BufferId(0), index })),
            }],
        }],
        accumulators: 0,
        loop_vars: 1,
    }
}

/// A one-step plan calling `function` on the input (buffer 0) and the output (buffer 1).
fn plan_of(function: Function) -> Plan {
    let (input_len, output_len) = (function.buffers[0].len, function.buffers[1].len);
    Plan {
        lanes: function.lanes,
        input_len,
        output_len,
        output_shape: vec![output_len],
        values: Vec::new(),
        params: Vec::new(),
        steps: vec![Step {
            layer: "test".into(),
            schedules: Vec::new(),
            function,
            args: vec![Arg::Input, Arg::Output],
            part: None,
        }],
    }
}

fn same(a: f32, b: f32) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}

#[test]
fn activations_match_the_interpreter_bit_for_bit_on_special_values() {
    let mut rng = SplitMix64::new(11);
    let mut input: Vec<f32> = SPECIAL.to_vec();
    // And ordinary values over the range where the activations bend.
    input.extend((0..92).map(|_| rng.symmetric() * 12.0));
    let len = input.len() as u64;
    for act in ACTIVATIONS {
        for lanes in [1, 4] {
            let plan = plan_of(elementwise(lanes, len, act));
            let expected = ir_interp::run_plan(&plan, &input, &[]).expect("the IR is in bounds");
            let output = compile(&plan).expect("compiles").run(&input, NO_PARAMS).expect("runs");
            for ((x, got), want) in input.iter().zip(&output).zip(&expected) {
                assert!(same(*got, *want), "{act} with {lanes} lanes of {x:e}: jit {got:e}, ir_interp {want:e}");
            }
        }
    }
}

/// A small network with several steps, parameters and `exp`.
fn small_plan() -> (Plan, Vec<f32>, Vec<Vec<f32>>) {
    let network = compile_source(
        "small.conv",
        "input x: [2, 5, 9, 7];
         conv c(x) { out: 6, kernel: 3, pad: 1, act: silu }
         depthwise d(c) { kernel: 3, stride: 2, pad: same, act: hardswish }
         add r(d, d) { act: sigmoid }",
    )
    .expect("the model is valid");
    let binding = bind(&network, &[2, 5, 9, 7]).expect("binds");
    let plan = lower::lower(&network, &binding, Target::CRANELIFT_X86_64, &|_| None).expect("lowers");
    let params = ir_interp::pack_params(&plan, &Params::random(&network, 5));
    let mut rng = SplitMix64::new(3);
    let input = (0..plan.input_len).map(|_| rng.symmetric()).collect();
    (plan, input, params)
}

#[test]
fn one_compiled_plan_runs_from_four_threads_at_once() {
    let (plan, input, params) = small_plan();
    let compiled = compile(&plan).expect("compiles");
    let expected = ir_interp::run_plan(&plan, &input, &params).expect("runs");
    let barrier = std::sync::Barrier::new(4);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(|| {
                    barrier.wait();
                    (0..20).map(|_| compiled.run(&input, &params).expect("runs")).collect::<Vec<_>>()
                })
            })
            .collect();
        for handle in handles {
            for output in handle.join().expect("no thread panics") {
                assert_eq!(output, expected);
            }
        }
    });
}

#[test]
fn run_into_writes_every_element_of_the_callers_output_in_place() {
    let (plan, input, params) = small_plan();
    let compiled = compile(&plan).expect("compiles");
    let expected = ir_interp::run_plan(&plan, &input, &params).expect("runs");
    // Whatever the buffer held before (twice: the second run reuses the plan's pooled buffers).
    for _ in 0..2 {
        let mut output = vec![f32::NAN; expected.len()];
        compiled.run_into(&input, &params, &mut output).expect("runs");
        assert_eq!(output, expected);
    }
}

#[test]
fn wrong_input_and_parameter_lengths_are_errors() {
    let (plan, input, params) = small_plan();
    let compiled = compile(&plan).expect("compiles");
    let error = compiled.run(&input[1..], &params).unwrap_err();
    assert!(matches!(error, Error::InputLength { found, expected } if found + 1 == expected as usize), "{error:?}");
    assert_eq!(
        error.to_string(),
        format!("the input has {} elements; the plan expects {}", input.len() - 1, input.len())
    );
    let longer: Vec<f32> = input.iter().copied().chain([1.0]).collect();
    assert!(matches!(compiled.run(&longer, &params), Err(Error::InputLength { .. })));
    assert!(matches!(compiled.run(&[], &params), Err(Error::InputLength { .. })));

    assert!(matches!(compiled.run(&input, &params[1..]), Err(Error::ParamCount { found: 3, expected: 4 })));
    assert!(matches!(compiled.run(&input, NO_PARAMS), Err(Error::ParamCount { .. })));
    for index in 0..params.len() {
        let mut wrong = params.clone();
        wrong[index].pop();
        let error = compiled.run(&input, &wrong).unwrap_err();
        assert!(matches!(&error, Error::ParamLength { index: i, .. } if *i == index), "{error:?}");
        assert!(error.to_string().starts_with(&format!("packed parameter {index} (`")), "{error}");
    }
    let expected = ir_interp::run_plan(&plan, &input, &params).unwrap();
    let mut short = vec![0.0; expected.len() - 1];
    let error = compiled.run_into(&input, &params, &mut short).unwrap_err();
    assert!(matches!(error, Error::OutputLength { found, .. } if found == expected.len() - 1), "{error:?}");

    // Still runs correctly afterwards, again and again from its pooled buffers, and into a
    // caller's buffer.
    for _ in 0..3 {
        assert_eq!(compiled.run(&input, &params).unwrap(), expected);
    }
    let mut output = vec![f32::NAN; expected.len()];
    compiled.run_into(&input, &params, &mut output).unwrap();
    assert_eq!(output, expected);
}

#[test]
fn a_plan_passing_a_buffer_of_the_wrong_length_is_rejected() {
    let (mut plan, _, _) = small_plan();
    plan.values[1] -= 4;
    let error = compile(&plan).unwrap_err();
    assert!(matches!(error, Error::BufferLength { .. }), "{error:?}");

    let (mut plan, _, _) = small_plan();
    plan.steps[1].args.pop();
    assert!(matches!(compile(&plan), Err(Error::ArgumentCount { .. })));

    let (mut plan, _, _) = small_plan();
    plan.steps[1].args[0] = Arg::Value(99);
    let error = compile(&plan).unwrap_err();
    assert!(matches!(error, Error::UnknownArgument { kind: "value", index: 99, .. }), "{error:?}");
}

#[test]
fn an_access_outside_a_buffer_is_rejected_before_any_code_exists() {
    // One element too far on the last iteration.
    let mut function = elementwise(4, 16, Activation::Relu);
    let Stmt::Loop { body, .. } = &mut function.body[0] else { unreachable!("built as a loop") };
    let Stmt::Store { index, .. } = &mut body[0] else { unreachable!("built as a store") };
    *index = index.clone().plus_constant(1);
    let error = compile(&plan_of(function.clone())).unwrap_err();
    assert!(
        matches!(&error, Error::OutOfBounds { buffer, start: 1, end: 17, len: 16, .. } if buffer == "out"),
        "{error:?}"
    );
    assert_eq!(error.to_string(), "function `relu_x4` can access `out[1..17]`, outside its 16 elements");
    assert!(matches!(conv_jit::clif(&function), Err(Error::OutOfBounds { .. })));

    // Negative indices, via a negative coefficient.
    let mut function = elementwise(1, 8, Activation::None);
    let Stmt::Loop { body, .. } = &mut function.body[0] else { unreachable!("built as a loop") };
    let Stmt::Store { value: Value::Activate(_, load), .. } = &mut body[0] else { unreachable!("built as a store") };
    **load = Value::Splat { buffer: BufferId(0), index: Index::var(LoopVar(0), -1).plus_constant(3) };
    assert!(matches!(compile(&plan_of(function)), Err(Error::OutOfBounds { start: -4, end: 4, .. })));
}

#[test]
fn malformed_functions_are_errors() {
    // A loop variable used outside its loop.
    let mut function = elementwise(1, 8, Activation::None);
    function.body.push(Stmt::Store { buffer: BufferId(1), index: Index::var(LoopVar(0), 1), value: Value::Zero });
    assert!(matches!(compile(&plan_of(function)), Err(Error::LoopVariable { var: 0, .. })));

    // An accumulator that does not exist.
    let mut function = elementwise(1, 8, Activation::None);
    function.body.push(Stmt::Init { acc: Acc(0), value: Value::Zero });
    assert!(matches!(compile(&plan_of(function)), Err(Error::UnknownAccumulator { acc: 0, accumulators: 0, .. })));

    // A buffer that does not exist.
    let mut function = elementwise(1, 8, Activation::None);
    function.body.push(Stmt::Store { buffer: BufferId(2), index: Index::constant(0), value: Value::Zero });
    assert!(matches!(compile(&plan_of(function)), Err(Error::UnknownBuffer { buffer: 2, buffers: 2, .. })));

    // Eight lanes (AVX), which Cranelift 0.135 does not generate on x86-64.
    let error = compile(&plan_of(elementwise(8, 16, Activation::Relu))).unwrap_err();
    assert!(matches!(error, Error::Lanes { lanes: 8, .. }), "{error:?}");
}

#[test]
fn a_loop_that_runs_zero_times_is_never_entered() {
    // Its out-of-bounds store is never executed (as in the interpreter), so it is accepted.
    let mut function = elementwise(1, 4, Activation::None);
    function.loop_vars = 2;
    function.body.push(Stmt::Loop {
        var: LoopVar(1),
        count: 0,
        body: vec![Stmt::Store { buffer: BufferId(1), index: Index::constant(100), value: Value::Zero }],
    });
    let plan = plan_of(function);
    let input = [1.0, -2.0, 3.0, -4.0];
    assert_eq!(compile(&plan).unwrap().run(&input, NO_PARAMS).unwrap(), input);
}

#[test]
fn a_step_that_writes_its_input_sees_its_own_writes_and_leaves_the_callers_input_alone() {
    // Step 1 doubles the input in place; step 2 copies it to the output.
    let len = 8;
    let double = Function {
        name: "double".into(),
        lanes: 4,
        buffers: vec![Buffer { name: "x".into(), len, writes: true }],
        body: vec![Stmt::Loop {
            var: LoopVar(0),
            count: 2,
            body: vec![Stmt::Store {
                buffer: BufferId(0),
                index: Index::var(LoopVar(0), 4),
                value: Value::Add(
                    Box::new(Value::Load { buffer: BufferId(0), index: Index::var(LoopVar(0), 4) }),
                    Box::new(Value::Load { buffer: BufferId(0), index: Index::var(LoopVar(0), 4) }),
                ),
            }],
        }],
        accumulators: 0,
        loop_vars: 1,
    };
    let mut plan = plan_of(elementwise(4, len, Activation::None));
    plan.steps.insert(
        0,
        Step { layer: "double".into(), schedules: Vec::new(), function: double, args: vec![Arg::Input], part: None },
    );
    let input: Vec<f32> = (0..8).map(|i| i as f32).collect();
    let output = compile(&plan).unwrap().run(&input, NO_PARAMS).unwrap();
    assert_eq!(output, ir_interp::run_plan(&plan, &input, &[]).unwrap());
    assert_eq!(output, input.iter().map(|x| 2.0 * x).collect::<Vec<_>>());
    assert_eq!(input[3], 3.0);
}

/// A small hand-written function using every construct: nested loops, accumulators initialised
/// from a load and from zero, fused multiply-adds of splats and vectors, an add and activations
/// with and without `exp`.
fn every_construct() -> Function {
    let (i, j) = (LoopVar(0), LoopVar(1));
    Function {
        name: "every_construct".into(),
        lanes: 4,
        buffers: vec![
            Buffer { name: "in".into(), len: 12, writes: false },
            Buffer { name: "out".into(), len: 24, writes: true },
            Buffer { name: "w".into(), len: 8, writes: false },
        ],
        body: vec![Stmt::Loop {
            var: i,
            count: 3,
            body: vec![
                Stmt::Init { acc: Acc(0), value: Value::Load { buffer: BufferId(2), index: Index::constant(4) } },
                Stmt::Init { acc: Acc(1), value: Value::Zero },
                Stmt::Loop {
                    var: j,
                    count: 4,
                    body: vec![
                        Stmt::Fma {
                            acc: Acc(0),
                            a: Value::Splat { buffer: BufferId(0), index: Index::var(i, 4).plus_var(j, 1) },
                            b: Value::Load { buffer: BufferId(2), index: Index::constant(0) },
                        },
                        Stmt::Fma {
                            acc: Acc(1),
                            a: Value::Acc(Acc(0)),
                            b: Value::Load { buffer: BufferId(2), index: Index::constant(4) },
                        },
                    ],
                },
                Stmt::Store {
                    buffer: BufferId(1),
                    index: Index::var(i, 8),
                    value: Value::Activate(Activation::Relu6, Box::new(Value::Acc(Acc(0)))),
                },
                Stmt::Store {
                    buffer: BufferId(1),
                    index: Index::var(i, 8).plus_constant(4),
                    value: Value::Activate(
                        Activation::Sigmoid,
                        Box::new(Value::Add(Box::new(Value::Acc(Acc(0))), Box::new(Value::Acc(Acc(1))))),
                    ),
                },
            ],
        }],
        accumulators: 2,
        loop_vars: 2,
    }
}

#[test]
fn clif_text_is_deterministic_and_snapshotted() {
    let function = every_construct();
    let text = conv_jit::clif(&function).expect("valid");
    assert_eq!(text, conv_jit::clif(&function).unwrap());
    insta::assert_snapshot!("every_construct", format!("{function}\n{text}"));
}

#[test]
fn the_snapshotted_function_runs_like_the_interpreter() {
    let function = every_construct();
    let mut rng = SplitMix64::new(8);
    let mut buffers: Vec<Vec<f32>> =
        function.buffers.iter().map(|buffer| (0..buffer.len).map(|_| rng.symmetric()).collect()).collect();
    let mut plan = plan_of(function.clone());
    plan.params.push(conv_dsl::lower::PackedParam {
        source: "w".into(),
        len: 8,
        packing: conv_dsl::lower::Packing::Bias { channels: 8 },
    });
    plan.steps[0].args.push(Arg::Param(0));
    let output = compile(&plan).unwrap().run(&buffers[0], &[buffers[2].clone()]).unwrap();
    ir_interp::run_function(&function, &mut buffers).unwrap();
    assert_eq!(buffers[1].len(), output.len());
    for (got, want) in output.iter().zip(&buffers[1]) {
        assert!(same(*got, *want), "{got} vs {want}");
    }
}

/// The layout conversions at both ends of a plan move every element to its place: channel counts
/// below, at and above the transpose block of 4 (and not multiples of it), position counts around
/// the conversion's blocks of 64, batch 2, both layouts. `add r(x, x)` makes the output exactly
/// twice the input, in the input's layout, so the expected values are known without an oracle.
#[test]
fn layout_conversions_move_every_element_to_its_place() {
    let mut rng = SplitMix64::new(5);
    for channels_last in [false, true] {
        for channels in 1..=9u64 {
            for spatial in [vec![1], vec![3], vec![4], vec![5], vec![63], vec![64], vec![67], vec![131], vec![3, 22]] {
                // [n, c, *spatial], or [n, *spatial, c] channels-last.
                let (shape, layout) = if channels_last {
                    let layout = if spatial.len() == 1 { " layout nwc" } else { " layout nhwc" };
                    ([&[2][..], &spatial, &[channels]].concat(), layout)
                } else {
                    ([&[2, channels][..], &spatial].concat(), "")
                };
                let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
                let source = format!("input x: [{}]{layout};\nadd r(x, x);\n", dims.join(", "));
                let network = compile_source("conversions.conv", &source).expect("the model checks");
                let binding = bind(&network, &shape).expect("concrete shapes bind");
                let plan = lower::lower(&network, &binding, Target::CRANELIFT_X86_64, &|_| None).expect("lowers");
                let input: Vec<f32> = (0..plan.input_len).map(|_| rng.symmetric()).collect();
                let expected: Vec<f32> = input.iter().map(|x| x + x).collect();
                let interpreted = ir_interp::run_plan(&plan, &input, &[]).expect("the IR is in bounds");
                let jit = compile(&plan).expect("compiles").run(&input, NO_PARAMS).expect("runs");
                assert_eq!(interpreted, expected, "ir_interp: {source}");
                assert_eq!(jit, expected, "jit: {source}");
            }
        }
    }
}

/// A batch-1 model lowered with every stage (and conversion) split into `threads` parts.
fn split_plan(threads: u32) -> (Plan, Plan, Vec<f32>, Vec<Vec<f32>>) {
    let network = compile_source(
        "split.conv",
        "input x: [1, 10, 13, 11];
         conv c(x) { out: 16, kernel: 3, pad: 1, act: silu }
         depthwise d(c) { kernel: 5, pad: 2, act: relu6 }
         add r(d, c) {}
         pointwise p(r) { out: 8 }",
    )
    .expect("the model is valid");
    let binding = bind(&network, &[1, 10, 13, 11]).expect("binds");
    let target = Target { microkernels: true, ..Target::CRANELIFT_X86_64 };
    let whole = lower::lower(&network, &binding, target, &|_| None).expect("lowers");
    let split = Target { threads, part_macs: 0, ..target };
    let plan = lower::lower(&network, &binding, split, &|_| None).expect("lowers");
    let params = ir_interp::pack_params(&plan, &Params::random(&network, 8));
    let mut rng = SplitMix64::new(2);
    let input = (0..plan.input_len).map(|_| rng.symmetric()).collect();
    (whole, plan, input, params)
}

#[test]
fn split_stages_tile_their_output_with_windows_and_run_like_the_whole() {
    for threads in [2, 3] {
        let (whole, plan, input, params) = split_plan(threads);
        // Every step of the whole plan became parts whose windows cover its output: `threads` of
        // them (the output conversion, to channels-first, in runs: one per channel).
        let mut steps = plan.steps.iter().peekable();
        for single in &whole.steps {
            let first =
                steps.peek().and_then(|step| step.part).unwrap_or_else(|| panic!("`{}` is split", single.layer));
            assert_eq!(first.count, threads, "`{}`: parts", single.layer);
            let mut end = 0;
            for index in 0..first.count {
                let step = steps.next().expect("every part is there");
                let part = step.part.expect("a part");
                assert_eq!((part.index, part.count, &step.layer), (index, first.count, &single.layer));
                assert_eq!(part.start, end, "`{}`: windows follow each other", step.layer);
                let len = step.function.buffers[part.window].len;
                assert_eq!(part.runs.map_or(len, |runs| runs.span()), len, "`{}`: runs span the window", step.layer);
                end += part.runs.map_or(len, |runs| runs.len);
            }
            // The output: 13 × 11 pixels of 16 channels (`c`, `d`, `r`) or 8 (`p`), at the start
            // of a buffer that may be longer (shared with another value); or, in runs, the 8
            // channels' 13 × 11 positions.
            let channels = if single.layer.starts_with('p') { 8 } else { 16 };
            if single.layer == "p.to_user" {
                let runs = first.runs.expect("the output conversion is in runs");
                assert_eq!((runs.count, runs.stride, end), (8, 13 * 11, 13 * 11), "`p.to_user`: runs");
            } else {
                assert_eq!(first.runs, None, "`{}`: one window each", single.layer);
                assert_eq!(end, 13 * 11 * channels, "`{}`: the windows cover the output", single.layer);
                assert!(end <= single.function.buffers[1].len, "`{}`: the windows fit the buffer", single.layer);
            }
        }
        assert!(steps.next().is_none());
        let compiled = compile(&plan).expect("compiles");
        let expected = ir_interp::run_plan(&whole, &input, &params).expect("runs");
        assert_eq!(ir_interp::run_plan(&plan, &input, &params).expect("runs"), expected);
        for _ in 0..5 {
            assert_eq!(compiled.run(&input, &params).expect("runs"), expected, "{threads} threads");
        }
    }
}

#[test]
fn split_plans_run_at_once_from_several_threads_and_from_inside_rayon() {
    // A run's helpers (which take its parts between split steps) wait for nothing but their own
    // run's end: runs started from several threads at once, from inside rayon's pool (where a
    // helper may run another run inside it), and on a pool of one thread all finish, and compute
    // what the unsplit plan does.
    for threads in [2, 3] {
        let (whole, plan, input, params) = split_plan(threads);
        let compiled = compile(&plan).expect("compiles");
        let expected = ir_interp::run_plan(&whole, &input, &params).expect("runs");
        std::thread::scope(|scope| {
            for _ in 0..3 {
                scope.spawn(|| {
                    for _ in 0..20 {
                        assert_eq!(compiled.run(&input, &params).expect("runs"), expected);
                    }
                });
            }
            scope.spawn(|| {
                use rayon::prelude::*;
                let outputs: Vec<Vec<f32>> =
                    (0..24).into_par_iter().map(|_| compiled.run(&input, &params).expect("runs")).collect();
                assert!(outputs.iter().all(|output| *output == expected));
            });
        });
        let one = rayon::ThreadPoolBuilder::new().num_threads(1).build().expect("a pool");
        assert_eq!(one.install(|| compiled.run(&input, &params)).expect("runs"), expected, "a pool of one thread");
    }
}

#[test]
fn dense_layers_heavier_in_weights_than_input_split_by_output_channels_in_runs() {
    // 15 positions: `c`'s packed weights (3×3×12×40; too few inputs for Winograd) and `p`'s
    // (40×48) outweigh their inputs and fill the target's L2 (here of 1 KiB), so their parts cut
    // output channels (whole blocks of the tile's channels), one run per position.
    let network = compile_source(
        "heavy.conv",
        "input x: [1, 12, 3, 5];
         conv c(x) { out: 40, kernel: 3, pad: 1, act: relu6 }
         pointwise p(c) { out: 48, act: relu }",
    )
    .expect("the model is valid");
    let binding = bind(&network, &[1, 12, 3, 5]).expect("binds");
    for target in [Target { microkernels: true, ..Target::CRANELIFT_X86_64 }, common_wide()] {
        let target = Target { l2_bytes: 1 << 10, ..target };
        let whole = lower::lower(&network, &binding, target, &|_| None).expect("lowers");
        for threads in [2, 3] {
            let plan = lower::lower(&network, &binding, Target { threads, part_macs: 0, ..target }, &|_| None)
                .expect("lowers");
            for layer in ["c", "p"] {
                let parts: Vec<_> = plan.steps.iter().filter(|step| step.layer == layer).collect();
                assert!(parts.len() > 1, "`{layer}` is split");
                let lanes = u64::from(parts[0].schedules[0].lanes);
                let mut end = 0;
                for step in &parts {
                    let part = step.part.expect("a part");
                    let runs = part.runs.unwrap_or_else(|| panic!("`{layer}` is cut by channels, in runs"));
                    assert_eq!((runs.count, part.start), (15, end), "`{layer}`: one run per position, in order");
                    assert_eq!(part.start % lanes, 0, "`{layer}`: whole vectors");
                    end += runs.len;
                }
                assert_eq!(end, parts[0].part.unwrap().runs.unwrap().stride, "`{layer}`: the runs cover the channels");
            }
            let params = ir_interp::pack_params(&plan, &Params::random(&network, 5));
            let mut rng = SplitMix64::new(9);
            let input: Vec<f32> = (0..plan.input_len).map(|_| rng.symmetric()).collect();
            let expected = ir_interp::run_plan(&whole, &input, &params).expect("runs");
            assert_eq!(ir_interp::run_plan(&plan, &input, &params).expect("runs"), expected, "{threads} parts");
            let compiled = compile(&plan).expect("compiles");
            assert_eq!(compiled.run(&input, &params).expect("runs"), expected, "{threads} parts, JIT");
        }
    }
}

#[test]
fn dense_layers_split_by_channels_only_for_weights_of_4_caches_or_uneven_rows() {
    // `p`'s packed weights (16 × 48, 3 KiB) outweigh its input (3 × 5 positions of 16 channels).
    let network = compile_source(
        "heavy.conv",
        "input x: [1, 12, 3, 5];
         conv c(x) { out: 16, kernel: 3, pad: 1 }
         pointwise p(c) { out: 48, act: relu }",
    )
    .expect("the model is valid");
    let binding = bind(&network, &[1, 12, 3, 5]).expect("binds");
    let target = Target { microkernels: true, part_macs: 0, ..Target::CRANELIFT_X86_64 };
    let by_channels = |threads: u32, l2_bytes: u64| {
        let plan = lower::lower(&network, &binding, Target { threads, l2_bytes, ..target }, &|_| None).expect("lowers");
        let parts: Vec<_> = plan.steps.iter().filter(|step| step.layer == "p").filter_map(|step| step.part).collect();
        assert_eq!(parts.len(), threads as usize, "`p` is split in {threads}");
        parts.iter().all(|part| part.runs.is_some())
    };
    // 3 rows in 3 parts, the weights in each core's cache: by rows.
    assert!(!by_channels(3, 64 << 10), "3 rows, 3 parts, weights that fit: by positions");
    // 3 rows in 2 parts would be uneven; weights many times the cache would be streamed by each
    // part.
    assert!(by_channels(2, 64 << 10), "3 rows, 2 parts: by channels");
    // 3 KiB of weights: more than 4 times a cache of 512 bytes, less than 4 times one of 1 KiB.
    assert!(by_channels(3, 512), "weights many times the cache: by channels");
    assert!(!by_channels(3, 1 << 10), "weights under 4 times the cache: by positions");
}

/// The tile kernels of an AVX-512 host (the heuristic's wide tiles; the test runs them on this
/// host's kernels).
fn common_wide() -> Target {
    Target { microkernels: true, wide_microkernels: true, ..Target::CRANELIFT_X86_64 }
}

#[test]
fn a_timed_run_computes_the_same_and_times_each_step_once() {
    let (whole, plan, input, params) = split_plan(2);
    let compiled = compile(&plan).expect("compiles");
    let expected = compiled.run(&input, &params).expect("runs");
    let mut output = vec![f32::NAN; expected.len()];
    let times = compiled.run_into_timed(&input, &params, &mut output).expect("runs");
    assert_eq!(output, expected);
    // The parts of a split stage run at once: one entry per stage of the unsplit plan, in order.
    let layers: Vec<&str> = times.iter().map(|(layer, _)| layer.as_str()).collect();
    let stages: Vec<&str> = whole.steps.iter().map(|step| step.layer.as_str()).collect();
    assert_eq!(layers, stages);
    assert!(layers.contains(&"p.to_user"), "{layers:?}");
}

#[test]
fn small_stages_are_not_split_by_default() {
    let (whole, _, _, _) = split_plan(2);
    let (network, binding) = (
        compile_source("one.conv", "input x: [1, 10, 13, 11]; conv c(x) { out: 16, kernel: 3, pad: 1 }").unwrap(),
        [1, 10, 13, 11],
    );
    let binding = bind(&network, &binding).unwrap();
    let target = Target { threads: 2, ..Target::CRANELIFT_X86_64 };
    let plan = lower::lower(&network, &binding, target, &|_| None).expect("lowers");
    assert!(plan.steps.iter().all(|step| step.part.is_none()), "190k MACs stay one step");
    assert!(whole.steps.iter().all(|step| step.part.is_none()));
}

#[test]
fn parts_that_could_race_are_rejected_before_any_code_exists() {
    let (_, plan, _, _) = split_plan(2);
    let conv = plan.steps.iter().position(|step| step.layer == "c").expect("a step of `c`");
    let expect_part_error = |plan: &Plan, what: &str| match compile(plan) {
        Err(Error::Part { step, reason }) => assert_eq!(step, "c", "{what}: {reason}"),
        other => panic!("{what}: {other:?}"),
    };
    // Overlapping windows.
    let mut overlapping = plan.clone();
    overlapping.steps[conv + 1].part.as_mut().unwrap().start -= 1;
    expect_part_error(&overlapping, "overlapping windows");
    // Both parts writing one scratch buffer (`c`'s tile sums go through one: the kernels do not
    // apply its `silu`).
    let mut shared = plan.clone();
    let scratch = *shared.steps[conv].args.last().unwrap();
    *shared.steps[conv + 1].args.last_mut().unwrap() = scratch;
    // (Part 0's scratch may be a buffer shared with a longer value: part 1 declares its length.)
    let len = shared.steps[conv].function.buffers.last().unwrap().len;
    shared.steps[conv + 1].function.buffers.last_mut().unwrap().len = len;
    expect_part_error(&shared, "a shared scratch buffer");
    // A group cut short.
    let mut short = plan.clone();
    short.steps.remove(conv + 1);
    expect_part_error(&short, "a missing part");
    // A window past the end of its buffer.
    let mut past = plan.clone();
    past.steps[conv + 1].part.as_mut().unwrap().start += 1;
    assert!(matches!(compile(&past), Err(Error::BufferLength { .. })), "a window past the end");

    // The output conversion's windows in runs (one per channel, 143 positions apart; 72
    // positions in part 0's, 71 in part 1's).
    let to_user = plan.steps.iter().position(|step| step.layer == "p.to_user").expect("a step of `p.to_user`");
    fn runs(plan: &mut Plan, step: usize) -> &mut Runs {
        plan.steps[step].part.as_mut().unwrap().runs.as_mut().unwrap()
    }
    let expect_runs_error = |plan: &Plan, what: &str, why: &str| match compile(plan) {
        Err(Error::Part { step, reason }) => assert!(step == "p.to_user" && reason.contains(why), "{what}: {reason}"),
        other => panic!("{what}: {other:?}"),
    };
    // Runs of part 1 that start inside part 0's.
    let mut overlapping = plan.clone();
    overlapping.steps[to_user + 1].part.as_mut().unwrap().start -= 1;
    runs(&mut overlapping, to_user + 1).len += 1;
    overlapping.steps[to_user + 1].function.buffers[1].len += 1;
    expect_runs_error(&overlapping, "overlapping runs", "inside the previous one");
    // Runs that do not span the declared window.
    let mut short = plan.clone();
    runs(&mut short, to_user).count -= 1;
    expect_runs_error(&short, "runs shorter than the window", "do not fit its window");
    // Code that writes outside its runs (part 0 writes 72 positions per channel, not 32).
    let mut outside = plan.clone();
    runs(&mut outside, to_user).len = 32;
    match compile(&outside) {
        Err(Error::OutsideRuns { function, start, end, len, stride, .. }) => {
            assert_eq!((function.as_str(), len, stride), ("to_user.part0", 32, 143));
            assert!(start >= 0 && end > 32, "elements {start}..{end}");
        }
        other => panic!("code writing outside its runs: {other:?}"),
    }
}

#[test]
fn a_plane_kernel_writing_an_output_at_any_offset_within_a_line_runs_like_the_interpreter() {
    // The value between the two plane kernels follows the output's offset within its line from
    // run to run (moved, and zeroed, whenever the offset changes); split, the parts run at any
    // offset too.
    let network = compile_source(
        "pair.conv",
        "input x: [1, 8, 20, 48];
         depthwise d(x) { kernel: 5, pad: 2, act: relu }
         pointwise p(d) { out: 32, act: relu6 }",
    )
    .expect("the model is valid");
    let binding = bind(&network, &[1, 8, 20, 48]).expect("binds");
    let target = Target { microkernels: true, ..Target::CRANELIFT_X86_64 };
    for threads in [1, 2] {
        let plan =
            lower::lower(&network, &binding, Target { threads, part_macs: 0, ..target }, &|_| None).expect("lowers");
        // Split, the pointwise stage's parts write windows of the output: then nothing follows.
        let follows = conv_dsl::follow::follow_output(&plan).contains(&true);
        assert_eq!(follows, threads == 1, "{threads} threads: whether a value follows the output");
        let params = ir_interp::pack_params(&plan, &Params::random(&network, 3));
        let mut rng = SplitMix64::new(12);
        let input: Vec<f32> = (0..plan.input_len).map(|_| rng.symmetric()).collect();
        let expected = ir_interp::run_plan(&plan, &input, &params).expect("runs");
        let compiled = compile(&plan).expect("compiles");
        let len = expected.len();
        let mut memory = vec![f32::NAN; len + 32];
        let line = (16 - memory.as_ptr() as usize % 64 / 4) % 16;
        for offset in [0, 5, 5, 1, 15, 0, 8, 3] {
            let output = &mut memory[line + offset..line + offset + len];
            compiled.run_into(&input, &params, output).expect("runs");
            assert!(
                output.iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits()),
                "{threads} threads, {offset}"
            );
        }
    }
}

#[test]
fn pointwise_strips_fetch_the_next_panel_where_the_weights_fill_the_cache_and_sum_the_same() {
    // 4 rows of 40 pixels: strips of many tiles, in several groups (the second group fetches).
    let network = compile_source(
        "panels.conv",
        "input x: [1, 16, 4, 40];
         depthwise d(x) { kernel: 3, pad: 1 }
         pointwise p(d) { out: 64, act: relu }",
    )
    .expect("the model is valid");
    let binding = bind(&network, &[1, 16, 4, 40]).expect("binds");
    let target = Target { microkernels: true, ..Target::CRANELIFT_X86_64 };
    let plan_for =
        |l2_bytes| lower::lower(&network, &binding, Target { l2_bytes, ..target }, &|_| None).expect("lowers");
    // The weights (16 · 64 + 64 + 9 · 16 + 16 elements, ~5 KiB) fill an L2 of 4 KiB, not one of 1 MiB.
    let (fetching, resident) = (plan_for(4 << 10), plan_for(1 << 20));
    // (a strip of pixels, which reads one panel; fetches the next) of each tile of `layer`.
    let marked = |plan: &Plan, layer: &str| -> Vec<(bool, bool)> {
        let mut tiles = Vec::new();
        for step in plan.steps.iter().filter(|step| step.layer == layer) {
            step.function.visit(&mut |stmt, _| {
                if let Stmt::Tile(tile) = stmt {
                    tiles.push((tile.repeat_weight_stride == 0, tile.prefetch));
                }
            });
        }
        tiles
    };
    let strips = marked(&fetching, "p");
    assert!(strips.contains(&(true, true)), "{strips:?}");
    assert!(strips.iter().all(|&(pixels, on)| pixels == on), "the strips of pixels, and they alone: {strips:?}");
    assert!(marked(&fetching, "d").iter().all(|&(_, on)| !on), "depthwise strips never fetch");
    assert!(marked(&resident, "p").iter().all(|&(_, on)| !on), "weights that fit: no strip fetches");
    // A hint: the same sums, bit for bit, as the interpreter's.
    let params = ir_interp::pack_params(&fetching, &Params::random(&network, 3));
    let mut rng = SplitMix64::new(4);
    let input: Vec<f32> = (0..fetching.input_len).map(|_| rng.symmetric()).collect();
    let expected = ir_interp::run_plan(&fetching, &input, &params).expect("runs");
    for plan in [&fetching, &resident] {
        let output = compile(plan).expect("compiles").run(&input, &params).expect("runs");
        assert!(output.iter().zip(&expected).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}
