//! The differential check shared by the corpus and property tests: a network, lowered with several
//! schedules, compiled by the JIT and run, against the IR interpreter (bit for bit) and the
//! reference interpreter (within a tolerance).
// Each test binary uses part of this module.
#![allow(dead_code)]

use conv_dsl::random::SplitMix64;
use conv_dsl::schedule::{Kernel, Schedule, Target};
use conv_dsl::{Network, Params, Tensor, bind, interp, ir_interp, lower};

/// |jit − reference| ≤ TOLERANCE · (1 + |reference|): f32 accumulation (with FMA) against the
/// reference interpreter's f64 accumulation, for inputs and weights in [−1, 1] and at most a few
/// hundred terms (the bound `conv-dsl`'s lowering tests use for the IR interpreter, which the JIT
/// matches exactly).
pub const TOLERANCE: f32 = 1e-4;

/// A schedule to lower every stage with: a target, and a forced schedule or `None` for the
/// heuristic one — for every stage, or (`stage`) for the one stage of that name.
#[derive(Clone, Debug)]
pub struct Choice {
    pub label: String,
    pub target: Target,
    pub forced: Option<Schedule>,
    pub stage: Option<String>,
}

impl Choice {
    pub fn new(label: &str, target: Target, forced: Option<Schedule>) -> Choice {
        Choice { label: label.to_string(), target, forced, stage: None }
    }

    /// `forced` for the stage `stage` only, the heuristic's schedules for the others.
    pub fn for_stage(label: &str, target: Target, stage: &str, forced: Schedule) -> Choice {
        Choice { label: label.to_string(), target, forced: Some(forced), stage: Some(stage.to_string()) }
    }
}

/// Whether `plan` has a stage whose results are the convolution's only up to rounding
/// ([`Kernel::Winograd`]: its transforms reassociate the sums).
fn reassociates(plan: &lower::Plan) -> bool {
    plan.steps.iter().any(|step| step.schedules.iter().any(|schedule| schedule.kernel == Kernel::Winograd))
}

/// The schedules every corpus model runs with: both heuristics, vector tiles of several shapes,
/// scalar tiles.
pub fn standard_choices() -> Vec<Choice> {
    let vector = |width, channels| Some(Schedule::new(4, width, channels));
    vec![
        Choice::new("auto/cranelift", Target::CRANELIFT_X86_64, None),
        Choice::new("auto/tile kernels", Target { microkernels: true, ..Target::CRANELIFT_X86_64 }, None),
        Choice::new("auto/wide tile kernels", wide_tiles(Target::CRANELIFT_X86_64), None),
        Choice::new("auto/scalar", Target::SCALAR, None),
        Choice::new("auto, 3 parts", Target { microkernels: true, ..split(3) }, None),
        Choice::new("auto, fused", fusing(Target { microkernels: true, ..Target::CRANELIFT_X86_64 }, 64), None),
        Choice::new("auto, fused, 2 parts", fusing(split(2), 64), None),
        Choice::new("1x1 tiles", Target::CRANELIFT_X86_64, vector(1, 1)),
        Choice::new("3x2 tiles", Target::CRANELIFT_X86_64, vector(3, 2)),
        Choice::new("scalar 5x3", Target::CRANELIFT_X86_64, Some(Schedule::new(1, 5, 3))),
    ]
}

/// `target` with the tile kernels of an AVX-512 host (whose tiles the heuristic picks: the tests
/// run them on whichever kernels this host has).
pub fn wide_tiles(target: Target) -> Target {
    Target { microkernels: true, wide_microkernels: true, ..target }
}

/// `target` fusing every depthwise → pointwise pair, however small, in blocks of at most
/// `block_elements` depthwise outputs (so that small images still take several blocks).
pub fn fusing(target: Target, block_elements: u64) -> Target {
    Target { fusion: conv_dsl::schedule::Fusion::every_pair(block_elements), ..target }
}

/// The Cranelift target with every stage split into `threads` parts, however small.
pub fn split(threads: u32) -> Target {
    Target { threads, part_macs: 0, ..Target::CRANELIFT_X86_64 }
}

/// Random values in [−1, 1) for a tensor of `shape`.
pub fn random_input(shape: &[u64], seed: u64) -> Tensor {
    let mut rng = SplitMix64::new(seed);
    let elements: u64 = shape.iter().product();
    Tensor::new(shape.iter().map(|&d| d as usize).collect(), (0..elements).map(|_| rng.symmetric()).collect())
        .expect("the data has the shape's length")
}

