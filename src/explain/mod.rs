//! `convgen explain`: the cost story and pictures of every layer of a model.
//!
//! Grouped, depthwise, pointwise and separable convolutions are easiest to understand as pictures:
//! the input channels split into groups, each filter reading only its group, the group outputs
//! stacked back together. [`explain`] computes from the checked [`Network`] everything there is to
//! say and draw about each layer — its kind, its channel partition, which groups and channels to
//! draw (large counts compressed to a few, with the rest summarised), the animation's steps and the
//! cost report's numbers. [`text`], [`svg`] and [`html`] render it as terminal text, a diagram of
//! one layer and a self-contained page; [`write_svg`] and [`write_html`] write files atomically.
//!
//! ```
//! let network = convgen::compile_source("g.conv", "
//!     input x: [1, 32, 8, 8];
//!     conv g(x) { out: 64, kernel: 3, pad: 1, groups: 4 }
//! ").unwrap();
//! let explanation = convgen::explain::explain(&network);
//! let layer = &explanation.layers[0];
//! let convgen::explain::Body::Convolution(stages) = &layer.body else { unreachable!() };
//! assert_eq!(stages[0].partition(), "32 → 4 groups of 8 → 64");
//! assert!(convgen::explain::text::layer(layer).contains("saving      4.00x"));
//! assert!(convgen::explain::svg::layer(layer).starts_with("<svg"));
//! ```

pub mod html;
pub mod svg;
pub mod text;

use std::fmt;
use std::path::Path;

use conv_dsl::cost::{CostRow, Count};

use crate::{Activation, Conv, ConvKind, Dim, Error, Network, Op};

/// Groups beyond this many are not all drawn: the first [`SHOWN_LEADING_GROUPS`] and the last are,
/// with the ones between summarised.
pub const MAX_SHOWN_GROUPS: u64 = 8;

/// How many leading groups are drawn when there are more than [`MAX_SHOWN_GROUPS`].
pub const SHOWN_LEADING_GROUPS: u64 = 6;

/// A side (input or output channels) with at most this many channels in its drawn groups is drawn
/// channel by channel.
pub const MAX_FULL_CHANNELS: u64 = 32;

/// Otherwise about this many channels of a side are drawn, split among its drawn groups (at least
/// three per group: the first two and the last).
pub const COMPRESSED_CHANNELS: u64 = 12;

/// What there is to say and draw about every layer of a network.
#[derive(Clone, Debug, PartialEq)]
pub struct Explanation {
    /// Spatial rank: 1, 2 or 3 (conv1d, conv2d, conv3d).
    pub rank: usize,
    /// The network's input.
    pub input: Operand,
    /// The layer whose value is the network's output.
    pub output: Operand,
    /// One entry per layer, in evaluation order.
    pub layers: Vec<LayerExplanation>,
}

/// A named value and its logical shape `[N, C, spatial…]`.
#[derive(Clone, Debug, PartialEq)]
pub struct Operand {
    /// The input's or layer's name.
    pub name: String,
    /// Logical shape `[N, C, spatial…]`.
    pub shape: Vec<Dim>,
}

/// What there is to say and draw about one layer.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerExplanation {
    /// The layer's name.
    pub name: String,
    /// Its kind, for people.
    pub kind: LayerKind,
    /// The values it reads (two for an `add`).
    pub inputs: Vec<Operand>,
    /// Its logical output shape.
    pub shape: Vec<Dim>,
    /// Its convolution stages, or its channels for an `add`.
    pub body: Body,
    /// The cost report's row: parameters, MACs, the standard-conv equivalent and the saving.
    pub cost: CostRow,
}

/// The kind of a layer, as `convgen explain` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// `conv` with `groups: 1`: every output channel reads every input channel.
    Standard,
    /// `conv` with `groups` > 1.
    Grouped {
        /// The channel groups.
        groups: u64,
    },
    /// `depthwise`: one group per input channel.
    Depthwise {
        /// Output channels per input channel.
        multiplier: u64,
    },
    /// `pointwise`: a 1×1 convolution.
    Pointwise {
        /// The channel groups (1 unless grouped, as in ShuffleNet).
        groups: u64,
    },
    /// `separable`: depthwise, then pointwise.
    Separable {
        /// The depthwise stage's output channels per input channel.
        multiplier: u64,
    },
    /// `add`: elementwise sum of two values.
    Add,
}

