//! A diagram of one layer, as SVG text.
//!
//! Channels flow left to right: the input channels as stacked slices coloured by group, a fan from
//! each group's slices to that group's filters (one box per group, one row per filter), and each
//! filter's output channel. A separable layer is two such panels, depthwise then pointwise; an
//! `add` pairs channel `c` of both operands with output channel `c`. Large counts are drawn as a few
//! channels and groups with the rest summarised (`⋮` and the range it stands for); the title and
//! footer carry the partition, the parameters, the MACs, the standard-conv equivalent and the saving.
//!
//! Each channel slice is a `<rect class="channel">`. Every element of a drawn group is inside one `<g data-step="s{stage}g{group}">` (`c{channel}` for
//! an `add`), stage-wide elements carry `data-stage` (and runs of groups not drawn `data-rest`),
//! so the HTML page can highlight one group at a time. Output is deterministic: coordinates have at most one decimal, colours come from
//! [`PALETTE`].

use std::fmt::Write;

use super::{Body, ChannelEntry, GroupEntry, LayerExplanation, Stage, range, step_id};

/// Group colours, in order (the Okabe–Ito palette, distinguishable with colour-vision deficiencies);
/// group `g` is drawn in `PALETTE[g % 8]`.
pub const PALETTE: [&str; 8] = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#999999"];

/// The fonts asked for, in order.
pub const FONT_FAMILY: &str = "DejaVu Sans, Verdana, Arial, sans-serif";

const MARGIN: f64 = 24.0;
const TITLE_SIZE: f64 = 18.0;
const TEXT_SIZE: f64 = 14.0;
const HEADER_SIZE: f64 = 13.0;
const LABEL_SIZE: f64 = 12.0;
/// Text lines narrower than this are never wrapped.
const MIN_TEXT_WIDTH: f64 = 640.0;
/// One channel slice, and the vertical distance between slices.
const SLOT: f64 = 16.0;
const PITCH: f64 = 20.0;
/// The height of a run of channels drawn as `⋮`.
const HIDDEN_PITCH: f64 = 30.0;
/// The space between groups, and the height of a run of groups drawn as `⋮`.
const GROUP_GAP: f64 = 12.0;
const HIDDEN_GROUP: f64 = 46.0;
const SLICE_WIDTH: f64 = 48.0;
const FAN_WIDTH: f64 = 84.0;
const FILTER_WIDTH: f64 = 136.0;
const LINK_WIDTH: f64 = 44.0;
const LABEL_GAP: f64 = 6.0;
const PANEL_GAP: f64 = 56.0;
/// Between the operand columns of an `add`.
const OPERATOR_WIDTH: f64 = 44.0;
/// Column headers: a name and a channel count.
const HEADER_HEIGHT: f64 = 42.0;
const INK: &str = "#222222";
const MUTED: &str = "#555555";
const BACKGROUND: &str = "#FFFFFF";