/// Runs `network` on a random input of `shape` with every choice of schedule and compares the
/// JIT's outputs with the IR interpreter's (bit for bit) and the reference interpreter's (within
/// [`TOLERANCE`]). Returns a description of the first mismatch.
///
/// A schedule never changes results, bit for bit: each output element accumulates the same
/// products in the same order whatever the tile and vector width (`conv_dsl::schedule`). So the
/// IR interpreter, the slow part, runs once, on the first such choice's plan; on a mismatch it
/// also runs the failing plan, to tell a JIT bug from a schedule that changed results. The
/// exception, a plan with a Winograd stage, is compared with the IR interpreter on its own plan.
pub fn check_network(
    name: &str,
    network: &Network,
    shape: &[u64],
    seed: u64,
    choices: &[Choice],
) -> Result<(), String> {
    let binding = bind(network, shape).map_err(|e| format!("{name}: bind: {e}"))?;
    let input = random_input(shape, seed);
    let params = Params::random(network, seed ^ 0x5eed);
    let expected = interp::run(network, &input, &params).map_err(|e| format!("{name}: reference: {e}"))?;
    let mut exact: Option<Vec<f32>> = None;
    for choice in choices {
        let label = format!("{name}: {}", choice.label);
        let forced = choice.forced;
        let stage = choice.stage.as_deref();
        let schedule_for = |name: &str| forced.filter(|_| stage.is_none_or(|stage| stage == name));
        let plan = match lower::lower(network, &binding, choice.target, &schedule_for) {
            Ok(plan) => plan,
            // A forced vector schedule may not fit a grouping; scalar ones always do.
            Err(conv_dsl::Error::Schedule { .. }) if forced.is_some() && stage.is_none() => {
                let scalar = forced.map(|schedule| Schedule::new(1, schedule.tile_width, schedule.tile_channels));
                lower::lower(network, &binding, choice.target, &|_| scalar)
                    .map_err(|e| format!("{label}: scalar fallback: {e}"))?
            }
            Err(error) => return Err(format!("{label}: lower: {error}")),
        };
        let packed = ir_interp::pack_params(&plan, &params);
        let compiled = conv_jit::compile(&plan).map_err(|e| format!("{label}: compile: {e}"))?;
        let output = compiled.run(input.data(), &packed).map_err(|e| format!("{label}: run: {e}"))?;
        let ir_run =
            || ir_interp::run_plan(&plan, input.data(), &packed).map_err(|e| format!("{label}: ir_interp: {e}"));
        let own_exact;
        let exact = match &exact {
            _ if reassociates(&plan) => {
                own_exact = ir_run()?;
                &own_exact
            }
            Some(exact) => exact,
            None => exact.insert(ir_run()?),
        };
        if output.len() != expected.data().len() || output.len() != exact.len() {
            return Err(format!(
                "{label}: {} outputs, the IR interpreter gives {}, the reference {}",
                output.len(),
                exact.len(),
                expected.data().len()
            ));
        }
        if let Some(i) = (0..output.len()).find(|&i| !same(output[i], exact[i])) {
            let own = ir_run()?;
            return Err(if own.len() == output.len() && output.iter().zip(&own).all(|(&a, &b)| same(a, b)) {
                format!(
                    "{label}: element {i}: {:e}, but {:e} with the first schedule (the IR interpreter agrees: the schedule changed the result)",
                    output[i], exact[i]
                )
            } else {
                let j = (0..output.len().min(own.len())).find(|&j| !same(output[j], own[j])).unwrap_or(i);
                format!("{label}: element {j}: jit {:e} but ir_interp {:e}", output[j], own[j])
            });
        }
        for (i, (&got, &want)) in output.iter().zip(expected.data()).enumerate() {
            if (got - want).abs() > TOLERANCE * (1.0 + want.abs()) {
                return Err(format!("{label}: element {i}: jit {got} but reference {want}"));
            }
        }
    }
    Ok(())
}

/// Bit-for-bit equality of results, up to the sign of a zero and the payload of a NaN.
fn same(a: f32, b: f32) -> bool {
    a == b || (a.is_nan() && b.is_nan())
}
