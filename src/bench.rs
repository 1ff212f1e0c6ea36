//! `convgen bench`: how long a model takes to compile, to find in the cache, and to run.
//!
//! Medians over many runs (the machines are shared and noisy), with min and max; `--json` prints one
//! JSON object per line for scripts.

use std::path::Path;
use std::time::{Duration, Instant};

use convgen::conv_dsl::dim::fmt_shape;
use convgen::conv_dsl::random::SplitMix64;
use convgen::{Backend, CompiledModel, Error, Network, Params, Tensor};

/// What to measure.
pub struct Options<'a> {
    /// Timed runs per measurement.
    pub runs: usize,
    /// Also time the reference interpreter (slow).
    pub reference: bool,
    /// Print JSON lines instead of a table.
    pub json: bool,
    /// Threads the model runs on (`CompiledModel::with_threads`).
    pub threads: u32,
    /// Also time each step of the generated code (`CompiledModel::run_timed`).
    pub steps: bool,
    /// A baseline to run alternately with the model (`--against FLAGS`): the flags, and the
    /// model compiled with them.
    pub against: Option<(&'a str, CompiledModel)>,
}

/// The model against a baseline, run alternately in one process.
struct Versus {
    model: Stats,
    baseline: Stats,
    /// Median over the pairs of (baseline time ÷ model time): above 1, the model is faster.
    ratio: f64,
}

/// Summary of a set of timings.
struct Stats {
    median: Duration,
    min: Duration,
    max: Duration,
}

impl Stats {
    fn of(mut samples: Vec<Duration>) -> Stats {
        samples.sort();
        Stats { median: samples[samples.len() / 2], min: samples[0], max: samples[samples.len() - 1] }
    }
}