/// The diagram of `layer`: a standalone SVG document (it also works inline in HTML).
pub fn layer(layer: &LayerExplanation) -> String {
    let mut canvas = Canvas::default();
    // Lay out the body first: the text above and below wraps to its width.
    let body_top = 0.0;
    let (body_width, body_height) = match &layer.body {
        Body::Convolution(stages) => draw_stages(&mut canvas, layer, stages, body_top),
        Body::Add { channels, .. } => draw_add(&mut canvas, layer, channels, body_top),
    };
    let text_width = body_width.max(MIN_TEXT_WIDTH);

    let mut head = Canvas::default();
    let mut y = MARGIN;
    let title = format!("{} — {}", layer.name, layer.cost.kind);
    y += TITLE_SIZE;
    head.text(MARGIN, y, TITLE_SIZE, Anchor::Start, "font-weight=\"bold\"", &title);
    let mut widest = text_width_of(&title, TITLE_SIZE);
    y += 6.0;
    for line in head_lines(layer) {
        for wrapped in wrap(&line, TEXT_SIZE, text_width) {
            y += TEXT_SIZE + 6.0;
            head.text(MARGIN, y, TEXT_SIZE, Anchor::Start, &format!("fill=\"{INK}\""), &wrapped);
            widest = widest.max(text_width_of(&wrapped, TEXT_SIZE));
        }
    }
    let body_offset = y + 20.0;
    y = body_offset + body_height + 14.0;
    let mut foot = Canvas::default();
    for (line, size, colour) in foot_lines(layer) {
        for wrapped in wrap(&line, size, text_width) {
            y += size + 6.0;
            foot.text(MARGIN, y, size, Anchor::Start, &format!("fill=\"{colour}\""), &wrapped);
            widest = widest.max(text_width_of(&wrapped, size));
        }
    }
    let width = (body_width.max(widest) + 2.0 * MARGIN).ceil();
    let height = (y + MARGIN).ceil();

    let mut svg = String::new();
    let _ = writeln!(
        svg,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"convgen-diagram\" width=\"{w}\" height=\"{h}\" \
         viewBox=\"0 0 {w} {h}\" font-family=\"{FONT_FAMILY}\" role=\"img\" aria-label=\"{label}\">",
        w = num(width),
        h = num(height),
        label = escape(&title)
    );
    let _ = writeln!(svg, "<title>{}</title>", escape(&format!("{title}: {}", layer.shapes())));
    let _ = writeln!(svg, "<rect width=\"{}\" height=\"{}\" fill=\"{BACKGROUND}\"/>", num(width), num(height));
    svg.push_str(&head.body);
    let _ = writeln!(svg, "<g transform=\"translate({} {})\">", num(MARGIN), num(body_offset));
    svg.push_str(&canvas.body);
    svg.push_str("</g>\n");
    svg.push_str(&foot.body);
    svg.push_str("</svg>\n");
    svg
}

/// The lines under the title: kind and shapes, then the channel partition and what a filter reads.
fn head_lines(layer: &LayerExplanation) -> Vec<String> {
    let mut lines = vec![format!("{}; act {} · {}", layer.kind, layer.act(), layer.shapes())];
    match &layer.body {
        Body::Convolution(stages) => match stages.as_slice() {
            [stage] => {
                lines.push(format!("channels {}", stage.partition()));
                lines.push(capitalise(&stage.reads()));
            }
            stages => {
                let partitions: Vec<String> =
                    stages.iter().map(|stage| format!("{} ({})", stage.partition(), stage.name)).collect();
                lines.push(format!("channels {}", partitions.join(", then ")));
            }
        },
        Body::Add { .. } => {
            let [left, right] = layer.operand_names();
            lines.push(format!(
                "{}[i] = {left}[i] + {right}[i] for every channel i: no channel mixing, no multiplies",
                layer.name
            ));
        }
    }
    lines
}

/// The cost lines under the diagram, each with its text size and colour.
fn foot_lines(layer: &LayerExplanation) -> Vec<(String, f64, &'static str)> {
    let cost = &layer.cost;
    match (&cost.standard_macs, cost.saving()) {
        (Some(standard), saving) => {
            let saving = saving.map_or("-".to_string(), |saving| format!("{saving:.2}×"));
            vec![
                (
                    format!("params {} · MACs {} · standard conv {standard} · saving {saving}", cost.params, cost.macs),
                    TEXT_SIZE,
                    INK,
                ),
                (
                    "standard conv: the same channels, kernel, stride and dilation with groups 1".to_string(),
                    LABEL_SIZE,
                    MUTED,
                ),
            ]
        }
        (None, _) => vec![(
            format!("params {} · MACs {} · one addition per output element", cost.params, cost.macs),
            TEXT_SIZE,
            INK,
        )],
    }
}

/// The stage panels side by side, an `=` between them; returns the width and height drawn.
fn draw_stages(canvas: &mut Canvas, layer: &LayerExplanation, stages: &[Stage], top: f64) -> (f64, f64) {
    let separable = stages.len() > 1;
    let plans: Vec<StagePlan> = stages
        .iter()
        .enumerate()
        .map(|(index, stage)| {
            let input = if index == 0 {
                layer.inputs.first().map_or(String::new(), |operand| operand.name.clone())
            } else {
                stages[index - 1].name.clone()
            };
            let output = if index + 1 == stages.len() { layer.name.clone() } else { stage.name.clone() };
            let heading = separable.then(|| format!("{} · {}: {}", index + 1, stage.name, stage.conv.describe()));
            StagePlan::new(stage, index, input, output, heading)
        })
        .collect();
    let height = plans.iter().map(|plan| plan.height).fold(0.0, f64::max);
    let mut x = 0.0;
    for (index, plan) in plans.iter().enumerate() {
        if index > 0 {
            let middle = plan.content_top() + (height - plan.content_top()) / 2.0;
            canvas.text(
                x - PANEL_GAP / 2.0,
                top + middle + 8.0,
                24.0,
                Anchor::Middle,
                &format!("fill=\"{MUTED}\""),
                "=",
            );
        }
        plan.draw(canvas, x, top);
        x += plan.width + PANEL_GAP;
    }
    (x - PANEL_GAP, height)
}