/// A layer's convolution stages, or what an `add` adds.
#[derive(Clone, Debug, PartialEq)]
pub enum Body {
    /// One stage, or two for a separable layer (`NAME.dw` then `NAME.pw`).
    Convolution(Vec<Stage>),
    /// An elementwise `add`.
    Add {
        /// Applied to the sum.
        act: Activation,
        /// The channels to draw (the same on both operands and the output).
        channels: Vec<ChannelEntry>,
    },
}

/// One convolution and the groups and channels to draw of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Stage {
    /// The layer's name, or `NAME.dw` / `NAME.pw` for a separable layer's stages.
    pub name: String,
    /// The convolution.
    pub conv: Conv,
    /// The groups to draw, in order; a long run of alike groups is one [`GroupEntry::Hidden`].
    pub groups: Vec<GroupEntry>,
}

/// A group to draw, or a run of groups summarised.
#[derive(Clone, Debug, PartialEq)]
pub enum GroupEntry {
    /// A group drawn with its channels.
    Shown(GroupView),
    /// Groups `first..=last`, not drawn.
    Hidden {
        /// The first group not drawn.
        first: u64,
        /// The last group not drawn.
        last: u64,
    },
}

/// One drawn group: the input channels it reads and the output channels its filters write.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupView {
    /// The group's index.
    pub index: u64,
    /// Its input channels to draw.
    pub inputs: Vec<ChannelEntry>,
    /// Its output channels (one per filter) to draw.
    pub outputs: Vec<ChannelEntry>,
}

/// A channel to draw, or a run of channels summarised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChannelEntry {
    /// Channel number.
    Channel(u64),
    /// Channels `first..=last`, not drawn.
    Hidden {
        /// The first channel not drawn.
        first: u64,
        /// The last channel not drawn.
        last: u64,
    },
}

/// One step of the animation in the HTML page: what is highlighted, and what it says meanwhile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// The `data-step` value of the diagram elements it highlights, or `all`.
    pub id: String,
    /// The stage it belongs to (elements of other stages dim), or `None` for the whole layer.
    pub stage: Option<usize>,
    /// What the step shows, in one sentence.
    pub caption: String,
}

/// What there is to say and draw about every layer of `network`.
pub fn explain(network: &Network) -> Explanation {
    let cost = crate::cost_report(network);
    let layers = network
        .layers
        .iter()
        .zip(cost.rows)
        .map(|(layer, cost)| {
            let inputs: Vec<Operand> = layer
                .op
                .sources()
                .into_iter()
                .map(|source| Operand {
                    name: network.name_of(source).to_string(),
                    shape: network.shape_of(source).to_vec(),
                })
                .collect();
            let body = match &layer.op {
                Op::Conv { conv, .. } => Body::Convolution(vec![stage(layer.name.clone(), conv)]),
                Op::Separable { depthwise, pointwise, .. } => Body::Convolution(vec![
                    stage(format!("{}.dw", layer.name), depthwise),
                    stage(format!("{}.pw", layer.name), pointwise),
                ]),
                Op::Add { act, .. } => {
                    let channels = channel_count(&layer.shape);
                    Body::Add { act: *act, channels: compress_channels(0, channels, 1) }
                }
            };
            LayerExplanation {
                name: layer.name.clone(),
                kind: kind_of(&layer.op),
                inputs,
                shape: layer.shape.clone(),
                body,
                cost,
            }
        })
        .collect();
    Explanation {
        rank: network.spatial_rank(),
        input: Operand { name: network.input.name.clone(), shape: network.input.shape.clone() },
        output: Operand {
            name: network.layers[network.output].name.clone(),
            shape: network.layers[network.output].shape.clone(),
        },
        layers,
    }
}

/// Writes the diagram of one layer ([`svg::layer`]) to `path`, atomically: on failure no file is
/// left behind.
pub fn write_svg(path: &Path, layer: &LayerExplanation) -> Result<(), Error> {
    let text = svg::layer(layer);
    crate::io::write_atomically(path, |file| std::io::Write::write_all(file, text.as_bytes()))
}

