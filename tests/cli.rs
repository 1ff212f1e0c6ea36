//! The `convgen` command line, run as a real process: exit codes, the words of its messages, the
//! files it writes (and, on failure, does not write), and its behaviour on hostile model text.
//!
//! Exit codes (README, "The command line"): 0 success, 1 a problem with the model, a file or a
//! tensor (one line, or the model's diagnostics), 2 a usage error. Never 101 (a panic), never a
//! signal.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use convgen::conv_dsl::random::SplitMix64;
use convgen::{Network, Params, Tensor};
use npyz::WriterBuilder;

/// What one run of the binary did.
struct Outcome {
    /// The exit code; `None` when a signal ended the process.
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn describe(&self) -> String {
        format!("exit code {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}", self.code, self.stdout, self.stderr)
    }

    /// Exit 0.
    fn assert_success(&self) -> &Self {
        assert_eq!(self.code, Some(0), "expected success; {}", self.describe());
        self
    }

    /// Exit 1 with the failure described in exactly one `error: …` line on stderr that contains
    /// every one of `needles`.
    fn assert_one_line_failure(&self, needles: &[&str]) -> &Self {
        assert_eq!(self.code, Some(1), "expected exit code 1; {}", self.describe());
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "expected exactly one line on stderr; {}", self.describe());
        assert!(lines[0].starts_with("error: "), "the line should start with `error: `; {}", self.describe());
        for needle in needles {
            assert!(lines[0].contains(needle), "the message should contain {needle:?}; {}", self.describe());
        }
        self
    }

    /// Exit 2 (a usage error, reported by clap on stderr).
    fn assert_usage_error(&self) -> &Self {
        assert_eq!(self.code, Some(2), "expected a usage error (exit code 2); {}", self.describe());
        assert!(!self.stderr.trim().is_empty(), "a usage error should say what is wrong; {}", self.describe());
        self
    }
}

/// The longest any one run may take before the test calls it a hang.
const TIME_LIMIT: Duration = Duration::from_secs(120);

/// Runs `convgen ARGS…` in `directory`, with stdout and stderr captured through files (so that a
/// large output cannot block the child) and a time limit (so that a hang fails the test instead of
/// stalling it).
fn convgen<I, S>(directory: &Path, args: I) -> Outcome
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let capture = tempfile::tempdir().expect("a temporary directory for the captured output");
    let stdout_path = capture.path().join("stdout");
    let stderr_path = capture.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_convgen"))
        .args(args)
        .current_dir(directory)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout_path).expect("the stdout capture file"))
        .stderr(File::create(&stderr_path).expect("the stderr capture file"))
        .spawn()
        .expect("the convgen binary starts");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for convgen") {
            break status;
        }
        if started.elapsed() > TIME_LIMIT {
            child.kill().expect("killing a convgen that ran too long");
            child.wait().expect("reaping the killed convgen");
            panic!("convgen ran for more than {TIME_LIMIT:?}: a hang");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let read = |path: &Path| String::from_utf8_lossy(&fs::read(path).expect("the captured output")).into_owned();
    Outcome { code: status.code(), stdout: read(&stdout_path), stderr: read(&stderr_path) }
}

/// A path in the repository.
fn repo(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(relative)
}

/// A small model with every parameter kind (a conv with bias, a separable layer, an add), fast
/// enough for the interpreter in a debug build.
const SMALL_MODEL: &str = "\
input x: [1, 4, 6, 6];
conv c1(x)      { out: 8, kernel: 3, pad: 1, act: relu }
separable s(c1) { out: 8, kernel: 3, pad: same, act: relu6 }
add r(s, c1)    { act: relu }
";

fn write_text(path: &Path, text: &str) {
    fs::write(path, text).expect("writing a test file");
}

/// A deterministic pseudo-random tensor.
fn random_tensor(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = SplitMix64::new(seed);
    let data = (0..shape.iter().product()).map(|_| rng.symmetric()).collect();
    Tensor::new(shape.to_vec(), data).expect("the data length is the shape's product")
}

fn load(path: &Path) -> Network {
    convgen::load_model(path).unwrap_or_else(|error| panic!("{} should load: {error}", path.display()))
}

/// |jit − reference| ≤ JIT_TOLERANCE · (1 + |reference|): the JIT accumulates in f32 with FMA,
/// the reference in f64; inputs and weights are in [−1, 1].
const JIT_TOLERANCE: f32 = 1e-4;

fn assert_close(jit: &Tensor, reference: &Tensor, what: &str) {
    assert_eq!(jit.shape(), reference.shape(), "{what}: shapes differ");
    for (index, (got, want)) in jit.data().iter().zip(reference.data()).enumerate() {
        assert!((got - want).abs() <= JIT_TOLERANCE * (1.0 + want.abs()), "{what}: element {index}: {got} vs {want}");
    }
}

fn assert_bitwise_equal(left: &Tensor, right: &Tensor, what: &str) {
    assert_eq!(left.shape(), right.shape(), "{what}: shapes differ");
    let differing = left.data().iter().zip(right.data()).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
    assert_eq!(differing, 0, "{what}: {differing} of {} values differ", left.data().len());
}

// ---------------------------------------------------------------------------------------------
// check

#[test]
fn check_good_model_prints_the_cost_table() {
    let directory = tempfile::tempdir().unwrap();
    let model = repo("examples/models/block.conv");
    let outcome = convgen(directory.path(), [OsStr::new("check"), model.as_os_str()]);
    outcome.assert_success();
    let stdout = &outcome.stdout;
    assert!(stdout.contains("ok"), "{}", outcome.describe());
    let header = stdout.lines().find(|line| line.starts_with("layer")).expect("a header row starting with `layer`");
    assert!(header.contains("saving"), "the header has a `saving` column: {header}");
    assert!(header.contains("params") && header.contains("MACs"), "the header names params and MACs: {header}");
    for layer in ["dw", "pw"] {
        assert!(
            stdout.lines().any(|line| line.split_whitespace().next() == Some(layer)),
            "a row for layer `{layer}`; {}",
            outcome.describe()
        );
    }
    let total = stdout.lines().find(|line| line.starts_with("total")).expect("a `total` row");
    assert!(total.contains('x'), "the total row shows the overall saving (`4.82x`): {total}");
    // The depthwise 3x3 layer saves 32x over the standard convolution with 32 channels.
    let dw = stdout.lines().find(|line| line.starts_with("dw ")).unwrap();
    assert!(dw.contains("32.00x"), "{dw}");
}