/// Where everything of one stage panel goes.
struct StagePlan<'a> {
    stage: &'a Stage,
    index: usize,
    input: String,
    output: String,
    heading: Option<String>,
    in_label_width: f64,
    width: f64,
    height: f64,
}

impl<'a> StagePlan<'a> {
    fn new(stage: &'a Stage, index: usize, input: String, output: String, heading: Option<String>) -> Self {
        let mut in_labels = Vec::new();
        let mut out_labels = Vec::new();
        for entry in &stage.groups {
            match entry {
                GroupEntry::Shown(group) => {
                    in_labels.extend(group.inputs.iter().map(channel_label));
                    out_labels.extend(group.outputs.iter().map(channel_label));
                }
                GroupEntry::Hidden { first, last } => {
                    in_labels.push(range(stage.input_range(*first).0, stage.input_range(*last).1));
                    out_labels.push(range(stage.output_range(*first).0, stage.output_range(*last).1));
                }
            }
        }
        let label_width =
            |labels: &[String]| labels.iter().map(|label| text_width_of(label, LABEL_SIZE)).fold(24.0, f64::max);
        let in_label_width = label_width(&in_labels);
        let out_label_width = label_width(&out_labels);
        let columns = in_label_width
            + LABEL_GAP
            + SLICE_WIDTH
            + FAN_WIDTH
            + FILTER_WIDTH
            + LINK_WIDTH
            + SLICE_WIDTH
            + LABEL_GAP
            + out_label_width;
        let heading_width = heading.as_deref().map_or(0.0, |heading| text_width_of(heading, TEXT_SIZE));
        let mut plan = StagePlan {
            stage,
            index,
            input,
            output,
            heading,
            in_label_width,
            width: columns.max(heading_width),
            height: 0.0,
        };
        let rows: f64 = stage.groups.iter().map(|entry| plan.row_height(entry) + GROUP_GAP).sum();
        plan.height = plan.content_top() + rows - GROUP_GAP;
        plan
    }

    /// Where the first group starts, below the heading and the column headers.
    fn content_top(&self) -> f64 {
        let heading = if self.heading.is_some() { 26.0 } else { 0.0 };
        heading + HEADER_HEIGHT
    }

    fn row_height(&self, entry: &GroupEntry) -> f64 {
        match entry {
            GroupEntry::Shown(group) => column_height(&group.inputs).max(column_height(&group.outputs)),
            GroupEntry::Hidden { .. } => HIDDEN_GROUP,
        }
    }

