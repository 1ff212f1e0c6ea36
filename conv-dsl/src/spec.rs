//! The checked network: plain, validated layer descriptions with no spans and no syntax.
//!
//! Everything here holds by construction (the checker builds it): channel counts are concrete and
//! divisible by `groups`, per-axis lists have one entry per spatial axis, sizes are within
//! [`MAX_INT`], and every concrete tensor is within [`MAX_ELEMENTS`]. Shapes are listed in logical
//! order — batch, channels, then spatial axes — whatever the input's layout.

use std::fmt;

use crate::dim::{Dim, fmt_shape};

/// The largest integer a model may contain (sizes, strides, channel counts…).
pub const MAX_INT: u64 = (1 << 31) - 1;

/// The largest number of elements any tensor may have (8 GiB of f32).
pub const MAX_ELEMENTS: u64 = 1 << 31;

/// A checked model: one input, layers in evaluation order, one output.
#[derive(Clone, Debug, PartialEq)]
pub struct Network {
    /// The input.
    pub input: Input,
    /// The layers, each reading only the input and earlier layers.
    pub layers: Vec<Layer>,
    /// Index into `layers` of the result.
    pub output: usize,
}

/// The network's input.
#[derive(Clone, Debug, PartialEq)]
pub struct Input {
    /// Its name in the model.
    pub name: String,
    /// Logical shape `[N, C, spatial…]`; `C` is always known.
    pub shape: Vec<Dim>,
    /// How the input (and so the output) is laid out in memory.
    pub layout: Layout,
}

/// Memory layout of the network's input and output tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Layout {
    /// `ncw` / `nchw` / `ncdhw` (the default).
    ChannelsFirst,
    /// `nwc` / `nhwc` / `ndhwc`.
    ChannelsLast,
}

impl Layout {
    /// The layout's name for a tensor of `rank` (3, 4 or 5), e.g. `nhwc`.
    pub fn name(self, rank: usize) -> &'static str {
        match (self, rank) {
            (Layout::ChannelsFirst, 3) => "ncw",
            (Layout::ChannelsFirst, 5) => "ncdhw",
            (Layout::ChannelsFirst, _) => "nchw",
            (Layout::ChannelsLast, 3) => "nwc",
            (Layout::ChannelsLast, 5) => "ndhwc",
            (Layout::ChannelsLast, _) => "nhwc",
        }
    }

    /// A logical `[N, C, spatial…]` shape in this layout's order.
    pub fn order<T: Clone>(self, logical: &[T]) -> Vec<T> {
        match self {
            Layout::ChannelsFirst => logical.to_vec(),
            Layout::ChannelsLast => {
                let mut ordered = vec![logical[0].clone()];
                ordered.extend_from_slice(&logical[2..]);
                ordered.push(logical[1].clone());
                ordered
            }
        }
    }

    /// A shape in this layout's order back to logical `[N, C, spatial…]`.
    pub fn logical<T: Clone>(self, ordered: &[T]) -> Vec<T> {
        match self {
            Layout::ChannelsFirst => ordered.to_vec(),
            Layout::ChannelsLast => {
                let mut logical = vec![ordered[0].clone(), ordered[ordered.len() - 1].clone()];
                logical.extend_from_slice(&ordered[1..ordered.len() - 1]);
                logical
            }
        }
    }
}

/// Where a layer reads from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Source {
    /// The network's input.
    Input,
    /// An earlier layer, by index.
    Layer(usize),
}

/// One named layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Layer {
    /// Its name (a separable layer's stages are `name.dw` and `name.pw`).
    pub name: String,
    /// What it computes.
    pub op: Op,
    /// Logical output shape `[N, C, spatial…]`.
    pub shape: Vec<Dim>,
}

/// What a layer computes.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// `conv`, `depthwise` or `pointwise`.
    Conv {
        /// The value it reads.
        source: Source,
        /// The convolution.
        conv: Conv,
    },
    /// `separable`: a depthwise stage, then a pointwise stage.
    Separable {
        /// The value it reads.
        source: Source,
        /// The first stage (`name.dw`).
        depthwise: Conv,
        /// The second stage (`name.pw`).
        pointwise: Conv,
    },
    /// `add`: `act(left + right)` of two values of one shape.
    Add {
        /// First operand.
        left: Source,
        /// Second operand.
        right: Source,
        /// Applied to the sum.
        act: Activation,
    },
}

impl Op {
    /// The values this op reads.
    pub fn sources(&self) -> Vec<Source> {
        match self {
            Op::Conv { source, .. } | Op::Separable { source, .. } => vec![*source],
            Op::Add { left, right, .. } => vec![*left, *right],
        }
    }