#[test]
fn check_every_bundled_and_corpus_good_model() {
    let directory = tempfile::tempdir().unwrap();
    let mut models: Vec<PathBuf> = Vec::new();
    for folder in ["examples/models", "tests/corpus/good"] {
        for entry in fs::read_dir(repo(folder)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension() == Some(OsStr::new("conv")) {
                models.push(path);
            }
        }
    }
    models.sort();
    assert!(models.len() >= 10, "the bundled models and the good corpus: {models:?}");
    for model in models {
        let outcome = convgen(directory.path(), [OsStr::new("check"), model.as_os_str()]);
        assert_eq!(outcome.code, Some(0), "{}: {}", model.display(), outcome.describe());
        assert!(outcome.stdout.contains("saving"), "{}: {}", model.display(), outcome.describe());
        assert!(
            outcome.stdout.lines().any(|line| line.starts_with("total")),
            "{}: {}",
            model.display(),
            outcome.describe()
        );
        // Every layer of the network has a row.
        for layer in &load(&model).layers {
            assert!(
                outcome.stdout.lines().any(|line| line.split_whitespace().next() == Some(layer.name.as_str())),
                "{}: no row for `{}`; {}",
                model.display(),
                layer.name,
                outcome.describe()
            );
        }
    }
}

#[test]
fn check_bad_model_reports_every_error_with_its_location() {
    let directory = tempfile::tempdir().unwrap();
    write_text(
        &directory.path().join("bad.conv"),
        "input x: [1, 32, 8, 8];\nconv c1(x) { out: 64, kernel: 3, groups: 3 }\npointwise p(y) { out: 8 }\n",
    );
    let outcome = convgen(directory.path(), ["check", "bad.conv"]);
    assert_eq!(outcome.code, Some(1), "{}", outcome.describe());
    let errors: Vec<&str> = outcome.stderr.lines().filter(|line| line.starts_with("error:")).collect();
    assert_eq!(errors.len(), 2, "both problems, in one pass; {}", outcome.describe());
    assert!(errors[0].contains("`groups: 3`") && errors[0].contains("32"), "{}", outcome.describe());
    assert!(errors[1].contains("unknown name `y`"), "{}", outcome.describe());
    // The narrowest token: the `3` of `groups: 3`, and the `y`.
    assert!(outcome.stderr.contains(" --> bad.conv:2:42"), "{}", outcome.describe());
    assert!(outcome.stderr.contains(" --> bad.conv:3:13"), "{}", outcome.describe());
    assert!(!outcome.stdout.contains("total"), "no cost table for a bad model; {}", outcome.describe());
}

#[test]
fn check_every_corpus_bad_model_fails_with_located_errors() {
    let directory = tempfile::tempdir().unwrap();
    let mut models: Vec<PathBuf> = fs::read_dir(repo("tests/corpus/bad"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension() == Some(OsStr::new("conv")))
        .collect();
    models.sort();
    assert!(models.len() >= 10, "the bad corpus: {models:?}");
    for model in models {
        let outcome = convgen(directory.path(), [OsStr::new("check"), model.as_os_str()]);
        assert_eq!(outcome.code, Some(1), "{}: {}", model.display(), outcome.describe());
        assert!(
            outcome.stderr.lines().any(|line| line.starts_with("error: ")),
            "{}: {}",
            model.display(),
            outcome.describe()
        );
        // ` --> PATH:LINE:COL`, with the path as given on the command line.
        let prefix = format!(" --> {}:", model.display());
        let arrow = outcome.stderr.lines().find(|line| line.starts_with(&prefix));
        let arrow =
            arrow.unwrap_or_else(|| panic!("{}: no `{prefix}LINE:COL`; {}", model.display(), outcome.describe()));
        let position: Vec<&str> = arrow[prefix.len()..].split(':').collect();
        assert!(
            position.len() == 2 && position.iter().all(|part| part.parse::<usize>().is_ok_and(|number| number >= 1)),
            "{}: `{arrow}` should end in LINE:COL",
            model.display()
        );
    }
}

// ---------------------------------------------------------------------------------------------
// params and run

#[test]
fn params_then_run_matches_the_interpreter_in_process() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    let model = repo("examples/models/block.conv");
    convgen(
        dir,
        [
            OsStr::new("params"),
            model.as_os_str(),
            OsStr::new("--seed"),
            OsStr::new("7"),
            OsStr::new("--output"),
            OsStr::new("p.safetensors"),
        ],
    )
    .assert_success();

    let network = load(&model);
    let params = convgen::read_safetensors(&dir.join("p.safetensors")).unwrap();
    assert_eq!(params, Params::random(&network, 7), "the file holds `Params::random(network, 7)`");

    let input = random_tensor(&[1, 32, 56, 56], 99);
    convgen::write_npy(&dir.join("x.npy"), &input).unwrap();
    let expected = convgen::interp::run(&network, &input, &params).unwrap();
    assert_eq!(expected.shape(), &[1, 64, 56, 56]);

    let run = |output: &str, backend: Option<&str>| {
        let mut args: Vec<&OsStr> = vec![
            OsStr::new("run"),
            model.as_os_str(),
            OsStr::new("--input"),
            OsStr::new("x.npy"),
            OsStr::new("--params"),
            OsStr::new("p.safetensors"),
            OsStr::new("--output"),
            OsStr::new(output),
        ];
        if let Some(backend) = backend {
            args.extend([OsStr::new("--backend"), OsStr::new(backend)]);
        }
        convgen(dir, args).assert_success();
        convgen::read_npy(&dir.join(output)).unwrap()
    };
    assert_bitwise_equal(&run("y_interp.npy", Some("interp")), &expected, "--backend interp");
    let jit = run("y_jit.npy", Some("jit"));
    assert_close(&jit, &expected, "--backend jit");
    // The default backend is the JIT, and the JIT is deterministic.
    run("y_default.npy", None);
    assert_eq!(fs::read(dir.join("y_jit.npy")).unwrap(), fs::read(dir.join("y_default.npy")).unwrap());
}

