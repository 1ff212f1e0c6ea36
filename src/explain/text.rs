//! Terminal text: per layer, its kind, channel partition, groups, a channel map for small channel
//! counts, and the cost report's numbers.

use std::fmt::Write;

use conv_dsl::cost::Count;

use super::{Body, Explanation, GroupEntry, LayerExplanation, Stage, range};

/// The channel map is drawn for at most this many input channels (its rows are groups, at most
/// [`super::MAX_SHOWN_GROUPS`] + 1).
pub const MAX_MAP_CHANNELS: u64 = 32;

/// Labels are padded to this width (after a two-space indent), so values line up in one column.
const LABEL_WIDTH: usize = 12;

/// Every layer's block, a blank line between them, then the totals.
pub fn network(explanation: &Explanation) -> String {
    let mut text = String::new();
    for layer in &explanation.layers {
        text.push_str(&self::layer(layer));
        text.push('\n');
    }
    let count = explanation.layers.len();
    let total_macs = explanation.total_macs();
    let total_standard = explanation.total_standard_macs();
    let saving = match (total_macs, total_standard) {
        (Some(macs), Some(standard)) if macs > 0 => format!("{:.2}x", standard as f64 / macs as f64),
        _ => "-".to_string(),
    };
    let _ = writeln!(
        text,
        "total: {count} layer{}; params {}; MACs {}; standard {}; saving {saving}",
        if count == 1 { "" } else { "s" },
        explanation.total_params(),
        total_macs.map_or("-".to_string(), |macs| Count::Known(macs).to_string()),
        total_standard.map_or("-".to_string(), |macs| Count::Known(macs).to_string()),
    );
    text
}

/// One layer's block.
pub fn layer(layer: &LayerExplanation) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "layer {}: {}", layer.name, layer.cost.kind);
    line(&mut text, 2, "shapes", &layer.shapes());
    line(&mut text, 2, "kind", &format!("{}; act {}", layer.kind, layer.act()));
    match &layer.body {
        Body::Convolution(stages) if stages.len() == 1 => stage(&mut text, 2, &stages[0]),
        Body::Convolution(stages) => {
            for (index, stage) in stages.iter().enumerate() {
                let heading = format!("{}: {}; act {}", stage.name, stage.conv.describe(), stage.conv.act);
                line(&mut text, 2, &format!("stage {}", index + 1), &heading);
                self::stage(&mut text, 4, stage);
            }
        }
        Body::Add { .. } => {
            let [left, right] = layer.operand_names();
            let reads = format!("{}[i] = {left}[i] + {right}[i] for every channel i: no channel mixing", layer.name);
            line(&mut text, 2, "reads", &reads);
        }
    }
    line(&mut text, 2, "params", &layer.cost.params.to_string());
    match &layer.cost.standard_macs {
        Some(standard) => {
            line(&mut text, 2, "MACs", &layer.cost.macs.to_string());
            let note = "a standard conv: groups 1, the same channels and kernel";
            line(&mut text, 2, "standard", &format!("{standard} ({note})"));
        }
        None => {
            line(&mut text, 2, "MACs", &format!("{} (an add has no multiplies)", layer.cost.macs));
            line(&mut text, 2, "standard", "- (no convolution)");
        }
    }
    let saving = layer.cost.saving().map_or("-".to_string(), |saving| format!("{saving:.2}x"));
    line(&mut text, 2, "saving", &saving);
    text
}

/// `indent` spaces, the label padded so that values start in one column, the value.
fn line(text: &mut String, indent: usize, label: &str, value: &str) {
    let width = LABEL_WIDTH + 2 - indent;
    let _ = writeln!(text, "{}{label:<width$}{value}", " ".repeat(indent));
}

/// Lines that continue the value of the previous line.
fn continuation(text: &mut String, value: &str) {
    let _ = writeln!(text, "{}{value}", " ".repeat(LABEL_WIDTH + 2));
}