    fn draw(&self, canvas: &mut Canvas, x: f64, top: f64) {
        let stage = self.stage;
        let stage_attribute = format!("data-stage=\"{}\"", self.index);
        let x_in = x + self.in_label_width + LABEL_GAP;
        let x_filter = x_in + SLICE_WIDTH + FAN_WIDTH;
        let x_out = x_filter + FILTER_WIDTH + LINK_WIDTH;
        let in_labels = (x_in - LABEL_GAP, Anchor::End);
        let out_labels = (x_out + SLICE_WIDTH + LABEL_GAP, Anchor::Start);

        canvas.open(&stage_attribute);
        if let Some(heading) = &self.heading {
            canvas.text(x, top + TEXT_SIZE, TEXT_SIZE, Anchor::Start, "font-weight=\"bold\"", heading);
        }
        let header_top = top + self.content_top() - HEADER_HEIGHT;
        let in_count = format!("{} channels", stage.conv.in_channels);
        let out_count = format!("{} channels", stage.conv.out_channels);
        let filter_count = format!("{} × [{}]", stage.conv.out_channels, stage.filter_shape());
        for (center, name, count) in [
            (x_in + SLICE_WIDTH / 2.0, self.input.as_str(), in_count.as_str()),
            (x_filter + FILTER_WIDTH / 2.0, "filters", filter_count.as_str()),
            (x_out + SLICE_WIDTH / 2.0, self.output.as_str(), out_count.as_str()),
        ] {
            canvas.text(center, header_top + HEADER_SIZE, HEADER_SIZE, Anchor::Middle, "font-weight=\"bold\"", name);
            canvas.text(center, header_top + HEADER_SIZE + 16.0, LABEL_SIZE, Anchor::Middle, "", count);
        }
        canvas.close();

        let mut y = top + self.content_top();
        for entry in &stage.groups {
            let height = self.row_height(entry);
            match entry {
                GroupEntry::Shown(group) => {
                    let colour = PALETTE[(group.index % 8) as usize];
                    canvas.open(&format!("data-step=\"{}\"", step_id(self.index, group.index)));
                    let in_top = y + (height - column_height(&group.inputs)) / 2.0;
                    let out_top = y + (height - column_height(&group.outputs)) / 2.0;
                    let (in_first, in_last) = channel_column(canvas, &group.inputs, x_in, in_top, colour, in_labels);
                    let (out_first, out_last) =
                        channel_column(canvas, &group.outputs, x_out, out_top, colour, out_labels);
                    // The fan: this group's input channels, and only they, feed this group's filters.
                    canvas.polygon(
                        &[
                            (x_in + SLICE_WIDTH, in_first),
                            (x_filter, out_first),
                            (x_filter, out_last),
                            (x_in + SLICE_WIDTH, in_last),
                        ],
                        &format!("fill=\"{colour}\" fill-opacity=\"0.3\""),
                    );
                    // And each input channel of the group reaches every filter of the group.
                    let mut slice_top = in_top;
                    for entry in &group.inputs {
                        if let ChannelEntry::Channel(_) = entry {
                            let middle = slice_top + PITCH / 2.0;
                            for corner in [out_first, out_last] {
                                canvas.line(
                                    x_in + SLICE_WIDTH,
                                    middle,
                                    x_filter,
                                    corner,
                                    &format!("stroke=\"{colour}\" stroke-opacity=\"0.7\""),
                                );
                            }
                        }
                        slice_top += entry_pitch(entry);
                    }
                    self.draw_filters(canvas, group.index, &group.outputs, x_filter, out_top, colour);
                    canvas.close();
                }
                GroupEntry::Hidden { first, last } => {
                    canvas.open(&format!("{stage_attribute} data-rest=\"yes\""));
                    let middle = y + height / 2.0;
                    let (in_first, _) = stage.input_range(*first);
                    let (_, in_last) = stage.input_range(*last);
                    let (out_first, _) = stage.output_range(*first);
                    let (_, out_last) = stage.output_range(*last);
                    let muted = format!("fill=\"{MUTED}\"");
                    for (slice, (label_x, anchor), label) in
                        [(x_in, in_labels, range(in_first, in_last)), (x_out, out_labels, range(out_first, out_last))]
                    {
                        canvas.text(slice + SLICE_WIDTH / 2.0, middle + 6.0, 18.0, Anchor::Middle, &muted, "⋮");
                        canvas.text(label_x, middle + LABEL_SIZE * 0.35, LABEL_SIZE, anchor, &muted, &label);
                    }
                    let center = x_filter + FILTER_WIDTH / 2.0;
                    canvas.text(center, middle - 4.0, 18.0, Anchor::Middle, &muted, "⋮");
                    let groups = format!("{} groups alike", last - first + 1);
                    canvas.text(center, middle + 14.0, LABEL_SIZE, Anchor::Middle, &muted, &groups);
                    canvas.close();
                }
            }
            y += height + GROUP_GAP;
        }
    }

