//! Retention: which backup sets to keep, as pure logic over (set, time, complete) so it can be
//! tested with synthetic times. The rules are restic's: walking the sets newest first, each
//! `keep-<period> N` rule keeps the newest set of each of the last N periods (hour, day, ISO
//! week, month, year) that have a set; `keep-last N` keeps the N newest; `keep-within D` keeps
//! every set up to D older than the newest set. On top of restic:
//! - a set is decided WHOLE (the caller drops every snapshot carrying its set tag);
//! - incomplete sets (runs that did not finish) are always dropped and never count for a rule;
//! - the newest complete set is always kept, whatever the policy.

use chrono::{DateTime, Datelike, FixedOffset, Timelike};
use serde::Serialize;

// The policy is part of the config's schema (`config::retention`); the rules over it are here.
pub use crate::config::retention::{Policy, parse_within};

impl Policy {
    /// True when no rule is set (nothing would be kept but the newest set).
    pub fn is_empty(&self) -> bool {
        *self == Policy::default()
    }

    /// One line, e.g. "keep-last 3, keep-daily 7".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        let rules = [
            ("keep-last", self.keep_last),
            ("keep-hourly", self.keep_hourly),
            ("keep-daily", self.keep_daily),
            ("keep-weekly", self.keep_weekly),
            ("keep-monthly", self.keep_monthly),
            ("keep-yearly", self.keep_yearly),
        ];
        for (name, n) in rules {
            if let Some(n) = n {
                parts.push(format!("{name} {n}"));
            }
        }
        if let Some(d) = self.keep_within {
            parts.push(format!("keep-within {}", humantime::format_duration(d)));
        }
        if parts.is_empty() {
            "no rules".into()
        } else {
            parts.join(", ")
        }
    }
}

/// One set as the policy sees it.
#[derive(Clone, Debug)]
pub struct Candidate {
    pub set_id: String,
    /// When the set was taken, in the time zone its periods are counted in.
    pub time: DateTime<FixedOffset>,
    pub complete: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Keep,
    Drop,
}

/// The decision for one set, with the reasons (the rules that kept it, or why it goes).
#[derive(Clone, Debug, Serialize)]
pub struct Decision {
    pub set_id: String,
    pub time: DateTime<FixedOffset>,
    pub complete: bool,
    pub action: Action,
    pub reasons: Vec<String>,
}

type Bucket = fn(&DateTime<FixedOffset>) -> i64;

fn hour(t: &DateTime<FixedOffset>) -> i64 {
    day(t) * 100 + i64::from(t.hour())
}
fn day(t: &DateTime<FixedOffset>) -> i64 {
    i64::from(t.year()) * 10_000 + i64::from(t.month()) * 100 + i64::from(t.day())
}
fn week(t: &DateTime<FixedOffset>) -> i64 {
    let w = t.iso_week();
    i64::from(w.year()) * 100 + i64::from(w.week())
}
fn month(t: &DateTime<FixedOffset>) -> i64 {
    i64::from(t.year()) * 100 + i64::from(t.month())
}
fn year(t: &DateTime<FixedOffset>) -> i64 {
    i64::from(t.year())
}

