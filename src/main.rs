//! The `convgen` command line: check, run, make parameters for and inspect conv models.
//!
//! Exit codes: 0 success, 1 a problem with the model, a file or a tensor (one line naming it, or the
//! model's diagnostics), 2 a usage error.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

mod bench;

use clap::{Parser, Subcommand, ValueEnum};
use convgen::conv_dsl::random::SplitMix64;
use convgen::conv_dsl::schedule::Schedule;
use convgen::conv_dsl::{self, dim::fmt_shape};
use convgen::{CompiledModel, Dim, Error, Network, Params, Tensor};

#[derive(Parser)]
#[command(
    name = "convgen",
    version,
    about = "A convolution-kernel compiler for grouped, depthwise and separable convolutions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a model: print every problem, or the per-layer cost table.
    Check {
        /// The model (`.conv` DSL text).
        model: PathBuf,
    },
    /// Run a model on an input tensor.
    Run {
        /// The model.
        model: PathBuf,
        /// The input: a float32 `.npy` array in C order, shaped as the model's `input`.
        #[arg(long)]
        input: PathBuf,
        /// The parameters: a `.safetensors` file with PyTorch names and layouts.
        #[arg(long)]
        params: PathBuf,
        /// Where to write the output `.npy` (written only on success).
        #[arg(long)]
        output: PathBuf,
        /// Which backend runs the model.
        #[arg(long, value_enum, default_value_t = Backend::Jit)]
        backend: Backend,
        #[command(flatten)]
        compiling: Compiling,
    },
    /// Write deterministic random parameters (PyTorch's default Kaiming-uniform initialisation).
    Params {
        /// The model.
        model: PathBuf,
        /// The random seed.
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Where to write the `.safetensors` file.
        #[arg(long)]
        output: PathBuf,
    },
    /// Show a stage of the compilation.
    Inspect {
        /// The model.
        model: PathBuf,
        /// Which stage to show.
        #[arg(long, value_enum)]
        emit: Emit,
        /// Show only this layer.
        #[arg(long)]
        layer: Option<String>,
        /// The input shape to compile for (`ir`), for a model with symbolic dims, e.g. `1,16,32,32`.
        #[arg(long, value_delimiter = ',')]
        shape: Option<Vec<u64>>,
        #[command(flatten)]
        compiling: Compiling,
    },
    /// Explain each layer: its kind, channel groups, parameters, MACs and saving; or draw it.
    Explain {
        /// The model.
        model: PathBuf,
        /// Explain (or draw) only this layer.
        #[arg(long)]
        layer: Option<String>,
        /// Write a diagram of one layer (`--layer NAME`, unless the model has one layer) to this SVG file.
        #[arg(long, conflicts_with = "html")]
        svg: Option<PathBuf>,
        /// Write a self-contained page with every layer's diagram, an animation and a MACs chart.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Measure JIT compile time (whole model and per layer), cache-hit time and run time.
    Bench {
        /// The model.
        model: PathBuf,
        /// Timed runs per measurement.
        #[arg(long, default_value_t = 50)]
        runs: usize,
        /// The input shape, for a model with symbolic dims, e.g. `1,16,32,32`.
        #[arg(long, value_delimiter = ',')]
        shape: Option<Vec<u64>>,
        /// Also time the reference interpreter (slow).
        #[arg(long)]
        reference: bool,
        /// Print one JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        compiling: Compiling,
        /// Also time each step of the generated code: every layer, and the layout conversions at
        /// the model's ends.
        #[arg(long)]
        steps: bool,
        /// Also run the model compiled with these flags instead (`--no-fusion`, `--threads N`,
        /// `--schedule …`, separated by spaces), alternately with the model in one process, and
        /// report the median of the per-pair time ratios: on a noisy machine a steadier
        /// comparison than two separate runs.
        #[arg(long, value_name = "FLAGS", value_parser = parse_against, allow_hyphen_values = true)]
        against: Option<Against>,
    },
    /// Check a model, make random parameters and a random input, run it and print a checksum.
    Demo {
        /// The model.
        model: PathBuf,
        /// The random seed (parameters use it, the input uses seed + 1).
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// The input shape, for a model with symbolic dims, e.g. `1,16,32,32`.
        #[arg(long, value_delimiter = ',')]
        shape: Option<Vec<u64>>,
        #[command(flatten)]
        compiling: Compiling,
    },
}

