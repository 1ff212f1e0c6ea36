//! The benchmark suite: every model of `benches/suite/` and MobileNetV1 at 224×224, run through
//! convgen's backends, single-threaded.
//!
//! ```sh
//! cargo bench --bench suite                 # a table: median, min..max, GFLOP/s
//! cargo bench --bench suite -- --json       # one JSON object per line: {"model","backend","threads","ms","gflops"}
//! cargo bench --bench suite -- dw3 pw_      # only models whose name contains one of these
//! ```
//!
//! Each measurement warms up, then runs until it has at least 20 runs and 0.5 s (at most 2,000
//! runs), and reports the median (the machines are shared and noisy) with min and max. GFLOP/s
//! counts 2 FLOPs per multiply-accumulate, as the peers' script does (`bench/compare.py` runs both
//! in one go and prints the ratios).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use convgen::conv_dsl::random::SplitMix64;
use convgen::{Backend, CompiledModel, Params};

struct Measurement {
    median: Duration,
    min: Duration,
    max: Duration,
}

fn measure(mut run: impl FnMut()) -> Measurement {
    for _ in 0..3 {
        run();
    }
    let started = Instant::now();
    let mut samples = Vec::new();
    while samples.len() < 20 || (started.elapsed() < Duration::from_millis(500) && samples.len() < 2000) {
        let start = Instant::now();
        run();
        samples.push(start.elapsed());
    }
    samples.sort();
    Measurement { median: samples[samples.len() / 2], min: samples[0], max: samples[samples.len() - 1] }
}

fn models(root: &Path) -> Vec<(String, PathBuf)> {
    let mut models: Vec<(String, PathBuf)> = std::fs::read_dir(root.join("benches/suite"))
        .expect("benches/suite exists")
        .map(|entry| entry.expect("readable directory").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "conv"))
        .map(|path| (path.file_stem().expect("a file name").to_string_lossy().into_owned(), path))
        .collect();
    models.sort();
    models.push(("mobilenet_v1".to_string(), root.join("examples/models/mobilenet_v1.conv")));
    models
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|arg| arg != "--bench").collect();
    let json = args.iter().any(|arg| arg == "--json");
    let filters: Vec<&String> = args.iter().filter(|arg| !arg.starts_with("--")).collect();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !json {
        println!("{:<22} {:>8} {:>10} {:>21} {:>9}", "model", "backend", "median ms", "min..max ms", "GFLOP/s");
    }
    for (name, path) in models(root) {
        if !filters.is_empty() && !filters.iter().any(|filter| name.contains(filter.as_str())) {
            continue;
        }
        let network = match convgen::load_model(&path) {
            Ok(network) => network,
            Err(error) => {
                eprintln!("{name}: {error}");
                std::process::exit(1);
            }
        };
        let shape = network.example_input_shape(1, 1); // the suite's models are concrete
        let flops = 2 * convgen::cost_report(&network).total_macs().unwrap_or(0);
        let binding = convgen::bind(&network, &shape).expect("suite models bind");
        let output_shape: Vec<usize> =
            network.input.layout.order(&binding.layers[network.output].shape).iter().map(|&dim| dim as usize).collect();
        let input_shape: Vec<usize> = shape.iter().map(|&dim| dim as usize).collect();
        let mut rng = SplitMix64::new(1);
        let input: Vec<f32> = (0..input_shape.iter().product::<usize>()).map(|_| rng.symmetric()).collect();
        let mut output = vec![0.0f32; output_shape.iter().product()];
        let model = CompiledModel::new(network.clone(), Backend::Jit);
        let params = model.pack(&Params::random(&network, 0)).expect("random parameters fit");
        let measurement = measure(|| {
            model.run((&input_shape, &input), &params, (&output_shape, &mut output)).expect("suite models run");
        });
        let gflops = flops as f64 / measurement.median.as_secs_f64() / 1e9;
        let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
        if json {
            println!(
                "{{\"model\":\"{name}\",\"backend\":\"jit\",\"threads\":1,\"ms\":{:.4},\"gflops\":{gflops:.2}}}",
                ms(measurement.median)
            );
        } else {
            println!(
                "{name:<22} {:>8} {:>10.3} {:>21} {gflops:>9.1}",
                "jit",
                ms(measurement.median),
                format!("{:.3}..{:.3}", ms(measurement.min), ms(measurement.max)),
            );
        }
    }
}
