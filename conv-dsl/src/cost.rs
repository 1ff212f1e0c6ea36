//! What each layer costs, and what the standard convolution it stands in for would cost.
//!
//! Grouped, depthwise and separable convolutions exist to save work. For every layer the report
//! gives its parameters and multiply-accumulates (MACs) and those of the *standard* convolution with
//! the same input channels, output channels, kernel, stride and dilation (groups = 1) — the layer a
//! grouped conv saves `groups`× over, and a depthwise-separable 3×3 layer about 1/(1/out + 1/9)×.

use std::fmt;

use crate::dim::{Dim, fmt_shape};
use crate::spec::{Conv, Network, Op};

/// The cost of every layer of a network.
#[derive(Clone, Debug, PartialEq)]
pub struct CostReport {
    /// One row per layer, in order.
    pub rows: Vec<CostRow>,
}

/// One layer's cost.
#[derive(Clone, Debug, PartialEq)]
pub struct CostRow {
    /// Layer name.
    pub name: String,
    /// `conv 3x3 s2`, `depthwise 3x3`, `separable 5x5`, `add`…
    pub kind: String,
    /// Logical output shape.
    pub shape: Vec<Dim>,
    /// Parameter count (weights and biases).
    pub params: u64,
    /// Multiply-accumulates.
    pub macs: Count,
    /// MACs of the standard convolution with the same channels and kernel (`None` for `add`).
    pub standard_macs: Option<Count>,
}

/// A count that is concrete, or a per-output-element count times a symbolic number of elements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Count {
    /// A number.
    Known(u128),
    /// `factor × product(elements)`, where `elements` are the symbolic dims of a shape.
    Symbolic {
        /// The count per element of `elements` (the known dims folded in).
        factor: u128,
        /// The symbolic dims whose product multiplies it.
        elements: Vec<Dim>,
    },
}

impl Count {
    /// `per_element` times the element count of `shape`; known dims are folded into the factor.
    fn of(per_element: u64, shape: &[Dim]) -> Count {
        let factor =
            shape.iter().filter_map(Dim::known).fold(u128::from(per_element), |product, dim| product * u128::from(dim));
        let symbolic: Vec<Dim> = shape.iter().filter(|dim| dim.known().is_none()).cloned().collect();
        if symbolic.is_empty() { Count::Known(factor) } else { Count::Symbolic { factor, elements: symbolic } }
    }

    /// The sum, when both are concrete or both scale the same symbolic element count.
    fn plus(&self, other: &Count) -> Option<Count> {
        match (self, other) {
            (Count::Known(a), Count::Known(b)) => Some(Count::Known(a + b)),
            (Count::Symbolic { factor: a, elements }, Count::Symbolic { factor: b, elements: other })
                if elements == other =>
            {
                Some(Count::Symbolic { factor: a + b, elements: elements.clone() })
            }
            _ => None,
        }
    }

    /// `self / other`, when both are concrete or scale the same symbolic element count.
    fn ratio(&self, other: &Count) -> Option<f64> {
        let (numerator, denominator) = match (self, other) {
            (Count::Known(a), Count::Known(b)) => (*a, *b),
            (Count::Symbolic { factor: a, elements }, Count::Symbolic { factor: b, elements: other })
                if elements == other =>
            {
                (*a, *b)
            }
            _ => return None,
        };
        (denominator > 0).then(|| numerator as f64 / denominator as f64)
    }

    /// The number, when concrete.
    pub fn known(&self) -> Option<u128> {
        match self {
            Count::Known(count) => Some(*count),
            Count::Symbolic { .. } => None,
        }
    }
}

impl fmt::Display for Count {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Count::Known(count) => write!(f, "{}", human(*count)),
            Count::Symbolic { factor, elements } => {
                let dims: Vec<String> = elements.iter().map(ToString::to_string).collect();
                write!(f, "{factor}·{}", dims.join("·"))
            }
        }
    }
}

/// `1234567` → `1.23M`.
fn human(count: u128) -> String {
    match count {
        0..1_000 => count.to_string(),
        1_000..1_000_000 => format!("{:.2}K", count as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.2}M", count as f64 / 1e6),
        _ => format!("{:.2}G", count as f64 / 1e9),
    }
}

