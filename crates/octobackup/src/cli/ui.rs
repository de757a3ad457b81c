//! What a run shows while it works: progress bars on a terminal, plain lines in a log, nothing on
//! stdout with `--json` (stdout then carries only the JSON result).

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use octobackup_repo::ProgressSink;
use std::io::IsTerminal;
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Bars and spinners on stderr.
    Terminal,
    /// Plain lines on stderr (a log, a scheduler).
    Plain,
    /// Machine output: only warnings on stderr.
    Quiet,
}

#[derive(Clone)]
pub struct Ui {
    pub mode: Mode,
    multi: MultiProgress,
    status: Arc<Mutex<Option<ProgressBar>>>,
}

impl Ui {
    pub fn new(json: bool) -> Self {
        let mode = if json {
            Mode::Quiet
        } else if std::io::stderr().is_terminal() {
            Mode::Terminal
        } else {
            Mode::Plain
        };
        let multi = MultiProgress::with_draw_target(if mode == Mode::Terminal {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        });
        Ui {
            mode,
            multi,
            status: Arc::new(Mutex::new(None)),
        }
    }

    /// A line for the user (not in --json mode).
    pub fn note(&self, msg: &str) {
        match self.mode {
            Mode::Terminal => {
                let _ = self.multi.println(msg);
            }
            Mode::Plain => eprintln!("{msg}"),
            Mode::Quiet => tracing::info!("{msg}"),
        }
    }

    /// A changing status line (a spinner on a terminal; printed when it changes otherwise).
    pub fn status(&self, msg: &str) {
        let mut s = self.status.lock().unwrap();
        match self.mode {
            Mode::Terminal => {
                let bar = s.get_or_insert_with(|| {
                    let b = self.multi.add(ProgressBar::new_spinner());
                    b.enable_steady_tick(std::time::Duration::from_millis(120));
                    b
                });
                bar.set_message(msg.to_string());
            }
            Mode::Plain => {
                let changed = s.as_ref().map(|b| b.message() != msg).unwrap_or(true);
                if changed {
                    eprintln!("{msg}");
                    let b = ProgressBar::hidden();
                    b.set_message(msg.to_string());
                    *s = Some(b);
                }
            }
            Mode::Quiet => tracing::info!("{msg}"),
        }
    }

    pub fn clear_status(&self) {
        if let Some(b) = self.status.lock().unwrap().take() {
            b.finish_and_clear();
        }
    }

    pub fn percent_bar(&self, label: &str) -> PercentBar {
        self.clear_status();
        let bar = (self.mode == Mode::Terminal).then(|| {
            let b = self.multi.add(ProgressBar::new(1000));
            b.set_style(
                ProgressStyle::with_template("{prefix:>24} [{bar:30}] {msg} {elapsed}")
                    .unwrap()
                    .progress_chars("=> "),
            );
            b.set_prefix(label.to_string());
            b
        });
        PercentBar {
            bar,
            label: label.to_string(),
            mode: self.mode,
            last_logged: Mutex::new(-1),
        }
    }

    pub fn repo_sink(&self, label: &str) -> Arc<dyn ProgressSink + Send + Sync> {
        self.clear_status();
        Arc::new(RepoBar {
            ui: self.clone(),
            label: label.to_string(),
            bar: Mutex::new(None),
        })
    }
}

pub struct PercentBar {
    bar: Option<ProgressBar>,
    label: String,
    mode: Mode,
    last_logged: Mutex<i64>,
}

impl PercentBar {
    pub fn set(&self, percent: f64) {
        if let Some(b) = &self.bar {
            b.set_position((percent * 10.0) as u64);
            b.set_message(format!("{percent:.0}%"));
        } else if self.mode == Mode::Plain {
            // A line every 25% in logs.
            let bucket = (percent / 25.0) as i64;
            let mut last = self.last_logged.lock().unwrap();
            if bucket > *last {
                *last = bucket;
                eprintln!("{}: {percent:.0}%", self.label);
            }
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

struct RepoBar {
    ui: Ui,
    label: String,
    bar: Mutex<Option<ProgressBar>>,
}

impl ProgressSink for RepoBar {
    fn start(&self, what: &str, total_bytes: Option<u64>) {
        if self.ui.mode != Mode::Terminal {
            return;
        }
        let b = match total_bytes {
            Some(t) => {
                let b = self.ui.multi.add(ProgressBar::new(t));
                b.set_style(
                    ProgressStyle::with_template(
                        "{prefix:>24} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
                    )
                    .unwrap()
                    .progress_chars("=> "),
                );
                b
            }
            None => {
                let b = self.ui.multi.add(ProgressBar::new_spinner());
                b.set_style(
                    ProgressStyle::with_template("{prefix:>24} {spinner} {bytes} {msg}").unwrap(),
                );
                b
            }
        };
        b.set_prefix(format!("{} ({what})", self.label));
        *self.bar.lock().unwrap() = Some(b);
    }

    fn advance(&self, bytes: u64) {
        if let Some(b) = self.bar.lock().unwrap().as_ref() {
            b.inc(bytes);
        }
    }

    fn finish(&self) {
        if let Some(b) = self.bar.lock().unwrap().take() {
            b.finish_and_clear();
        }
    }

    fn wants_total(&self) -> bool {
        // Only a terminal shows the bar.
        self.ui.mode == Mode::Terminal
    }
}

impl crate::run::progress::Progress for Ui {
    fn note(&self, msg: &str) {
        Ui::note(self, msg)
    }
    fn status(&self, msg: &str) {
        Ui::status(self, msg)
    }
    fn clear_status(&self) {
        Ui::clear_status(self)
    }
    fn percent_bar(&self, label: &str) -> Box<dyn crate::run::progress::Percent> {
        Box::new(Ui::percent_bar(self, label))
    }
    fn repo_sink(&self, label: &str) -> Arc<dyn ProgressSink + Send + Sync> {
        Ui::repo_sink(self, label)
    }
}

impl crate::run::progress::Percent for PercentBar {
    fn set(&self, percent: f64) {
        PercentBar::set(self, percent)
    }
    fn finish(&self) {
        PercentBar::finish(self)
    }
}
