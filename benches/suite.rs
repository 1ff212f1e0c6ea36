//! The benchmark suite: every model of `benches/suite/` and MobileNetV1 at 224×224, run through
//! convgen's backends, single-threaded (and with `--threads N` the JIT on N threads too): the JIT (`CompiledModel`) and the `conv!` macro (each
//! model expanded with `conv_file!` below, its AVX2 `forward`).
//!
//! ```sh
//! cargo bench --bench suite                 # a table: median, min..max, GFLOP/s
//! cargo bench --bench suite -- --json       # one JSON object per line: {"model","backend","threads","ms","gflops"}
//! cargo bench --bench suite -- dw3 pw_      # only models whose name contains one of these
//! cargo bench --bench suite -- --threads 2  # also the JIT on 2 threads, and its speed-up
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

/// Expands every suite model with `conv_file!` and defines `macro_measure(name)`, which times the
/// model's `forward` (`None` for a name that is not expanded here).
macro_rules! macro_models {
    ($($name:ident = $path:literal),* $(,)?) => {
        $(convgen::conv_file!(mod $name = $path);)*

        fn macro_measure(name: &str) -> Option<Measurement> {
            match name {
                $(stringify!($name) => {
                    let packed = $name::Params::random(0).pack();
                    let mut workspace = $name::Workspace::new();
                    let mut input = $name::new_input();
                    let mut rng = SplitMix64::new(1);
                    input.iter_mut().for_each(|value| *value = rng.symmetric());
                    let mut output = $name::new_output();
                    Some(measure(|| $name::forward(&input, &packed, &mut output, &mut workspace)))
                })*
                _ => None,
            }
        }
    };
}

macro_models! {
    dw1d_k31_c256_l1000 = "benches/suite/dw1d_k31_c256_l1000.conv",
    dw3_d2_c64_56 = "benches/suite/dw3_d2_c64_56.conv",
    dw3_s1_c144_56 = "benches/suite/dw3_s1_c144_56.conv",
    dw3_s1_c32_112 = "benches/suite/dw3_s1_c32_112.conv",
    dw3_s1_c384_14 = "benches/suite/dw3_s1_c384_14.conv",
    dw3_s1_c960_7 = "benches/suite/dw3_s1_c960_7.conv",
    dw3_s2_c96_112 = "benches/suite/dw3_s2_c96_112.conv",
    dw3d_k3_c32_16x56 = "benches/suite/dw3d_k3_c32_16x56.conv",
    dw5_s1_c240_28 = "benches/suite/dw5_s1_c240_28.conv",
    g3_c128_g32_56 = "benches/suite/g3_c128_g32_56.conv",
    g3_c256_g2_28 = "benches/suite/g3_c256_g2_28.conv",
    pw_144to24_56 = "benches/suite/pw_144to24_56.conv",
    pw_32to16_112 = "benches/suite/pw_32to16_112.conv",
    pw_384to64_14 = "benches/suite/pw_384to64_14.conv",
    pw_64to64_56 = "benches/suite/pw_64to64_56.conv",
    pw_960to320_7 = "benches/suite/pw_960to320_7.conv",
    relu6_dw3_c64_56 = "benches/suite/relu6_dw3_c64_56.conv",
    sep_c64_56 = "benches/suite/sep_c64_56.conv",
    std3_64to64_56 = "benches/suite/std3_64to64_56.conv",
    mobilenet_v1 = "examples/models/mobilenet_v1.conv",
}

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
    let threads_at = args.iter().position(|arg| arg == "--threads");
    let threads: u32 = match threads_at.map(|at| args.get(at + 1).map(|value| value.parse::<u32>())) {
        None => 1,
        Some(Some(Ok(threads))) if (1..=64).contains(&threads) => threads,
        Some(_) => {
            eprintln!("--threads takes a number of threads from 1 to 64");
            std::process::exit(2);
        }
    };
    let filters: Vec<&String> = (args.iter().enumerate())
        .filter(|&(at, arg)| !arg.starts_with("--") && threads_at.is_none_or(|flag| at != flag + 1))
        .map(|(_, arg)| arg)
        .collect();
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
        let mut jit = |threads: u32| {
            let model = CompiledModel::new(network.clone(), Backend::Jit).with_threads(threads);
            let params = model.pack(&Params::random(&network, 0)).expect("random parameters fit");
            measure(|| {
                model.run((&input_shape, &input), &params, (&output_shape, &mut output)).expect("suite models run");
            })
        };
        let single = jit(1);
        report(&name, "jit", 1, flops, &single, json);
        if threads > 1 {
            let parallel = jit(threads);
            report(&name, "jit", threads, flops, &parallel, json);
            if !json {
                let speedup = single.median.as_secs_f64() / parallel.median.as_secs_f64();
                println!("{name:<22} {:>8} {speedup:>9.2}x", format!("jit {threads}/1"));
            }
        }
        match macro_measure(&name) {
            Some(measurement) => report(&name, "macro", 1, flops, &measurement, json),
            None => eprintln!("{name}: not expanded with conv_file! in benches/suite.rs; add it to `macro_models!`"),
        }
    }
}

/// Prints one measurement as a table row or a JSON line.
fn report(name: &str, backend: &str, threads: u32, flops: u128, measurement: &Measurement, json: bool) {
    let gflops = flops as f64 / measurement.median.as_secs_f64() / 1e9;
    let ms = |duration: Duration| duration.as_secs_f64() * 1e3;
    if json {
        println!(
            "{{\"model\":\"{name}\",\"backend\":\"{backend}\",\"threads\":{threads},\"ms\":{:.4},\"gflops\":{gflops:.2}}}",
            ms(measurement.median)
        );
    } else {
        let backend = if threads == 1 { backend.to_string() } else { format!("{backend} {threads}t") };
        println!(
            "{name:<22} {backend:>8} {:>10.3} {:>21} {gflops:>9.1}",
            ms(measurement.median),
            format!("{:.3}..{:.3}", ms(measurement.min), ms(measurement.max)),
        );
    }
}
