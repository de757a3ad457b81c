//! `octobackup-lab bench --scale 10k:0.5g,100k:5g,1m:20g`: how cost grows with the number of files
//! and bytes. Each point is one bench run (first night, one day later, restore) on a lab of that
//! shape, in its own folder, removed after. Reported per point: time, peak memory and repository
//! size for octobackup and stock restic; then, per measure, the fitted growth
//! `y = base + per_file * files + per_gib * GiB` (least squares, three points or more), and a
//! plot of the curve as SVG.

use super::bench::{self, Args, Results};
use crate::error::Failure;
use octobackup_lab::Size;
use serde::Serialize;
use std::path::PathBuf;

#[derive(Clone, Debug, Serialize)]
pub struct Point {
    pub size: String,
    pub files: u64,
    pub gib: f64,
    pub results: Results,
}

#[derive(Clone, Debug, Serialize)]
pub struct Fit {
    pub measure: String,
    pub base: f64,
    pub per_file: f64,
    pub per_gib: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Scaling {
    pub points: Vec<Point>,
    /// Empty with fewer than three points, or points whose files and bytes grow in proportion.
    pub fits: Vec<Fit>,
    pub plot: Option<PathBuf>,
}

/// The measures fitted and plotted: name, unit, and how to read one from a point's results.
type Measure = (&'static str, &'static str, fn(&Results) -> Option<f64>);

fn measures() -> Vec<Measure> {
    vec![
        ("octobackup full backup", "s", |r| {
            Some(r.first.octobackup.seconds)
        }),
        ("octobackup full engine time", "s", |r| {
            Some(r.first.octobackup_engine_s)
        }),
        ("restic full backup", "s", |r| {
            r.first.restic.as_ref().map(|m| m.seconds)
        }),
        ("octobackup nightly backup", "s", |r| {
            Some(r.nightly.octobackup.seconds)
        }),
        ("restic nightly backup", "s", |r| {
            r.nightly.restic.as_ref().map(|m| m.seconds)
        }),
        ("octobackup restore", "s", |r| Some(r.restore.seconds)),
        ("octobackup backup peak memory", "MiB", |r| {
            r.first.octobackup.peak_mib
        }),
        ("restic backup peak memory", "MiB", |r| {
            r.first.restic.as_ref().and_then(|m| m.peak_mib)
        }),
        ("octobackup restore peak memory", "MiB", |r| {
            r.restore.peak_mib
        }),
        ("octobackup repository", "MiB", |r| {
            Some(
                (r.first.repository_growth_bytes + r.nightly.repository_growth_bytes) as f64
                    / (1 << 20) as f64,
            )
        }),
        ("restic repository", "MiB", |r| {
            Some(
                (r.first.restic_repository_growth_bytes?
                    + r.nightly.restic_repository_growth_bytes?) as f64
                    / (1 << 20) as f64,
            )
        }),
    ]
}

/// Least squares for y = a + b*x1 + c*x2; None when the points do not pin all three down.
pub fn fit(points: &[(f64, f64, f64)]) -> Option<(f64, f64, f64)> {
    if points.len() < 3 {
        return None;
    }
    // Normal equations, scaled so files (1e6) and GiB (1e1) do not swamp each other.
    let s1 = points
        .iter()
        .map(|p| p.0.abs())
        .fold(0.0, f64::max)
        .max(1e-12);
    let s2 = points
        .iter()
        .map(|p| p.1.abs())
        .fold(0.0, f64::max)
        .max(1e-12);
    let mut m = [[0.0f64; 4]; 3];
    for &(x1, x2, y) in points {
        let row = [1.0, x1 / s1, x2 / s2];
        for (line, ri) in m.iter_mut().zip(row) {
            for (cell, rj) in line.iter_mut().zip(row) {
                *cell += ri * rj;
            }
            line[3] += ri * y;
        }
    }
    // Gauss-Jordan elimination with partial pivoting.
    for col in 0..3 {
        let pivot = (col..3).max_by(|&a, &b| m[a][col].abs().total_cmp(&m[b][col].abs()))?;
        if m[pivot][col].abs() < 1e-9 {
            return None;
        }
        m.swap(col, pivot);
        let lead = m[col];
        for (r, line) in m.iter_mut().enumerate() {
            if r != col {
                let f = line[col] / lead[col];
                for (cell, l) in line.iter_mut().zip(lead).skip(col) {
                    *cell -= f * l;
                }
            }
        }
    }
    let a = m[0][3] / m[0][0];
    let b = m[1][3] / m[1][1] / s1;
    let c = m[2][3] / m[2][2] / s2;
    Some((a, b, c))
}

pub async fn run(args: Args, points: Vec<Size>, json: bool) -> Result<(), Failure> {
    let base = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("octobackup-scale-{}", std::process::id())),
    };
    std::fs::create_dir_all(&base).map_err(bench::fail)?;
    let mut out = Scaling {
        points: Vec::new(),
        fits: Vec::new(),
        plot: None,
    };
    for (i, size) in points.iter().enumerate() {
        if !json {
            eprintln!("scale point {}/{}: {size}", i + 1, points.len());
        }
        let dir = base.join(format!("point{}", i + 1));
        let r = bench::measure(&args, *size, &dir, json).await;
        // Each point's lab and repositories go before the next: the disk holds one at a time.
        let _ = std::fs::remove_dir_all(&dir);
        let r = r?;
        out.points.push(Point {
            size: size.to_string(),
            files: r.files,
            gib: r.data_bytes as f64 / (1u64 << 30) as f64,
            results: r,
        });
    }
    for (name, _, get) in measures() {
        let data: Vec<(f64, f64, f64)> = out
            .points
            .iter()
            .filter_map(|p| Some((p.files as f64, p.gib, get(&p.results)?)))
            .collect();
        if let Some((base, per_file, per_gib)) = fit(&data) {
            out.fits.push(Fit {
                measure: name.to_string(),
                base,
                per_file,
                per_gib,
            });
        }
    }
    let plot = args.plot.clone().unwrap_or_else(|| base.join("scale.svg"));
    std::fs::write(&plot, svg(&out.points)).map_err(bench::fail)?;
    out.plot = Some(plot.clone());
    let text = serde_json::to_string_pretty(&out).expect("serializes");
    if let Some(p) = args
        .json_out
        .clone()
        .or_else(|| args.dir.as_ref().map(|d| d.join("scale.json")))
    {
        std::fs::write(&p, &text).map_err(bench::fail)?;
    }
    if args.dir.is_none() && args.plot.is_none() {
        // The plot is the point of the run: keep it, say where.
        eprintln!("the plot stays in {}", base.display());
    }
    if json {
        println!("{text}");
    } else {
        print!("{}", table(&out));
        println!("plot: {}", plot.display());
    }
    Ok(())
}

