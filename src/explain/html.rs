//! A self-contained page of every layer: its diagram, an animation stepping through its groups
//! (and a separable layer's two stages), its text, and a chart of MACs per layer against the
//! standard-conv equivalents.
//!
//! The page fetches nothing: the diagrams are inline SVG, the style and the script are inline, and
//! the data the script needs is a JSON island. The script records every error it meets in
//! `document.body.dataset.scriptErrors` and sets `data-rendered="yes"` on `<body>` once the chart
//! and the animations are built, so a headless browser can check that the page works.

use std::fmt::Write;

use conv_dsl::cost::Count;
use conv_dsl::dim::fmt_shape;

use super::svg::escape;
use super::{Explanation, LayerExplanation};

/// The page for `explanation`; `title` names the model (its file name, usually).
pub fn page(title: &str, explanation: &Explanation) -> String {
    let mut html = String::new();
    html.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    html.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(html, "<title>convgen explain: {}</title>", escape(title));
    let _ = writeln!(html, "<style>\n{STYLE}</style>\n</head>\n<body data-rendered=\"no\">");

    let _ = writeln!(html, "<header>\n<h1>convgen explain: {}</h1>", escape(title));
    let _ = writeln!(html, "<p class=\"summary\">{}</p>", escape(&summary(explanation)));
    let _ = writeln!(html, "<p class=\"summary\">{}</p>", escape(&totals(explanation)));
    html.push_str(
        "<noscript><p>The chart and the animations need JavaScript; the diagrams and the text below do not.</p></noscript>\n</header>\n",
    );

    html.push_str("<section id=\"chart-section\">\n<h2>MACs per layer</h2>\n");
    html.push_str(
        "<p>Multiply-accumulates of each layer (blue) against the standard convolution it stands in for \
         (grey: the same channels, kernel, stride and dilation with groups 1), on a log scale. \
         A layer's name leads to its diagram.</p>\n",
    );
    if explanation.layers.iter().any(|layer| matches!(layer.cost.macs, Count::Symbolic { .. })) {
        html.push_str(
            "<p>This model has symbolic dims: the bars compare MACs per unit of each layer's symbolic \
             dims (the product shown after the number).</p>\n",
        );
    }
    html.push_str("<div id=\"chart\"></div>\n</section>\n<main>\n");

    for (index, layer) in explanation.layers.iter().enumerate() {
        let _ = writeln!(html, "<section class=\"layer\" id=\"layer-{}\" data-layer=\"{index}\">", escape(&layer.name));
        let _ = writeln!(
            html,
            "<h2>{} <span class=\"kind\">{} · {}</span></h2>",
            escape(&layer.name),
            escape(&layer.cost.kind),
            escape(&layer.kind.to_string())
        );
        html.push_str(
            "<div class=\"controls\"><button type=\"button\" data-action=\"previous\">◀ previous</button>\
             <button type=\"button\" data-action=\"play\">pause</button>\
             <button type=\"button\" data-action=\"next\">next ▶</button>\
             <span class=\"caption\" aria-live=\"polite\"></span></div>\n",
        );
        html.push_str("<figure>\n");
        html.push_str(&super::svg::layer(layer));
        html.push_str("</figure>\n");
        let _ = writeln!(html, "<pre>{}</pre>\n</section>", escape(&super::text::layer(layer)));
    }
    html.push_str("</main>\n");

    // `<` is escaped in JSON strings, so the island cannot close its own `<script>`.
    let _ = writeln!(html, "<script type=\"application/json\" id=\"convgen-data\">{}</script>", data(explanation));
    let _ = writeln!(html, "<script>\n{SCRIPT}</script>\n</body>\n</html>");
    html
}

/// `conv2d · input x [1, 3, 224, 224] → output pw13 [1, 1024, 7, 7] · 27 layers`.
fn summary(explanation: &Explanation) -> String {
    let count = explanation.layers.len();
    format!(
        "conv{}d · input {} {} → output {} {} · {count} layer{}",
        explanation.rank,
        explanation.input.name,
        fmt_shape(&explanation.input.shape),
        explanation.output.name,
        fmt_shape(&explanation.output.shape),
        if count == 1 { "" } else { "s" }
    )
}

