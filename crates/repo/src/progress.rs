//! Progress reporting. rustic wants a `'static` [`ProgressBars`] fixed when the repository is
//! opened, while callers hand a borrowed [`ProgressSink`] to each call. So rustic's bars only
//! post events to a channel, and the calling thread (which owns the borrow) delivers them while
//! the rustic work runs on a helper thread. That helper thread also keeps rustic (and OpenDAL,
//! which panics inside a tokio runtime) away from whatever runtime the caller is on.
//!
//! Bytes processed are added to a counter, not sent one event per increment: rustic counts
//! every chunk and file, from every worker, and a message each meant a wake-up of the calling
//! thread each (issue 13). The calling thread takes what the counter holds every
//! [`DELIVERY_TICK`] and before a phase ends.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, Once, PoisonError};
use std::thread;
use std::time::Duration;

use rustic_core::{Progress, ProgressBars, ProgressType, RusticProgress};

use crate::error::RepoError;

/// Receives the progress of one call. Calls arrive on the thread that made the call, in phases:
/// `start`, any number of `advance`, `finish`; a call may run more than one phase.
pub trait ProgressSink: Sync {
    /// A phase begins; `total_bytes` is known for backup and restore.
    fn start(&self, what: &str, total_bytes: Option<u64>);
    /// `bytes` more were processed in the current phase.
    fn advance(&self, bytes: u64);
    /// The current phase ended.
    fn finish(&self);
    /// Whether `start` should be given the total bytes when it costs work of its own (a
    /// restore of more files than it plans at a time walks their listing once more for it):
    /// `false` when nobody sees the total.
    fn wants_total(&self) -> bool {
        true
    }
}

/// Reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl ProgressSink for NoProgress {
    fn start(&self, _what: &str, _total_bytes: Option<u64>) {}
    fn advance(&self, _bytes: u64) {}
    fn finish(&self) {}
    fn wants_total(&self) -> bool {
        false
    }
}

/// How often the calling thread passes on the bytes counted meanwhile.
const DELIVERY_TICK: Duration = Duration::from_millis(100);

#[derive(Debug)]
enum Event {
    Start(String, Option<u64>),
    Finish,
    /// The work is over (sent on return and on panic).
    Done,
}

/// Where bars of the running operation send their events, and how to name their phase.
#[derive(Debug, Clone)]
struct Route {
    events: Sender<Event>,
    /// Bytes processed and not yet passed to the sink.
    counted: Arc<AtomicU64>,
    phase: Option<String>,
    total: Option<u64>,
}

/// The `ProgressBars` given to rustic once; routes byte bars to the operation in progress.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProgressRouter {
    route: Arc<Mutex<Option<Route>>>,
}