#[test]
fn params_seed_is_deterministic_and_has_the_model_parameters() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    write_text(&dir.join("small.conv"), SMALL_MODEL);
    for (seed, output) in [("3", "a.safetensors"), ("3", "b.safetensors"), ("4", "c.safetensors")] {
        convgen(dir, ["params", "small.conv", "--seed", seed, "--output", output]).assert_success();
    }
    let bytes = |name: &str| fs::read(dir.join(name)).unwrap();
    assert_eq!(bytes("a.safetensors"), bytes("b.safetensors"), "the same seed gives the same bytes");
    assert_ne!(bytes("a.safetensors"), bytes("c.safetensors"), "another seed gives other values");

    let network = load(&dir.join("small.conv"));
    let expected: Vec<(String, Vec<usize>)> = {
        let mut expected: Vec<(String, Vec<usize>)> = network
            .parameters()
            .into_iter()
            .map(|param| (param.name, param.shape.iter().map(|&dim| dim as usize).collect()))
            .collect();
        expected.sort();
        expected
    };
    assert_eq!(
        expected.iter().map(|(name, _)| name.as_str()).collect::<Vec<_>>(),
        ["c1.bias", "c1.weight", "s.dw.bias", "s.dw.weight", "s.pw.bias", "s.pw.weight"]
    );
    for file in ["a.safetensors", "c.safetensors"] {
        let params = convgen::read_safetensors(&dir.join(file)).unwrap();
        let found: Vec<(String, Vec<usize>)> =
            params.iter().map(|(name, tensor)| (name.to_string(), tensor.shape().to_vec())).collect();
        assert_eq!(found, expected, "{file}");
        params.validate(&network).unwrap();
    }
    let a = convgen::read_safetensors(&dir.join("a.safetensors")).unwrap();
    let c = convgen::read_safetensors(&dir.join("c.safetensors")).unwrap();
    for (name, tensor) in a.iter() {
        assert_ne!(tensor.data(), c.get(name).unwrap().data(), "`{name}` should differ between seeds 3 and 4");
    }
}

#[test]
fn dynamic_model_binds_symbolic_dims_from_the_input() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    let model = repo("examples/models/dynamic.conv");
    convgen(dir, [OsStr::new("params"), model.as_os_str(), OsStr::new("--output"), OsStr::new("p.safetensors")])
        .assert_success();
    let network = load(&model);
    let params = convgen::read_safetensors(&dir.join("p.safetensors")).unwrap();
    // [N, 16, H, W] -> [N, 32, ceil(H/2), ceil(W/2)]
    for (index, (input_shape, output_shape)) in
        [([2usize, 16, 12, 12], [2usize, 32, 6, 6]), ([1, 16, 9, 7], [1, 32, 5, 4])].into_iter().enumerate()
    {
        let input = random_tensor(&input_shape, index as u64);
        let input_file = format!("x{index}.npy");
        let output_file = format!("y{index}.npy");
        convgen::write_npy(&dir.join(&input_file), &input).unwrap();
        convgen(
            dir,
            [
                OsStr::new("run"),
                model.as_os_str(),
                OsStr::new("--input"),
                OsStr::new(&input_file),
                OsStr::new("--params"),
                OsStr::new("p.safetensors"),
                OsStr::new("--output"),
                OsStr::new(&output_file),
            ],
        )
        .assert_success();
        let output = convgen::read_npy(&dir.join(&output_file)).unwrap();
        assert_eq!(output.shape(), &output_shape, "input {input_shape:?}");
        assert_close(&output, &convgen::interp::run(&network, &input, &params).unwrap(), "dynamic.conv");
    }
}

// ---------------------------------------------------------------------------------------------
// run failures: one line, exit 1, and no output written

/// The files of one failing-run scenario, in a fresh temporary directory holding `small.conv`,
/// good parameters `p.safetensors` and a good input `x.npy`.
struct Scenario {
    directory: tempfile::TempDir,
}

impl Scenario {
    fn new() -> Self {
        let directory = tempfile::tempdir().unwrap();
        let scenario = Scenario { directory };
        write_text(&scenario.path("small.conv"), SMALL_MODEL);
        let network = load(&scenario.path("small.conv"));
        convgen::write_safetensors(&scenario.path("p.safetensors"), &Params::random(&network, 1)).unwrap();
        convgen::write_npy(&scenario.path("x.npy"), &random_tensor(&[1, 4, 6, 6], 2)).unwrap();
        scenario
    }

    fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }

    fn network(&self) -> Network {
        load(&self.path("small.conv"))
    }

    /// `convgen run MODEL --input INPUT --params PARAMS --output OUTPUT`, expected to fail with one
    /// line containing `needles`; run twice: once with no file at OUTPUT (none may be created),
    /// once with an existing file there (it must be left as it was).
    fn assert_run_fails(&self, model: &str, input: &str, params: &str, output: &str, needles: &[&str]) {
        let args = ["run", model, "--input", input, "--params", params, "--output", output];
        let output_path = self.path(output);
        let _ = fs::remove_file(&output_path);
        let outcome = convgen(self.directory.path(), args);
        outcome.assert_one_line_failure(needles);
        assert!(
            !output_path.exists(),
            "a failed run must not create {}; {}",
            output_path.display(),
            outcome.describe()
        );

        if output_path.parent().is_some_and(Path::is_dir) {
            let previous = b"the previous output, which a failed run must leave alone".to_vec();
            fs::write(&output_path, &previous).unwrap();
            let again = convgen(self.directory.path(), args);
            again.assert_one_line_failure(needles);
            assert_eq!(
                fs::read(&output_path).unwrap(),
                previous,
                "a failed run must leave an existing output untouched"
            );
            fs::remove_file(&output_path).unwrap();
        }
        self.assert_no_stray_files();
    }

    /// No temporary files left behind in the directory.
    fn assert_no_stray_files(&self) {
        let mut names: Vec<String> = fs::read_dir(self.directory.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.retain(|name| name.starts_with(".tmp"));
        assert!(names.is_empty(), "temporary files left behind: {names:?}");
    }

    /// Parameters: the good ones, changed by `change`.
    fn write_params(&self, name: &str, change: impl FnOnce(&mut Vec<(String, Tensor)>)) {
        let good = Params::random(&self.network(), 1);
        let mut tensors: Vec<(String, Tensor)> =
            good.iter().map(|(name, tensor)| (name.to_string(), tensor.clone())).collect();
        change(&mut tensors);
        let mut params = Params::new();
        for (name, tensor) in tensors {
            params.insert(name, tensor);
        }
        convgen::write_safetensors(&self.path(name), &params).unwrap();
    }
}

