//! The HTML report: one self-contained file (inline SVG and CSS, no scripts, no fonts, no
//! external references) that uses the window's width: the verdict and counters, a plot of each
//! client's divergence from the server and a message sequence chart on time axes with the
//! faults drawn where they happened (partitions as bands, crashes on the crashed node's lane),
//! every node's final text, and the settings and trace in collapsible sections.

use std::fmt::Write;

use crate::scenario::{Node, Scenario};
use crate::world::{fmt_time, Chart, ChartMsg, Report, Verdict};

/// Trace lines included in the page; a longer trace is cut (the CLI prints it whole).
pub const MAX_TRACE_LINES: usize = 50_000;
/// Chars of each node's final text included in the page.
pub const MAX_TEXT_CHARS: usize = 20_000;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn lane(node: Node) -> usize {
    match node {
        Node::Server => 0,
        Node::Client(i) => i + 1,
    }
}

fn lane_name(n: Node) -> String {
    match n {
        Node::Server => "S".into(),
        Node::Client(i) => format!("c{i}"),
    }
}

/// Colour of a message by its fate.
fn fate_color(fate: &str) -> &'static str {
    match fate {
        "dropped" | "blocked" => "#c62828",
        "duplicate" => "#ef6c00",
        "corrupted" => "#6a1b9a",
        "stalled" => "#1565c0",
        _ => "#37474f",
    }
}

/// A distinct colour for client `i`, for any number of clients: hues a golden angle apart,
/// with two alternating lightnesses, so neighbours never look alike.
fn client_color(i: usize) -> String {
    let hue = (i as f64 * 137.508) % 360.0;
    let light = if i % 2 == 0 { 38 } else { 52 };
    format!("hsl({hue:.0},70%,{light}%)")
}

/// A tick spacing (ms) that gives at most about 12 ticks over `span_ms`.
fn tick_step(span_ms: u64) -> u64 {
    const STEPS: [u64; 14] = [
        100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 30_000, 60_000, 120_000, 300_000,
        600_000, 1_800_000,
    ];
    STEPS
        .into_iter()
        .find(|s| span_ms / s <= 12)
        .unwrap_or(3_600_000)
}