/// How the JIT compiles a model: `--schedule`, `--threads`, `--no-fusion`.
#[derive(clap::Args, Clone, Debug)]
struct Compiling {
    /// An explicit schedule for a convolution stage, `LAYER:lanes=L,tile=WxC[,kernel=tile|planar|winograd]
    /// [,order=channels]` or `LAYER:kernel=plane` (repeatable).
    #[arg(long = "schedule", value_name = "LAYER:lanes=L,tile=WxC")]
    schedules: Vec<ScheduleArg>,
    /// Threads to run on: each convolution stage with enough work is split into this many
    /// parts, run at the same time.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    threads: u32,
    /// Compute every layer on its own: no depthwise layer computed inside the pointwise layer
    /// that reads it (on blocks of rows, which the compiler does by default).
    #[arg(long)]
    no_fusion: bool,
}

/// `bench --against FLAGS`: the flags as given and what they say.
#[derive(Clone, Debug)]
struct Against {
    flags: String,
    compiling: Compiling,
}

/// Reads `--against`'s flags as the compile options of a command line.
fn parse_against(flags: &str) -> Result<Against, String> {
    #[derive(Parser)]
    #[command(name = "--against", no_binary_name = true, disable_help_flag = true)]
    struct Flags {
        #[command(flatten)]
        compiling: Compiling,
    }
    let flags = flags.trim();
    let parsed = Flags::try_parse_from(flags.split_whitespace()).map_err(|error| {
        let message = error.render().to_string();
        let first = message.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string();
        format!("`{flags}` is not a set of compile flags (`--no-fusion`, `--threads N`, `--schedule …`): {first}")
    })?;
    Ok(Against { flags: flags.to_string(), compiling: parsed.compiling })
}

/// `--schedule LAYER:lanes=L,tile=WxC`: an explicit schedule for one convolution stage.
#[derive(Clone, Debug)]
struct ScheduleArg {
    layer: String,
    schedule: Schedule,
}

impl std::str::FromStr for ScheduleArg {
    type Err = String;

    fn from_str(text: &str) -> Result<ScheduleArg, String> {
        let (layer, schedule) = text
            .split_once(':')
            .ok_or_else(|| format!("expected `LAYER:lanes=L,tile=WxC`, e.g. `dw1:lanes=4,tile=4x1`; got `{text}`"))?;
        Ok(ScheduleArg { layer: layer.trim().to_string(), schedule: schedule.parse()? })
    }
}

/// The model on `backend`, compiled as `compiling` says.
fn compiled_model(network: Network, backend: convgen::Backend, compiling: &Compiling) -> Result<CompiledModel, Error> {
    let model = CompiledModel::new(network, backend).with_threads(compiling.threads).with_fusion(!compiling.no_fusion);
    compiling.schedules.iter().try_fold(model, |model, arg| model.with_schedule(&arg.layer, arg.schedule))
}

#[derive(Clone, Copy, ValueEnum)]
enum Backend {
    /// Machine code compiled by Cranelift for the input's exact shape.
    Jit,
    /// The reference interpreter (the oracle; slow).
    Interp,
}