#[test]
fn run_with_a_missing_parameter_fails() {
    let scenario = Scenario::new();
    scenario.write_params("missing.safetensors", |tensors| tensors.retain(|(name, _)| name != "s.pw.weight"));
    scenario.assert_run_fails(
        "small.conv",
        "x.npy",
        "missing.safetensors",
        "y.npy",
        &["`s.pw.weight`", "missing", "[8, 8, 1, 1]"],
    );
}

#[test]
fn run_with_an_extra_parameter_fails() {
    let scenario = Scenario::new();
    scenario.write_params("extra.safetensors", |tensors| {
        tensors.push(("head.weight".into(), Tensor::zeros(vec![2, 8, 1, 1])))
    });
    scenario.assert_run_fails("small.conv", "x.npy", "extra.safetensors", "y.npy", &["`head.weight`", "[2, 8, 1, 1]"]);
}

#[test]
fn run_with_a_wrongly_shaped_parameter_fails() {
    let scenario = Scenario::new();
    scenario.write_params("shape.safetensors", |tensors| {
        let slot = tensors.iter_mut().find(|(name, _)| name == "c1.weight").unwrap();
        slot.1 = Tensor::zeros(vec![8, 4, 1, 1]);
    });
    scenario.assert_run_fails(
        "small.conv",
        "x.npy",
        "shape.safetensors",
        "y.npy",
        &["`c1.weight`", "[8, 4, 1, 1]", "[8, 4, 3, 3]"],
    );
}

#[test]
fn run_with_a_wrongly_shaped_input_fails() {
    let scenario = Scenario::new();
    convgen::write_npy(&scenario.path("x7.npy"), &random_tensor(&[1, 4, 7, 6], 3)).unwrap();
    scenario.assert_run_fails(
        "small.conv",
        "x7.npy",
        "p.safetensors",
        "y.npy",
        &["`x`", "[1, 4, 7, 6]", "[1, 4, 6, 6]"],
    );
}

#[test]
fn run_with_an_input_of_the_wrong_rank_fails() {
    let scenario = Scenario::new();
    convgen::write_npy(&scenario.path("x3.npy"), &random_tensor(&[4, 6, 6], 3)).unwrap();
    scenario.assert_run_fails(
        "small.conv",
        "x3.npy",
        "p.safetensors",
        "y.npy",
        &["`x`", "[4, 6, 6]", "[1, 4, 6, 6]", "rank"],
    );
}

#[test]
fn run_with_a_float64_input_fails() {
    let scenario = Scenario::new();
    {
        let file = File::create(scenario.path("x64.npy")).unwrap();
        let mut writer =
            npyz::WriteOptions::<f64>::new().default_dtype().shape(&[1, 4, 6, 6]).writer(file).begin_nd().unwrap();
        writer.extend((0..144).map(|index| f64::from(index) / 144.0)).unwrap();
        writer.finish().unwrap();
    }
    scenario.assert_run_fails("small.conv", "x64.npy", "p.safetensors", "y.npy", &["x64.npy", "<f8", "float32"]);
}

#[test]
fn run_with_a_nonexistent_input_fails() {
    let scenario = Scenario::new();
    scenario.assert_run_fails("small.conv", "nowhere.npy", "p.safetensors", "y.npy", &["nowhere.npy"]);
}

#[test]
fn run_with_a_binary_garbage_model_fails() {
    let scenario = Scenario::new();
    let mut rng = SplitMix64::new(5);
    let mut garbage: Vec<u8> = vec![0xff, 0xfe, 0x00, 0xc3, 0x28, 0x80];
    garbage.extend((0..4096).map(|_| rng.next_u64() as u8));
    assert!(String::from_utf8(garbage.clone()).is_err(), "the garbage is not UTF-8");
    fs::write(scenario.path("garbage.conv"), &garbage).unwrap();
    scenario.assert_run_fails("garbage.conv", "x.npy", "p.safetensors", "y.npy", &["garbage.conv", "UTF-8"]);
    let outcome = convgen(scenario.directory.path(), ["check", "garbage.conv"]);
    outcome.assert_one_line_failure(&["garbage.conv", "UTF-8"]);
}

#[test]
fn run_with_a_truncated_npy_fails() {
    let scenario = Scenario::new();
    let whole = fs::read(scenario.path("x.npy")).unwrap();
    // Cut in the data (a few values short), in the middle of the data, and in the header.
    for (name, length) in [("cut_end.npy", whole.len() - 3), ("cut_half.npy", whole.len() / 2), ("cut_header.npy", 20)]
    {
        fs::write(scenario.path(name), &whole[..length]).unwrap();
        scenario.assert_run_fails("small.conv", name, "p.safetensors", "y.npy", &[name]);
    }
}

#[test]
fn run_with_a_garbage_safetensors_fails() {
    let scenario = Scenario::new();
    let mut rng = SplitMix64::new(6);
    let random: Vec<u8> = (0..1000).map(|_| rng.next_u64() as u8).collect();
    fs::write(scenario.path("random.safetensors"), &random).unwrap();
    // A plausible header length followed by text that is not the JSON header.
    let mut bad_header = 16u64.to_le_bytes().to_vec();
    bad_header.extend_from_slice(b"{not json at all");
    fs::write(scenario.path("header.safetensors"), &bad_header).unwrap();
    // A good file cut short.
    let good = fs::read(scenario.path("p.safetensors")).unwrap();
    fs::write(scenario.path("cut.safetensors"), &good[..good.len() - 10]).unwrap();
    fs::write(scenario.path("empty.safetensors"), b"").unwrap();
    for name in ["random.safetensors", "header.safetensors", "cut.safetensors", "empty.safetensors"] {
        scenario.assert_run_fails("small.conv", "x.npy", name, "y.npy", &[name]);
    }
}

#[test]
fn run_with_an_output_in_a_nonexistent_directory_fails() {
    let scenario = Scenario::new();
    scenario.assert_run_fails("small.conv", "x.npy", "p.safetensors", "no/such/dir/y.npy", &["no/such/dir"]);
    let outcome = convgen(scenario.directory.path(), ["params", "small.conv", "--output", "no/such/dir/p.safetensors"]);
    outcome.assert_one_line_failure(&["no/such/dir"]);
    assert!(!scenario.path("no").exists());
}