impl ProgressRouter {
    /// Names the phases of the running operation and gives the total when rustic will not.
    pub(crate) fn set_phase(&self, phase: &str, total: Option<u64>) {
        if let Some(route) = self.lock().as_mut() {
            route.phase = Some(phase.to_string());
            route.total = total;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Route>> {
        self.route.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `work` on a helper thread, delivering its progress to `sink` on this thread.
    /// A panic in `work` (rustic unwraps some I/O errors) becomes an error, not a crash.
    pub(crate) fn run<T: Send>(
        &self,
        sink: &dyn ProgressSink,
        work: impl FnOnce() -> Result<T, RepoError> + Send,
    ) -> Result<T, RepoError> {
        let _quiet = QuietPanics::start();
        let (events, received) = mpsc::channel();
        let counted = Arc::new(AtomicU64::new(0));
        *self.lock() = Some(Route {
            events: events.clone(),
            counted: counted.clone(),
            phase: None,
            total: None,
        });
        let outcome = thread::scope(|scope| {
            // The size of a main thread's stack, which is what rustic is written for.
            let worker = thread::Builder::new()
                .name("octobackup-repo".into())
                .stack_size(8 * 1024 * 1024)
                .spawn_scoped(scope, move || {
                    let _done = SendOnDrop(events);
                    work()
                });
            let worker = match worker {
                Ok(worker) => worker,
                Err(err) => {
                    return Ok(Err(RepoError::Other(format!(
                        "cannot start a worker thread: {err}"
                    ))));
                }
            };
            // Counted bytes belong to the phase begun last: a bar's increments all come after
            // its `Start` is sent and before its `Finish`, so they are passed on only inside a
            // phase (what is counted before `Start` is received waits for it).
            let mut in_phase = false;
            let deliver = || {
                let bytes = counted.swap(0, Ordering::AcqRel);
                if bytes > 0 {
                    sink.advance(bytes);
                }
            };
            loop {
                let event = received.recv_timeout(DELIVERY_TICK);
                if let Ok(Event::Start(what, total)) = event {
                    in_phase = true;
                    sink.start(&what, total);
                    continue;
                }
                // A tick, the phase's end or the work's: what was counted so far goes first.
                if in_phase {
                    deliver();
                }
                match event {
                    Ok(Event::Finish) => {
                        in_phase = false;
                        sink.finish();
                    }
                    Ok(Event::Done) | Err(RecvTimeoutError::Disconnected) => break,
                    Ok(Event::Start(..)) | Err(RecvTimeoutError::Timeout) => {}
                }
            }
            worker.join()
        });
        *self.lock() = None;
        outcome.unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(RepoError::Other(format!(
                "the repository engine failed unexpectedly ({what}); the repository itself is unchanged by a failed read, run `check` if this happened while writing"
            )))
        })
    }
}

/// Calls in progress. While above zero, a panic on the repository worker or on an unnamed
/// thread (rustic's rayon workers) prints nothing: `run` turns it into one line of error, and
/// the default hook would print the panic and a backtrace on stderr first.
static QUIET_PANICS: AtomicUsize = AtomicUsize::new(0);

struct QuietPanics(());

impl QuietPanics {
    fn start() -> Self {
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                let ours = matches!(thread::current().name(), None | Some("octobackup-repo"));
                if ours && QUIET_PANICS.load(Ordering::SeqCst) > 0 {
                    log::debug!("the repository engine panicked: {info}");
                    return;
                }
                previous(info);
            }));
        });
        QUIET_PANICS.fetch_add(1, Ordering::SeqCst);
        QuietPanics(())
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        QUIET_PANICS.fetch_sub(1, Ordering::SeqCst);
    }
}

struct SendOnDrop(Sender<Event>);

impl Drop for SendOnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(Event::Done);
    }
}

impl ProgressBars for ProgressRouter {
    fn progress(&self, progress_type: ProgressType, prefix: &str) -> Progress {
        let route = self.lock().clone();
        match (progress_type, route) {
            (ProgressType::Bytes, Some(route)) => Progress::new(ByteBar {
                phase: route
                    .phase
                    .unwrap_or_else(|| prefix.trim_end_matches(['.', ' ']).to_string()),
                events: route.events,
                counted: route.counted,
                started: AtomicBool::new(false),
                total: Mutex::new(route.total),
            }),
            // Counters and spinners (listing, indexing) have no byte totals to show.
            _ => Progress::hidden(),
        }
    }
}

/// A rustic byte bar. The phase starts lazily, at the first length, increment or finish, so
/// that a known length is passed to `start`.
#[derive(Debug)]
struct ByteBar {
    phase: String,
    events: Sender<Event>,
    counted: Arc<AtomicU64>,
    /// `Start` was sent (read without the lock on every increment).
    started: AtomicBool,
    /// The phase's total; its lock is held while `Start` is sent.
    total: Mutex<Option<u64>>,
}

impl ByteBar {
    /// Sends `Start` once; the lock makes sure no increment is counted before it is sent.
    fn ensure_started(&self, length: Option<u64>) {
        if self.started.load(Ordering::Acquire) {
            return;
        }
        let total = self.total.lock().unwrap_or_else(PoisonError::into_inner);
        if !self.started.load(Ordering::Acquire) {
            let _ = self
                .events
                .send(Event::Start(self.phase.clone(), length.or(*total)));
            self.started.store(true, Ordering::Release);
        }
    }
}

impl RusticProgress for ByteBar {
    fn is_hidden(&self) -> bool {
        false
    }

    fn set_length(&self, len: u64) {
        self.ensure_started(Some(len));
    }

    fn set_title(&self, _title: &str) {}

    fn inc(&self, inc: u64) {
        self.ensure_started(None);
        self.counted.fetch_add(inc, Ordering::AcqRel);
    }

