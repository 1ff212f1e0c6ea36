//! The `conv!` macro on the depthwise-separable block of its issue: the model is checked when this
//! file compiles, and `block::forward` is plain Rust specialised to `[1, 32, 56, 56]`.
//!
//! `cargo run --release --example macro_block` prints the time of `forward`, the output's checksum,
//! how far it is from the reference interpreter, and the block's cost report.

use std::time::Instant;

convgen::conv! {
    /// A MobileNet-style block: 3x3 depthwise, then 1x1 pointwise, both relu6.
    pub mod block {
        input x: [1, 32, 56, 56];
        depthwise dw(x) { kernel: 3, pad: 1, act: relu6 }
        pointwise pw(dw) { out: 64, act: relu6 }
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // PyTorch names and layouts: `params.dw.weight` is `dw.weight` [32, 1, 3, 3].
    let params = block::Params::random(7);
    let packed = params.pack();
    let mut workspace = block::Workspace::new();
    let mut input = block::new_input(); // Box<[f32; block::INPUT_LEN]>
    for (index, value) in input.iter_mut().enumerate() {
        *value = ((index * 7919) % 1000) as f32 / 500.0 - 1.0;
    }
    let mut output = block::new_output();

    let mut times = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        block::forward(&input, &packed, &mut output, &mut workspace);
        times.push(start.elapsed());
    }
    times.sort();
    let elapsed = times[times.len() / 2];
    let checksum: f64 = output.iter().map(|&value| f64::from(value)).sum();
    println!("block: {:?} → {:?}, forward median {elapsed:.2?} of 20", block::INPUT_SHAPE, block::OUTPUT_SHAPE);
    println!("output checksum {checksum:.6}");

    // The same model, parameters and input on the reference interpreter.
    let network = convgen::compile_source("block", block::MODEL_SOURCE)?;
    let tensor = convgen::Tensor::new(block::INPUT_SHAPE.to_vec(), input.to_vec())?;
    let reference = convgen::interp::run(&network, &tensor, &params.to_params())?;
    let largest = output.iter().zip(reference.data()).map(|(y, r)| (y - r).abs()).fold(0.0f32, f32::max);
    println!("largest difference from the reference interpreter {largest:e}");
    println!("{} parameters, {} MACs\n", block::PARAMETERS, block::MACS);
    print!("{}", block::COST_REPORT);
    Ok(())
}