    /// One box per group, one row per filter (filters and output channels are one to one), a
    /// link from each filter to its output channel.
    fn draw_filters(&self, canvas: &mut Canvas, group: u64, outputs: &[ChannelEntry], x: f64, top: f64, colour: &str) {
        let stage = self.stage;
        let (box_top, box_bottom) = span(outputs, top);
        let box_height = box_bottom - box_top;
        canvas.rect(
            x,
            box_top,
            FILTER_WIDTH,
            box_height,
            &format!("rx=\"3\" fill=\"{colour}\" fill-opacity=\"0.15\" stroke=\"{colour}\" stroke-width=\"2\""),
        );
        let mut y = top;
        for (index, entry) in outputs.iter().enumerate() {
            let pitch = entry_pitch(entry);
            if index > 0 {
                canvas.line(
                    x + 1.0,
                    y,
                    x + FILTER_WIDTH - 1.0,
                    y,
                    &format!("stroke=\"{colour}\" stroke-opacity=\"0.5\""),
                );
            }
            if let ChannelEntry::Channel(_) = entry {
                let middle = y + pitch / 2.0;
                canvas.line(
                    x + FILTER_WIDTH,
                    middle,
                    x + FILTER_WIDTH + LINK_WIDTH,
                    middle,
                    &format!("stroke=\"{colour}\" stroke-width=\"2\""),
                );
            }
            y += pitch;
        }
        let filters = stage.out_per_group();
        let shape = stage.filter_shape();
        let plural = if filters == 1 { "" } else { "s" };
        let full: Vec<String> = if stage.conv.groups > 1 {
            vec![format!("group {group}"), format!("{filters} filter{plural}"), format!("of {shape}")]
        } else {
            vec![format!("{filters} filter{plural}"), format!("of {shape}")]
        };
        let lines =
            if box_height >= full.len() as f64 * 16.0 + 6.0 { full } else { vec![format!("{filters} × {shape}")] };
        let first_baseline = box_top + box_height / 2.0 - (lines.len() as f64 - 1.0) * 8.0 + LABEL_SIZE * 0.35;
        // A plate under the text, so the filter dividers do not cross it.
        let plate_width = lines.iter().map(|line| text_width_of(line, LABEL_SIZE)).fold(0.0, f64::max) + 8.0;
        let plate_height = lines.len() as f64 * 16.0;
        canvas.rect(
            x + (FILTER_WIDTH - plate_width) / 2.0,
            box_top + (box_height - plate_height) / 2.0,
            plate_width,
            plate_height,
            &format!("rx=\"2\" fill=\"{BACKGROUND}\" fill-opacity=\"0.9\""),
        );
        for (index, line) in lines.iter().enumerate() {
            let attributes = if index == 0 && lines.len() == 3 { "font-weight=\"bold\"" } else { "" };
            canvas.text(
                x + FILTER_WIDTH / 2.0,
                first_baseline + index as f64 * 16.0,
                LABEL_SIZE,
                Anchor::Middle,
                attributes,
                line,
            );
        }
    }
}

/// Draws `entries` as slices (and `⋮` for runs) from `top`, labelled; returns the top and bottom of
/// the slices drawn.
fn channel_column(
    canvas: &mut Canvas,
    entries: &[ChannelEntry],
    x: f64,
    top: f64,
    colour: &str,
    (label_x, anchor): (f64, Anchor),
) -> (f64, f64) {
    let mut y = top;
    for entry in entries {
        let pitch = entry_pitch(entry);
        let middle = y + pitch / 2.0;
        match entry {
            ChannelEntry::Channel(_) => {
                canvas.rect(
                    x,
                    y + (PITCH - SLOT) / 2.0,
                    SLICE_WIDTH,
                    SLOT,
                    &format!("class=\"channel\" rx=\"2\" fill=\"{colour}\" stroke=\"{INK}\" stroke-width=\"0.75\""),
                );
                canvas.text(label_x, middle + LABEL_SIZE * 0.35, LABEL_SIZE, anchor, "", &channel_label(entry));
            }
            ChannelEntry::Hidden { .. } => {
                let muted = format!("fill=\"{MUTED}\"");
                canvas.text(x + SLICE_WIDTH / 2.0, middle + 6.0, 18.0, Anchor::Middle, &muted, "⋮");
                canvas.text(label_x, middle + LABEL_SIZE * 0.35, LABEL_SIZE, anchor, &muted, &channel_label(entry));
            }
        }
        y += pitch;
    }
    span(entries, top)
}