fn table(s: &Scaling) -> String {
    let mut t = String::from("octobackup scaling run\n\n");
    t.push_str(&format!("{:<34}", "measure"));
    for p in &s.points {
        t.push_str(&format!(
            " {:>16}",
            format!("{} f/{:.2} GiB", p.files, p.gib)
        ));
    }
    t.push('\n');
    for (name, unit, get) in measures() {
        t.push_str(&format!("{:<34}", format!("{name} ({unit})")));
        for p in &s.points {
            let v = get(&p.results)
                .map(|v| format!("{v:.2}"))
                .unwrap_or_else(|| "-".into());
            t.push_str(&format!(" {v:>16}"));
        }
        t.push('\n');
    }
    if s.fits.is_empty() {
        t.push_str("\nno fit: it takes three points or more, not all in proportion\n");
    } else {
        t.push_str(&format!(
            "\n{:<34} {:>12} {:>14} {:>12}\n",
            "fitted growth", "base", "per 1k files", "per GiB"
        ));
        for f in &s.fits {
            t.push_str(&format!(
                "{:<34} {:>12.3} {:>14.4} {:>12.3}\n",
                f.measure,
                f.base,
                f.per_file * 1000.0,
                f.per_gib
            ));
        }
    }
    t
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Two panels (seconds, MiB of memory) against the data size in GiB, one line per measure.
pub fn svg(points: &[Point]) -> String {
    // Points evenly spaced, by files then size: a sweep that varies files and size apart (what
    // the fit needs) has no single axis to scale them along.
    let mut sorted: Vec<&Point> = points.iter().collect();
    sorted.sort_by(|a, b| a.files.cmp(&b.files).then(a.gib.total_cmp(&b.gib)));
    let points = &sorted[..];
    let slot = |i: usize| (i as f64 + 0.5) / points.len().max(1) as f64;
    const W: f64 = 900.0;
    const H: f64 = 420.0;
    const COLOURS: [&str; 6] = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b",
    ];
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"11\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let panels: [(&str, &str); 2] = [("time (s)", "s"), ("peak memory (MiB)", "MiB")];
    for (pi, (title, unit)) in panels.iter().enumerate() {
        let x0 = 60.0 + pi as f64 * W / 2.0;
        let (pw, ph, y0) = (W / 2.0 - 90.0, H - 160.0, 40.0);
        let series: Vec<(&str, Vec<(f64, f64)>)> = measures()
            .into_iter()
            // The engine time is drawn under the full backup's line; the table has it.
            .filter(|(name, u, _)| {
                u == unit && !name.contains("repository") && !name.contains("engine")
            })
            .map(|(name, _, get)| {
                (
                    name,
                    points
                        .iter()
                        .enumerate()
                        .filter_map(|(i, p)| Some((slot(i), get(&p.results)?)))
                        .collect(),
                )
            })
            .collect();
        let max_y = series
            .iter()
            .flat_map(|(_, v)| v.iter().map(|p| p.1))
            .fold(0.0, f64::max)
            .max(1e-3);
        let px = |x: f64| x0 + x * pw;
        let py = |y: f64| y0 + ph - y / max_y * ph;
        out.push_str(&format!(
            "<text x=\"{}\" y=\"20\" font-size=\"13\">{}</text>\n",
            x0,
            escape(title)
        ));
        out.push_str(&format!(
            "<line x1=\"{x0}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n<line x1=\"{x0}\" y1=\"{y0}\" x2=\"{x0}\" y2=\"{}\" stroke=\"black\"/>\n",
            y0 + ph,
            x0 + pw,
            y0 + ph,
            y0 + ph
        ));
        for k in 0..=4 {
            let y = max_y * k as f64 / 4.0;
            out.push_str(&format!(
                "<text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{y:.1}</text>\n",
                x0 - 4.0,
                py(y) + 4.0
            ));
        }
        for (i, p) in points.iter().enumerate() {
            out.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{} files</text>\n<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{:.2} GiB</text>\n",
                px(slot(i)),
                y0 + ph + 14.0,
                p.files,
                px(slot(i)),
                y0 + ph + 27.0,
                p.gib
            ));
        }
        for (si, (name, v)) in series.iter().enumerate() {
            let colour = COLOURS[si % COLOURS.len()];
            let path: Vec<String> = v
                .iter()
                .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
                .collect();
            out.push_str(&format!(
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/>\n",
                path.join(" ")
            ));
            for (x, y) in v {
                out.push_str(&format!(
                    "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"/>\n",
                    px(*x),
                    py(*y)
                ));
            }
            out.push_str(&format!(
                "<text x=\"{x0}\" y=\"{:.1}\" fill=\"{colour}\">{}</text>\n",
                y0 + ph + 45.0 + 13.0 * si as f64,
                escape(name)
            ));
        }
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_recovers_a_plane_and_refuses_too_few_points() {
        let plane = |f: f64, g: f64| 0.5 + 2e-5 * f + 3.0 * g;
        let pts: Vec<(f64, f64, f64)> = [(1e4, 0.5), (1e5, 5.0), (1e6, 20.0), (3e4, 2.0)]
            .iter()
            .map(|&(f, g)| (f, g, plane(f, g)))
            .collect();
        let (a, b, c) = fit(&pts).unwrap();
        assert!((a - 0.5).abs() < 1e-6 && (b - 2e-5).abs() < 1e-12 && (c - 3.0).abs() < 1e-6);
        assert!(fit(&pts[..2]).is_none());
        // Files and bytes in proportion: per file and per GiB cannot be told apart.
        let line: Vec<_> = [1.0, 2.0, 3.0].iter().map(|&k| (k * 1e4, k, k)).collect();
        assert!(fit(&line).is_none());
    }

    #[test]
    fn the_plot_is_an_svg_with_a_line_per_measure() {
        let mut r = Results::default();
        r.first.octobackup.seconds = 2.0;
        r.first.octobackup.peak_mib = Some(100.0);
        let p = |gib: f64| Point {
            size: "x".into(),
            files: 10,
            gib,
            results: r.clone(),
        };
        let s = svg(&[p(0.5), p(5.0)]);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("octobackup full backup"));
        assert!(s.contains("octobackup backup peak memory"));
    }
}