#[test]
fn run_with_an_output_that_is_a_directory_fails() {
    let scenario = Scenario::new();
    fs::create_dir(scenario.path("out")).unwrap();
    fs::write(scenario.path("out/keep"), b"kept").unwrap();
    let outcome = convgen(
        scenario.directory.path(),
        ["run", "small.conv", "--input", "x.npy", "--params", "p.safetensors", "--output", "out"],
    );
    outcome.assert_one_line_failure(&["out"]);
    assert_eq!(fs::read(scenario.path("out/keep")).unwrap(), b"kept");
    scenario.assert_no_stray_files();
}

/// A `.npy` file of version 2.0, whose header length is a `u32`.
fn npy_v2_with_header_length(header_length: u32, header: &[u8]) -> Vec<u8> {
    let mut bytes = b"\x93NUMPY\x02\x00".to_vec();
    bytes.extend_from_slice(&header_length.to_le_bytes());
    bytes.extend_from_slice(header);
    bytes
}

/// `io.rs` promises that "a corrupt header cannot make it allocate more than the file could hold".
/// A 29-byte `.npy` whose (version 2) header claims to be 4 GiB long must be a one-line error even
/// when the process may not allocate 4 GiB (run under `ulimit -v`).
#[cfg(unix)]
#[test]
fn run_with_an_npy_header_length_of_4_gib_does_not_allocate_it() {
    let scenario = Scenario::new();
    fs::write(scenario.path("huge_header.npy"), npy_v2_with_header_length(0xFFFF_FFF0, b"{'descr': '<f4', ")).unwrap();
    let limited = |input: &str| {
        let script = r#"ulimit -v 1048576 && exec "$0" "$@""#; // 1 GiB of address space
        let output = Command::new("sh")
            .current_dir(scenario.directory.path())
            .args(["-c", script, env!("CARGO_BIN_EXE_convgen")])
            .args(["run", "small.conv", "--input", input, "--params", "p.safetensors", "--output", "y.npy"])
            .output()
            .expect("sh runs");
        Outcome {
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    };
    // The control: under the same limit, a good run succeeds.
    limited("x.npy").assert_success();
    fs::remove_file(scenario.path("y.npy")).unwrap();
    let outcome = limited("huge_header.npy");
    assert!(
        !outcome.stderr.contains("memory allocation"),
        "convgen tried to allocate the claimed header: {}",
        truncated(&outcome.describe())
    );
    outcome.assert_one_line_failure(&["huge_header.npy"]);
    assert!(!scenario.path("y.npy").exists());
}

#[test]
fn run_reads_big_endian_float32() {
    // numpy writes `>f4` for big-endian float32; convgen reads it as the same values.
    let scenario = Scenario::new();
    let input = convgen::read_npy(&scenario.path("x.npy")).unwrap();
    let header = "{'descr': '>f4', 'fortran_order': False, 'shape': (1, 4, 6, 6), }";
    let mut header = header.to_string();
    while !(10 + header.len() + 1).is_multiple_of(64) {
        header.push(' ');
    }
    header.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&(header.len() as u16).to_le_bytes());
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend(input.data().iter().flat_map(|value| value.to_be_bytes()));
    fs::write(scenario.path("x_be.npy"), &bytes).unwrap();
    assert_bitwise_equal(&convgen::read_npy(&scenario.path("x_be.npy")).unwrap(), &input, "big-endian read");
    for (input, output) in [("x.npy", "y.npy"), ("x_be.npy", "y_be.npy")] {
        convgen(
            scenario.directory.path(),
            ["run", "small.conv", "--input", input, "--params", "p.safetensors", "--output", output],
        )
        .assert_success();
    }
    assert_eq!(fs::read(scenario.path("y.npy")).unwrap(), fs::read(scenario.path("y_be.npy")).unwrap());
}

#[test]
fn run_failure_scenario_succeeds_with_good_files() {
    // The control for the failure tests above: the same files, unchanged, run.
    let scenario = Scenario::new();
    let outcome = convgen(
        scenario.directory.path(),
        ["run", "small.conv", "--input", "x.npy", "--params", "p.safetensors", "--output", "y.npy"],
    );
    outcome.assert_success();
    assert!(outcome.stderr.is_empty(), "{}", outcome.describe());
    let output = convgen::read_npy(&scenario.path("y.npy")).unwrap();
    assert_eq!(output.shape(), &[1, 8, 6, 6]);
    scenario.assert_no_stray_files();
}

// ---------------------------------------------------------------------------------------------
// inspect

#[test]
fn inspect_ast_and_spec() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    let model = repo("examples/models/block.conv");
    let inspect = |emit: &str, layer: Option<&str>| {
        let mut args: Vec<&OsStr> =
            vec![OsStr::new("inspect"), model.as_os_str(), OsStr::new("--emit"), OsStr::new(emit)];
        if let Some(layer) = layer {
            args.extend([OsStr::new("--layer"), OsStr::new(layer)]);
        }
        convgen(dir, args)
    };

    let ast = inspect("ast", None);
    ast.assert_success();
    for needle in ["input x", "depthwise dw", "pointwise pw", "kernel", "relu6"] {
        assert!(ast.stdout.contains(needle), "{needle:?}; {}", ast.describe());
    }
    let ast_pw = inspect("ast", Some("pw"));
    ast_pw.assert_success();
    assert!(ast_pw.stdout.contains("pointwise pw"), "{}", ast_pw.describe());
    assert!(!ast_pw.stdout.contains("depthwise dw"), "only the layer asked for; {}", ast_pw.describe());

    let spec = inspect("spec", None);
    spec.assert_success();
    for needle in [
        "input x: [1, 32, 56, 56] nchw",
        "param dw.weight [32, 1, 3, 3]",
        "param pw.weight [64, 32, 1, 1]",
        "output pw: [1, 64, 56, 56]",
    ] {
        assert!(spec.stdout.contains(needle), "{needle:?}; {}", spec.describe());
    }
    let spec_dw = inspect("spec", Some("dw"));
    spec_dw.assert_success();
    assert!(
        spec_dw.stdout.contains("depthwise dw(x)") && spec_dw.stdout.contains("param dw.weight [32, 1, 3, 3]"),
        "{}",
        spec_dw.describe()
    );
    assert!(!spec_dw.stdout.contains("pw"), "only the layer asked for; {}", spec_dw.describe());

    for emit in ["ast", "spec"] {
        inspect(emit, Some("nosuchlayer")).assert_one_line_failure(&["`nosuchlayer`", "block.conv"]);
    }
}