/// Decides every set. The result is newest first.
pub fn decide(policy: &Policy, sets: &[Candidate]) -> Vec<Decision> {
    let mut sorted: Vec<&Candidate> = sets.iter().collect();
    sorted.sort_by(|a, b| b.time.cmp(&a.time).then_with(|| b.set_id.cmp(&a.set_id)));

    struct Rule {
        name: &'static str,
        left: u32,
        bucket: Option<Bucket>,
        last: Option<i64>,
    }
    let mut rules: Vec<Rule> = [
        ("last", policy.keep_last, None),
        ("hourly", policy.keep_hourly, Some(hour as Bucket)),
        ("daily", policy.keep_daily, Some(day as Bucket)),
        ("weekly", policy.keep_weekly, Some(week as Bucket)),
        ("monthly", policy.keep_monthly, Some(month as Bucket)),
        ("yearly", policy.keep_yearly, Some(year as Bucket)),
    ]
    .into_iter()
    .filter_map(|(name, n, bucket)| {
        n.map(|left| Rule {
            name,
            left,
            bucket,
            last: None,
        })
    })
    .collect();

    let newest_complete = sorted.iter().find(|c| c.complete).map(|c| c.time);
    let within_from = match (policy.keep_within, newest_complete) {
        (Some(d), Some(newest)) => chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| newest.checked_sub_signed(d)),
        _ => None,
    };

    let mut out = Vec::with_capacity(sorted.len());
    let mut seen_complete = false;
    for (nr, c) in sorted.iter().enumerate() {
        let mut reasons = Vec::new();
        if !c.complete {
            out.push(Decision {
                set_id: c.set_id.clone(),
                time: c.time,
                complete: false,
                action: Action::Drop,
                reasons: vec!["incomplete: its run did not finish".into()],
            });
            continue;
        }
        if !seen_complete {
            seen_complete = true;
            reasons.push("newest complete set".into());
        }
        for rule in &mut rules {
            let value = match rule.bucket {
                Some(b) => b(&c.time),
                None => nr as i64,
            };
            if rule.last != Some(value) && rule.left > 0 {
                rule.left -= 1;
                rule.last = Some(value);
                reasons.push(format!("{} snapshot", rule.name));
            }
        }
        if let Some(from) = within_from
            && c.time >= from
        {
            reasons.push(format!(
                "within {}",
                humantime::format_duration(policy.keep_within.unwrap_or_default())
            ));
        }
        let action = if reasons.is_empty() {
            reasons.push(format!("not kept by the policy ({})", policy.describe()));
            Action::Drop
        } else {
            Action::Keep
        };
        out.push(Decision {
            set_id: c.set_id.clone(),
            time: c.time,
            complete: true,
            action,
            reasons,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(y: i32, m: u32, d: u32, h: u32) -> DateTime<FixedOffset> {
        FixedOffset::east_opt(0)
            .unwrap()
            .with_ymd_and_hms(y, m, d, h, 0, 0)
            .unwrap()
    }

    fn complete(id: &str, time: DateTime<FixedOffset>) -> Candidate {
        Candidate {
            set_id: id.into(),
            time,
            complete: true,
        }
    }

    /// One set a day at 02:00 for `days` days ending 2026-03-31, ids "d<yyyymmdd>".
    fn nightly(days: i64) -> Vec<Candidate> {
        let end = t(2026, 3, 31, 2);
        (0..days)
            .map(|i| {
                let time = end - chrono::Duration::days(i);
                complete(&format!("d{}", time.format("%Y%m%d")), time)
            })
            .collect()
    }

    fn kept(decisions: &[Decision]) -> Vec<String> {
        let mut k: Vec<String> = decisions
            .iter()
            .filter(|d| d.action == Action::Keep)
            .map(|d| d.set_id.clone())
            .collect();
        k.sort();
        k
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let sets = nightly(10);
        let p = Policy {
            keep_last: Some(3),
            ..Default::default()
        };
        let d = decide(&p, &sets);
        assert_eq!(kept(&d), ["d20260329", "d20260330", "d20260331"]);
        assert_eq!(d.len(), 10);
        let dropped = d.iter().find(|d| d.set_id == "d20260322").unwrap();
        assert!(dropped.reasons[0].starts_with("not kept by the policy (keep-last 3)"));
    }

    #[test]
    fn daily_weekly_monthly_over_three_months_of_nightly_sets() {
        // 2026-01-01 .. 2026-03-31, one a night.
        let sets = nightly(90);
        let p = Policy {
            keep_daily: Some(7),
            keep_weekly: Some(4),
            keep_monthly: Some(3),
            ..Default::default()
        };
        let d = decide(&p, &sets);
        // daily: Mar 25..31. weekly (ISO weeks, newest set of each): Mar 31 is in week 14
        // (Mon Mar 30..), then Sun Mar 29 (w13), Sun Mar 22 (w12), Sun Mar 15 (w11).
        // monthly: Mar 31, Feb 28, Jan 31.
        assert_eq!(
            kept(&d),
            [
                "d20260131",
                "d20260228",
                "d20260315",
                "d20260322",
                "d20260325",
                "d20260326",
                "d20260327",
                "d20260328",
                "d20260329",
                "d20260330",
                "d20260331",
            ]
        );
        let mar29 = d.iter().find(|d| d.set_id == "d20260329").unwrap();
        assert_eq!(mar29.reasons, ["daily snapshot", "weekly snapshot"]);
        let newest = d.iter().find(|d| d.set_id == "d20260331").unwrap();
        assert_eq!(
            newest.reasons,
            [
                "newest complete set",
                "daily snapshot",
                "weekly snapshot",
                "monthly snapshot"
            ]
        );
    }

    #[test]
    fn several_sets_a_day_count_once_for_daily_and_the_newest_of_the_day_wins() {
        let sets = vec![
            complete("a", t(2026, 5, 1, 1)),
            complete("b", t(2026, 5, 1, 13)),
            complete("c", t(2026, 5, 2, 1)),
            complete("d", t(2026, 5, 2, 9)),
            complete("e", t(2026, 5, 2, 23)),
            complete("f", t(2026, 5, 3, 0)),
        ];
        let p = Policy {
            keep_daily: Some(2),
            ..Default::default()
        };
        assert_eq!(kept(&decide(&p, &sets)), ["e", "f"]);
        let p = Policy {
            keep_hourly: Some(3),
            ..Default::default()
        };
        assert_eq!(kept(&decide(&p, &sets)), ["d", "e", "f"]);
    }

    #[test]
    fn yearly_keeps_the_last_set_of_each_year() {
        let sets = vec![
            complete("y24a", t(2024, 3, 1, 0)),
            complete("y24b", t(2024, 12, 30, 0)),
            complete("y25", t(2025, 6, 1, 0)),
            complete("y26a", t(2026, 1, 1, 0)),
            complete("y26b", t(2026, 2, 1, 0)),
        ];
        let p = Policy {
            keep_yearly: Some(2),
            ..Default::default()
        };
        assert_eq!(kept(&decide(&p, &sets)), ["y25", "y26b"]);
        let p = Policy {
            keep_yearly: Some(10),
            ..Default::default()
        };
        assert_eq!(kept(&decide(&p, &sets)), ["y24b", "y25", "y26b"]);
    }

    #[test]
    fn keep_within_counts_back_from_the_newest_set_not_from_now() {
        let sets = nightly(40);
        let p = Policy {
            keep_within: Some(parse_within("5d").unwrap()),
            ..Default::default()
        };
        let d = decide(&p, &sets);
        // Mar 31 02:00 minus 5 days = Mar 26 02:00, inclusive.
        assert_eq!(
            kept(&d),
            [
                "d20260326",
                "d20260327",
                "d20260328",
                "d20260329",
                "d20260330",
                "d20260331"
            ]
        );
        assert!(
            d.iter()
                .find(|d| d.set_id == "d20260327")
                .unwrap()
                .reasons
                .contains(&"within 5days".to_string())
        );
    }

    #[test]
    fn incomplete_sets_go_first_and_never_count_for_a_rule() {
        let mut sets = nightly(5);
        // The newest of all is incomplete: it must not take the keep-last slot.
        sets.push(Candidate {
            set_id: "part-new".into(),
            time: t(2026, 4, 1, 2),
            complete: false,
        });
        sets.push(Candidate {
            set_id: "part-old".into(),
            time: t(2026, 3, 28, 3),
            complete: false,
        });
        let p = Policy {
            keep_last: Some(2),
            ..Default::default()
        };
        let d = decide(&p, &sets);
        assert_eq!(kept(&d), ["d20260330", "d20260331"]);
        for id in ["part-new", "part-old"] {
            let x = d.iter().find(|d| d.set_id == id).unwrap();
            assert_eq!(x.action, Action::Drop);
            assert_eq!(x.reasons, ["incomplete: its run did not finish"]);
        }
    }

    #[test]
    fn the_newest_complete_set_is_kept_even_by_a_policy_that_keeps_nothing() {
        let sets = nightly(3);
        let p = Policy {
            keep_last: Some(0),
            ..Default::default()
        };
        assert_eq!(kept(&decide(&p, &sets)), ["d20260331"]);
        assert_eq!(kept(&decide(&Policy::default(), &sets)), ["d20260331"]);
        // keep-within measured from an old newest set keeps what is near it.
        let p = Policy {
            keep_within: Some(parse_within("1d").unwrap()),
            ..Default::default()
        };
        assert_eq!(kept(&decide(&p, &sets)), ["d20260330", "d20260331"]);
    }

    #[test]
    fn periods_are_counted_in_the_sets_own_time_zone() {
        // 23:30 and 00:30 the next day in UTC+2 are the same UTC day but two local days.
        let tz = FixedOffset::east_opt(2 * 3600).unwrap();
        let a = tz.with_ymd_and_hms(2026, 6, 1, 23, 30, 0).unwrap();
        let b = tz.with_ymd_and_hms(2026, 6, 2, 0, 30, 0).unwrap();
        let sets = vec![complete("a", a), complete("b", b)];
        let p = Policy {
            keep_daily: Some(2),
            ..Default::default()
        };
        assert_eq!(kept(&decide(&p, &sets)), ["a", "b"]);
    }

    #[test]
    fn policies_parse_from_toml_and_describe_themselves() {
        let p: Policy =
            toml::from_str("keep_daily = 7\nkeep_weekly = 4\nkeep_within = \"30d\"\n").unwrap();
        assert_eq!(p.keep_daily, Some(7));
        assert_eq!(
            p.keep_within,
            Some(std::time::Duration::from_secs(30 * 24 * 3600))
        );
        assert_eq!(
            p.describe(),
            "keep-daily 7, keep-weekly 4, keep-within 30days"
        );
        let e = toml::from_str::<Policy>("keep_within = \"soon\"").unwrap_err();
        assert!(e.to_string().contains("not a duration like 30d"), "{e}");
        let e = toml::from_str::<Policy>("keep-daily = 3").unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        assert!(Policy::default().is_empty());
    }

    #[test]
    fn the_config_template_carries_a_sensible_default_policy() {
        let c: crate::config::Config =
            toml::from_str(&crate::config::template("/backups/octo")).unwrap();
        let p = c.retention.unwrap();
        assert_eq!(p.describe(), "keep-daily 7, keep-weekly 4, keep-monthly 12");
        assert_eq!(c.escrow, None);
    }
}
