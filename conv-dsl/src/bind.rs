//! A network bound to a concrete input shape: every symbolic dim resolved, every layer's concrete
//! shape and padding computed, and the checks that need concrete sizes done again.

use std::collections::BTreeMap;

use crate::dim::{Dim, fmt_shape};
use crate::error::Error;
use crate::spec::{MAX_ELEMENTS, Network, Op, Source};

/// Concrete shapes for one input shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    /// The symbolic dims' values.
    pub symbols: BTreeMap<String, u64>,
    /// Logical input shape `[N, C, spatial…]`.
    pub input: Vec<u64>,
    /// Per layer, in the network's order.
    pub layers: Vec<BoundLayer>,
}

/// One layer's concrete shapes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundLayer {
    /// Logical output shape.
    pub shape: Vec<u64>,
    /// Per convolution stage (none for `add`): input shape, resolved `[before, after]` padding per
    /// spatial axis, output shape.
    pub stages: Vec<BoundConv>,
}

/// One convolution stage's concrete shapes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BoundConv {
    /// Logical input shape.
    pub input: Vec<u64>,
    /// `[before, after]` per spatial axis.
    pub padding: Vec<[u64; 2]>,
    /// Logical output shape.
    pub output: Vec<u64>,
}

impl Binding {
    /// The concrete shape of a value.
    pub fn shape_of(&self, source: Source) -> &[u64] {
        match source {
            Source::Input => &self.input,
            Source::Layer(index) => &self.layers[index].shape,
        }
    }
}

/// Binds `network` to an input of `shape`, given in the input's layout order.
pub fn bind(network: &Network, shape: &[u64]) -> Result<Binding, Error> {
    let declared = network.input_shape_in_layout();
    let mismatch = |detail: String| Error::InputShape {
        name: network.input.name.clone(),
        expected: fmt_shape(&declared),
        found: fmt_shape(shape),
        detail,
    };
    if shape.len() != declared.len() {
        return Err(mismatch(format!(" (rank {}, not {})", declared.len(), shape.len())));
    }
    let mut symbols: BTreeMap<String, u64> = BTreeMap::new();
    for (axis, (dim, &size)) in declared.iter().zip(shape).enumerate() {
        if size == 0 {
            return Err(mismatch(format!(": dim {axis} is 0")));
        }
        match dim {
            Dim::Known(expected) if *expected != size => {
                return Err(mismatch(format!(": dim {axis} is {size}, not {expected}")));
            }
            Dim::Symbol(name) => {
                if let Some(&first) = symbols.get(name)
                    && first != size
                {
                    return Err(mismatch(format!(": `{name}` cannot be both {first} and {size}")));
                }
                symbols.insert(name.clone(), size);
            }
            _ => {}
        }
    }
    let input = network.input.layout.logical(shape);
    within_limit(&format!("input `{}`", network.input.name), &input)?;

    let mut layers: Vec<BoundLayer> = Vec::with_capacity(network.layers.len());
    for layer in &network.layers {
        let shape_of = |source: Source| -> Vec<u64> {
            match source {
                Source::Input => input.clone(),
                Source::Layer(index) => layers[index].shape.clone(),
            }
        };
        let bound = match &layer.op {
            Op::Add { left, right, .. } => {
                let (left_shape, right_shape) = (shape_of(*left), shape_of(*right));
                if left_shape != right_shape {
                    return Err(Error::AddShapes {
                        layer: layer.name.clone(),
                        left: network.name_of(*left).to_string(),
                        left_shape: fmt_shape(&left_shape),
                        right: network.name_of(*right).to_string(),
                        right_shape: fmt_shape(&right_shape),
                    });
                }
                BoundLayer { shape: left_shape, stages: Vec::new() }
            }
            Op::Conv { source, .. } | Op::Separable { source, .. } => {
                let mut current = shape_of(*source);
                let mut stages = Vec::new();
                for (suffix, conv) in layer.op.stages() {
                    let stage_name = format!("{}{suffix}", layer.name);
                    let spatial = &current[2..];
                    let output_spatial = conv.output_spatial(spatial).map_err(|empty| Error::EmptyOutput {
                        layer: stage_name.clone(),
                        input: fmt_shape(shape),
                        axis: empty.axis,
                        padded: empty.padded,
                        effective_kernel: empty.effective_kernel,
                    })?;
                    let mut output = vec![current[0], conv.out_channels];
                    output.extend(output_spatial);
                    within_limit(&format!("the output of `{stage_name}`"), &output)?;
                    stages.push(BoundConv {
                        input: current.clone(),
                        padding: conv.resolve_padding(spatial),
                        output: output.clone(),
                    });
                    current = output;
                }
                BoundLayer { shape: current, stages }
            }
        };
        layers.push(bound);
    }
    Ok(Binding { symbols, input, layers })
}

fn within_limit(what: &str, shape: &[u64]) -> Result<(), Error> {
    let elements =
        shape.iter().try_fold(1u128, |product, &dim| product.checked_mul(u128::from(dim))).unwrap_or(u128::MAX);
    if elements > u128::from(MAX_ELEMENTS) {
        return Err(Error::TooLarge { what: what.to_string(), shape: fmt_shape(shape), elements });
    }
    Ok(())
}