/// `params 4231976 · MACs 568.74M against 4.84G for standard convolutions: 8.51× fewer`.
fn totals(explanation: &Explanation) -> String {
    let params = explanation.total_params();
    match (explanation.total_macs(), explanation.total_standard_macs()) {
        (Some(macs), Some(standard)) if macs > 0 => format!(
            "params {params} · MACs {} against {} for standard convolutions: {:.2}× fewer",
            Count::Known(macs),
            Count::Known(standard),
            standard as f64 / macs as f64
        ),
        _ => format!("params {params} · MACs per layer below"),
    }
}

/// The JSON the script reads: per layer its name, kind, MACs, standard MACs and animation steps.
fn data(explanation: &Explanation) -> String {
    let layers: Vec<String> = explanation.layers.iter().map(layer_data).collect();
    format!("{{\"layers\":[\n{}\n]}}", layers.join(",\n"))
}

fn layer_data(layer: &LayerExplanation) -> String {
    let cost = &layer.cost;
    let number = |count: &Count| match count {
        Count::Known(count) => count.to_string(),
        Count::Symbolic { factor, .. } => factor.to_string(),
    };
    let steps: Vec<String> = layer
        .steps()
        .iter()
        .map(|step| {
            format!(
                "{{\"id\":{},\"stage\":{},\"caption\":{}}}",
                json_string(&step.id),
                step.stage.map_or("null".to_string(), |stage| stage.to_string()),
                json_string(&step.caption)
            )
        })
        .collect();
    format!(
        "{{\"name\":{},\"kind\":{},\"macs\":{},\"macsText\":{},\"standard\":{},\"standardText\":{},\"saving\":{},\"steps\":[{}]}}",
        json_string(&layer.name),
        json_string(&cost.kind),
        number(&cost.macs),
        json_string(&cost.macs.to_string()),
        cost.standard_macs.as_ref().map_or("null".to_string(), number),
        json_string(&cost.standard_macs.as_ref().map_or("-".to_string(), ToString::to_string)),
        json_string(&cost.saving().map_or("-".to_string(), |saving| format!("{saving:.2}×"))),
        steps.join(",")
    )
}

/// A JSON string literal, safe inside `<script>` (`<`, `>` and `&` escaped too).
fn json_string(text: &str) -> String {
    let mut literal = String::with_capacity(text.len() + 2);
    literal.push('"');
    for character in text.chars() {
        match character {
            '"' => literal.push_str("\\\""),
            '\\' => literal.push_str("\\\\"),
            '\n' => literal.push_str("\\n"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                let _ = write!(literal, "\\u{:04x}", u32::from(character));
            }
            character if character.is_control() => {
                let _ = write!(literal, "\\u{:04x}", u32::from(character));
            }
            character => literal.push(character),
        }
    }
    literal.push('"');
    literal
}