    /// The convolutions this op runs, in order, each with its parameter prefix's suffix
    /// (`""` for a plain conv, `".dw"` / `".pw"` for a separable layer's stages).
    pub fn stages(&self) -> Vec<(&'static str, &Conv)> {
        match self {
            Op::Conv { conv, .. } => vec![("", conv)],
            Op::Separable { depthwise, pointwise, .. } => vec![(".dw", depthwise), (".pw", pointwise)],
            Op::Add { .. } => Vec::new(),
        }
    }
}

/// Which DSL keyword a convolution came from (all are the same computation; this is for people).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConvKind {
    /// `conv` (standard or grouped).
    Standard,
    /// `depthwise`, or the first stage of `separable`.
    Depthwise,
    /// `pointwise`, or the second stage of `separable`.
    Pointwise,
}

/// A convolution with PyTorch's semantics.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    /// Which keyword it came from.
    pub kind: ConvKind,
    /// Input channels.
    pub in_channels: u64,
    /// Output channels.
    pub out_channels: u64,
    /// Channel groups; divides both channel counts.
    pub groups: u64,
    /// Kernel size per spatial axis.
    pub kernel: Vec<u64>,
    /// Stride per spatial axis.
    pub stride: Vec<u64>,
    /// Dilation per spatial axis.
    pub dilation: Vec<u64>,
    /// Zero padding.
    pub padding: Padding,
    /// Whether a bias is added.
    pub bias: bool,
    /// Applied to the result.
    pub act: Activation,
}

/// Zero padding of a convolution.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Padding {
    /// `[before, after]` per spatial axis.
    Explicit(Vec<[u64; 2]>),
    /// Output = ceil(input / stride), the extra element at the end (TF/ONNX `SAME_UPPER`).
    Same,
}

/// An elementwise activation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// Identity.
    None,
    /// max(x, 0).
    Relu,
    /// min(max(x, 0), 6).
    Relu6,
    /// x if x ≥ 0 else αx.
    LeakyRelu(f32),
    /// x · relu6(x + 3) / 6.
    Hardswish,
    /// x · sigmoid(x).
    Silu,
    /// 1 / (1 + e^−x).
    Sigmoid,
}

impl Activation {
    /// Applies the activation (in f64: the interpreter's precision).
    pub fn apply(self, x: f64) -> f64 {
        match self {
            Activation::None => x,
            Activation::Relu => x.max(0.0),
            Activation::Relu6 => x.clamp(0.0, 6.0),
            Activation::LeakyRelu(alpha) => {
                if x >= 0.0 {
                    x
                } else {
                    f64::from(alpha) * x
                }
            }
            Activation::Hardswish => x * (x + 3.0).clamp(0.0, 6.0) / 6.0,
            Activation::Silu => x / (1.0 + (-x).exp()),
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        }
    }
}

impl fmt::Display for Activation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Activation::None => write!(f, "none"),
            Activation::Relu => write!(f, "relu"),
            Activation::Relu6 => write!(f, "relu6"),
            Activation::LeakyRelu(alpha) => write!(f, "leaky_relu({alpha:?})"),
            Activation::Hardswish => write!(f, "hardswish"),
            Activation::Silu => write!(f, "silu"),
            Activation::Sigmoid => write!(f, "sigmoid"),
        }
    }
}

impl Conv {
    /// Whether each output channel reads one input channel, its own: one input and one output
    /// channel per group (a depthwise convolution with multiplier 1).
    pub fn is_depthwise(&self) -> bool {
        self.in_channels == self.groups && self.out_channels == self.groups
    }

    /// Whether every output channel reads every input channel at one position: a 1×1 window (any
    /// stride) of one group.
    pub fn is_dense_pointwise(&self) -> bool {
        self.groups == 1 && self.kernel.iter().all(|&taps| taps == 1)
    }

    /// `dilation·(kernel − 1) + 1` on `axis`: the extent one output element reads.
    pub fn effective_kernel(&self, axis: usize) -> u64 {
        self.dilation[axis] * (self.kernel[axis] - 1) + 1
    }

    /// The `[before, after]` padding of each spatial axis for a concrete input.
    pub fn resolve_padding(&self, input_spatial: &[u64]) -> Vec<[u64; 2]> {
        match &self.padding {
            Padding::Explicit(pads) => pads.clone(),
            Padding::Same => input_spatial
                .iter()
                .enumerate()
                .map(|(axis, &input)| {
                    let output = input.div_ceil(self.stride[axis]);
                    let needed = (output.saturating_sub(1)) * self.stride[axis] + self.effective_kernel(axis);
                    let total = needed.saturating_sub(input);
                    [total / 2, total - total / 2]
                })
                .collect(),
        }
    }

