//! rustic_core reports files it skipped (and other trouble) only through `log::warn!`, and the
//! backup still succeeds. This module's logger captures those warnings for the call in progress
//! so they end up in its result, and shows them on stderr unless the program has its own logger.
//!
//! A program that installs its own `log` logger should wrap it with [`wrap_logger`] so the
//! capture keeps working; otherwise the first backup installs a plain stderr logger for warnings.

use std::sync::{Arc, Mutex, Once, PoisonError};

use log::{Level, LevelFilter, Log, Metadata, Record};

/// Errors our backup source has already recorded (with a short message) carry this in their
/// text, so rustic's long repetition of them is dropped.
pub(crate) const RECORDED_MARKER: &str = "(recorded by octobackup)";

/// A warning or error logged by rustic_core while a call was running.
#[derive(Debug, Clone)]
pub(crate) struct Captured {
    pub(crate) message: String,
}

#[derive(Default)]
struct Capture {
    records: Mutex<Vec<Captured>>,
}

/// Captures in progress. rustic logs from its own worker threads, so a record cannot be tied to
/// a thread: every active capture receives it (two concurrent calls may see each other's).
static ACTIVE: Mutex<Vec<Arc<Capture>>> = Mutex::new(Vec::new());

/// Collects rustic_core warnings until [`CaptureGuard::finish`] or drop.
pub(crate) struct CaptureGuard(Arc<Capture>);

/// Starts capturing rustic_core warnings (and installs the default logger if none is set).
pub(crate) fn capture() -> CaptureGuard {
    install_default_logger();
    let capture = Arc::new(Capture::default());
    ACTIVE
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(capture.clone());
    CaptureGuard(capture)
}

impl CaptureGuard {
    pub(crate) fn finish(self) -> Vec<Captured> {
        std::mem::take(
            &mut *self
                .0
                .records
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        ACTIVE
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|c| !Arc::ptr_eq(c, &self.0));
    }
}

/// Wraps the program's own logger so rustic's warnings are still captured into results.
/// Install the returned logger with `log::set_boxed_logger`, and keep the max level at `Warn`
/// or more verbose.
pub fn wrap_logger(inner: Box<dyn Log>) -> Box<dyn Log> {
    Box::new(CaptureLogger { inner: Some(inner) })
}

/// Installs a capturing logger that prints warnings to stderr, unless a logger is already set
/// (then only a wrapped one, see [`wrap_logger`], captures). Safe to call any number of times.
pub(crate) fn install_default_logger() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if log::set_boxed_logger(Box::new(CaptureLogger { inner: None })).is_ok()
            && log::max_level() < LevelFilter::Warn
        {
            log::set_max_level(LevelFilter::Warn);
        }
    });
}

/// While above zero, rustic's own log lines from `check` are dropped: the caller reports every
/// finding itself (rustic would print each with its whole backtrace).
static QUIET_CHECK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Silences rustic's `check` log lines until dropped.
pub(crate) struct QuietCheck(());

impl QuietCheck {
    pub(crate) fn start() -> Self {
        install_default_logger();
        QUIET_CHECK.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        QuietCheck(())
    }
}

impl Drop for QuietCheck {
    fn drop(&mut self) {
        QUIET_CHECK.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

struct CaptureLogger {
    inner: Option<Box<dyn Log>>,
}

impl Log for CaptureLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= Level::Warn || self.inner.as_ref().is_some_and(|i| i.enabled(metadata))
    }

    fn log(&self, record: &Record) {
        if record.target().starts_with("rustic_core::commands::check")
            && QUIET_CHECK.load(std::sync::atomic::Ordering::SeqCst) > 0
        {
            return;
        }
        let from_rustic = record.target().starts_with("rustic_core");
        if from_rustic && record.level() <= Level::Warn {
            let message = record.args().to_string();
            if message.contains(RECORDED_MARKER) {
                return;
            }
            let active = ACTIVE.lock().unwrap_or_else(PoisonError::into_inner);
            for capture in active.iter() {
                capture
                    .records
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(Captured {
                        message: message.clone(),
                    });
            }
        }
        match &self.inner {
            Some(inner) => inner.log(record),
            None if record.level() <= Level::Warn => {
                eprintln!(
                    "{}: {}",
                    record.level().as_str().to_lowercase(),
                    record.args()
                );
            }
            None => {}
        }
    }

    fn flush(&self) {
        if let Some(inner) = &self.inner {
            inner.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_rustic_warnings_but_not_recorded_ones() {
        let guard = capture();
        let logger = CaptureLogger { inner: None };
        let log = |target: &str, level: Level, msg: &str| {
            logger.log(
                &Record::builder()
                    .target(target)
                    .level(level)
                    .args(format_args!("{msg}"))
                    .build(),
            );
        };
        log("rustic_core::archiver", Level::Warn, "ignoring error: boom");
        log("rustic_core::archiver", Level::Info, "using no parent");
        log(
            "rustic_core::archiver",
            Level::Warn,
            "ignoring error: x (recorded by octobackup)",
        );
        log("other_crate", Level::Warn, "not ours");
        let captured: Vec<String> = guard.finish().into_iter().map(|c| c.message).collect();
        assert_eq!(captured, ["ignoring error: boom"]);
    }
}
