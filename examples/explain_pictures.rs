//! Renders `convgen explain` diagrams to PNG: the README's pictures, or any layer of any model.
//!
//! ```sh
//! cargo run --example explain_pictures                                   # docs/explain_*.png
//! cargo run --example explain_pictures -- MODEL.conv LAYER OUT.png [SCALE]   # one layer
//! ```
//!
//! Text is drawn with the system's fonts (the diagrams ask for DejaVu Sans, then Verdana, Arial
//! or any sans-serif).

use std::error::Error;
use std::path::Path;

use resvg::{tiny_skia, usvg};

/// The README's pictures: (model, layer, output).
const PICTURES: [(&str, &str, &str); 2] = [
    ("tests/corpus/good/grouped.conv", "g4", "docs/explain_grouped.png"),
    ("tests/corpus/good/separable.conv", "s1", "docs/explain_separable.png"),
];

fn main() -> Result<(), Box<dyn Error>> {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    match arguments.as_slice() {
        [] => {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            for (model, layer, output) in PICTURES {
                render(&root.join(model), layer, &root.join(output), 1.5)?;
            }
        }
        [model, layer, output] => render(Path::new(model), layer, Path::new(output), 1.5)?,
        [model, layer, output, scale] => render(Path::new(model), layer, Path::new(output), scale.parse()?)?,
        _ => return Err("usage: explain_pictures [MODEL.conv LAYER OUT.png [SCALE]]".into()),
    }
    Ok(())
}

fn render(model: &Path, layer: &str, output: &Path, scale: f32) -> Result<(), Box<dyn Error>> {
    let network = convgen::load_model(model)?;
    let explanation = convgen::explain::explain(&network);
    let layer = explanation.layer(layer).ok_or_else(|| {
        format!("{} has no layer `{layer}`: {}", model.display(), explanation.layer_names().join(", "))
    })?;
    let svg = convgen::explain::svg::layer(layer);
    let mut options = usvg::Options::default();
    options.fontdb_mut().load_system_fonts();
    let tree = usvg::Tree::from_str(&svg, &options)?;
    let size = tree.size().to_int_size().scale_by(scale).ok_or("the picture would be empty")?;
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height()).ok_or("the picture would be empty")?;
    resvg::render(&tree, tiny_skia::Transform::from_scale(scale, scale), &mut pixmap.as_mut());
    pixmap.save_png(output)?;
    println!("{}: layer {} ({}×{} px)", output.display(), layer.name, size.width(), size.height());
    Ok(())
}