#[test]
fn inspect_ir_clif_asm_and_rust() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    let block = repo("examples/models/block.conv");
    let block = block.to_str().unwrap();
    // An inline schedule for `dw`, whatever tile kernels the host has.
    let inline = "dw:lanes=4,tile=4x1";
    let ir = convgen(dir, ["inspect", block, "--emit", "ir", "--layer", "dw", "--schedule", inline]);
    ir.assert_success();
    assert!(ir.stdout.contains("// step dw (lanes=4") && ir.stdout.contains("fn dw("), "{}", ir.describe());
    assert!(!ir.stdout.contains("// step pw"), "only the layer asked for; {}", ir.describe());
    let clif = convgen(dir, ["inspect", block, "--emit", "clif", "--layer", "dw", "--schedule", inline]);
    clif.assert_success();
    assert!(clif.stdout.contains("function %dw(") && clif.stdout.contains(" fma "), "{}", clif.describe());
    let asm = convgen(dir, ["inspect", block, "--emit", "asm", "--layer", "pw"]);
    asm.assert_success();
    assert!(asm.stdout.contains("// step pw") && asm.stdout.contains("ret"), "{}", asm.describe());
    // A symbolic model needs a shape for the IR, and `--emit rust` needs concrete dims.
    let dynamic = repo("examples/models/dynamic.conv");
    let dynamic = dynamic.to_str().unwrap();
    convgen(dir, ["inspect", dynamic, "--emit", "ir"]).assert_one_line_failure(&["symbolic", "--shape"]);
    convgen(dir, ["inspect", dynamic, "--emit", "ir", "--shape", "1,16,9,9"]).assert_success();
    let rust = convgen(dir, ["inspect", dynamic, "--emit", "rust"]);
    assert_eq!(rust.code, Some(1), "{}", rust.describe());
    assert!(rust.stderr.contains("is symbolic, but the `conv!` macro"), "{}", rust.describe());

    // The `conv!` expansion: a module named after the file, which parses as Rust.
    let rust = convgen(dir, ["inspect", block, "--emit", "rust"]);
    rust.assert_success();
    for needle in ["pub mod block {", "pub fn forward(", "pub const INPUT_SHAPE: [usize; 4] = [1, 32, 56, 56];"] {
        assert!(rust.stdout.contains(needle), "{needle:?}; {}", rust.describe());
    }
    syn::parse_file(&rust.stdout).expect("the expansion parses as a Rust file");
    convgen(dir, ["inspect", block, "--emit", "rust", "--layer", "dw"])
        .assert_one_line_failure(&["`--emit rust`", "do not apply"]);
    convgen(dir, ["inspect", block, "--emit", "rust", "--threads", "2"]).assert_one_line_failure(&[
        "`--emit rust`",
        "`--threads`",
        "do not apply",
    ]);
}

/// A depthwise layer large enough is computed inside the pointwise layer that reads it: one step,
/// `dw+pw`, shown for either layer; `--no-fusion` computes each on its own, and does not apply to
/// `--emit rust`. `bench --steps` gives the fused step's speed from both layers' multiply-adds.
#[test]
fn depthwise_layers_fuse_unless_told_not_to() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    let model = repo("tests/corpus/good/readme_example.conv");
    let model = model.to_str().unwrap();
    for layer in ["dw", "pw"] {
        let ir = convgen(dir, ["inspect", model, "--emit", "ir", "--layer", layer]);
        ir.assert_success();
        // (The schedules depend on the host's tile kernels.)
        assert!(ir.stdout.contains("// step dw+pw (lanes=") && ir.stdout.contains(" + lanes="), "{}", ir.describe());
        assert!(ir.stdout.contains("fn dw+pw(") && ir.stdout.contains("rows: out f32["), "{}", ir.describe());
    }
    let apart = convgen(dir, ["inspect", model, "--emit", "ir", "--layer", "dw", "--no-fusion"]);
    apart.assert_success();
    assert!(apart.stdout.contains("// step dw (lanes=") && !apart.stdout.contains("dw+pw"), "{}", apart.describe());
    convgen(dir, ["inspect", model, "--emit", "rust", "--no-fusion"]).assert_one_line_failure(&[
        "`--emit rust`",
        "`--no-fusion`",
        "do not apply",
    ]);
    let steps = convgen(dir, ["bench", model, "--runs", "2", "--steps"]);
    steps.assert_success();
    let fused = steps.stdout.lines().find(|line| line.trim_start().starts_with("dw+pw ")).expect("a fused step");
    assert!(fused.contains("GFLOP/s"), "{}", steps.describe());
}

#[test]
fn bench_reports_compile_cache_and_run_times() {
    let directory = tempfile::tempdir().unwrap();
    let block = repo("examples/models/block.conv");
    let outcome = convgen(directory.path(), ["bench", block.to_str().unwrap(), "--runs", "3", "--json"]);
    outcome.assert_success();
    let lines: Vec<&str> = outcome.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "a run line and a compile line; {}", outcome.describe());
    for (line, keys) in lines.iter().zip([
        &["\"model\":\"block\"", "\"backend\":\"jit\"", "\"threads\":1", "\"ms\":", "\"gflops\":"][..],
        &["\"compile_ms\":", "\"compile_layer_median_ms\":", "\"cache_hit_us\":"][..],
    ]) {
        for key in keys {
            assert!(line.contains(key), "{key} in {line}; {}", outcome.describe());
        }
    }
    let two = convgen(directory.path(), ["bench", block.to_str().unwrap(), "--runs", "3", "--json", "--threads", "2"]);
    two.assert_success();
    assert!(two.stdout.contains("\"threads\":2"), "{}", two.describe());
    let steps = convgen(directory.path(), ["bench", block.to_str().unwrap(), "--runs", "3", "--json", "--steps"]);
    steps.assert_success();
    let timed: Vec<&str> = steps.stdout.lines().filter(|line| line.contains("\"step\":")).collect();
    let names: Vec<&str> = timed.iter().filter_map(|line| line.split('"').nth(7)).collect();
    assert_eq!(names, ["dw", "pw"], "the plane kernels in the user's layout; {}", steps.describe());
    assert!(timed.iter().all(|line| line.contains("\"ms\":")), "{}", steps.describe());
    let table = convgen(directory.path(), ["bench", block.to_str().unwrap(), "--runs", "3", "--steps"]);
    table.assert_success();
    assert!(table.stdout.contains("per step") && table.stdout.contains("GFLOP/s"), "{}", table.describe());
    let none = convgen(directory.path(), ["bench", block.to_str().unwrap(), "--threads", "0"]);
    assert!(none.code == Some(2) && none.stderr.contains("--threads"), "{}", none.describe());
}