    /// The output size on each spatial axis for a concrete input, or the first axis whose padded
    /// input is smaller than the effective kernel (an empty output).
    pub fn output_spatial(&self, input_spatial: &[u64]) -> Result<Vec<u64>, EmptyOutput> {
        let pads = self.resolve_padding(input_spatial);
        input_spatial
            .iter()
            .enumerate()
            .map(|(axis, &input)| {
                let padded = input + pads[axis][0] + pads[axis][1];
                let effective_kernel = self.effective_kernel(axis);
                if padded < effective_kernel {
                    return Err(EmptyOutput { axis, padded, effective_kernel });
                }
                Ok((padded - effective_kernel) / self.stride[axis] + 1)
            })
            .collect()
    }

    /// The output dims for possibly symbolic input dims (concrete dims must already be known to
    /// give a non-empty output).
    pub fn output_dims(&self, input_spatial: &[Dim]) -> Vec<Dim> {
        input_spatial
            .iter()
            .enumerate()
            .map(|(axis, input)| match &self.padding {
                Padding::Same => input.clone().ceil_div(self.stride[axis]),
                Padding::Explicit(pads) => {
                    let slack = (pads[axis][0] + pads[axis][1]) as i64 - self.effective_kernel(axis) as i64;
                    input.clone().offset(slack).floor_div(self.stride[axis]).offset(1)
                }
            })
            .collect()
    }

    /// Weight shape `[out, in/groups, *kernel]` (PyTorch's).
    pub fn weight_shape(&self) -> Vec<u64> {
        let mut shape = vec![self.out_channels, self.in_channels / self.groups];
        shape.extend_from_slice(&self.kernel);
        shape
    }

    /// Multiply-accumulates per output element: `in/groups · prod(kernel)`.
    pub fn macs_per_output(&self) -> u64 {
        self.in_channels / self.groups * self.kernel.iter().product::<u64>()
    }

    /// A short description for tables: `depthwise 3x3 s2`, `conv 3x3 g32`, `pointwise`.
    pub fn describe(&self) -> String {
        let kernel: Vec<String> = self.kernel.iter().map(ToString::to_string).collect();
        let mut text = match self.kind {
            ConvKind::Standard if self.groups > 1 => format!("grouped {} g{}", kernel.join("x"), self.groups),
            ConvKind::Standard => format!("conv {}", kernel.join("x")),
            ConvKind::Depthwise => {
                let multiplier = self.out_channels / self.in_channels;
                let suffix = if multiplier > 1 { format!(" x{multiplier}") } else { String::new() };
                format!("depthwise {}{suffix}", kernel.join("x"))
            }
            ConvKind::Pointwise if self.groups > 1 => format!("pointwise g{}", self.groups),
            ConvKind::Pointwise => "pointwise".to_string(),
        };
        if self.stride.iter().any(|&stride| stride > 1) {
            text.push_str(&format!(" s{}", join_axes(&self.stride)));
        }
        if self.dilation.iter().any(|&dilation| dilation > 1) {
            text.push_str(&format!(" d{}", join_axes(&self.dilation)));
        }
        text
    }
}

fn join_axes(values: &[u64]) -> String {
    if values.iter().all(|&value| value == values[0]) {
        values[0].to_string()
    } else {
        values.iter().map(ToString::to_string).collect::<Vec<_>>().join("x")
    }
}

/// A padded input smaller than the effective kernel: the output would be empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmptyOutput {
    /// Spatial axis (0-based).
    pub axis: usize,
    /// Input plus padding on that axis.
    pub padded: u64,
    /// `dilation·(kernel − 1) + 1` on that axis.
    pub effective_kernel: u64,
}

/// A parameter tensor the network needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamSpec {
    /// PyTorch-style name: `c1.weight`, `s.dw.bias`.
    pub name: String,
    /// PyTorch layout: weights `[out, in/groups, *kernel]`, biases `[out]`.
    pub shape: Vec<u64>,
    /// `in/groups · prod(kernel)` of the convolution it belongs to (for initialisation).
    pub fan_in: u64,
}

impl Network {
    /// Spatial rank: 1, 2 or 3.
    pub fn spatial_rank(&self) -> usize {
        self.input.shape.len() - 2
    }

    /// The shape of a value.
    pub fn shape_of(&self, source: Source) -> &[Dim] {
        match source {
            Source::Input => &self.input.shape,
            Source::Layer(index) => &self.layers[index].shape,
        }
    }

    /// The name of a value.
    pub fn name_of(&self, source: Source) -> &str {
        match source {
            Source::Input => &self.input.name,
            Source::Layer(index) => &self.layers[index].name,
        }
    }

    /// Every parameter tensor, in layer order (weight before bias).
    pub fn parameters(&self) -> Vec<ParamSpec> {
        let mut params = Vec::new();
        for layer in &self.layers {
            for (suffix, conv) in layer.op.stages() {
                let fan_in = conv.macs_per_output();
                params.push(ParamSpec {
                    name: format!("{}{suffix}.weight", layer.name),
                    shape: conv.weight_shape(),
                    fan_in,
                });
                if conv.bias {
                    params.push(ParamSpec {
                        name: format!("{}{suffix}.bias", layer.name),
                        shape: vec![conv.out_channels],
                        fan_in,
                    });
                }
            }
        }
        params
    }

