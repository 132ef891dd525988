//! Throughput plot as SVG, written by hand: log2 x axis (transfer size),
//! linear y axis (GiB/s), one polyline per method, one panel per sink.

use std::fmt::Write;

pub struct Series {
    pub label: String,
    pub color: &'static str,
    /// Dashed line (e.g. the stable variant), to stay readable in grey scale.
    pub dashed: bool,
    /// (transfer size in bytes, GiB/s); None = not measured.
    pub points: Vec<(usize, Option<f64>)>,
}

pub struct Panel {
    pub title: String,
    pub series: Vec<Series>,
}

const PW: f64 = 460.0; // panel width
const PH: f64 = 330.0; // panel height
const ML: f64 = 62.0; // margins inside a panel
const MR: f64 = 28.0;
const MT: f64 = 30.0;
const MB: f64 = 48.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// 1-2-5 tick step for an axis from 0 to `max`.
fn tick_step(max: f64) -> f64 {
    let raw = max / 5.0;
    let p = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if raw <= m * p {
            return m * p;
        }
    }
    10.0 * p
}

fn fmt_tick(v: f64, step: f64) -> String {
    // as many decimals as the step needs (0.25 -> 2, 0.5 -> 1, 2 -> 0)
    let d = (0..6usize)
        .find(|&d| {
            let x = step * 10f64.powi(d as i32);
            (x - x.round()).abs() < 1e-6 * x.max(1.0)
        })
        .unwrap_or(6);
    format!("{v:.d$}")
}

pub fn size_label(s: usize) -> String {
    if s >= 1 << 20 {
        format!("{} MiB", s >> 20)
    } else {
        format!("{} KiB", s >> 10)
    }
}

pub fn render(title: &str, subtitle: &str, panels: &[Panel]) -> String {
    let n = panels.len().max(1) as f64;
    let legend_h = 22.0 * panels.first().map_or(0, |p| p.series.len().div_ceil(2)) as f64 + 10.0;
    let w = PW * n;
    let h = 50.0 + PH + legend_h;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(s, r#"<text x="{}" y="20" text-anchor="middle" font-size="15" font-weight="bold">{}</text>"#, w / 2.0, esc(title));
    let _ = writeln!(s, r##"<text x="{}" y="38" text-anchor="middle" font-size="11" fill="#555">{}</text>"##, w / 2.0, esc(subtitle));

    for (pi, p) in panels.iter().enumerate() {
        let x0 = pi as f64 * PW;
        let y0 = 50.0;
        let (l, r, t, b) = (x0 + ML, x0 + PW - MR, y0 + MT, y0 + PH - MB);
        let sizes: Vec<usize> = {
            let mut v: Vec<usize> = p.series.iter().flat_map(|s| s.points.iter().map(|q| q.0)).collect();
            v.sort_unstable();
            v.dedup();
            v
        };
        let (lo, hi) = match (sizes.first(), sizes.last()) {
            (Some(&a), Some(&z)) if z > a => ((a as f64).log2(), (z as f64).log2()),
            (Some(&a), _) => ((a as f64).log2() - 1.0, (a as f64).log2() + 1.0),
            _ => (12.0, 23.0),
        };
        let xs = |size: usize| l + ((size as f64).log2() - lo) / (hi - lo) * (r - l);
        let ymax_data = p
            .series
            .iter()
            .flat_map(|s| s.points.iter().filter_map(|q| q.1))
            .fold(0.0f64, f64::max);
        let ymax_data = if ymax_data > 0.0 { ymax_data * 1.08 } else { 1.0 };
        let step = tick_step(ymax_data);
        let ymax = (ymax_data / step).ceil() * step;
        let ys = |v: f64| b - v / ymax * (b - t);

        let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle" font-size="13" font-weight="bold">{}</text>"#, (l + r) / 2.0, t - 10.0, esc(&p.title));
        // grid + y ticks
        let mut v = 0.0;
        while v <= ymax + step * 0.01 {
            let y = ys(v);
            let _ = writeln!(s, r##"<line x1="{l}" y1="{y:.1}" x2="{r}" y2="{y:.1}" stroke="#ddd"/>"##);
            let _ = writeln!(s, r#"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"#, l - 5.0, y + 4.0, fmt_tick(v, step));
            v += step;
        }
        // x ticks
        for &sz in &sizes {
            let x = xs(sz);
            let _ = writeln!(s, r##"<line x1="{x:.1}" y1="{t}" x2="{x:.1}" y2="{b}" stroke="#eee"/>"##);
            let _ = writeln!(s, r#"<text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#, b + 16.0, size_label(sz));
        }
        let _ = writeln!(s, r#"<rect x="{l}" y="{t}" width="{}" height="{}" fill="none" stroke="black"/>"#, r - l, b - t);
        let _ = writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">transfer size (log2 scale)</text>"#, (l + r) / 2.0, b + 36.0);
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle" transform="rotate(-90 {} {})">GiB/s (median)</text>"#,
            x0 + 16.0,
            (t + b) / 2.0,
            x0 + 16.0,
            (t + b) / 2.0
        );
        // series
        for se in &p.series {
            let pts: Vec<(f64, f64)> = se.points.iter().filter_map(|&(sz, v)| v.map(|v| (xs(sz), ys(v)))).collect();
            if pts.is_empty() {
                continue;
            }
            let path: Vec<String> = pts.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let dash = if se.dashed { r#" stroke-dasharray="6 3""# } else { "" };
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{}" stroke-width="2"{dash}><title>{}</title></polyline>"#,
                path.join(" "),
                se.color,
                esc(&se.label)
            );
            for ((x, y), (sz, v)) in pts.iter().zip(se.points.iter().filter(|q| q.1.is_some())) {
                let _ = writeln!(
                    s,
                    r#"<circle cx="{x:.1}" cy="{y:.1}" r="3" fill="{}"><title>{} {}: {:.3} GiB/s</title></circle>"#,
                    se.color,
                    esc(&se.label),
                    size_label(*sz),
                    v.unwrap_or(0.0)
                );
            }
        }
    }
    // legend (methods are the same in every panel)
    if let Some(p) = panels.first() {
        let ly = 50.0 + PH + 6.0;
        for (i, se) in p.series.iter().enumerate() {
            let x = 30.0 + (i % 2) as f64 * (w / 2.0);
            let y = ly + (i / 2) as f64 * 22.0;
            let dash = if se.dashed { r#" stroke-dasharray="6 3""# } else { "" };
            let _ = writeln!(s, r#"<line x1="{x}" y1="{y}" x2="{}" y2="{y}" stroke="{}" stroke-width="2"{dash}/>"#, x + 30.0, se.color);
            let _ = writeln!(s, r#"<circle cx="{}" cy="{y}" r="3" fill="{}"/>"#, x + 15.0, se.color);
            let unavailable = se.points.iter().all(|q| q.1.is_none());
            let _ = writeln!(
                s,
                r#"<text x="{}" y="{}">{}{}</text>"#,
                x + 38.0,
                y + 4.0,
                esc(&se.label),
                if unavailable { " (unavailable)" } else { "" }
            );
        }
    }
    s.push_str("</svg>\n");
    s
}