/// `bench --against FLAGS` runs a baseline compiled with other flags alternately with the model and
/// reports the median ratio; flags that are not compile flags, or name no layer, are refused.
#[test]
fn bench_against_a_baseline_reports_the_ratio() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    let block = repo("examples/models/block.conv");
    let block = block.to_str().unwrap();
    let json = convgen(dir, ["bench", block, "--runs", "3", "--json", "--against", "--threads 2"]);
    json.assert_success();
    let line = json.stdout.lines().find(|line| line.contains("\"against\":")).expect("an against line");
    for key in ["\"against\":\"--threads 2\"", "\"ms\":", "\"baseline_ms\":", "\"ratio\":"] {
        assert!(line.contains(key), "{key} in {line}");
    }
    let table = convgen(dir, ["bench", block, "--runs", "3", "--against=--no-fusion --schedule dw:lanes=1,tile=2x1"]);
    table.assert_success();
    assert!(
        table.stdout.contains("against `--no-fusion --schedule dw:lanes=1,tile=2x1`, run alternately (3 pairs)")
            && table.stdout.contains("baseline (--against)")
            && table.stdout.contains("baseline ÷ this model: ")
            && table.stdout.contains("above 1: this model is faster"),
        "{}",
        table.describe()
    );
    let bogus = convgen(dir, ["bench", block, "--against", "--fast"]);
    assert!(bogus.code == Some(2) && bogus.stderr.contains("is not a set of compile flags"), "{}", bogus.describe());
    convgen(dir, ["bench", block, "--against", "--schedule nosuch:lanes=4,tile=1x1"])
        .assert_one_line_failure(&["`nosuch`", "no convolution stage"]);
}