/// `12s`, `1.5s`, `2m`: a tick label.
fn tick_label(ms: u64) -> String {
    if ms % 60_000 == 0 && ms >= 120_000 {
        format!("{}m", ms / 60_000)
    } else if ms % 1_000 == 0 {
        format!("{}s", ms / 1_000)
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

/// Time spans drawn as bands: partitions (until the next heal) and node outages (crash until
/// restart), from the fault labels the world records.
struct Spans {
    /// (from, to, label) of each partition.
    partitions: Vec<(u64, u64, String)>,
    /// (lane, from, to) of each outage.
    down: Vec<(usize, u64, u64)>,
}

fn spans(faults: &[(u64, String)], end: u64) -> Spans {
    let node_lane = |label: &str| -> Option<usize> {
        let name = label.split_whitespace().nth(1)?;
        if name == "S" {
            Some(0)
        } else {
            name.strip_prefix('c')?.parse::<usize>().ok().map(|i| i + 1)
        }
    };
    let mut out = Spans {
        partitions: Vec::new(),
        down: Vec::new(),
    };
    let mut open_partitions: Vec<(u64, String)> = Vec::new();
    let mut open_down: Vec<(usize, u64)> = Vec::new();
    for (t, label) in faults {
        if label.starts_with("partition") {
            open_partitions.push((*t, label.clone()));
        } else if let Some(which) = label.strip_prefix("heal ") {
            // One partition lifted by itself: `heal partition [..] | [..] kind`.
            if let Some(i) = open_partitions.iter().position(|p| p.1 == which) {
                let (from, l) = open_partitions.remove(i);
                out.partitions.push((from, *t, l));
            }
        } else if label == "heal" || label.starts_with("stop faults") {
            for (from, l) in open_partitions.drain(..) {
                out.partitions.push((from, *t, l));
            }
        }
        if label.starts_with("crash") {
            if let Some(l) = node_lane(label) {
                open_down.push((l, *t));
            }
        } else if label.starts_with("restart") {
            if let Some(l) = node_lane(label) {
                if let Some(i) = open_down.iter().position(|d| d.0 == l) {
                    let (lane, from) = open_down.remove(i);
                    out.down.push((lane, from, *t));
                }
            }
        }
    }
    for (from, l) in open_partitions {
        out.partitions.push((from, end, l));
    }
    for (lane, from) in open_down {
        out.down.push((lane, from, end));
    }
    out
}

const STYLE: &str = "
body{font-family:system-ui,sans-serif;margin:1.2em 2%;color:#222}
h1{margin:.2em 0}
h2{margin-top:1.6em;border-bottom:1px solid #ddd}
pre{background:#f5f5f5;padding:.6em;overflow-x:auto;white-space:pre-wrap;word-break:break-all}
.verdict{display:inline-block;padding:.3em .7em;border-radius:4px;font-weight:600}
.pass{background:#e8f5e9;color:#1b5e20}
.expected{background:#fff8e1;color:#8d6e00}
.fail{background:#ffebee;color:#b71c1c}
table.counters{border-collapse:collapse;font-family:monospace}
table.counters td{padding:.1em .8em .1em 0}
.legend span{margin-right:1.2em;white-space:nowrap}
svg{display:block;width:100%}
svg text{font-family:monospace;font-size:11px}
svg text.small{font-size:9px}
details{margin:.6em 0}
summary{cursor:pointer;font-weight:600}
.node{margin:.4em 0}
.differs{color:#b71c1c}
";

/// Render the report page.
pub fn render(sc: &Scenario, report: &Report) -> String {
    let chart = report.chart.clone().unwrap_or_default();
    let mut out = String::new();
    let verdict =
        crate::swarm::verdict_line(&report.verdict, sc.expect, report.summary.converge_ms);
    let class = match (
        &report.verdict,
        crate::swarm::as_expected(&report.verdict, sc.expect),
    ) {
        (Verdict::Pass, true) => "pass",
        (Verdict::Fail { .. }, true) => "expected",
        _ => "fail",
    };
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\"><title>dsync-sim: {name}</title>\n<style>{STYLE}</style></head><body>\n<h1>dsync-sim: {name}</h1>\n<p>{desc}</p>\n<p><span class=\"verdict {class}\">{verdict}</span></p>\n",
        name = esc(&sc.name),
        desc = esc(&sc.description),
        verdict = esc(&verdict),
    );
    counters(&mut out, report);
    let end = chart_end(&chart, report.summary.sim_ms);
    let sp = spans(&chart.faults, end);
    divergence_plot(&mut out, sc, &chart, &sp, end);
    sequence_chart(&mut out, sc, &chart, &sp, end);
    final_texts(&mut out, report);
    let _ = writeln!(
        out,
        "<details><summary>Settings</summary><pre>{}</pre></details>",
        esc(&report.settings.join("\n"))
    );
    trace(&mut out, report);
    out.push_str("</body></html>\n");
    out
}

/// The summary counters as a table, four pairs a row.
fn counters(out: &mut String, report: &Report) {
    let line = report.summary.line();
    let pairs: Vec<(&str, &str)> = line
        .split_whitespace()
        .filter_map(|w| w.split_once('='))
        .collect();
    out.push_str("<h2>Counters</h2>\n<table class=\"counters\">\n");
    for row in pairs.chunks(4) {
        out.push_str("<tr>");
        for (k, v) in row {
            let _ = write!(out, "<td>{}</td><td><b>{}</b></td>", esc(k), esc(v));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

fn chart_end(chart: &Chart, sim_ms: u64) -> u64 {
    chart
        .messages
        .iter()
        .map(|m| m.delivered_ms.unwrap_or(m.sent_ms + 50))
        .chain(chart.faults.iter().map(|f| f.0))
        .chain(chart.divergence.last().map(|d| d.0))
        .chain(std::iter::once(sim_ms))
        .max()
        .unwrap_or(0)
        .max(1)
}

fn divergence_plot(out: &mut String, sc: &Scenario, chart: &Chart, sp: &Spans, end: u64) {
    let n = sc.topology.clients;
    // The data layer is a nested SVG stretched over the plot area (92% of the width); labels
    // live in the outer SVG at percentages, so the text never stretches.
    let (left, width) = (6.0f64, 92.0f64);
    let (top, h) = (48.0f64, 220.0f64);
    let d_max = chart
        .divergence
        .iter()
        .flat_map(|(_, row)| row.iter().flatten())
        .copied()
        .max()
        .unwrap_or(1)
        .max(1);
    let fx = |t: u64| t as f64 / end as f64 * 1000.0;
    let px = |t: u64| left + t as f64 / end as f64 * width;
    let fy = |d: u64| h - d as f64 / d_max as f64 * h;
    let _ = write!(
        out,
        "<h2>Divergence from the server</h2>\n<p>Chars by which each client's text differs from the master (0 = in sync); shaded: partitions; dashed: faults; gaps: the client is down.</p>\n<svg id=\"divergence\" xmlns=\"http://www.w3.org/2000/svg\" height=\"{total:.0}\">\n",
        total = top + h + 30.0
    );
    // Axes and ticks.
    let step = tick_step(end);
    let mut t = 0;
    while t <= end {
        let _ = writeln!(
            out,
            "<line x1=\"{x:.2}%\" y1=\"{top}\" x2=\"{x:.2}%\" y2=\"{b}\" stroke=\"#eee\"/><text x=\"{x:.2}%\" y=\"{ty}\" text-anchor=\"middle\">{}</text>",
            tick_label(t),
            x = px(t),
            b = top + h,
            ty = top + h + 16.0
        );
        t += step;
    }
    let _ = writeln!(
        out,
        "<text x=\"{l:.1}%\" y=\"{y0}\" text-anchor=\"end\">{d_max}</text><text x=\"{l:.1}%\" y=\"{y1}\" text-anchor=\"end\">0 </text><line x1=\"{left}%\" y1=\"{b}\" x2=\"{r}%\" y2=\"{b}\" stroke=\"#999\"/><line x1=\"{left}%\" y1=\"{top}\" x2=\"{left}%\" y2=\"{b}\" stroke=\"#999\"/><text x=\"{r}%\" y=\"{ty}\" text-anchor=\"end\">time</text>",
        l = left - 0.4,
        y0 = top + 8.0,
        y1 = top + h,
        b = top + h,
        r = left + width,
        ty = top + h + 28.0
    );
    // Fault labels above the plot, staggered over three rows.
    for (k, (t, label)) in chart.faults.iter().enumerate() {
        let short: String = label
            .split_whitespace()
            .take(2)
            .collect::<Vec<_>>()
            .join(" ");
        let _ = writeln!(
            out,
            "<text class=\"small\" x=\"{x:.2}%\" y=\"{y}\" fill=\"#c62828\"{anchor}><title>{} {}</title>{}</text>",
            fmt_time(*t),
            esc(label),
            esc(&short),
            x = px(*t),
            y = 12 + (k % 3) * 12,
            // Labels near the right edge end at their line instead of running off the page.
            anchor = if px(*t) > 85.0 { " text-anchor=\"end\"" } else { "" }
        );
    }
    let _ = writeln!(
        out,
        "<svg x=\"{left}%\" y=\"{top}\" width=\"{width}%\" height=\"{h}\" viewBox=\"0 0 1000 {h}\" preserveAspectRatio=\"none\">"
    );
    for (from, to, label) in &sp.partitions {
        let _ = writeln!(
            out,
            "<rect class=\"partition\" x=\"{:.2}\" y=\"0\" width=\"{:.2}\" height=\"{h}\" fill=\"#1565c0\" fill-opacity=\"0.08\"><title>{}</title></rect>",
            fx(*from),
            (fx(*to) - fx(*from)).max(0.5),
            esc(label)
        );
    }
    for (t, label) in &chart.faults {
        let _ = writeln!(
            out,
            "<line class=\"fault\" x1=\"{0:.2}\" y1=\"0\" x2=\"{0:.2}\" y2=\"{h}\" stroke=\"#e57373\" stroke-dasharray=\"3,3\" vector-effect=\"non-scaling-stroke\"><title>{1} {2}</title></line>",
            fx(*t),
            fmt_time(*t),
            esc(label)
        );
    }
    for c in 0..n {
        // A client that is down has no value: its line breaks into segments.
        let mut segments: Vec<String> = vec![String::new()];
        for (t, row) in &chart.divergence {
            match row.get(c).copied().flatten() {
                Some(d) => {
                    let seg = segments.last_mut().expect("never empty");
                    let _ = write!(seg, "{:.1},{:.1} ", fx(*t), fy(d));
                }
                None => {
                    if segments.last().is_some_and(|s| !s.is_empty()) {
                        segments.push(String::new());
                    }
                }
            }
        }
        for pts in segments.iter().filter(|s| !s.is_empty()) {
            let _ = writeln!(
                out,
                "<polyline class=\"client\" data-client=\"c{c}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" vector-effect=\"non-scaling-stroke\" points=\"{}\"><title>c{c}</title></polyline>",
                client_color(c),
                pts.trim_end()
            );
        }
    }
    out.push_str("</svg>\n</svg>\n<p class=\"legend\">");
    for c in 0..n {
        let _ = write!(
            out,
            "<span style=\"color:{}\">&#9632; c{c}</span>",
            client_color(c)
        );
    }
    out.push_str("</p>\n");
}

fn sequence_chart(out: &mut String, sc: &Scenario, chart: &Chart, sp: &Spans, end: u64) {
    let msgs: &[ChartMsg] = &chart.messages;
    let lanes = sc.topology.clients + 1;
    // Lanes spread over the width (percentages); time runs down at 1 px per 10 ms, so close
    // messages stay apart and the chart is as tall as the run.
    let (axis, span) = (7.0f64, 92.0f64);
    let lane_x = |l: usize| axis + span * (l as f64 + 0.5) / lanes as f64;
    let top = 40.0f64;
    let y = |t: u64| top + t as f64 / 10.0;
    let height = y(end) + 30.0;
    let _ = write!(
        out,
        "<h2>Message sequence chart</h2>\n<p class=\"legend\"><span style=\"color:#37474f\">&#8594; delivered</span><span style=\"color:#c62828\">&#10007; dropped or blocked</span><span style=\"color:#ef6c00\">&#8674; duplicate</span><span style=\"color:#6a1b9a\">corrupted</span><span style=\"color:#1565c0\">stalled in a partition</span><span style=\"background:#e3ecf8\">partition</span><span style=\"background:#fbe3e3\">node down</span> ({} messages; labels: type, seq, versions; hover for details)</p>\n<svg id=\"sequence\" xmlns=\"http://www.w3.org/2000/svg\" height=\"{height:.0}\">\n<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#555\"/></marker></defs>\n",
        msgs.len()
    );
    for (from, to, label) in &sp.partitions {
        let _ = writeln!(
            out,
            "<rect class=\"partition\" x=\"{axis}%\" y=\"{:.1}\" width=\"{span}%\" height=\"{:.1}\" fill=\"#1565c0\" fill-opacity=\"0.08\"><title>{}</title></rect>",
            y(*from),
            (y(*to) - y(*from)).max(1.0),
            esc(label)
        );
    }
    for (l, from, to) in &sp.down {
        let _ = writeln!(
            out,
            "<rect class=\"down\" x=\"{:.2}%\" y=\"{:.1}\" width=\"{:.2}%\" height=\"{:.1}\" fill=\"#c62828\" fill-opacity=\"0.12\"><title>{} down {}–{}</title></rect>",
            lane_x(*l) - span / lanes as f64 * 0.15,
            y(*from),
            span / lanes as f64 * 0.3,
            (y(*to) - y(*from)).max(1.0),
            if *l == 0 { "S".to_string() } else { format!("c{}", l - 1) },
            fmt_time(*from),
            fmt_time(*to)
        );
    }
    // Time axis with a grid line per tick.
    let step = tick_step(end);
    let mut t = 0;
    while t <= end {
        let _ = writeln!(
            out,
            "<line x1=\"{axis}%\" y1=\"{yy:.1}\" x2=\"100%\" y2=\"{yy:.1}\" stroke=\"#f0f0f0\"/><text x=\"{lx}%\" y=\"{ty:.1}\" text-anchor=\"end\">{}</text>",
            tick_label(t),
            yy = y(t),
            lx = axis - 0.5,
            ty = y(t) + 4.0
        );
        t += step;
    }
    for l in 0..lanes {
        let (name, color) = if l == 0 {
            ("S".to_string(), "#222".to_string())
        } else {
            (format!("c{}", l - 1), client_color(l - 1))
        };
        let _ = writeln!(
            out,
            "<text x=\"{x:.2}%\" y=\"20\" text-anchor=\"middle\" fill=\"{color}\" font-weight=\"bold\">{name}</text><line x1=\"{x:.2}%\" y1=\"{top}\" x2=\"{x:.2}%\" y2=\"{b:.0}\" stroke=\"#bbb\"/>",
            x = lane_x(l),
            b = height - 10.0
        );
    }
    for (t, label) in &chart.faults {
        let _ = writeln!(
            out,
            "<line class=\"fault\" x1=\"{axis}%\" y1=\"{0:.1}\" x2=\"100%\" y2=\"{0:.1}\" stroke=\"#e57373\" stroke-dasharray=\"4,3\"/><text x=\"{lx}%\" y=\"{1:.1}\" fill=\"#c62828\">{2} {3}</text>",
            y(*t),
            y(*t) - 3.0,
            fmt_time(*t),
            esc(label),
            lx = axis + 0.3
        );
    }
    // Labels only where they fit: a label is drawn when it overlaps none already drawn (its
    // width estimated for a 1,400 px wide page; nearby labels are the recent ones).
    let mut placed: Vec<(f64, f64, f64)> = Vec::new();
    let mut fits = |x_mid: f64, at: f64, text: &str| -> bool {
        let half = text.chars().count() as f64 * 5.5 / 1400.0 * 100.0 / 2.0;
        let (x0, x1) = (x_mid - half, x_mid + half);
        let clash = placed
            .iter()
            .rev()
            .take(400)
            .any(|&(y, a, b)| (at - y).abs() < 10.0 && x0 < b && a < x1);
        if !clash {
            placed.push((at, x0, x1));
        }
        !clash
    };
    for m in msgs {
        let (lf, lt) = (lane(m.from), lane(m.to));
        let (x1, y1, x2) = (lane_x(lf), y(m.sent_ms), lane_x(lt));
        let title = format!(
            "{} {} → {} {} ({})",
            fmt_time(m.sent_ms),
            lane_name(m.from),
            lane_name(m.to),
            m.label,
            m.fate
        );
        let short = short_label(&m.label);
        match m.delivered_ms {
            Some(d) => {
                let dash = if m.fate == "duplicate" {
                    " stroke-dasharray=\"5,3\""
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "<g class=\"msg {fate}\"><title>{}</title><line x1=\"{x1:.2}%\" y1=\"{y1:.1}\" x2=\"{x2:.2}%\" y2=\"{:.1}\" stroke=\"{c}\"{dash} marker-end=\"url(#arrow)\"/>",
                    esc(&title),
                    y(d),
                    c = fate_color(m.fate),
                    fate = m.fate
                );
                let (xm, ym) = ((x1 + x2) / 2.0, (y1 + y(d)) / 2.0 - 2.0);
                if fits(xm, ym, &short) {
                    let _ = writeln!(
                        out,
                        "<text class=\"small\" x=\"{xm:.2}%\" y=\"{ym:.1}\" text-anchor=\"middle\" fill=\"{}\">{}</text>",
                        fate_color(m.fate),
                        esc(&short)
                    );
                }
                out.push_str("</g>\n");
            }
            None => {
                // Lost: a short arrow towards the receiver ending in a cross.
                let xm = x1 + (x2 - x1) * 0.4;
                let ym = y1 + 6.0;
                let _ = writeln!(
                    out,
                    "<g class=\"msg {fate}\"><title>{}</title><line x1=\"{x1:.2}%\" y1=\"{y1:.1}\" x2=\"{xm:.2}%\" y2=\"{ym:.1}\" stroke=\"{c}\"/><text x=\"{xm:.2}%\" y=\"{:.1}\" text-anchor=\"middle\" fill=\"{c}\">&#10007;</text>",
                    esc(&title),
                    ym + 4.0,
                    c = fate_color(m.fate),
                    fate = m.fate
                );
                if fits(xm + 0.6 + 2.0, ym + 4.0, &short) {
                    let _ = writeln!(
                        out,
                        "<text class=\"small\" x=\"{:.2}%\" y=\"{:.1}\" fill=\"{c}\">{}</text>",
                        xm + 0.6,
                        ym + 4.0,
                        esc(&short),
                        c = fate_color(m.fate)
                    );
                }
                out.push_str("</g>\n");
            }
        }
    }
    out.push_str("</svg>\n");
}

/// The label shown on an arrow: the message type and its `seq`/version fields, without texts
/// and delta lists (those stay in the hover title).
fn short_label(label: &str) -> String {
    label
        .split_whitespace()
        .filter(|w| {
            !w.starts_with('[')
                && !w.starts_with("text=")
                && !w.ends_with(']')
                && !w.starts_with("(+")
        })
        .take(4)
        .collect::<Vec<_>>()
        .join(" ")
}

fn final_texts(out: &mut String, report: &Report) {
    out.push_str("<h2>Final texts</h2>\n");
    let master = report
        .node_texts
        .first()
        .and_then(|(_, t)| t.as_deref())
        .unwrap_or(&report.final_text);
    for (name, text) in &report.node_texts {
        match text {
            None => {
                let _ = writeln!(
                    out,
                    "<div class=\"node\"><b>{}</b>: down at the end</div>",
                    esc(name)
                );
            }
            Some(t) => {
                let chars = t.chars().count();
                let same = t == master;
                let shown: String = t.chars().take(MAX_TEXT_CHARS).collect();
                let cut = if chars > MAX_TEXT_CHARS {
                    format!(" (first {MAX_TEXT_CHARS} chars shown)")
                } else {
                    String::new()
                };
                let _ = writeln!(
                    out,
                    "<details class=\"node\"{open}><summary{class}>{name}: {chars} chars, {digest}{differs}{cut}</summary><pre>{text}</pre></details>",
                    open = if name == "S" { " open" } else { "" },
                    class = if same { "" } else { " class=\"differs\"" },
                    name = esc(name),
                    digest = crate::world::digest(t),
                    differs = if same { "" } else { " — differs from the server" },
                    text = esc(&shown)
                );
            }
        }
    }
}

fn trace(out: &mut String, report: &Report) {
    let n = report.trace.len();
    let shown = n.min(MAX_TRACE_LINES);
    let _ = write!(
        out,
        "<details><summary>Trace ({n} lines{})</summary><pre>",
        if shown < n {
            format!("; the first {shown} shown, run the CLI with --trace full for all")
        } else {
            String::new()
        }
    );
    for l in &report.trace[..shown] {
        out.push_str(&esc(l));
        out.push('\n');
    }
    out.push_str("</pre></details>\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_few_and_round() {
        assert_eq!(tick_step(15_000), 2_000);
        assert_eq!(tick_step(1_000), 100);
        assert_eq!(tick_step(600_000), 60_000);
        assert_eq!(tick_label(2_000), "2s");
        assert_eq!(tick_label(500), "0.5s");
        assert_eq!(tick_label(180_000), "3m");
    }

    #[test]
    fn colours_stay_distinct_for_many_clients() {
        let all: std::collections::BTreeSet<String> = (0..64).map(client_color).collect();
        assert_eq!(all.len(), 64);
    }

    #[test]
    fn partitions_and_outages_become_spans() {
        let faults = vec![
            (1_000, "partition [c1] | [S,c0] symmetric".to_string()),
            (1_500, "partition [c2] | [S] one-way".to_string()),
            (2_000, "crash c0 (unsent typing lost)".to_string()),
            (2_500, "heal partition [c2] | [S] one-way".to_string()),
            (3_000, "heal".to_string()),
            (4_000, "restart c0 as c0b".to_string()),
            (5_000, "crash S (uncommitted state lost)".to_string()),
        ];
        let sp = spans(&faults, 9_000);
        assert_eq!(sp.partitions.len(), 2);
        assert_eq!((sp.partitions[0].0, sp.partitions[0].1), (1_500, 2_500));
        assert_eq!((sp.partitions[1].0, sp.partitions[1].1), (1_000, 3_000));
        assert_eq!(sp.down, vec![(1, 2_000, 4_000), (0, 5_000, 9_000)]);
    }

    #[test]
    fn arrow_labels_keep_type_seq_and_versions() {
        assert_eq!(
            short_label("client_sync seq=6 m=3 [v3:3]"),
            "client_sync seq=6 m=3"
        );
        assert_eq!(
            short_label("connect_ok seq=1 resumed=false text=#0000(0)"),
            "connect_ok seq=1 resumed=false"
        );
    }
}
