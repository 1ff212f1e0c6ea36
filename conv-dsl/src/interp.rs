//! The reference interpreter: the oracle every backend and schedule is checked against.
//!
//! It works straight from the checked [`Network`] (not from any loop IR a backend uses) and is
//! written to be obviously correct rather than fast: one loop per index of PyTorch's definition of
//! `conv1d/2d/3d`, accumulation in f64, zero padding by bounds checks. 1D and 2D convolutions are
//! run as 3D ones with leading spatial axes of size 1 and kernel 1, which is the same sum.

use crate::bind::{BoundConv, bind};
use crate::error::Error;
use crate::params::Params;
use crate::spec::{Conv, Layout, Network, Op, Source};
use crate::tensor::Tensor;

/// Runs `network` on `input` (shaped and laid out as the model's `input` declares) with `params`.
/// Returns the output in the input's layout.
pub fn run(network: &Network, input: &Tensor, params: &Params) -> Result<Tensor, Error> {
    let binding = bind(network, &input.shape_u64())?;
    params.validate(network)?;

    let layout = network.input.layout;
    let input_values = to_channels_first(layout, input);
    let mut values: Vec<Vec<f32>> = Vec::with_capacity(network.layers.len());
    for (index, layer) in network.layers.iter().enumerate() {
        let read = |source: Source| -> &[f32] {
            match source {
                Source::Input => &input_values,
                Source::Layer(earlier) => &values[earlier],
            }
        };
        let output = match &layer.op {
            Op::Add { left, right, act } => read(*left)
                .iter()
                .zip(read(*right))
                .map(|(&a, &b)| act.apply(f64::from(a) + f64::from(b)) as f32)
                .collect(),
            Op::Conv { source, .. } | Op::Separable { source, .. } => {
                let mut current = read(*source).to_vec();
                for ((suffix, conv), bound) in layer.op.stages().into_iter().zip(&binding.layers[index].stages) {
                    let weight = params.get(&format!("{}{suffix}.weight", layer.name)).map(Tensor::data);
                    let bias = params.get(&format!("{}{suffix}.bias", layer.name)).map(Tensor::data);
                    let weight = weight.expect("validate() checked that every weight is present");
                    current = convolve(conv, bound, &current, weight, if conv.bias { bias } else { None });
                }
                current
            }
        };
        values.push(output);
    }
    let output_shape: Vec<usize> = binding.layers[network.output].shape.iter().map(|&dim| dim as usize).collect();
    let output = values.swap_remove(network.output);
    Ok(from_channels_first(layout, &output_shape, output))
}