#[test]
fn inspect_bad_model_reports_diagnostics() {
    let directory = tempfile::tempdir().unwrap();
    write_text(
        &directory.path().join("bad.conv"),
        "input x: [1, 4, 8, 8];\nconv c(x) { out: 4, kernel: 3, bogus: 1 }\n",
    );
    for emit in ["ast", "spec"] {
        let outcome = convgen(directory.path(), ["inspect", "bad.conv", "--emit", emit]);
        if emit == "ast" {
            // `bogus` is a checker error, not a syntax error: the AST is shown.
            outcome.assert_success();
            assert!(outcome.stdout.contains("bogus"), "{}", outcome.describe());
        } else {
            assert_eq!(outcome.code, Some(1), "{}", outcome.describe());
            assert!(
                outcome.stderr.contains("error:") && outcome.stderr.contains(" --> bad.conv:2:32"),
                "{}",
                outcome.describe()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// usage errors

#[test]
fn usage_errors_exit_2() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    let model = repo("examples/models/block.conv");
    let model = model.to_str().unwrap();
    convgen(dir, Vec::<&str>::new()).assert_usage_error();
    convgen(dir, ["check", model, "--bogus"]).assert_usage_error();
    convgen(dir, ["frobnicate", model]).assert_usage_error();
    convgen(dir, ["inspect", model, "--emit", "bogus"]).assert_usage_error();
    convgen(dir, ["inspect", model]).assert_usage_error();
    let outcome = convgen(dir, ["run", model, "--input", "x.npy", "--output", "y.npy"]);
    outcome.assert_usage_error();
    assert!(outcome.stderr.contains("--params"), "{}", outcome.describe());
    assert!(!dir.join("y.npy").exists());
    convgen(
        dir,
        ["run", model, "--input", "x.npy", "--params", "p.safetensors", "--output", "y.npy", "--backend", "bogus"],
    )
    .assert_usage_error();
    convgen(dir, ["params", model, "--seed", "minus-one", "--output", "p.safetensors"]).assert_usage_error();
    convgen(dir, ["demo", model, "--shape", "1,x,3"]).assert_usage_error();
}

// ---------------------------------------------------------------------------------------------
// demo

#[test]
fn demo_runs_a_bundled_model() {
    let directory = tempfile::tempdir().unwrap();
    let model = repo("examples/models/block.conv");
    let outcome = convgen(directory.path(), [OsStr::new("demo"), model.as_os_str()]);
    outcome.assert_success();
    assert!(
        outcome.stdout.contains("saving") && outcome.stdout.contains("total"),
        "the cost table; {}",
        outcome.describe()
    );
    let line = outcome.stdout.lines().find(|line| line.starts_with("output [")).expect("an output line");
    assert!(line.contains("[1, 64, 56, 56]"), "the output shape: {line}");
    // The JIT agrees with the reference interpreter it is compared with.
    let difference: f64 = line.rsplit("= ").next().and_then(|value| value.trim().parse().ok()).expect("a number");
    assert!(difference <= 1e-4, "{line}");
    // Deterministic: the same seed gives the same checksums.
    let again = convgen(directory.path(), [OsStr::new("demo"), model.as_os_str()]);
    let checksums = |text: &str| -> Vec<String> {
        text.lines().filter_map(|line| line.split("checksum").nth(1)).map(str::to_string).collect()
    };
    assert_eq!(checksums(&outcome.stdout).len(), 2, "jit and reference checksums; {}", outcome.describe());
    assert_eq!(checksums(&outcome.stdout), checksums(&again.stdout));
}

#[test]
fn demo_of_a_symbolic_model_needs_a_shape() {
    let directory = tempfile::tempdir().unwrap();
    let model = repo("examples/models/dynamic.conv");
    let outcome = convgen(directory.path(), [OsStr::new("demo"), model.as_os_str()]);
    assert_eq!(outcome.code, Some(1), "{}", outcome.describe());
    assert!(outcome.stderr.contains("--shape") && outcome.stderr.contains("dynamic.conv"), "{}", outcome.describe());
    assert_eq!(outcome.stderr.lines().count(), 1, "{}", outcome.describe());

    let outcome = convgen(
        directory.path(),
        [OsStr::new("demo"), model.as_os_str(), OsStr::new("--shape"), OsStr::new("1,16,12,12")],
    );
    outcome.assert_success();
    let line = outcome.stdout.lines().find(|line| line.starts_with("output [")).expect("an output line");
    assert!(line.contains("[1, 32, 6, 6]"), "{line}");

    // A shape that does not fit the declaration is a one-line error, not a crash.
    let outcome = convgen(
        directory.path(),
        [OsStr::new("demo"), model.as_os_str(), OsStr::new("--shape"), OsStr::new("1,3,12,12")],
    );
    outcome.assert_one_line_failure(&["`x`", "[1, 3, 12, 12]", "[N, 16, H, W]"]);
}

// ---------------------------------------------------------------------------------------------
// hostile model text

/// `check`, `run`, `params`, `inspect --emit spec` and `demo` on `text`: exit 1 with an `error` message, never a panic (101) or a signal.
fn assert_rejected(name: &str, text: &[u8]) {
    let scenario = Scenario::new();
    fs::write(scenario.path(name), text).unwrap();
    for command in ["check", "run"] {
        let outcome = match command {
            "check" => convgen(scenario.directory.path(), ["check", name]),
            _ => convgen(
                scenario.directory.path(),
                ["run", name, "--input", "x.npy", "--params", "p.safetensors", "--output", "y.npy"],
            ),
        };
        assert!(outcome.code.is_some(), "{command} {name}: ended by a signal; {}", outcome.describe());
        assert_eq!(outcome.code, Some(1), "{command} {name}: {}", truncated(&outcome.describe()));
        assert!(outcome.stderr.starts_with("error"), "{command} {name}: {}", truncated(&outcome.describe()));
        assert!(!outcome.stderr.contains("panicked"), "{command} {name}: {}", truncated(&outcome.describe()));
        assert!(!scenario.path("y.npy").exists());
    }
}

fn truncated(text: &str) -> String {
    let mut cut: String = text.chars().take(3000).collect();
    if cut.len() < text.len() {
        cut.push('…');
    }
    cut
}

#[test]
fn hostile_one_megabyte_line_of_conv() {
    assert_rejected("line.conv", "conv ".repeat((1 << 20) / 5).as_bytes());
}

#[test]
fn hostile_deep_nesting() {
    assert_rejected("open.conv", "[".repeat(100_000).as_bytes());
    assert_rejected("balanced.conv", format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)).as_bytes());
    let inside = format!(
        "input x: [1, 3, 8, 8];\nconv c(x) {{ out: 4, kernel: {}3{} }}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert_rejected("inside.conv", inside.as_bytes());
    assert_rejected("parens.conv", format!("conv c{}x{} {{}}", "(".repeat(100_000), ")".repeat(100_000)).as_bytes());
}

#[test]
fn hostile_absurd_numbers() {
    for (index, value) in [
        "999999999999999999999999999",
        "-999999999999999999999999999",
        "18446744073709551616",
        "1e400",
        "0x_ffff_ffff_ffff_ffff_ff",
    ]
    .into_iter()
    .enumerate()
    {
        let text = format!("input x: [1, 3, 8, 8];\nconv c(x) {{ out: {value}, kernel: 3 }}\n");
        assert_rejected(&format!("number{index}.conv"), text.as_bytes());
    }
    assert_rejected("dim.conv", b"input x: [1, 3, 99999999999999999999999, 8];\nconv c(x) { out: 4, kernel: 3 }\n");
    assert_rejected("huge.conv", b"input x: [2147483647, 2147483647, 2147483647, 2147483647];\nconv c(x) { out: 2147483647, kernel: 2147483647 }\n");
}

#[test]
fn hostile_nul_bytes() {
    assert_rejected("nul.conv", b"input x: [1, 3,\x00 8, 8];\nconv c(x) { out: 4, kernel: 3 }\x00\n");
    assert_rejected("nuls.conv", &[0u8; 4096]);
}

#[test]
fn hostile_file_over_the_size_limit() {
    // 20 MB: a valid model followed by a comment that takes it over the 16 MiB limit.
    let mut text = String::from("input x: [1, 4, 6, 6];\nconv c(x) { out: 4, kernel: 3 }\n// ");
    text.push_str(&"a".repeat(20_000_000));
    text.push('\n');
    assert_rejected("big.conv", text.as_bytes());
    let outcome = {
        let scenario = Scenario::new();
        fs::write(scenario.path("big.conv"), text.as_bytes()).unwrap();
        convgen(scenario.directory.path(), ["check", "big.conv"])
    };
    outcome.assert_one_line_failure(&["big.conv", "16777216"]);
}

// ---------------------------------------------------------------------------------------------
// schedules

#[test]
fn run_with_explicit_schedules_gives_the_same_output() {
    let directory = tempfile::tempdir().unwrap();
    let dir = directory.path();
    let model = repo("examples/models/block.conv");
    let model = model.to_str().expect("the repository path is UTF-8");
    convgen(dir, ["params", model, "--seed", "3", "--output", "p.safetensors"]).assert_success();
    convgen::write_npy(&dir.join("x.npy"), &random_tensor(&[1, 32, 56, 56], 5)).unwrap();
    let base = ["run", model, "--input", "x.npy", "--params", "p.safetensors"];
    convgen(dir, base.iter().copied().chain(["--output", "auto.npy"])).assert_success();
    let tuned = ["--output", "tuned.npy", "--schedule", "dw:lanes=1,tile=3x2", "--schedule", "pw:lanes=4,tile=2x5"];
    convgen(dir, base.iter().copied().chain(tuned)).assert_success();
    assert_eq!(fs::read(dir.join("auto.npy")).unwrap(), fs::read(dir.join("tuned.npy")).unwrap());

    // A schedule for a layer the model does not have, or one that does not parse, is an error.
    let unknown = ["--output", "bad.npy", "--schedule", "nope:lanes=4,tile=1x1"];
    convgen(dir, base.iter().copied().chain(unknown)).assert_one_line_failure(&["`nope`"]);
    assert!(!dir.join("bad.npy").exists());
    let malformed = convgen(dir, base.iter().copied().chain(["--output", "bad.npy", "--schedule", "dw:lanes=4"]));
    assert_eq!(malformed.code, Some(2), "{}", malformed.describe());
}
