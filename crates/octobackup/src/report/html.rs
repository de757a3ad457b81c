//! The report as one HTML page: inline CSS, inline SVG charts, no script, no link to anything
//! (it must open from a file share on a machine without network, and a browser's strict file://
//! rules must have nothing to refuse). Every text from the repository or the config goes through
//! `esc`: set ids, instance names, host names, step details are data, never markup.

use super::{InstanceReport, Report, RetentionView, SetRow};
use crate::format::bytes;
use chrono::{DateTime, Utc};
use std::fmt::Write;

/// A complete set older than this means a night was missed.
const SET_LATE_SECONDS: i64 = 26 * 3600;
/// A passing drill older than this: the last proof is getting old.
const DRILL_LATE_SECONDS: i64 = 8 * 24 * 3600;

const CSS: &str = "
body{font:14px/1.4 system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1100px;padding:1em 2em;color:#1d2430;background:#fafbfc}
h1{font-size:1.6em;margin:.2em 0}h2{border-bottom:2px solid #2f6fde;padding-bottom:.2em;margin-top:1.6em}
.meta{color:#5a6372}.cards{display:flex;flex-wrap:wrap;gap:1em}
.card{flex:1 1 280px;background:#fff;border:1px solid #d8dde6;border-left:6px solid #8a94a6;border-radius:4px;padding:.6em 1em}
.card.ok{border-left-color:#1f9d55}.card.bad{border-left-color:#d23c3c}.card h3{margin:.2em 0 .4em;font-size:1em}
.big{font-size:1.5em;font-weight:600}
table{border-collapse:collapse;width:100%;background:#fff;margin:.6em 0}
th,td{border:1px solid #d8dde6;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#eef1f6}td.n{text-align:right;white-space:nowrap}
.pass{color:#1f7a45;font-weight:600}.fail{color:#c02b2b;font-weight:600}.muted{color:#7a8394}
.charts{display:flex;flex-wrap:wrap;gap:1em}.chart{background:#fff;border:1px solid #d8dde6;border-radius:4px;padding:.4em}
.chart h3{font-size:.95em;margin:.1em .3em}svg text{font:11px sans-serif;fill:#5a6372}
details summary{cursor:pointer}code{font-size:.92em}
@media print{body{background:#fff}details{display:block}}
";

/// Text and attribute values: the five characters that can end either.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// "12.3 s", "4 min 05 s", "3 h 12 min", "2 d 4 h".
pub fn duration(seconds: f64) -> String {
    if seconds < 60.0 {
        return format!("{seconds:.1} s");
    }
    let s = seconds.round() as i64;
    if s < 3600 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else if s < 86_400 {
        format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
    } else {
        format!("{} d {} h", s / 86_400, (s % 86_400) / 3600)
    }
}

/// An age, whole seconds, in the same words.
pub fn age(seconds: i64) -> String {
    if seconds < 60 {
        format!("{} s", seconds.max(0))
    } else {
        duration(seconds as f64)
    }
}

fn stamp(t: &DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

pub fn render(r: &Report) -> String {
    let mut h = String::new();
    let generated = r
        .generated
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
<title>octobackup report</title><style>{CSS}</style></head><body>\n\
<h1>Octopus Deploy backups</h1>\n\
<p class=\"meta\">Generated <time id=\"generated\" datetime=\"{generated}\">{}</time> by octobackup {}. \
All times UTC; ages are as of this moment.</p>\n",
        stamp(&r.generated),
        esc(&r.tool_version)
    );
    if r.instances.is_empty() {
        h.push_str("<p>No instance in the config and no backup set in the repository.</p>\n");
    }
    for inst in &r.instances {
        instance(&mut h, inst, &r.generated);
    }
    h.push_str("</body></html>\n");
    h
}

fn instance(h: &mut String, inst: &InstanceReport, now: &DateTime<Utc>) {
    let name = esc(&inst.name);
    let total = inst.sets.len();
    let complete = inst.sets.iter().filter(|s| s.complete).count();
    let _ = writeln!(
        h,
        "<section class=\"instance\" data-instance=\"{name}\"><h2>Instance {name}</h2>"
    );

    // What would be lost if the server died now.
    let set_age = inst
        .newest_complete()
        .map(|s| (s, (*now - s.time).num_seconds()));
    let drill_age = inst
        .newest_passing_drill()
        .map(|d| (d, (*now - d.time).num_seconds()));
    let fresh = set_age.is_some_and(|(_, a)| a <= SET_LATE_SECONDS)
        && drill_age.is_some_and(|(_, a)| a <= DRILL_LATE_SECONDS);
    let _ = write!(
        h,
        "<div class=\"cards\"><div class=\"card {}\"><h3>If the server died now</h3>",
        if fresh { "ok" } else { "bad" }
    );
    match set_age {
        Some((s, secs)) => {
            let _ = write!(
                h,
                "<p>The newest complete set is <span class=\"big newest-set-age\" data-seconds=\"{secs}\">{}</span> old: \
everything since <b>{}</b> would be lost (set <code>{}</code>).</p>",
                age(secs),
                stamp(&s.time),
                esc(&s.set_id)
            );
        }
        None => h.push_str(
            "<p class=\"big newest-set-age fail\" data-seconds=\"\">No complete set: everything would be lost.</p>",
        ),
    }
    match drill_age {
        Some((d, secs)) => {
            let _ = write!(
                h,
                "<p>The newest passing drill was <span class=\"big newest-drill-age\" data-seconds=\"{secs}\">{}</span> ago \
(set <code>{}</code>, {}).</p></div>",
                age(secs),
                esc(&d.set_id),
                stamp(&d.time)
            );
        }
        None => h.push_str(
            "<p><span class=\"big newest-drill-age fail\" data-seconds=\"\">Never drilled</span>: \
no set still in the repository was proven restorable (run <code>octobackup drill</code>).</p></div>",
        ),
    }
    let failed_drills = inst
        .sets
        .iter()
        .filter(|s| s.drill.as_ref().is_some_and(|d| !d.passed))
        .count();
    let _ = write!(
        h,
        "<div class=\"card {}\"><h3>Sets</h3><p><span class=\"big sets-total\">{total}</span> set(s), \
<span class=\"big sets-complete\">{complete}</span> complete, {} incomplete; {} drilled, {} drill(s) failed.</p></div>",
        if complete == total && failed_drills == 0 {
            "ok"
        } else {
            "bad"
        },
        total - complete,
        inst.sets.iter().filter(|s| s.drill.is_some()).count(),
        failed_drills
    );
    h.push_str("</div>\n");

    charts(h, inst);
    sets_table(h, inst);
    retention(h, &inst.retention);
    h.push_str("</section>\n");
}

fn charts(h: &mut String, inst: &InstanceReport) {
    let complete: Vec<&SetRow> = inst.sets.iter().filter(|s| s.complete).collect();
    if complete.is_empty() {
        return;
    }
    let label = |s: &SetRow| s.time.format("%m-%d %H:%M").to_string();
    let window: Vec<(String, f64)> = complete
        .iter()
        .map(|s| (label(s), s.window_seconds.unwrap_or(0.0)))
        .collect();
    let time: Vec<(String, f64)> = complete
        .iter()
        .map(|s| (label(s), s.backup_seconds.unwrap_or(0.0)))
        .collect();
    // Growth: what each set added to the repository (after compression), summed over the nights.
    let mut total = 0u64;
    let growth: Vec<(String, f64)> = inst
        .sets
        .iter()
        .map(|s| {
            total += s.data_added_packed.unwrap_or(0);
            (label(s), total as f64)
        })
        .collect();
    h.push_str("<div class=\"charts\">");
    bar_chart(
        h,
        "Maintenance window per night",
        "chart-window",
        &window,
        duration,
    );
    bar_chart(
        h,
        "Repository growth (data added, packed, cumulative)",
        "chart-growth",
        &growth,
        |v| bytes(v as u64),
    );
    bar_chart(h, "Backup time per night", "chart-time", &time, duration);
    h.push_str("</div>\n");
}

/// A bar chart as inline SVG; each bar carries its value as a tooltip and a data attribute.
fn bar_chart(
    h: &mut String,
    title: &str,
    class: &str,
    points: &[(String, f64)],
    fmt: fn(f64) -> String,
) {
    const W: f64 = 340.0;
    const H: f64 = 150.0;
    const TOP: f64 = 16.0;
    const BOTTOM: f64 = 20.0;
    let max = points.iter().map(|p| p.1).fold(0.0_f64, f64::max);
    let n = points.len().max(1) as f64;
    let slot = W / n;
    let bar = (slot * 0.7).max(1.0);
    let _ = write!(
        h,
        "<div class=\"chart {class}\"><h3>{}</h3><svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">\
<line x1=\"0\" y1=\"{}\" x2=\"{W}\" y2=\"{}\" stroke=\"#b8c0cc\"/>\
<text x=\"2\" y=\"11\">max {}</text>",
        esc(title),
        esc(title),
        H - BOTTOM,
        H - BOTTOM,
        esc(&fmt(max))
    );
    for (i, (label, v)) in points.iter().enumerate() {
        let height = if max > 0.0 {
            (v / max) * (H - TOP - BOTTOM)
        } else {
            0.0
        };
        let x = i as f64 * slot + (slot - bar) / 2.0;
        let _ = write!(
            h,
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar:.1}\" height=\"{height:.1}\" fill=\"#2f6fde\" data-value=\"{v}\">\
<title>{}: {}</title></rect>",
            H - BOTTOM - height,
            esc(label),
            esc(&fmt(*v))
        );
    }
    if let (Some(first), Some(last)) = (points.first(), points.last()) {
        let _ = write!(
            h,
            "<text x=\"2\" y=\"{}\">{}</text><text x=\"{W}\" y=\"{}\" text-anchor=\"end\">{}</text>",
            H - 5.0,
            esc(&first.0),
            H - 5.0,
            esc(&last.0)
        );
    }
    h.push_str("</svg></div>");
}

fn opt_bytes(v: Option<u64>) -> String {
    v.map(bytes).unwrap_or_else(|| "-".into())
}

fn sets_table(h: &mut String, inst: &InstanceReport) {
    if inst.sets.is_empty() {
        h.push_str("<p>No backup set of this instance in the repository.</p>\n");
        return;
    }
    h.push_str(
        "<h3>Sets, newest first</h3><table class=\"sets\"><thead><tr><th>Taken</th><th>Set</th><th>Status</th>\
<th>Window</th><th>Backup time</th><th>Database</th><th>Folders</th><th>New data</th><th>Drill</th>\
<th>Ran on / nodes</th><th>Steps</th></tr></thead><tbody>\n",
    );
    for s in inst.sets.iter().rev() {
        let drill = match &s.drill {
            Some(d) if d.passed => format!("<span class=\"pass\">passed</span> {}", stamp(&d.time)),
            Some(d) => format!("<span class=\"fail\">FAILED</span> {}", stamp(&d.time)),
            None => "<span class=\"muted\">not drilled</span>".into(),
        };
        let folders = match (s.folder_files, s.folder_bytes) {
            (Some(f), Some(b)) => format!("{f} files, {}", bytes(b)),
            _ => "-".into(),
        };
        let new_data = match (s.data_added, s.data_added_packed) {
            (Some(a), Some(p)) => format!("{} ({} packed)", bytes(a), bytes(p)),
            _ => "-".into(),
        };
        let mut ran_on = s.hostname.as_deref().map(esc).unwrap_or_default();
        if !s.nodes.is_empty() {
            let nodes: Vec<String> = s.nodes.iter().map(|n| esc(n)).collect();
            let _ = write!(
                ran_on,
                "<br><span class=\"muted\">nodes: {}</span>",
                nodes.join(", ")
            );
        }
        let mut steps = String::new();
        if !s.steps.is_empty() {
            let _ = write!(
                steps,
                "<details><summary>{} steps</summary><ol>",
                s.steps.len()
            );
            for st in &s.steps {
                let _ = write!(
                    steps,
                    "<li>{} <span class=\"{}\">{}</span> {}{}</li>",
                    esc(&st.name),
                    if st.ok() { "pass" } else { "fail" },
                    if st.ok() { "ok" } else { "FAILED" },
                    duration(st.seconds.unwrap_or_default()),
                    st.detail
                        .as_deref()
                        .map(|d| format!(" <span class=\"muted\">{}</span>", esc(d)))
                        .unwrap_or_default()
                );
            }
            steps.push_str("</ol></details>");
        }
        let _ = writeln!(
            h,
            "<tr class=\"set\" data-set=\"{}\"><td>{}</td><td><code>{}</code>{}</td><td>{}</td>\
<td class=\"n window\" data-seconds=\"{}\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
<td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&s.set_id),
            stamp(&s.time),
            esc(&s.set_id),
            s.octopus_version
                .as_deref()
                .filter(|v| !v.is_empty())
                .map(|v| format!("<br><span class=\"muted\">Octopus {}</span>", esc(v)))
                .unwrap_or_default(),
            if s.complete {
                "<span class=\"pass\">complete</span>"
            } else {
                "<span class=\"fail\">INCOMPLETE</span>"
            },
            s.window_seconds.map(|w| w.to_string()).unwrap_or_default(),
            s.window_seconds.map(duration).unwrap_or_else(|| "-".into()),
            s.backup_seconds.map(duration).unwrap_or_else(|| "-".into()),
            opt_bytes(s.database_bytes),
            folders,
            new_data,
            drill,
            ran_on,
            steps
        );
    }
    h.push_str("</tbody></table>\n");
}

fn retention(h: &mut String, r: &RetentionView) {
    h.push_str("<h3>Retention: the next drops</h3>");
    match r {
        RetentionView::NoPolicy => h.push_str(
            "<p class=\"retention\">No retention policy in the config: no set is ever dropped and the \
repository only grows. Add a <code>[retention]</code> section (e.g. <code>keep_daily = 7</code>).</p>\n",
        ),
        RetentionView::Policy {
            policy,
            drop_now,
            drop_next,
            next_set_at,
        } => {
            let _ = write!(h, "<p class=\"retention\">Policy: <b>{}</b>.</p>", esc(policy));
            let list = |h: &mut String, class: &str, what: &str, drops: &[super::Drop]| {
                if drops.is_empty() {
                    let _ = write!(h, "<p class=\"{class}\">{what}: none.</p>");
                    return;
                }
                let _ = write!(h, "<p>{what}:</p><ul class=\"{class}\">");
                for d in drops {
                    let _ = write!(
                        h,
                        "<li><code>{}</code> ({}): {}</li>",
                        esc(&d.set_id),
                        stamp(&d.time),
                        esc(&d.reason)
                    );
                }
                h.push_str("</ul>");
            };
            list(
                h,
                "drop-now",
                "Dropped by the next <code>forget</code> (or <code>backup --forget</code>)",
                drop_now,
            );
            let next = next_set_at
                .map(|t| format!("Dropped once the next nightly set is taken (about {})", stamp(&t)))
                .unwrap_or_else(|| "Dropped once a complete set is taken".into());
            list(h, "drop-next", &next, drop_next);
            h.push('\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::row;
    use super::*;
    use crate::report::drills::DrillRecord;
    use chrono::TimeZone;

    fn report() -> Report {
        let t = |d: u32, h: u32| Utc.with_ymd_and_hms(2026, 3, d, h, 0, 0).unwrap();
        let mut sets = vec![
            row("s1", t(1, 2), true),
            row("s2<x>", t(2, 2), false),
            row("s3", t(3, 2), true),
        ];
        sets[2].drill = Some(DrillRecord {
            set_id: "s3".into(),
            instance: "I".into(),
            time: t(3, 4),
            passed: true,
            snapshot_id: "d".into(),
        });
        sets[2].hostname = Some("<script>alert(1)</script>".into());
        Report {
            generated: t(3, 8),
            tool_version: "0.0.0".into(),
            instances: vec![InstanceReport {
                name: "Octopus \"Main\" & <Co>".into(),
                sets,
                retention: RetentionView::NoPolicy,
            }],
        }
    }

    #[test]
    fn the_page_says_what_would_be_lost_and_counts_the_sets() {
        let page = render(&report());
        // The newest complete set was taken 6 h before the report, the drill 4 h before it.
        assert!(
            page.contains("data-seconds=\"21600\">6 h 00 min</span>"),
            "{page}"
        );
        assert!(
            page.contains("newest-drill-age\" data-seconds=\"14400\">4 h 00 min"),
            "{page}"
        );
        assert!(page.contains("<span class=\"big sets-total\">3</span>"));
        assert!(page.contains("<span class=\"big sets-complete\">2</span>"));
        assert!(page.contains("<td class=\"n window\" data-seconds=\"12.5\">12.5 s</td>"));
        assert_eq!(page.matches("<svg").count(), 3);
    }

    #[test]
    fn every_text_from_the_repository_is_escaped_and_nothing_is_fetched() {
        let page = render(&report());
        assert!(!page.contains("<script"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("data-instance=\"Octopus &quot;Main&quot; &amp; &lt;Co&gt;\""));
        assert!(page.contains("<code>s2&lt;x&gt;</code>"));
        // Nothing that loads: no src, no stylesheet link, no url() in the CSS, no import.
        for needle in [" src=", "<link", "url(", "@import", "<iframe", "<img"] {
            assert!(!page.contains(needle), "{needle} in the page");
        }
        // The only URL is the SVG namespace, which is never fetched.
        let urls: Vec<&str> = page
            .match_indices("http")
            .map(|(i, _)| &page[i..i + 26])
            .collect();
        assert!(
            urls.iter()
                .all(|u| u.starts_with("http://www.w3.org/2000/svg")),
            "{urls:?}"
        );
    }

    #[test]
    fn no_complete_set_and_no_drill_are_said_plainly() {
        let mut r = report();
        r.instances[0].sets.retain(|s| !s.complete);
        let page = render(&r);
        assert!(page.contains("No complete set: everything would be lost."));
        assert!(page.contains("Never drilled"));
    }

    #[test]
    fn durations_read_as_a_person_says_them() {
        assert_eq!(duration(12.34), "12.3 s");
        assert_eq!(duration(245.0), "4 min 05 s");
        assert_eq!(duration(3.0 * 3600.0 + 720.0), "3 h 12 min");
        assert_eq!(duration(2.0 * 86_400.0 + 4.0 * 3600.0), "2 d 4 h");
        assert_eq!(age(42), "42 s");
    }
}
