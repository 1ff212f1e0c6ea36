//! MobileNetV1 (224×224, batch 1) through `conv_file!`: the model file is read and checked when
//! this example compiles (the path is relative to the crate), and Cargo rebuilds it when the file
//! changes. `cargo run --release --example macro_mobilenet` times `forward` (the plan for this host,
//! AVX2 + FMA where the CPU has them) and `forward_portable` (the AVX2 plan's portable kernels); with
//! `--reference` it also compares the output with the reference interpreter.

use std::time::Instant;

convgen::conv_file!(pub mod mobilenet = "examples/models/mobilenet_v1.conv");

/// `mobilenet::forward` and `mobilenet::forward_portable`.
type Forward =
    fn(&[f32; mobilenet::INPUT_LEN], &mobilenet::Packed, &mut [f32; mobilenet::OUTPUT_LEN], &mut mobilenet::Workspace);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let params = mobilenet::Params::random(7); // or Params::from_safetensors("weights.safetensors")?
    let packed = params.pack(); // for this host's plan (AVX-512's where the kernels run on it)
    let mut workspace = mobilenet::Workspace::new();
    // The portable kernels are the AVX2 plan's (the AVX-512 plan runs only on CPUs with AVX2 + FMA).
    let avx2_plan = mobilenet::Packed::with_plan(&params, convgen::PlanFor::Avx2);
    let mut avx2_workspace = mobilenet::Workspace::for_packed(&avx2_plan);
    let mut input = mobilenet::new_input();
    for (index, value) in input.iter_mut().enumerate() {
        *value = ((index * 7919) % 1000) as f32 / 500.0 - 1.0;
    }
    let mut output = mobilenet::new_output();

    println!("mobilenet: {:?} → {:?}", mobilenet::INPUT_SHAPE, mobilenet::OUTPUT_SHAPE);
    let runs: [(&str, Forward, &mobilenet::Packed, &mut mobilenet::Workspace); 2] = [
        ("forward", mobilenet::forward, &packed, &mut workspace),
        ("forward_portable", mobilenet::forward_portable, &avx2_plan, &mut avx2_workspace),
    ];
    for (label, forward, packed, workspace) in runs {
        let mut times = Vec::new();
        for _ in 0..10 {
            let start = Instant::now();
            forward(&input, packed, &mut output, workspace);
            times.push(start.elapsed());
        }
        times.sort();
        let median = times[times.len() / 2];
        let gflops = 2.0 * mobilenet::MACS as f64 / median.as_secs_f64() / 1e9;
        let checksum: f64 = output.iter().map(|&value| f64::from(value)).sum();
        println!("{label}: median {median:.2?} of 10 ({gflops:.1} GFLOP/s); output checksum {checksum:.6}");
    }

    if std::env::args().any(|arg| arg == "--reference") {
        let network = convgen::compile_source("mobilenet", mobilenet::MODEL_SOURCE)?;
        let tensor = convgen::Tensor::new(mobilenet::INPUT_SHAPE.to_vec(), input.to_vec())?;
        let reference = convgen::interp::run(&network, &tensor, &params.to_params())?;
        let largest = output.iter().zip(reference.data()).map(|(y, r)| (y - r).abs()).fold(0.0f32, f32::max);
        println!("largest difference from the reference interpreter {largest:e}");
    }
    println!("{} parameters, {} MACs", mobilenet::PARAMETERS, mobilenet::MACS);
    Ok(())
}