/// Runs the benchmark of `network` at input `shape` and prints the results with `out`.
pub fn bench(
    model: &Path,
    network: &Network,
    make: &dyn Fn(Backend) -> Result<CompiledModel, Error>,
    shape: &[u64],
    options: &Options,
    out: &dyn Fn(&str),
) -> Result<(), Error> {
    let runs = options.runs.max(1);
    let name = model.file_stem().map_or("model".to_string(), |stem| stem.to_string_lossy().into_owned());
    let binding = convgen::bind(network, shape)?;
    let report = convgen::cost_report(network);
    let macs: u128 = report.total_macs().unwrap_or(0);
    let params = Params::random(network, 0);
    let mut rng = SplitMix64::new(1);
    let input_shape: Vec<usize> = shape.iter().map(|&dim| dim as usize).collect();
    let input: Vec<f32> = (0..input_shape.iter().product::<usize>()).map(|_| rng.symmetric()).collect();
    let output_shape: Vec<usize> =
        network.input.layout.order(&binding.layers[network.output].shape).iter().map(|&dim| dim as usize).collect();
    let mut output = Tensor::zeros(output_shape.clone());

    // Compile latency: a fresh model per sample, so every sample compiles.
    let mut whole = Vec::new();
    let mut per_layer: Vec<Duration> = Vec::new();
    for _ in 0..runs.min(20) {
        let fresh = make(Backend::Jit)?;
        let started = Instant::now();
        fresh.prepare(shape)?;
        whole.push(started.elapsed());
        // Per layer: the parts of a split stage are one layer.
        let layers = by_layer(fresh.compile_times(shape).unwrap_or_default());
        per_layer.extend(
            layers
                .iter()
                .filter(|(layer, _)| !layer.ends_with(".to_internal") && !layer.ends_with(".to_user"))
                .map(|(_, time)| *time),
        );
    }
    let whole = Stats::of(whole);
    let per_layer = Stats::of(if per_layer.is_empty() { vec![Duration::ZERO] } else { per_layer });

    // A cache hit: the whole `prepare` path (bind the shape, find the code) for a compiled shape.
    let compiled = make(Backend::Jit)?;
    compiled.prepare(shape)?;
    let hits = (0..runs.max(200))
        .map(|_| {
            let started = Instant::now();
            compiled.prepare(shape).map(|()| started.elapsed())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let hit = Stats::of(hits);

    let packed = compiled.pack(&params)?;
    // One timed run of `model`.
    let mut run = |model: &CompiledModel, packed: &convgen::PackedParams| -> Result<Duration, Error> {
        let started = Instant::now();
        model.run((&input_shape, &input), packed, (&output_shape, output.data_mut()))?;
        Ok(started.elapsed())
    };
    // `count` timed runs after a warm-up.
    let mut time_runs = |model: &CompiledModel, packed: &convgen::PackedParams, count: usize| -> Result<Stats, Error> {
        run(model, packed)?;
        Ok(Stats::of((0..count).map(|_| run(model, packed)).collect::<Result<Vec<_>, _>>()?))
    };
    let jit = time_runs(&compiled, &packed, runs)?;
    let reference = if options.reference {
        let interpreter = make(Backend::Interpreter)?;
        let packed = interpreter.pack(&params)?;
        Some(time_runs(&interpreter, &packed, runs.min(3))?)
    } else {
        None
    };
    let versus = match &options.against {
        Some((_, baseline)) => {
            let baseline_packed = baseline.pack(&params)?;
            run(baseline, &baseline_packed)?; // warm-up (compiles)
            let (mut ours, mut theirs, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
            for pair in 0..runs {
                // Alternate which runs first, so that neither always follows the other.
                let (model, base) = if pair % 2 == 0 {
                    let model = run(&compiled, &packed)?;
                    (model, run(baseline, &baseline_packed)?)
                } else {
                    let base = run(baseline, &baseline_packed)?;
                    (run(&compiled, &packed)?, base)
                };
                ratios.push(base.as_secs_f64() / model.as_secs_f64().max(f64::MIN_POSITIVE));
                ours.push(model);
                theirs.push(base);
            }
            ratios.sort_by(f64::total_cmp);
            Some(Versus { model: Stats::of(ours), baseline: Stats::of(theirs), ratio: ratios[ratios.len() / 2] })
        }
        None => None,
    };
    let against = options.against.as_ref().map(|(flags, _)| *flags).unwrap_or_default();

    let steps = match options.steps {
        true => step_times(runs, &mut || {
            compiled.run_timed((&input_shape, &input), &packed, (&output_shape, output.data_mut()))
        })?,
        false => Vec::new(),
    };
    let gflops = |stats: &Stats| 2.0 * macs as f64 / stats.median.as_secs_f64() / 1e9;
    let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
    if options.json {
        let line = |backend: &str, threads: u32, stats: &Stats| {
            format!(
                "{{\"model\":\"{name}\",\"backend\":\"{backend}\",\"threads\":{threads},\"ms\":{:.4},\"min_ms\":{:.4},\"max_ms\":{:.4},\"gflops\":{:.2}}}\n",
                ms(stats.median),
                ms(stats.min),
                ms(stats.max),
                gflops(stats)
            )
        };
        out(&line("jit", options.threads, &jit));
        if let Some(versus) = &versus {
            out(&format!(
                "{{\"model\":\"{name}\",\"against\":\"{}\",\"ms\":{:.4},\"baseline_ms\":{:.4},\"ratio\":{:.4}}}\n",
                against.replace('\\', "\\\\").replace('"', "\\\""),
                ms(versus.model.median),
                ms(versus.baseline.median),
                versus.ratio
            ));
        }
        for (step, stats) in &steps {
            out(&format!(
                "{{\"model\":\"{name}\",\"step\":\"{step}\",\"threads\":{},\"ms\":{:.4},\"min_ms\":{:.4},\"max_ms\":{:.4}}}\n",
                options.threads,
                ms(stats.median),
                ms(stats.min),
                ms(stats.max)
            ));
        }
        if let Some(reference) = &reference {
            out(&line("interp", 1, reference));
        }
        out(&format!(
            "{{\"model\":\"{name}\",\"compile_ms\":{:.3},\"compile_layer_median_ms\":{:.4},\"compile_layer_max_ms\":{:.4},\"cache_hit_us\":{:.3}}}\n",
            ms(whole.median),
            ms(per_layer.median),
            ms(per_layer.max),
            hit.median.as_secs_f64() * 1e6
        ));
        return Ok(());
    }
    out(&format!(
        "{name}: input {}, {:.1} M MACs, {runs} runs per measurement (medians, min..max), {} thread{}\n",
        fmt_shape(shape),
        macs as f64 / 1e6,
        options.threads,
        if options.threads == 1 { "" } else { "s" }
    ));
    out(&format!(
        "  jit compile, whole model:   {:>9.3} ms   ({:.3}..{:.3})\n",
        ms(whole.median),
        ms(whole.min),
        ms(whole.max)
    ));
    out(&format!(
        "  jit compile, per layer:     {:>9.3} ms   ({:.3}..{:.3})\n",
        ms(per_layer.median),
        ms(per_layer.min),
        ms(per_layer.max)
    ));
    out(&format!(
        "  cache hit:                  {:>9.3} µs   ({:.3}..{:.3})\n",
        hit.median.as_secs_f64() * 1e6,
        hit.min.as_secs_f64() * 1e6,
        hit.max.as_secs_f64() * 1e6
    ));
    out(&format!(
        "  jit run:                    {:>9.3} ms   ({:.3}..{:.3})  {:.1} GFLOP/s\n",
        ms(jit.median),
        ms(jit.min),
        ms(jit.max),
        gflops(&jit)
    ));
    if let Some(versus) = &versus {
        out(&format!("  against `{against}`, run alternately ({runs} pairs):\n"));
        for (what, stats) in [("this model", &versus.model), ("baseline (--against)", &versus.baseline)] {
            out(&format!(
                "    {what:<24} {:>9.3} ms   ({:.3}..{:.3})\n",
                ms(stats.median),
                ms(stats.min),
                ms(stats.max)
            ));
        }
        out(&format!(
            "    baseline ÷ this model: {:.3} (median of the pairs' time ratios; above 1: this model is faster)\n",
            versus.ratio
        ));
    }
    if !steps.is_empty() {
        let total: Duration = steps.iter().map(|(_, stats)| stats.median).sum();
        out("  per step (medians; share of their sum):\n");
        for (step, stats) in &steps {
            let share = 100.0 * stats.median.as_secs_f64() / total.as_secs_f64().max(f64::MIN_POSITIVE);
            let speed = match step_macs(&report, step) {
                Some(macs) => format!("  {:.1} GFLOP/s", 2.0 * macs as f64 / stats.median.as_secs_f64() / 1e9),
                None => String::new(),
            };
            out(&format!("    {step:<24} {:>9.3} ms  {share:>5.1}%{speed}\n", ms(stats.median)));
        }
    }
    if let Some(reference) = &reference {
        out(&format!(
            "  reference interpreter run:  {:>9.3} ms   ({:.3}..{:.3})  {:.2} GFLOP/s\n",
            ms(reference.median),
            ms(reference.min),
            ms(reference.max),
            gflops(reference)
        ));
    }
    Ok(())
}

/// The multiply-adds of the step `step` (a layer, a separable layer's stage, or fused stages
/// joined by `+`: `dw+pw`, `s.dw+s.pw`), if the report knows them; none for a conversion or one
/// stage of a separable layer.
fn step_macs(report: &convgen::conv_dsl::cost::CostReport, step: &str) -> Option<u128> {
    let stages: Vec<&str> = step.split('+').collect();
    let mut layers: Vec<&str> = Vec::new();
    for stage in &stages {
        let layer = match stage.split_once('.') {
            _ if report.rows.iter().any(|row| row.name == *stage) => *stage,
            // A separable layer's stages count as the layer when the step computes both.
            Some((layer, _)) if [".dw", ".pw"].iter().all(|suffix| stages.contains(&&*format!("{layer}{suffix}"))) => {
                layer
            }
            _ => return None,
        };
        if !layers.contains(&layer) {
            layers.push(layer);
        }
    }
    layers.iter().try_fold(0, |sum, layer| match report.rows.iter().find(|row| row.name == *layer)?.macs {
        convgen::conv_dsl::cost::Count::Known(macs) => Some(sum + macs),
        convgen::conv_dsl::cost::Count::Symbolic { .. } => None,
    })
}

/// `times` of consecutive steps of one layer (the parts of a split stage, say) summed, in order.
fn by_layer(times: Vec<(String, Duration)>) -> Vec<(String, Duration)> {
    let mut layers: Vec<(String, Duration)> = Vec::new();
    for (layer, time) in times {
        match layers.last_mut() {
            Some((last, total)) if *last == layer => *total += time,
            _ => layers.push((layer, time)),
        }
    }
    layers
}

/// Times `runs` runs step by step (`run` is one timed run) and returns each step's statistics, in
/// order; consecutive steps of one layer (a stage and its epilogue, say) count as one.
fn step_times(
    runs: usize,
    run: &mut dyn FnMut() -> Result<Vec<(String, Duration)>, Error>,
) -> Result<Vec<(String, Stats)>, Error> {
    let first = by_layer(run()?); // warm-up; also fixes the steps
    let mut samples: Vec<Vec<Duration>> = vec![Vec::with_capacity(runs); first.len()];
    for _ in 0..runs {
        for (samples, (_, time)) in samples.iter_mut().zip(by_layer(run()?)) {
            samples.push(time);
        }
    }
    Ok(first.into_iter().zip(samples).map(|((layer, _), samples)| (layer, Stats::of(samples))).collect())
}