/// Writes the page of every layer ([`html::page`]) to `path`, atomically. `title` names the model
/// (its file name, usually).
pub fn write_html(path: &Path, title: &str, explanation: &Explanation) -> Result<(), Error> {
    let text = html::page(title, explanation);
    crate::io::write_atomically(path, |file| std::io::Write::write_all(file, text.as_bytes()))
}

impl Explanation {
    /// The layer called `name`.
    pub fn layer(&self, name: &str) -> Option<&LayerExplanation> {
        self.layers.iter().find(|layer| layer.name == name)
    }

    /// The names of the layers, in order.
    pub fn layer_names(&self) -> Vec<&str> {
        self.layers.iter().map(|layer| layer.name.as_str()).collect()
    }

    /// The same explanation with only the layer called `name`, if there is one.
    pub fn only(&self, name: &str) -> Option<Explanation> {
        let layer = self.layer(name)?.clone();
        Some(Explanation {
            rank: self.rank,
            input: self.input.clone(),
            output: self.output.clone(),
            layers: vec![layer],
        })
    }

    /// Total parameters.
    pub fn total_params(&self) -> u64 {
        self.layers.iter().map(|layer| layer.cost.params).sum()
    }

    /// Total MACs, when every layer's is concrete.
    pub fn total_macs(&self) -> Option<u128> {
        self.layers.iter().map(|layer| layer.cost.macs.known()).sum()
    }

    /// Total MACs of the standard convolutions (an `add` counts 0), when concrete.
    pub fn total_standard_macs(&self) -> Option<u128> {
        self.layers.iter().map(|layer| layer.cost.standard_macs.as_ref().map_or(Some(0), Count::known)).sum()
    }
}

impl LayerExplanation {
    /// The activation applied last (after both stages of a separable layer).
    pub fn act(&self) -> Activation {
        match &self.body {
            Body::Convolution(stages) => stages.last().map_or(Activation::None, |stage| stage.conv.act),
            Body::Add { act, .. } => *act,
        }
    }

    /// The animation's steps: each drawn group of each stage in turn (each drawn channel of an
    /// `add`), then the whole layer.
    pub fn steps(&self) -> Vec<Step> {
        let mut steps = Vec::new();
        match &self.body {
            Body::Convolution(stages) => {
                for (stage_index, stage) in stages.iter().enumerate() {
                    for entry in &stage.groups {
                        if let GroupEntry::Shown(group) = entry {
                            steps.push(Step {
                                id: step_id(stage_index, group.index),
                                stage: Some(stage_index),
                                caption: stage.group_caption(group.index),
                            });
                        }
                    }
                }
                let caption = match stages.as_slice() {
                    [first, second] => format!(
                        "both stages: {} ({}), then {} ({})",
                        first.name,
                        first.partition(),
                        second.name,
                        second.partition()
                    ),
                    _ => stages.iter().map(|stage| format!("all groups: {}", stage.partition())).collect(),
                };
                steps.push(Step { id: "all".to_string(), stage: None, caption });
            }
            Body::Add { channels, .. } => {
                let [left, right] = self.operand_names();
                for entry in channels {
                    if let ChannelEntry::Channel(channel) = entry {
                        steps.push(Step {
                            id: format!("c{channel}"),
                            stage: None,
                            caption: format!(
                                "channel {channel}: {left}[{channel}] + {right}[{channel}] → {}[{channel}]",
                                self.name
                            ),
                        });
                    }
                }
                steps.push(Step {
                    id: "all".to_string(),
                    stage: None,
                    caption: format!(
                        "all {} channels, each added on its own: no channel mixing, no multiplies",
                        channel_count(&self.shape)
                    ),
                });
            }
        }
        steps
    }

    /// The names of an `add`'s two operands (the first input twice for a convolution).
    pub(crate) fn operand_names(&self) -> [&str; 2] {
        let first = self.inputs.first().map_or("", |operand| operand.name.as_str());
        let second = self.inputs.get(1).map_or(first, |operand| operand.name.as_str());
        [first, second]
    }

    /// `x [1, 16, 20, 20] → [1, 32, 20, 20]`, or `a [...] + b [...] → [...]` for an `add`.
    pub fn shapes(&self) -> String {
        let inputs: Vec<String> = self
            .inputs
            .iter()
            .map(|operand| format!("{} {}", operand.name, conv_dsl::dim::fmt_shape(&operand.shape)))
            .collect();
        format!("{} → {}", inputs.join(" + "), conv_dsl::dim::fmt_shape(&self.shape))
    }
}