fn stage(text: &mut String, indent: usize, stage: &Stage) {
    let conv = &stage.conv;
    line(text, indent, "channels", &stage.partition());
    let per_group = if conv.groups > 1 { format!(", {} per group", stage.out_per_group()) } else { String::new() };
    line(text, indent, "filters", &format!("{} of {}{per_group}", conv.out_channels, stage.filter_shape()));
    line(text, indent, "reads", &stage.reads());
    if conv.in_channels <= MAX_MAP_CHANNELS {
        channel_map(text, indent, stage);
    } else if conv.groups > 1 {
        for (index, entry) in stage.groups.iter().enumerate() {
            let value = match entry {
                GroupEntry::Shown(group) => {
                    let (in_first, in_last) = stage.input_range(group.index);
                    let (out_first, out_last) = stage.output_range(group.index);
                    format!("{}: in {} → out {}", group.index, range(in_first, in_last), range(out_first, out_last))
                }
                GroupEntry::Hidden { first, last } => {
                    let (in_first, _) = stage.input_range(*first);
                    let (_, in_last) = stage.input_range(*last);
                    let (out_first, _) = stage.output_range(*first);
                    let (_, out_last) = stage.output_range(*last);
                    format!(
                        "{}: likewise, in {} → out {}",
                        range(*first, *last),
                        range(in_first, in_last),
                        range(out_first, out_last)
                    )
                }
            };
            if index == 0 {
                line(text, indent, "groups", &value);
            } else {
                continuation(text, &value);
            }
        }
    }
}

/// Rows: the output channels of each group (all filters of a group read the same channels);
/// columns: input channels, a space between groups; `#` where the row reads the column.
fn channel_map(text: &mut String, indent: usize, stage: &Stage) {
    let conv = &stage.conv;
    let in_per_group = stage.in_per_group();
    line(text, indent, "map", "# = the input channels (columns) that output channels (rows) read");
    let labels: Vec<String> = stage
        .groups
        .iter()
        .map(|entry| match entry {
            GroupEntry::Shown(group) => {
                let (first, last) = stage.output_range(group.index);
                range(first, last)
            }
            GroupEntry::Hidden { first, last } => range(stage.output_range(*first).0, stage.output_range(*last).1),
        })
        .collect();
    let width = labels.iter().map(|label| label.chars().count()).max().unwrap_or(0);
    let prefix = 4 + width + 1; // `out ` + the row label + a space
    let mut header: Vec<char> = format!("{:>width$}", "in", width = prefix - 1).chars().collect();
    header.push(' ');
    let separator = usize::from(conv.groups > 1);
    for group in 0..conv.groups {
        let column = prefix + group as usize * (in_per_group as usize + separator);
        let free = header.iter().rposition(|&character| character != ' ').map_or(0, |last| last + 2);
        if column >= free {
            header.resize(column, ' ');
            header.extend((group * in_per_group).to_string().chars());
        }
    }
    continuation(text, &header.into_iter().collect::<String>());
    for (index, (entry, label)) in stage.groups.iter().zip(&labels).enumerate() {
        let cells = match entry {
            GroupEntry::Shown(group) => {
                let cells: Vec<String> = (0..conv.groups)
                    .map(|other| (if other == group.index { "#" } else { "." }).repeat(in_per_group as usize))
                    .collect();
                cells.join(if separator == 1 { " " } else { "" })
            }
            GroupEntry::Hidden { .. } => "⋮ likewise, one block per group".to_string(),
        };
        let row = if index == 0 { "out" } else { "" };
        continuation(text, &format!("{row:<3} {label:>width$} {cells}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_depthwise_map_is_a_diagonal() {
        let network = crate::compile_source("d.conv", "input x: [1, 4, 8, 8]; depthwise d(x) { kernel: 3 }")
            .expect("valid model");
        let text = layer(&super::super::explain(&network).layers[0]);
        assert!(text.contains("out 0 # . . .\n"), "{text}");
        assert!(text.contains("    3 . . . #\n"), "{text}");
        assert!(text.contains("in 0 1 2 3\n"), "{text}");
    }
}