/// One convolution over a channels-first value: `input` is `bound.input`, the result `bound.output`.
/// `weight` is `[out, in/groups, *kernel]`, `bias` `[out]`.
pub fn convolve(conv: &Conv, bound: &BoundConv, input: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let as_3d = |shape: &[u64]| -> [usize; 3] {
        let spatial: Vec<usize> = shape.iter().map(|&dim| dim as usize).collect();
        let mut padded = [1; 3];
        padded[3 - spatial.len()..].copy_from_slice(&spatial);
        padded
    };
    let batch = bound.input[0] as usize;
    let in_channels = conv.in_channels as usize;
    let out_channels = conv.out_channels as usize;
    let in_per_group = in_channels / conv.groups as usize;
    let out_per_group = out_channels / conv.groups as usize;
    let [in_d, in_h, in_w] = as_3d(&bound.input[2..]);
    let [out_d, out_h, out_w] = as_3d(&bound.output[2..]);
    let [k_d, k_h, k_w] = as_3d(&conv.kernel);
    let [s_d, s_h, s_w] = as_3d(&conv.stride);
    let [d_d, d_h, d_w] = as_3d(&conv.dilation);
    let before: Vec<u64> = bound.padding.iter().map(|[before, _]| *before).collect();
    let [p_d, p_h, p_w] = as_3d(&before);
    let rank = conv.kernel.len();
    // Axes that are not really there have pad 0 (as_3d fills them with 1): fix them up.
    let pad_of = |axis: usize, value: usize| if axis < 3 - rank { 0 } else { value };
    let (p_d, p_h, p_w) = (pad_of(0, p_d), pad_of(1, p_h), pad_of(2, p_w));

    let mut output = vec![0.0f32; batch * out_channels * out_d * out_h * out_w];
    for n in 0..batch {
        for oc in 0..out_channels {
            let group = oc / out_per_group;
            for od in 0..out_d {
                for oh in 0..out_h {
                    for ow in 0..out_w {
                        let mut sum = bias.map_or(0.0, |bias| f64::from(bias[oc]));
                        for icg in 0..in_per_group {
                            let ic = group * in_per_group + icg;
                            for kd in 0..k_d {
                                let Some(id) = source_index(od, kd, s_d, d_d, p_d, in_d) else { continue };
                                for kh in 0..k_h {
                                    let Some(ih) = source_index(oh, kh, s_h, d_h, p_h, in_h) else { continue };
                                    for kw in 0..k_w {
                                        let Some(iw) = source_index(ow, kw, s_w, d_w, p_w, in_w) else { continue };
                                        // input [n, c, d, h, w]; weight [oc, icg, kd, kh, kw]
                                        let x = input[(((n * in_channels + ic) * in_d + id) * in_h + ih) * in_w + iw];
                                        let w = weight[(((oc * in_per_group + icg) * k_d + kd) * k_h + kh) * k_w + kw];
                                        sum += f64::from(x) * f64::from(w);
                                    }
                                }
                            }
                        }
                        output[(((n * out_channels + oc) * out_d + od) * out_h + oh) * out_w + ow] =
                            conv.act.apply(sum) as f32;
                    }
                }
            }
        }
    }
    output
}

/// The input index read by output index `out` at kernel tap `tap`, or `None` in the zero padding.
fn source_index(
    out: usize,
    tap: usize,
    stride: usize,
    dilation: usize,
    pad_before: usize,
    size: usize,
) -> Option<usize> {
    (out * stride + tap * dilation).checked_sub(pad_before).filter(|&index| index < size)
}

/// A tensor in `layout` as a channels-first buffer.
fn to_channels_first(layout: Layout, tensor: &Tensor) -> Vec<f32> {
    match layout {
        Layout::ChannelsFirst => tensor.data().to_vec(),
        Layout::ChannelsLast => {
            // [n, spatial…, c] → [n, c, spatial…]
            let shape = tensor.shape();
            let (batch, channels) = (shape[0], shape[shape.len() - 1]);
            let positions: usize = shape[1..shape.len() - 1].iter().product();
            let mut out = vec![0.0; tensor.data().len()];
            for n in 0..batch {
                for p in 0..positions {
                    for c in 0..channels {
                        out[(n * channels + c) * positions + p] = tensor.data()[(n * positions + p) * channels + c];
                    }
                }
            }
            out
        }
    }
}

/// A channels-first buffer of logical `shape` as a tensor in `layout`.
fn from_channels_first(layout: Layout, logical_shape: &[usize], data: Vec<f32>) -> Tensor {
    let shape = layout.order(logical_shape);
    let data = match layout {
        Layout::ChannelsFirst => data,
        Layout::ChannelsLast => {
            let (batch, channels) = (logical_shape[0], logical_shape[1]);
            let positions: usize = logical_shape[2..].iter().product();
            let mut out = vec![0.0; data.len()];
            for n in 0..batch {
                for c in 0..channels {
                    for p in 0..positions {
                        out[(n * positions + p) * channels + c] = data[(n * channels + c) * positions + p];
                    }
                }
            }
            out
        }
    };
    Tensor::new(shape, data).expect("the binding's output shape matches the computed buffer")
}
