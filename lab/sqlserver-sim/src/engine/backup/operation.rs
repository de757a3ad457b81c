//! The file work of BACKUP and RESTORE on the blocking pool: STATS progress, the throttle,
//! ATTENTION and the drop-connection fault.

use std::io;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::engine::errors;
use crate::engine::session::{Session, raise};
use crate::tds::response::Response;

/// How a file operation on the blocking pool ended.
pub(super) enum RunEnd<T> {
    Finished(T),
    /// ATTENTION (or a vanished client) stopped it.
    Cancelled(T),
    /// The drop-connection fault stopped it.
    Dropped(T),
}

/// Sets the cancel flag when dropped, so a session torn down mid-operation stops its blocking work.
pub(super) struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// STATS = n: "N percent processed." each time another n percent completes.
pub(super) struct StatsReporter {
    step: Option<u32>,
    next: u32,
}

impl StatsReporter {
    pub(super) fn new(step: Option<u32>) -> Self {
        let step = step.map(|s| s.clamp(1, 100));
        Self {
            step,
            next: step.unwrap_or(u32::MAX),
        }
    }

    /// The percentage to print now, if a threshold was crossed.
    fn advance(&mut self, percent: u32) -> Option<u32> {
        let step = self.step?;
        if percent < self.next {
            return None;
        }
        self.next = (percent / step + 1) * step;
        Some(percent)
    }

    fn progress(&mut self, resp: &mut Response<'_>, percent: u32, line: i32) -> bool {
        match self.advance(percent) {
            Some(p) => {
                raise(resp, &errors::percent_processed(p), line);
                true
            }
            None => false,
        }
    }

    pub(super) fn finished(&mut self, resp: &mut Response<'_>, line: i32) {
        if self.step.is_some() && self.next <= 100 {
            raise(resp, &errors::percent_processed(100), line);
            self.next = u32::MAX;
        }
    }
}

/// Runs `work` on the blocking pool with a progress callback that throttles to the configured
/// rate, stops on ATTENTION, and drops the connection part-way when `drop_midway`.
pub(super) async fn run_file_operation<T: Send + 'static>(
    session: &Session,
    resp: &mut Response<'_>,
    stats: &mut StatsReporter,
    line: i32,
    drop_midway: bool,
    work: impl FnOnce(&mut dyn FnMut(u64, u64) -> ControlFlow<()>) -> T + Send + 'static,
) -> io::Result<RunEnd<T>> {
    let cancel = Arc::new(AtomicBool::new(false));
    let _cancel_guard = CancelOnDrop(cancel.clone());
    let dropped = Arc::new(AtomicBool::new(false));
    let (progress_tx, mut progress_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, u64)>();
    let engine = session.engine.clone();
    let permit = engine
        .operations
        .clone()
        .acquire_owned()
        .await
        .expect("the operations semaphore is never closed");
    let handle = {
        let cancel = cancel.clone();
        let dropped = dropped.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let mut last = Instant::now();
            let mut last_done = 0u64;
            let mut callback = |done: u64, total: u64| -> ControlFlow<()> {
                let delta = done.saturating_sub(last_done);
                last_done = done;
                if let Some(rate) = engine.backup_rate() {
                    let due = last + Duration::from_secs_f64(delta as f64 / rate as f64);
                    while Instant::now() < due {
                        if cancel.load(Ordering::SeqCst) {
                            return ControlFlow::Break(());
                        }
                        std::thread::sleep((due - Instant::now()).min(Duration::from_millis(20)));
                        // a changed rate applies at once
                        if engine.backup_rate().is_none_or(|r| r != rate) {
                            break;
                        }
                    }
                }
                last = Instant::now();
                let _ = progress_tx.send((done, total));
                if drop_midway && total > 0 && done * 10 >= total * 3 {
                    dropped.store(true, Ordering::SeqCst);
                    return ControlFlow::Break(());
                }
                if cancel.load(Ordering::SeqCst) {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            };
            work(&mut callback)
        })
    };
    tokio::pin!(handle);
    let mut cancelled = false;
    let mut report = |resp: &mut Response<'_>, done: u64, total: u64| -> bool {
        let percent = done
            .saturating_mul(100)
            .checked_div(total)
            .map_or(100, |p| p.min(100) as u32);
        let exact = if total == 0 {
            100.0
        } else {
            (done as f64 * 100.0 / total as f64) as f32
        };
        session.engine.set_percent_complete(session.spid, exact);
        !dropped.load(Ordering::SeqCst) && stats.progress(resp, percent, line)
    };
    let result = loop {
        tokio::select! {
            biased;
            Some((done, total)) = progress_rx.recv() => {
                if !cancelled && report(resp, done, total) {
                    resp.flush().await?;
                }
            }
            _ = session.attention.stopped(), if !cancelled => {
                cancel.store(true, Ordering::SeqCst);
                cancelled = true;
            }
            result = &mut handle => break result,
        }
    };
    // progress the operation made just before it ended
    while let Ok((done, total)) = progress_rx.try_recv() {
        if !cancelled {
            report(resp, done, total);
        }
    }
    let value = result.map_err(|e| io::Error::other(format!("a file operation panicked: {e}")))?;
    Ok(if dropped.load(Ordering::SeqCst) {
        RunEnd::Dropped(value)
    } else if cancelled || session.attention.should_stop() {
        RunEnd::Cancelled(value)
    } else {
        RunEnd::Finished(value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_print_at_thresholds_with_the_actual_percent() {
        let mut r = StatsReporter::new(Some(10));
        let printed: Vec<u32> = [3, 11, 12, 25, 100]
            .into_iter()
            .filter_map(|p| r.advance(p))
            .collect();
        assert_eq!(printed, vec![11, 25, 100]);
        let mut five = StatsReporter::new(Some(5));
        let printed: Vec<u32> = [5, 9, 10, 50]
            .into_iter()
            .filter_map(|p| five.advance(p))
            .collect();
        assert_eq!(printed, vec![5, 10, 50]);
        let mut none = StatsReporter::new(None);
        assert_eq!(none.advance(100), None);
    }
}