    fn finish(&self) {
        self.ensure_started(None);
        let _ = self.events.send(Event::Finish);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl ProgressSink for Recorder {
        fn start(&self, what: &str, total: Option<u64>) {
            self.0
                .lock()
                .unwrap()
                .push(format!("start {what} {total:?}"));
        }
        fn advance(&self, bytes: u64) {
            self.0.lock().unwrap().push(format!("advance {bytes}"));
        }
        fn finish(&self) {
            self.0.lock().unwrap().push("finish".into());
        }
    }

    #[test]
    fn byte_bars_reach_the_sink_in_order_on_the_calling_thread() {
        let router = ProgressRouter::default();
        let sink = Recorder::default();
        let result = router.run(&sink, || {
            router.set_phase("backup", Some(10));
            let bar = router.progress(ProgressType::Bytes, "backing up...");
            let hidden = router.progress(ProgressType::Counter, "reading index...");
            hidden.inc(99);
            bar.inc(4);
            bar.inc(6);
            bar.finish();
            Ok(7)
        });
        assert_eq!(result.unwrap(), 7);
        let events = sink.0.lock().unwrap().clone();
        // Increments are summed: what the sink gets is what was counted, before the end.
        assert_eq!(events, ["start backup Some(10)", "advance 10", "finish"]);
    }

    #[test]
    fn counted_bytes_reach_the_sink_while_the_phase_runs() {
        let router = ProgressRouter::default();
        let sink = Recorder::default();
        let seen_midway = router
            .run(&sink, || {
                let bar = router.progress(ProgressType::Bytes, "backing up...");
                bar.inc(3);
                // Well past a tick, with nothing sent: the counter is read on the tick.
                let waited = std::time::Instant::now();
                while !sink.0.lock().unwrap().iter().any(|e| e == "advance 3") {
                    assert!(
                        waited.elapsed() < Duration::from_secs(10),
                        "counted bytes were not delivered on a tick"
                    );
                    thread::sleep(Duration::from_millis(10));
                }
                let midway = sink.0.lock().unwrap().clone();
                bar.inc(4);
                bar.finish();
                Ok(midway)
            })
            .unwrap();
        assert_eq!(seen_midway, ["start backing up None", "advance 3"]);
        let events = sink.0.lock().unwrap().clone();
        assert_eq!(
            events,
            ["start backing up None", "advance 3", "advance 4", "finish"]
        );
    }

    #[test]
    fn rustic_length_wins_and_prefix_names_the_phase() {
        let router = ProgressRouter::default();
        let sink = Recorder::default();
        router
            .run(&sink, || {
                let bar = router.progress(ProgressType::Bytes, "restoring file contents...");
                bar.set_length(5);
                bar.inc(5);
                bar.finish();
                Ok(())
            })
            .unwrap();
        let events = sink.0.lock().unwrap().clone();
        assert_eq!(
            events,
            [
                "start restoring file contents Some(5)",
                "advance 5",
                "finish"
            ]
        );
    }

    /// Run by `a_panic_in_the_work_prints_nothing` in a child process of the test binary.
    #[test]
    fn panicking_work_in_a_child() {
        if std::env::var_os("OCTOBACKUP_REPO_PANIC_CHILD").is_none() {
            return;
        }
        let router = ProgressRouter::default();
        let result: Result<(), _> = router.run(&NoProgress, || panic!("pack unreadable"));
        let err = result.unwrap_err().to_string();
        eprintln!("error: {err}");
    }

    #[test]
    fn a_panic_in_the_work_prints_nothing() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "progress::tests::panicking_work_in_a_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("OCTOBACKUP_REPO_PANIC_CHILD", "1")
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        // The error is reported, once, as one line; the panic itself printed nothing.
        assert!(
            stderr.contains("error: the repository engine failed unexpectedly (pack unreadable)"),
            "{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!stderr.contains("stack backtrace"), "{stderr}");
    }

    #[test]
    fn a_panic_in_the_work_becomes_an_error() {
        let router = ProgressRouter::default();
        let result: Result<(), _> = router.run(&NoProgress, || panic!("pack unreadable"));
        let err = result.unwrap_err().to_string();
        assert!(err.contains("pack unreadable"), "{err}");
        // The router is usable again afterwards.
        assert_eq!(router.run(&NoProgress, || Ok(1)).unwrap(), 1);
    }
}