const STYLE: &str = r#":root { color-scheme: light; }
body { font-family: system-ui, "DejaVu Sans", Verdana, sans-serif; font-size: 16px; line-height: 1.45;
       color: #222222; background: #FAFAFA; max-width: 1280px; margin: 0 auto; padding: 1rem 1.5rem 3rem; }
h1 { font-size: 1.6rem; margin: 0.5rem 0; }
h2 { font-size: 1.25rem; margin: 0 0 0.5rem; }
.summary { margin: 0.25rem 0; }
.kind { font-weight: normal; color: #555555; font-size: 1rem; }
#chart-section, section.layer { background: #FFFFFF; border: 1px solid #DDDDDD; border-radius: 6px;
       padding: 1rem; margin: 1.5rem 0; }
#chart { overflow-x: auto; }
figure { margin: 0.75rem 0; overflow-x: auto; }
pre { overflow-x: auto; font-size: 13px; background: #F4F4F4; padding: 0.75rem; border-radius: 4px; }
.controls { display: flex; flex-wrap: wrap; gap: 0.5rem; align-items: center; }
.controls button { font: inherit; font-size: 14px; padding: 0.2rem 0.8rem; cursor: pointer; }
.caption { font-size: 15px; }
svg [data-step], svg [data-stage], svg [data-rest] { transition: opacity 0.35s; }
svg .convgen-dim { opacity: 0.12; }
@media (prefers-reduced-motion: reduce) { svg [data-step], svg [data-stage], svg [data-rest] { transition: none; } }
"#;

const SCRIPT: &str = r##"(function () {
  "use strict";
  var body = document.body;
  var errors = [];
  function report(error) {
    errors.push(String(error && error.stack ? error.stack : error));
    body.setAttribute("data-script-errors", errors.join(" | "));
  }
  window.addEventListener("error", function (event) { report(event.message || "script error"); });
  window.addEventListener("unhandledrejection", function (event) { report("unhandled rejection: " + event.reason); });

  var SVG_NS = "http://www.w3.org/2000/svg";
  function node(name, attributes, parent, text) {
    var element = document.createElementNS(SVG_NS, name);
    Object.keys(attributes).forEach(function (key) { element.setAttribute(key, String(attributes[key])); });
    if (text !== undefined) { element.textContent = text; }
    parent.appendChild(element);
    return element;
  }
  function tickLabel(power) {
    var units = ["", "K", "M", "G", "T", "P", "E"];
    var unit = Math.floor(power / 3);
    if (unit >= units.length) { return "1e" + power; }
    return String(Math.pow(10, power - 3 * unit)) + units[unit];
  }

  function buildChart(data) {
    var area = document.getElementById("chart");
    var layers = data.layers;
    var values = [];
    layers.forEach(function (layer) {
      if (layer.macs > 0) { values.push(layer.macs); }
      if (layer.standard !== null && layer.standard > 0) { values.push(layer.standard); }
    });
    if (values.length === 0) {
      area.textContent = "No layer multiplies anything: the model has only adds.";
      return;
    }
    var low = Math.floor(Math.log10(Math.min.apply(null, values)));
    var high = Math.ceil(Math.log10(Math.max.apply(null, values)));
    if (high <= low) { high = low + 1; }
    function valueText(layer) {
      return layer.standard === null ? layer.kind + ": no multiplies"
        : layer.macsText + " of " + layer.standardText + " · " + layer.saving;
    }
    var longest = Math.max.apply(null, layers.map(function (layer) { return layer.name.length; }));
    var longestValue = Math.max.apply(null, layers.map(function (layer) { return valueText(layer).length; }));
    var labelWidth = 24 + 8 * longest, plotWidth = 560, valueWidth = 24 + 8 * longestValue;
    var rowHeight = 26, top = 58;
    var width = labelWidth + plotWidth + valueWidth;
    var height = top + layers.length * rowHeight + 12;
    var svg = node("svg", {
      id: "chart-svg", width: width, height: height, viewBox: "0 0 " + width + " " + height,
      "font-family": "DejaVu Sans, Verdana, Arial, sans-serif", role: "img",
      "aria-label": "MACs per layer against the standard convolution, log scale"
    }, area);
    function x(value) { return labelWidth + (Math.log10(value) - low) / (high - low) * plotWidth; }
    node("rect", { x: labelWidth, y: 6, width: 14, height: 14, fill: "#C8C8C8" }, svg);
    node("text", { x: labelWidth + 20, y: 18, "font-size": 13 }, svg, "standard conv (groups 1)");
    node("rect", { x: labelWidth + 210, y: 9, width: 14, height: 8, fill: "#0072B2" }, svg);
    node("text", { x: labelWidth + 230, y: 18, "font-size": 13 }, svg, "this layer (log scale)");
    for (var power = low; power <= high; power += 1) {
      var tick = x(Math.pow(10, power));
      node("line", { x1: tick, y1: top - 8, x2: tick, y2: height - 8, stroke: "#DDDDDD" }, svg);
      node("text", { x: tick, y: top - 13, "font-size": 12, "text-anchor": "middle", fill: "#555555" }, svg,
           tickLabel(power));
    }
    layers.forEach(function (layer, index) {
      var y = top + index * rowHeight;
      var row = node("g", { "class": "chart-row", "data-layer": index }, svg);
      var link = node("a", { href: "#layer-" + layer.name }, row);
      node("text", { x: labelWidth - 8, y: y + 17, "font-size": 13, "text-anchor": "end", fill: "#0B4F8A" }, link,
           layer.name);
      if (layer.standard !== null && layer.standard > 0) {
        node("rect", { x: labelWidth, y: y + 4, width: Math.max(1, x(layer.standard) - labelWidth), height: 18,
                       fill: "#C8C8C8" }, row);
      }
      if (layer.macs > 0) {
        node("rect", { x: labelWidth, y: y + 8, width: Math.max(1, x(layer.macs) - labelWidth), height: 10,
                       fill: "#0072B2" }, row);
      }
      node("text", { x: labelWidth + plotWidth + 10, y: y + 17, "font-size": 13 }, row, valueText(layer));
    });
  }

  function setUpAnimations(data) {
    var reduced = window.matchMedia && window.matchMedia("(prefers-reduced-motion: reduce)").matches;
    var players = [];
    Array.prototype.forEach.call(document.querySelectorAll("section.layer"), function (section) {
      var layer = data.layers[Number(section.getAttribute("data-layer"))];
      var svg = section.querySelector("svg.convgen-diagram");
      var caption = section.querySelector(".caption");
      var play = section.querySelector("[data-action=play]");
      if (!layer || !svg || !caption || !play) { throw new Error("layer section " + section.id + " is incomplete"); }
      var steps = layer.steps;
      var stepped = svg.querySelectorAll("[data-step]");
      var staged = svg.querySelectorAll("[data-stage], [data-rest]");
      var player = { step: 0, playing: !reduced };
      player.show = function (index) {
        player.step = (index % steps.length + steps.length) % steps.length;
        var step = steps[player.step];
        Array.prototype.forEach.call(stepped, function (element) {
          element.classList.toggle("convgen-dim", step.id !== "all" && element.getAttribute("data-step") !== step.id);
        });
        Array.prototype.forEach.call(staged, function (element) {
          var otherStage = step.stage !== null && element.getAttribute("data-stage") !== String(step.stage);
          var rest = step.id !== "all" && element.hasAttribute("data-rest");
          element.classList.toggle("convgen-dim", otherStage || rest);
        });
        caption.textContent = "step " + (player.step + 1) + " of " + steps.length + ": " + step.caption;
      };
      function label() {
        play.textContent = player.playing ? "pause" : "play";
        play.setAttribute("aria-pressed", String(player.playing));
      }
      function manual(offset) {
        return function () {
          try { player.playing = false; label(); player.show(player.step + offset); } catch (error) { report(error); }
        };
      }
      play.addEventListener("click", function () { player.playing = !player.playing; label(); });
      section.querySelector("[data-action=previous]").addEventListener("click", manual(-1));
      section.querySelector("[data-action=next]").addEventListener("click", manual(1));
      label();
      player.show(0);
      players.push(player);
    });
    window.setInterval(function () {
      try {
        players.forEach(function (player) { if (player.playing) { player.show(player.step + 1); } });
      } catch (error) { report(error); }
    }, 1600);
  }

  try {
    var data = JSON.parse(document.getElementById("convgen-data").textContent);
    buildChart(data);
    setUpAnimations(data);
    body.setAttribute("data-rendered", "yes");
  } catch (error) {
    report(error);
  }
})();
"##;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_cannot_close_the_script() {
        assert_eq!(json_string("a</script>\"b\\"), "\"a\\u003c/script\\u003e\\\"b\\\\\"");
    }
}
