//! The README's "Using it from Rust" example, compiled and run by `cargo test` (examples are built)
//! and by `cargo run --example readme_api`.

use convgen::{Backend, CompiledModel, Params};

fn main() -> Result<(), convgen::Error> {
    let network = convgen::load_model("examples/models/dynamic.conv".as_ref())?; // input x: [N, 16, H, W]
    let model = CompiledModel::new(network, Backend::Jit);
    let params = model.pack(&Params::random(model.network(), 7))?; // or convgen::read_safetensors(path)?
    let input = vec![0.0f32; 16 * 64 * 64];
    let mut output = vec![0.0f32; 32 * 32 * 32];
    // Compiles for [1, 16, 64, 64] on first use; later calls with that shape hit the cache.
    model.run((&[1, 16, 64, 64][..], &input[..]), &params, (&[1, 32, 32, 32][..], &mut output[..]))?;
    println!("output [1, 32, 32, 32]: sum {}", output.iter().sum::<f32>());
    Ok(())
}