    /// The input's shape as written (in its layout's order).
    pub fn input_shape_in_layout(&self) -> Vec<Dim> {
        self.input.layout.order(&self.input.shape)
    }

    /// The input shape as written (in its layout's order) with every symbolic dim replaced: the
    /// batch dim by `batch`, any other by `size` (a symbol used twice gets the same value, as
    /// binding requires). For tests, benchmarks and examples that need some concrete shape.
    pub fn example_input_shape(&self, batch: u64, size: u64) -> Vec<u64> {
        let batch_axis = 0; // batch is first in every layout
        self.input_shape_in_layout()
            .iter()
            .enumerate()
            .map(|(axis, dim)| match dim {
                Dim::Known(known) => *known,
                _ if axis == batch_axis => batch,
                _ => size,
            })
            .collect()
    }

    /// The output's shape in the input's layout.
    pub fn output_shape_in_layout(&self) -> Vec<Dim> {
        self.input.layout.order(&self.layers[self.output].shape)
    }
}

/// The canonical checked form (`convgen inspect --emit spec`, corpus snapshots).
impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rank = self.input.shape.len();
        writeln!(
            f,
            "input {}: {} {} (conv{}d)",
            self.input.name,
            fmt_shape(&self.input_shape_in_layout()),
            self.input.layout.name(rank),
            rank - 2
        )?;
        for layer in &self.layers {
            self.write_layer(f, layer)?;
        }
        for param in self.parameters() {
            writeln!(f, "param {} {}", param.name, fmt_shape(&param.shape))?;
        }
        writeln!(
            f,
            "output {}: {} {}",
            self.layers[self.output].name,
            fmt_shape(&self.output_shape_in_layout()),
            self.input.layout.name(rank)
        )
    }
}

impl Network {
    /// One layer's part of the canonical form (`convgen inspect --emit spec --layer NAME`).
    pub fn layer_text(&self, index: usize) -> String {
        struct One<'a>(&'a Network, &'a Layer);
        impl fmt::Display for One<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.write_layer(f, self.1)?;
                for param in self.0.parameters() {
                    if param.name.strip_prefix(self.1.name.as_str()).is_some_and(|rest| rest.starts_with('.')) {
                        writeln!(f, "param {} {}", param.name, fmt_shape(&param.shape))?;
                    }
                }
                Ok(())
            }
        }
        One(self, &self.layers[index]).to_string()
    }

    fn write_layer(&self, f: &mut fmt::Formatter<'_>, layer: &Layer) -> fmt::Result {
        let sources: Vec<&str> = layer.op.sources().into_iter().map(|source| self.name_of(source)).collect();
        match &layer.op {
            Op::Conv { conv, .. } => {
                writeln!(
                    f,
                    "{} {}({}) -> {}",
                    keyword(conv.kind),
                    layer.name,
                    sources.join(", "),
                    fmt_shape(&layer.shape)
                )?;
                write_conv(f, "    ", conv)
            }
            Op::Separable { depthwise, pointwise, .. } => {
                writeln!(f, "separable {}({}) -> {}", layer.name, sources.join(", "), fmt_shape(&layer.shape))?;
                writeln!(f, "    .dw:")?;
                write_conv(f, "        ", depthwise)?;
                writeln!(f, "    .pw:")?;
                write_conv(f, "        ", pointwise)
            }
            Op::Add { act, .. } => {
                writeln!(f, "add {}({}) -> {}", layer.name, sources.join(", "), fmt_shape(&layer.shape))?;
                writeln!(f, "    act {act}")
            }
        }
    }
}

fn keyword(kind: ConvKind) -> &'static str {
    match kind {
        ConvKind::Standard => "conv",
        ConvKind::Depthwise => "depthwise",
        ConvKind::Pointwise => "pointwise",
    }
}

fn write_conv(f: &mut fmt::Formatter<'_>, indent: &str, conv: &Conv) -> fmt::Result {
    let padding = match &conv.padding {
        Padding::Same => "same".to_string(),
        Padding::Explicit(pads) => {
            fmt_shape(&pads.iter().map(|[before, after]| format!("[{before}, {after}]")).collect::<Vec<_>>())
        }
    };
    writeln!(
        f,
        "{indent}channels {} -> {}, groups {}, kernel {}, stride {}, dilation {}, pad {}, bias {}, act {}",
        conv.in_channels,
        conv.out_channels,
        conv.groups,
        fmt_shape(&conv.kernel),
        fmt_shape(&conv.stride),
        fmt_shape(&conv.dilation),
        padding,
        conv.bias,
        conv.act
    )
}