/// The cost of every layer of `network`.
pub fn report(network: &Network) -> CostReport {
    let mut rows = Vec::new();
    for layer in &network.layers {
        let row = match &layer.op {
            Op::Add { .. } => CostRow {
                name: layer.name.clone(),
                kind: "add".to_string(),
                shape: layer.shape.clone(),
                params: 0,
                macs: Count::Known(0),
                standard_macs: None,
            },
            Op::Conv { conv, .. } => CostRow {
                name: layer.name.clone(),
                kind: conv.describe(),
                shape: layer.shape.clone(),
                params: params(conv),
                macs: Count::of(conv.macs_per_output(), &layer.shape),
                standard_macs: Some(Count::of(standard(conv), &layer.shape)),
            },
            Op::Separable { depthwise, pointwise, .. } => {
                let depthwise_shape = depthwise_output(&layer.shape, depthwise.out_channels);
                let kernel: Vec<String> = depthwise.kernel.iter().map(ToString::to_string).collect();
                let multiplier = depthwise.out_channels / depthwise.in_channels;
                let mut kind = format!("separable {}", kernel.join("x"));
                if multiplier > 1 {
                    kind.push_str(&format!(" x{multiplier}"));
                }
                CostRow {
                    name: layer.name.clone(),
                    kind,
                    shape: layer.shape.clone(),
                    params: params(depthwise) + params(pointwise),
                    macs: Count::of(depthwise.macs_per_output(), &depthwise_shape)
                        .plus(&Count::of(pointwise.macs_per_output(), &layer.shape))
                        .expect("both stages share the batch and spatial dims"),
                    standard_macs: Some(Count::of(standard(depthwise), &layer.shape)),
                }
            }
        };
        rows.push(row);
    }
    CostReport { rows }
}

/// MACs per output element of the standard (groups = 1) convolution with `conv`'s input channels
/// and kernel.
fn standard(conv: &Conv) -> u64 {
    conv.in_channels * conv.kernel.iter().product::<u64>()
}

fn params(conv: &Conv) -> u64 {
    conv.weight_shape().iter().product::<u64>() + if conv.bias { conv.out_channels } else { 0 }
}

/// The depthwise stage's output shape: the layer's, with the depthwise stage's channels.
fn depthwise_output(layer_shape: &[Dim], channels: u64) -> Vec<Dim> {
    let mut shape = layer_shape.to_vec();
    shape[1] = Dim::Known(channels);
    shape
}

impl CostRow {
    /// `standard MACs / MACs` (shape-independent, so also for symbolic shapes); `None` for `add`.
    pub fn saving(&self) -> Option<f64> {
        self.standard_macs.as_ref()?.ratio(&self.macs)
    }
}

impl CostReport {
    /// Total MACs, when every layer's is concrete.
    pub fn total_macs(&self) -> Option<u128> {
        self.rows.iter().map(|row| row.macs.known()).sum()
    }

    /// Total standard-equivalent MACs (an `add` counts 0), when concrete.
    pub fn total_standard_macs(&self) -> Option<u128> {
        self.rows.iter().map(|row| row.standard_macs.as_ref().map_or(Some(0), Count::known)).sum()
    }

    /// Total parameters.
    pub fn total_params(&self) -> u64 {
        self.rows.iter().map(|row| row.params).sum()
    }
}

/// The table `convgen check` prints.
impl fmt::Display for CostReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = ["layer", "kind", "output", "params", "MACs", "standard MACs", "saving"];
        let mut table: Vec<[String; 7]> = vec![header.map(String::from)];
        for row in &self.rows {
            table.push([
                row.name.clone(),
                row.kind.clone(),
                fmt_shape(&row.shape),
                row.params.to_string(),
                row.macs.to_string(),
                row.standard_macs.as_ref().map_or("-".to_string(), ToString::to_string),
                row.saving().map_or("-".to_string(), |saving| format!("{saving:.2}x")),
            ]);
        }
        let total_macs = self.total_macs();
        let total_standard = self.total_standard_macs();
        let saving = match (total_macs, total_standard) {
            (Some(macs), Some(standard)) if macs > 0 => format!("{:.2}x", standard as f64 / macs as f64),
            _ => "-".to_string(),
        };
        table.push([
            "total".to_string(),
            String::new(),
            String::new(),
            self.total_params().to_string(),
            total_macs.map_or("-".to_string(), human),
            total_standard.map_or("-".to_string(), human),
            saving,
        ]);
        let mut widths = [0usize; 7];
        for row in &table {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for (index, row) in table.iter().enumerate() {
            let mut line = String::new();
            for (column, (cell, width)) in row.iter().zip(widths).enumerate() {
                let pad = " ".repeat(width - cell.chars().count());
                // Text columns left-aligned, numbers right-aligned.
                if column < 3 {
                    line.push_str(&format!("{cell}{pad}  "));
                } else {
                    line.push_str(&format!("{pad}{cell}  "));
                }
            }
            writeln!(f, "{}", line.trim_end())?;
            if index == 0 || index == table.len() - 2 {
                let rule: usize = widths.iter().sum::<usize>() + 2 * (widths.len() - 1);
                writeln!(f, "{}", "-".repeat(rule))?;
            }
        }
        Ok(())
    }
}