impl Stage {
    /// Input channels per group.
    pub fn in_per_group(&self) -> u64 {
        self.conv.in_channels / self.conv.groups
    }

    /// Output channels (filters) per group.
    pub fn out_per_group(&self) -> u64 {
        self.conv.out_channels / self.conv.groups
    }

    /// `32 → 4 groups of 8 → 64`.
    pub fn partition(&self) -> String {
        let groups = self.conv.groups;
        format!(
            "{} → {groups} group{} of {} → {}",
            self.conv.in_channels,
            if groups == 1 { "" } else { "s" },
            self.in_per_group(),
            self.conv.out_channels
        )
    }

    /// One filter's weights, `in/groups × kernel`: `8×3×3`.
    pub fn filter_shape(&self) -> String {
        let mut dims = vec![self.in_per_group().to_string()];
        dims.extend(self.conv.kernel.iter().map(ToString::to_string));
        dims.join("×")
    }

    /// The input channels of `group`.
    pub fn input_range(&self, group: u64) -> (u64, u64) {
        let per_group = self.in_per_group();
        (group * per_group, (group + 1) * per_group - 1)
    }

    /// The output channels of `group`.
    pub fn output_range(&self, group: u64) -> (u64, u64) {
        let per_group = self.out_per_group();
        (group * per_group, (group + 1) * per_group - 1)
    }

    /// What each filter reads, in one sentence.
    pub fn reads(&self) -> String {
        let conv = &self.conv;
        let per_group = self.in_per_group();
        match conv.kind {
            _ if conv.groups == 1 && conv.kind == ConvKind::Pointwise => format!(
                "every output channel mixes all {} input channels at one position (1×1): the channels come back into contact",
                conv.in_channels
            ),
            _ if conv.groups == 1 => format!("every output channel reads all {} input channels", conv.in_channels),
            _ if per_group == 1 => {
                let multiplier = self.out_per_group();
                if multiplier == 1 {
                    "each output channel reads exactly one input channel: its own".to_string()
                } else {
                    format!("each input channel feeds its own {multiplier} filters; no channels mix")
                }
            }
            _ => format!(
                "each output channel reads only the {per_group} input channels of its group (of {})",
                conv.in_channels
            ),
        }
    }

    /// The animation's caption for one group.
    fn group_caption(&self, group: u64) -> String {
        let filters = self.out_per_group();
        let (in_first, in_last) = self.input_range(group);
        let (out_first, out_last) = self.output_range(group);
        format!(
            "{}: group {} of {}: input channel{} {} → {filters} filter{} of {} → output channel{} {}",
            self.name,
            group,
            self.conv.groups,
            if in_first == in_last { "" } else { "s" },
            range(in_first, in_last),
            if filters == 1 { "" } else { "s" },
            self.filter_shape(),
            if out_first == out_last { "" } else { "s" },
            range(out_first, out_last)
        )
    }
}

impl fmt::Display for LayerKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LayerKind::Standard => write!(f, "standard"),
            LayerKind::Grouped { groups } => write!(f, "grouped, {groups} groups"),
            LayerKind::Depthwise { multiplier: 1 } => write!(f, "depthwise"),
            LayerKind::Depthwise { multiplier } => write!(f, "depthwise ×{multiplier}"),
            LayerKind::Pointwise { groups: 1 } => write!(f, "pointwise"),
            LayerKind::Pointwise { groups } => write!(f, "pointwise, {groups} groups"),
            LayerKind::Separable { multiplier: 1 } => write!(f, "separable: depthwise, then pointwise"),
            LayerKind::Separable { multiplier } => write!(f, "separable: depthwise ×{multiplier}, then pointwise"),
            LayerKind::Add => write!(f, "add"),
        }
    }
}

/// The `data-step` value of group `group` of stage `stage` in the diagrams.
pub fn step_id(stage: usize, group: u64) -> String {
    format!("s{stage}g{group}")
}

/// `3`, or `3–7`.
pub(crate) fn range(first: u64, last: u64) -> String {
    if first == last { first.to_string() } else { format!("{first}–{last}") }
}

/// The channel dim of a logical shape (always concrete in a checked network).
fn channel_count(shape: &[Dim]) -> u64 {
    shape.get(1).and_then(Dim::known).expect("a checked network's channel dims are concrete")
}