impl From<Backend> for convgen::Backend {
    fn from(backend: Backend) -> Self {
        match backend {
            Backend::Jit => convgen::Backend::Jit,
            Backend::Interp => convgen::Backend::Interpreter,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Emit {
    /// The parsed program, with the position of every name and key.
    Ast,
    /// The checked network in canonical form.
    Spec,
    /// The loop IR of every step, lowered for Cranelift on x86-64 (4 lanes).
    Ir,
    /// Cranelift IR of every step, before optimisation (x86-64).
    Clif,
    /// The machine code Cranelift generates on this host (Cranelift's disassembly listing).
    Asm,
    /// The Rust module the `conv!` macro expands the model to, formatted (concrete shapes only).
    Rust,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match execute(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Model(conv_dsl::Error::Model { rendered, .. })) => {
            eprint!("{rendered}");
            ExitCode::FAILURE
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn execute(command: Command) -> Result<(), Error> {
    match command {
        Command::Check { model } => check(&model),
        Command::Run { model, input, params, output, backend, compiling } => {
            let network = convgen::load_model(&model)?;
            let input = convgen::read_npy(&input)?;
            let params = convgen::read_safetensors(&params)?;
            let compiled = compiled_model(network, backend.into(), &compiling)?;
            // Shape errors first (they name the input), then the parameters.
            let binding = convgen::bind(compiled.network(), &input.shape_u64())?;
            let packed = compiled.pack(&params)?;
            let network = compiled.network();
            let output_shape: Vec<usize> = network
                .input
                .layout
                .order(&binding.layers[network.output].shape)
                .iter()
                .map(|&dim| dim as usize)
                .collect();
            let mut result = Tensor::zeros(output_shape.clone());
            compiled.run((input.shape(), input.data()), &packed, (&output_shape, result.data_mut()))?;
            convgen::write_npy(&output, &result)
        }
        Command::Params { model, seed, output } => {
            let network = convgen::load_model(&model)?;
            convgen::write_safetensors(&output, &Params::random(&network, seed))
        }
        Command::Inspect { model, emit, layer, shape, compiling } => {
            inspect(&model, emit, layer.as_deref(), shape, &compiling)
        }
        Command::Explain { model, layer, svg, html } => explain(&model, layer.as_deref(), svg, html),
        Command::Demo { model, seed, shape, compiling } => demo(&model, seed, shape, &compiling),
        Command::Bench { model: path, runs, shape, reference, json, compiling, steps, against } => {
            let network = convgen::load_model(&path)?;
            let shape = concrete_shape(&path, &network, shape)?;
            let make = |backend| compiled_model(network.clone(), backend, &compiling);
            let threads = compiling.threads;
            let against = match &against {
                Some(against) => {
                    let baseline = compiled_model(network.clone(), convgen::Backend::Jit, &against.compiling)?;
                    Some((against.flags.as_str(), baseline))
                }
                None => None,
            };
            bench::bench(
                &path,
                &network,
                &make,
                &shape,
                &bench::Options { runs, reference, json, threads, steps, against },
                &out,
            )
        }
    }
}

/// Writes to standard output; a closed pipe (`convgen … | head`) ends the program quietly.
fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(error) = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        if error.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("error: cannot write to standard output: {error}");
        std::process::exit(1);
    }
}

fn check(model: &Path) -> Result<(), Error> {
    let network = convgen::load_model(model)?;
    out(&(format!("{}: ok — {}", model.display(), summary(&network)) + "\n"));
    out("\n");
    out(&convgen::cost_report(&network).to_string());
    Ok(())
}

/// `sum 12.345678, mean |y| 0.123456`.
fn checksum(data: &[f32]) -> String {
    let sum: f64 = data.iter().map(|&value| f64::from(value)).sum();
    let mean_abs: f64 = data.iter().map(|&value| f64::from(value).abs()).sum::<f64>() / data.len().max(1) as f64;
    format!("checksum sum {sum:.6}, mean |y| {mean_abs:.6}")
}

/// `conv2d, input x [1, 3, 224, 224] nchw -> output pw13 [1, 1024, 7, 7], 27 layers`.
fn summary(network: &Network) -> String {
    let rank = network.input.shape.len();
    format!(
        "conv{}d, input {} {} {} -> output {} {}, {} layer{}",
        rank - 2,
        network.input.name,
        fmt_shape(&network.input_shape_in_layout()),
        network.input.layout.name(rank),
        network.layers[network.output].name,
        fmt_shape(&network.output_shape_in_layout()),
        network.layers.len(),
        if network.layers.len() == 1 { "" } else { "s" }
    )
}

fn inspect(
    model: &Path,
    emit: Emit,
    layer: Option<&str>,
    shape: Option<Vec<u64>>,
    compiling: &Compiling,
) -> Result<(), Error> {
    match emit {
        Emit::Ast => {
            let text = convgen::io::read_model_text(model)?;
            let program = conv_dsl::parse_source(&model.display().to_string(), &text)?;
            match layer {
                None => out(&program.to_string()),
                Some(name) => {
                    let statements: Vec<_> =
                        program.statements.iter().filter(|statement| statement.name().name == name).collect();
                    if statements.is_empty() {
                        let names: Vec<&str> =
                            program.statements.iter().map(|statement| statement.name().name.as_str()).collect();
                        return Err(Error::File {
                            path: model.into(),
                            message: format!(
                                "has no statement named `{name}`; its statements name {}",
                                names.join(", ")
                            ),
                        });
                    }
                    statements.iter().for_each(|statement| out(&statement.to_string()));
                }
            }
        }
        Emit::Spec => {
            let network = convgen::load_model(model)?;
            match layer {
                None => out(&network.to_string()),
                Some(name) => {
                    let Some(index) = network.layers.iter().position(|candidate| candidate.name == name) else {
                        let names: Vec<&str> = network.layers.iter().map(|layer| layer.name.as_str()).collect();
                        return Err(no_such_layer(model, name, &names));
                    };
                    out(&network.layer_text(index));
                }
            }
        }
        Emit::Rust => {
            let default = compiling.schedules.is_empty() && compiling.threads == 1 && !compiling.no_fusion;
            if layer.is_some() || shape.is_some() || !default {
                return Err(Error::File {
                    path: model.into(),
                    message: "`--emit rust` shows the whole `conv!` module for the model's declared shape, run \
                              on one thread; `--layer`, `--shape`, `--schedule`, `--threads` and `--no-fusion` do not apply to it"
                        .to_string(),
                });
            }
            out(&macro_expansion(model)?);
        }
        Emit::Ir | Emit::Clif | Emit::Asm => {
            let network = convgen::load_model(model)?;
            let shape = concrete_shape(model, &network, shape)?;
            let plan = compiled_model(network.clone(), convgen::Backend::Jit, compiling)?.plan(&shape)?;
            let steps: Vec<_> = plan
                .steps
                .iter()
                .filter(|step| {
                    // A fused step computes the layers its name joins with `+`.
                    let of = |name: &str| {
                        step.layer.split('+').any(|part| part == name || part.starts_with(&format!("{name}.")))
                    };
                    layer.is_none_or(of)
                })
                .collect();
            if steps.is_empty() {
                let names: Vec<&str> = network.layers.iter().map(|layer| layer.name.as_str()).collect();
                return Err(no_such_layer(model, layer.unwrap_or_default(), &names));
            }
            for step in steps {
                let schedule = step.schedules_text().map_or(String::new(), |schedules| format!(" ({schedules})"));
                let part = step.part.map_or(String::new(), |part| format!(", {part}"));
                out(&format!("// step {}{schedule}{part}\n", step.layer));
                let text = match emit {
                    Emit::Clif => conv_jit::clif(&step.function).map_err(|error| Error::Jit(error.to_string()))?,
                    Emit::Asm => {
                        conv_jit::disassembly(&step.function).map_err(|error| Error::Jit(error.to_string()))?
                    }
                    _ => step.function.to_string(),
                };
                out(&text);
            }
        }
    }
    Ok(())
}

/// The module `conv_file!(pub mod NAME = "MODEL")` expands to, formatted with prettyplease; `NAME`
/// is the file's stem where it is a Rust identifier, else `model`. Symbolic dims are the macro's
/// errors.
fn macro_expansion(model: &Path) -> Result<String, Error> {
    let text = convgen::io::read_model_text(model)?;
    let network = conv_dsl::compile_source_concrete(&model.display().to_string(), &text)?;
    let stem = model.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
    let name = syn::parse_str::<proc_macro2::Ident>(&stem).unwrap_or_else(|_| quote::format_ident!("model"));
    let header = conv_dsl::emit_rust::Header {
        attributes: proc_macro2::TokenStream::new(),
        visibility: quote::quote!(pub),
        name,
        items: proc_macro2::TokenStream::new(),
    };
    let tokens = conv_dsl::emit_rust::module(&header, &network, &text)?;
    // The emitter's output is a module by construction; a failure here is a bug in it, reported
    // as an error rather than a panic.
    let file: syn::File = syn::parse2(tokens).map_err(|error| Error::File {
        path: model.into(),
        message: format!("the generated Rust does not parse (an emitter bug): {error}"),
    })?;
    Ok(prettyplease::unparse(&file))
}

/// The model's declared input shape, or `shape` (required when the model has symbolic dims).
fn concrete_shape(model: &Path, network: &Network, shape: Option<Vec<u64>>) -> Result<Vec<u64>, Error> {
    let declared = network.input_shape_in_layout();
    match shape {
        Some(shape) => Ok(shape),
        None => declared.iter().map(Dim::known).collect::<Option<Vec<u64>>>().ok_or_else(|| Error::File {
            path: model.into(),
            message: format!("has symbolic input dims {}; pass a concrete shape with --shape", fmt_shape(&declared)),
        }),
    }
}

fn no_such_layer(model: &Path, name: &str, names: &[&str]) -> Error {
    Error::File { path: model.into(), message: format!("has no layer `{name}`; its layers are {}", names.join(", ")) }
}

fn explain(model: &Path, layer: Option<&str>, svg: Option<PathBuf>, html: Option<PathBuf>) -> Result<(), Error> {
    let network = convgen::load_model(model)?;
    let mut explanation = convgen::explain::explain(&network);
    if let Some(name) = layer {
        explanation = explanation.only(name).ok_or_else(|| no_such_layer(model, name, &explanation.layer_names()))?;
    }
    if let Some(path) = svg {
        let [layer] = explanation.layers.as_slice() else {
            return Err(Error::File {
                path: model.into(),
                message: format!(
                    "has {} layers and `--svg` draws one: pass `--layer NAME`, one of {}",
                    explanation.layers.len(),
                    explanation.layer_names().join(", ")
                ),
            });
        };
        return convgen::explain::write_svg(&path, layer);
    }
    if let Some(path) = html {
        let title = model.file_name().map_or_else(|| model.display().to_string(), |name| name.to_string_lossy().into());
        return convgen::explain::write_html(&path, &title, &explanation);
    }
    out(&(format!("{}: {}", model.display(), summary(&network)) + "\n"));
    out("\n");
    out(&convgen::explain::text::network(&explanation));
    Ok(())
}

fn demo(model: &Path, seed: u64, shape: Option<Vec<u64>>, compiling: &Compiling) -> Result<(), Error> {
    let network = convgen::load_model(model)?;
    out(&(format!("{}: {}", model.display(), summary(&network)) + "\n"));
    out("\n");
    out(&convgen::cost_report(&network).to_string());
    out("\n");

    let shape = concrete_shape(model, &network, shape)?;
    let binding = convgen::bind(&network, &shape)?;
    let params = Params::random(&network, seed);
    let mut rng = SplitMix64::new(seed.wrapping_add(1));
    let elements: usize = binding.input.iter().product::<u64>() as usize;
    let data: Vec<f32> = (0..elements).map(|_| rng.symmetric()).collect();
    let input = Tensor::new(shape.iter().map(|&dim| dim as usize).collect(), data)?;

    out(&format!(
        "parameters: {} tensors, seed {seed}; input {}: uniform [-1, 1), seed {}\n",
        params.len(),
        fmt_shape(input.shape()),
        seed.wrapping_add(1)
    ));

    // The JIT: compile for this shape, run, run again from the cache.
    let output_shape: Vec<usize> =
        network.input.layout.order(&binding.layers[network.output].shape).iter().map(|&dim| dim as usize).collect();
    let compiled = compiled_model(network.clone(), convgen::Backend::Jit, compiling)?;
    let packed = compiled.pack(&params)?;
    let mut jit_output = Tensor::zeros(output_shape.clone());
    let started = Instant::now();
    compiled.prepare(&shape)?;
    let compile_time = started.elapsed();
    let mut run_times = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        compiled.run((input.shape(), input.data()), &packed, (&output_shape, jit_output.data_mut()))?;
        run_times.push(started.elapsed().as_secs_f64() * 1e3);
    }
    run_times.sort_by(f64::total_cmp);
    out(&format!(
        "jit: compiled in {:.1} ms; runs in {:.2} ms (median of 5); {}\n",
        compile_time.as_secs_f64() * 1e3,
        run_times[run_times.len() / 2],
        checksum(jit_output.data())
    ));

    // The oracle, and how far the JIT is from it.
    let started = Instant::now();
    let reference = convgen::interp::run(&network, &input, &params)?;
    let elapsed = started.elapsed();
    out(&format!(
        "reference interpreter: runs in {:.1} ms; {}\n",
        elapsed.as_secs_f64() * 1e3,
        checksum(reference.data())
    ));
    let worst = jit_output
        .data()
        .iter()
        .zip(reference.data())
        .map(|(&jit, &oracle)| f64::from((jit - oracle).abs()) / (1.0 + f64::from(oracle.abs())))
        .fold(0.0, f64::max);
    out(&format!("output {}: max |jit - reference| / (1 + |reference|) = {worst:.2e}\n", fmt_shape(reference.shape())));
    Ok(())
}
