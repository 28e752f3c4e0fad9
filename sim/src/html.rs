//! The HTML report: one self-contained file (inline SVG and CSS, no scripts, no fonts, no
//! external references) with a message sequence chart and a plot of each client's divergence
//! from the server over time, faults marked on both.

use std::fmt::Write;

use crate::scenario::{Node, Scenario};
use crate::world::{fmt_time, ChartMsg, Report};

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

fn color(fate: &str) -> &'static str {
    match fate {
        "dropped" | "blocked" => "#c62828",
        "duplicate" => "#ef6c00",
        "corrupted" => "#6a1b9a",
        "stalled" => "#1565c0",
        _ => "#37474f",
    }
}

/// Render the report page.
pub fn render(sc: &Scenario, report: &Report) -> String {
    let chart = report.chart.clone().unwrap_or_default();
    let mut out = String::new();
    let verdict =
        crate::swarm::verdict_line(&report.verdict, sc.expect, report.summary.converge_ms);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>dsync-sim: {name}</title>\n<style>\nbody{{font-family:system-ui,sans-serif;margin:1.5em;color:#222}}\npre{{background:#f5f5f5;padding:.6em;overflow-x:auto}}\n.legend span{{margin-right:1.2em}}\nsvg text{{font-family:monospace;font-size:11px}}\n</style></head><body>\n<h1>dsync-sim: {name}</h1>\n<p>{desc}</p>\n<p><b>Verdict:</b> {verdict}</p>\n<pre>{summary}</pre>\n<h2>Settings</h2><pre>{settings}</pre>\n",
        name = esc(&sc.name),
        desc = esc(&sc.description),
        verdict = esc(&verdict),
        summary = esc(&report.summary.line()),
        settings = esc(&report.settings.join("\n")),
    );
    divergence_plot(&mut out, sc, &chart);
    sequence_chart(&mut out, sc, &chart.messages, &chart.faults);
    out.push_str("</body></html>\n");
    out
}

fn divergence_plot(out: &mut String, sc: &Scenario, chart: &crate::world::Chart) {
    let n = sc.topology.clients;
    let (w, h, left, top) = (900.0f64, 260.0f64, 50.0f64, 20.0f64);
    let t_max = chart.divergence.last().map_or(1, |d| d.0.max(1)) as f64;
    let d_max = chart
        .divergence
        .iter()
        .flat_map(|(_, row)| row.iter().flatten())
        .copied()
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let x = |t: u64| left + (t as f64 / t_max) * (w - left - 10.0);
    let y = |d: u64| top + h - (d as f64 / d_max) * h;
    let _ = write!(
        out,
        "<h2>Divergence from the server</h2>\n<p>Chars by which each client's text differs from the master (0 = in sync); red lines are faults.</p>\n<svg id=\"divergence\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{}\">\n<line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#999\"/>\n<text x=\"4\" y=\"{}\">{d_max}</text><text x=\"4\" y=\"{}\">0</text><text x=\"{}\" y=\"{}\">{}</text>\n",
        h + top + 30.0,
        top + h,
        w - 10.0,
        top + h,
        top + 10.0,
        top + h,
        w - 120.0,
        h + top + 20.0,
        fmt_time(t_max as u64)
    );
    for (t, label) in &chart.faults {
        let _ = writeln!(
            out,
            "<line class=\"fault\" x1=\"{0:.1}\" y1=\"{top}\" x2=\"{0:.1}\" y2=\"{1}\" stroke=\"#e57373\" stroke-dasharray=\"3,3\"><title>{2} {3}</title></line>",
            x(*t),
            top + h,
            fmt_time(*t),
            esc(label)
        );
    }
    let palette = [
        "#1e88e5", "#43a047", "#fb8c00", "#8e24aa", "#00897b", "#6d4c41", "#d81b60", "#546e7a",
    ];
    for c in 0..n {
        let mut pts = String::new();
        for (t, row) in &chart.divergence {
            if let Some(Some(d)) = row.get(c) {
                let _ = write!(pts, "{:.1},{:.1} ", x(*t), y(*d));
            }
        }
        let _ = writeln!(
            out,
            "<polyline class=\"client\" data-client=\"c{c}\" fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" points=\"{}\"><title>c{c}</title></polyline>",
            palette[c % palette.len()],
            pts.trim_end()
        );
    }
    out.push_str("</svg>\n<p class=\"legend\">");
    for c in 0..n {
        let _ = write!(
            out,
            "<span style=\"color:{}\">&#9632; c{c}</span>",
            palette[c % palette.len()]
        );
    }
    out.push_str("</p>\n");
}

fn sequence_chart(out: &mut String, sc: &Scenario, msgs: &[ChartMsg], faults: &[(u64, String)]) {
    let lanes = sc.topology.clients + 1;
    let spacing = 110.0f64;
    let left = 90.0f64;
    let top = 40.0f64;
    // 1 px per 10 ms, so close messages stay apart; the chart is as tall as the run.
    let t_end = msgs
        .iter()
        .map(|m| m.delivered_ms.unwrap_or(m.sent_ms + 50))
        .chain(faults.iter().map(|f| f.0))
        .max()
        .unwrap_or(0);
    let y = |t: u64| top + t as f64 / 10.0;
    let height = y(t_end) + 40.0;
    let width = left + spacing * (lanes as f64) + 260.0;
    let _ = write!(
        out,
        "<h2>Message sequence chart</h2>\n<p class=\"legend\"><span style=\"color:#37474f\">&#8594; delivered</span><span style=\"color:#c62828\">&#10007; dropped or blocked</span><span style=\"color:#ef6c00\">&#8674; duplicate</span><span style=\"color:#6a1b9a\">corrupted</span><span style=\"color:#1565c0\">stalled in a partition</span> ({} messages shown)</p>\n<svg id=\"sequence\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\">\n<defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" fill=\"#555\"/></marker></defs>\n",
        msgs.len()
    );
    let lane_x = |l: usize| left + spacing * l as f64;
    for l in 0..lanes {
        let name = if l == 0 {
            "S".to_string()
        } else {
            format!("c{}", l - 1)
        };
        let _ = writeln!(
            out,
            "<text x=\"{0:.0}\" y=\"20\" text-anchor=\"middle\">{name}</text><line x1=\"{0:.0}\" y1=\"{top}\" x2=\"{0:.0}\" y2=\"{1:.0}\" stroke=\"#bbb\"/>",
            lane_x(l),
            height - 20.0
        );
    }
    for (t, label) in faults {
        let _ = writeln!(
            out,
            "<line class=\"fault\" x1=\"10\" y1=\"{0:.1}\" x2=\"{1:.0}\" y2=\"{0:.1}\" stroke=\"#e57373\" stroke-dasharray=\"4,3\"/><text x=\"{2:.0}\" y=\"{3:.1}\" fill=\"#c62828\">{4} {5}</text>",
            y(*t),
            lane_x(lanes - 1) + 20.0,
            lane_x(lanes - 1) + 24.0,
            y(*t) + 4.0,
            fmt_time(*t),
            esc(label)
        );
    }
    for m in msgs {
        let (x1, y1) = (lane_x(lane(m.from)), y(m.sent_ms));
        let x2 = lane_x(lane(m.to));
        let title = format!(
            "{} {} → {} {}",
            fmt_time(m.sent_ms),
            lane_name(m.from),
            lane_name(m.to),
            m.label
        );
        match m.delivered_ms {
            Some(d) => {
                let dash = if m.fate == "duplicate" {
                    " stroke-dasharray=\"5,3\""
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "<line class=\"msg {fate}\" x1=\"{x1:.0}\" y1=\"{y1:.1}\" x2=\"{x2:.0}\" y2=\"{:.1}\" stroke=\"{}\"{dash} marker-end=\"url(#arrow)\"><title>{}</title></line>",
                    y(d),
                    color(m.fate),
                    esc(&title),
                    fate = m.fate
                );
            }
            None => {
                // Lost: a short arrow towards the receiver ending in a cross.
                let xm = x1 + (x2 - x1) * 0.4;
                let ym = y1 + 6.0;
                let _ = writeln!(
                    out,
                    "<g class=\"msg {fate}\"><title>{}</title><line x1=\"{x1:.0}\" y1=\"{y1:.1}\" x2=\"{xm:.0}\" y2=\"{ym:.1}\" stroke=\"{c}\"/><text x=\"{:.0}\" y=\"{:.1}\" fill=\"{c}\">&#10007;</text></g>",
                    esc(&title),
                    xm - 4.0,
                    ym + 4.0,
                    c = color(m.fate),
                    fate = m.fate
                );
            }
        }
    }
    out.push_str("</svg>\n");
}

fn lane_name(n: Node) -> String {
    match n {
        Node::Server => "S".into(),
        Node::Client(i) => format!("c{i}"),
    }
}