fn kind_of(op: &Op) -> LayerKind {
    match op {
        Op::Conv { conv, .. } => match conv.kind {
            ConvKind::Standard if conv.groups > 1 => LayerKind::Grouped { groups: conv.groups },
            ConvKind::Standard => LayerKind::Standard,
            ConvKind::Depthwise => LayerKind::Depthwise { multiplier: conv.out_channels / conv.in_channels },
            ConvKind::Pointwise => LayerKind::Pointwise { groups: conv.groups },
        },
        Op::Separable { depthwise, .. } => {
            LayerKind::Separable { multiplier: depthwise.out_channels / depthwise.in_channels }
        }
        Op::Add { .. } => LayerKind::Add,
    }
}

fn stage(name: String, conv: &Conv) -> Stage {
    let groups = conv.groups;
    let shown: Vec<Option<u64>> = if groups <= MAX_SHOWN_GROUPS {
        (0..groups).map(Some).collect()
    } else {
        (0..SHOWN_LEADING_GROUPS).map(Some).chain([None, Some(groups - 1)]).collect()
    };
    let shown_count = shown.iter().flatten().count() as u64;
    let in_per_group = conv.in_channels / groups;
    let out_per_group = conv.out_channels / groups;
    let entries = shown
        .into_iter()
        .map(|group| match group {
            Some(index) => GroupEntry::Shown(GroupView {
                index,
                inputs: compress_channels(index * in_per_group, in_per_group, shown_count),
                outputs: compress_channels(index * out_per_group, out_per_group, shown_count),
            }),
            None => GroupEntry::Hidden { first: SHOWN_LEADING_GROUPS, last: groups - 2 },
        })
        .collect();
    Stage { name, conv: conv.clone(), groups: entries }
}

/// The channels `start..start + count` of one group to draw, when `shown_groups` groups are drawn.
fn compress_channels(start: u64, count: u64, shown_groups: u64) -> Vec<ChannelEntry> {
    let budget = (COMPRESSED_CHANNELS / shown_groups).max(3);
    if count * shown_groups <= MAX_FULL_CHANNELS || count <= budget + 1 {
        return (start..start + count).map(ChannelEntry::Channel).collect();
    }
    let leading = budget - 1;
    let mut entries: Vec<ChannelEntry> = (start..start + leading).map(ChannelEntry::Channel).collect();
    entries.push(ChannelEntry::Hidden { first: start + leading, last: start + count - 2 });
    entries.push(ChannelEntry::Channel(start + count - 1));
    entries
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_groups_are_drawn_whole() {
        let entries = compress_channels(8, 4, 4);
        assert_eq!(entries, (8..12).map(ChannelEntry::Channel).collect::<Vec<_>>());
    }

    #[test]
    fn a_large_group_keeps_its_first_channels_and_its_last() {
        let entries = compress_channels(0, 1024, 1);
        assert_eq!(entries.len(), 13);
        assert_eq!(entries[10], ChannelEntry::Channel(10));
        assert_eq!(entries[11], ChannelEntry::Hidden { first: 11, last: 1022 });
        assert_eq!(entries[12], ChannelEntry::Channel(1023));
    }

    #[test]
    fn many_groups_keep_the_first_six_and_the_last() {
        let network = crate::compile_source(
            "dw.conv",
            "input x: [1, 1024, 7, 7]; depthwise dw(x) { kernel: 3, pad: 1, multiplier: 2 }",
        )
        .expect("valid model");
        let explanation = explain(&network);
        let Body::Convolution(stages) = &explanation.layers[0].body else { panic!("a conv layer has stages") };
        let groups = &stages[0].groups;
        assert_eq!(groups.len(), 8);
        assert_eq!(groups[6], GroupEntry::Hidden { first: 6, last: 1022 });
        let GroupEntry::Shown(last) = &groups[7] else { panic!("the last group is drawn") };
        assert_eq!(last.index, 1023);
        assert_eq!(last.inputs, vec![ChannelEntry::Channel(1023)]);
        assert_eq!(last.outputs, vec![ChannelEntry::Channel(2046), ChannelEntry::Channel(2047)]);
        assert_eq!(stages[0].partition(), "1024 → 1024 groups of 1 → 2048");
    }
}