/// The top of the first and the bottom of the last slice of `entries` drawn from `top`.
fn span(entries: &[ChannelEntry], top: f64) -> (f64, f64) {
    let inset = |entry: Option<&ChannelEntry>| match entry {
        Some(ChannelEntry::Channel(_)) | None => (PITCH - SLOT) / 2.0,
        Some(ChannelEntry::Hidden { .. }) => 4.0,
    };
    (top + inset(entries.first()), top + column_height(entries) - inset(entries.last()))
}

fn column_height(entries: &[ChannelEntry]) -> f64 {
    entries.iter().map(entry_pitch).sum()
}

fn entry_pitch(entry: &ChannelEntry) -> f64 {
    match entry {
        ChannelEntry::Channel(_) => PITCH,
        ChannelEntry::Hidden { .. } => HIDDEN_PITCH,
    }
}

fn channel_label(entry: &ChannelEntry) -> String {
    match *entry {
        ChannelEntry::Channel(channel) => channel.to_string(),
        ChannelEntry::Hidden { first, last } => range(first, last),
    }
}

/// An `add`: `left[c] + right[c] → output[c]`, one row per drawn channel.
fn draw_add(canvas: &mut Canvas, layer: &LayerExplanation, channels: &[ChannelEntry], top: f64) -> (f64, f64) {
    let [left, right] = layer.operand_names();
    let label_width =
        channels.iter().map(|entry| text_width_of(&channel_label(entry), LABEL_SIZE)).fold(24.0, f64::max);
    let x_left = label_width + LABEL_GAP;
    let x_right = x_left + SLICE_WIDTH + OPERATOR_WIDTH;
    let x_out = x_right + SLICE_WIDTH + OPERATOR_WIDTH + 8.0;
    let width = x_out + SLICE_WIDTH + LABEL_GAP + label_width;
    let count = layer.shape.get(1).map_or(String::new(), |channels| format!("{channels} channels"));
    for (center, name) in [
        (x_left + SLICE_WIDTH / 2.0, left),
        (x_right + SLICE_WIDTH / 2.0, right),
        (x_out + SLICE_WIDTH / 2.0, layer.name.as_str()),
    ] {
        canvas.text(center, top + HEADER_SIZE, HEADER_SIZE, Anchor::Middle, "font-weight=\"bold\"", name);
        canvas.text(center, top + HEADER_SIZE + 16.0, LABEL_SIZE, Anchor::Middle, "", &count);
    }
    let mut y = top + HEADER_HEIGHT;
    for entry in channels {
        let pitch = entry_pitch(entry);
        let middle = y + pitch / 2.0;
        let label = channel_label(entry);
        match entry {
            ChannelEntry::Channel(channel) => {
                let colour = PALETTE[(channel % 8) as usize];
                canvas.open(&format!("data-step=\"c{channel}\""));
                let slice =
                    format!("class=\"channel\" rx=\"2\" fill=\"{colour}\" stroke=\"{INK}\" stroke-width=\"0.75\"");
                for x in [x_left, x_right, x_out] {
                    canvas.rect(x, y + (PITCH - SLOT) / 2.0, SLICE_WIDTH, SLOT, &slice);
                }
                let operator_y = middle + TEXT_SIZE * 0.35;
                let center_plus = x_left + SLICE_WIDTH + OPERATOR_WIDTH / 2.0;
                let center_arrow = x_right + SLICE_WIDTH + (OPERATOR_WIDTH + 8.0) / 2.0;
                canvas.text(center_plus, operator_y, TEXT_SIZE, Anchor::Middle, "font-weight=\"bold\"", "+");
                canvas.text(center_arrow, operator_y, TEXT_SIZE, Anchor::Middle, "font-weight=\"bold\"", "→");
                canvas.text(label_width, middle + LABEL_SIZE * 0.35, LABEL_SIZE, Anchor::End, "", &label);
                let out_label_x = x_out + SLICE_WIDTH + LABEL_GAP;
                canvas.text(out_label_x, middle + LABEL_SIZE * 0.35, LABEL_SIZE, Anchor::Start, "", &label);
                canvas.close();
            }
            ChannelEntry::Hidden { .. } => {
                canvas.open("data-rest=\"yes\"");
                let muted = format!("fill=\"{MUTED}\"");
                for x in [x_left, x_right, x_out] {
                    canvas.text(x + SLICE_WIDTH / 2.0, middle + 6.0, 18.0, Anchor::Middle, &muted, "⋮");
                }
                canvas.text(label_width, middle + LABEL_SIZE * 0.35, LABEL_SIZE, Anchor::End, &muted, &label);
                let out_label_x = x_out + SLICE_WIDTH + LABEL_GAP;
                canvas.text(out_label_x, middle + LABEL_SIZE * 0.35, LABEL_SIZE, Anchor::Start, &muted, &label);
                canvas.close();
            }
        }
        y += pitch;
    }
    (width, y - top)
}

/// Where a text is anchored.
#[derive(Clone, Copy)]
enum Anchor {
    Start,
    Middle,
    End,
}

/// SVG elements as text, one per line.
#[derive(Default)]
struct Canvas {
    body: String,
}

impl Canvas {
    fn open(&mut self, attributes: &str) {
        let _ = writeln!(self.body, "<g {attributes}>");
    }

    fn close(&mut self) {
        self.body.push_str("</g>\n");
    }

    fn rect(&mut self, x: f64, y: f64, width: f64, height: f64, attributes: &str) {
        let _ = writeln!(
            self.body,
            "<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" {attributes}/>",
            num(x),
            num(y),
            num(width),
            num(height)
        );
    }

    fn line(&mut self, x1: f64, y1: f64, x2: f64, y2: f64, attributes: &str) {
        let _ = writeln!(
            self.body,
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" {attributes}/>",
            num(x1),
            num(y1),
            num(x2),
            num(y2)
        );
    }

    fn polygon(&mut self, points: &[(f64, f64)], attributes: &str) {
        let points: Vec<String> = points.iter().map(|&(x, y)| format!("{},{}", num(x), num(y))).collect();
        let _ = writeln!(self.body, "<polygon points=\"{}\" {attributes}/>", points.join(" "));
    }

    fn text(&mut self, x: f64, y: f64, size: f64, anchor: Anchor, attributes: &str, content: &str) {
        let anchor = match anchor {
            Anchor::Start => "",
            Anchor::Middle => " text-anchor=\"middle\"",
            Anchor::End => " text-anchor=\"end\"",
        };
        let attributes = if attributes.is_empty() { String::new() } else { format!(" {attributes}") };
        let _ = writeln!(
            self.body,
            "<text x=\"{}\" y=\"{}\" font-size=\"{}\"{anchor}{attributes}>{}</text>",
            num(x),
            num(y),
            num(size),
            escape(content)
        );
    }
}

/// A coordinate with at most one decimal: `12`, `12.5`.
fn num(value: f64) -> String {
    let rounded = (value * 10.0).round() / 10.0;
    if rounded == rounded.trunc() { format!("{}", rounded as i64) } else { format!("{rounded:.1}") }
}

/// XML text and attribute escaping.
pub(crate) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            '\'' => escaped.push_str("&#39;"),
            _ => escaped.push(character),
        }
    }
    escaped
}

/// A generous estimate of the width of `text` at `size` (DejaVu Sans averages about 0.6 em).
fn text_width_of(text: &str, size: f64) -> f64 {
    text.chars().count() as f64 * size * 0.62
}

/// `text` broken at spaces into lines no wider than `width` (a longer word stays whole).
fn wrap(text: &str, size: f64, width: f64) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    let mut current = String::new();
    for word in text.split(' ') {
        let candidate = if current.is_empty() { word.to_string() } else { format!("{current} {word}") };
        if !current.is_empty() && text_width_of(&candidate, size) > width {
            lines.push(std::mem::replace(&mut current, word.to_string()));
        } else {
            current = candidate;
        }
    }
    lines.push(current);
    lines
}

fn capitalise(text: &str) -> String {
    let mut characters = text.chars();
    characters.next().map_or(String::new(), |first| first.to_uppercase().chain(characters).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_have_at_most_one_decimal() {
        assert_eq!(num(12.0), "12");
        assert_eq!(num(12.46), "12.5");
        assert_eq!(num(-0.04), "0");
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(escape("a < b & \"c\""), "a &lt; b &amp; &quot;c&quot;");
    }

    #[test]
    fn long_lines_wrap_at_spaces() {
        let lines = wrap("one two three four", 10.0, 65.0);
        assert_eq!(lines, ["one two", "three four"]);
    }
}
