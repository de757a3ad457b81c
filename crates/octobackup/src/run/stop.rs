//! A stop request (Ctrl-C, SIGTERM from a service manager), heard from the start of a run to its
//! end. The listener is installed once, before anything changes, and records the request; every
//! step then asks for it or waits on it. A signal that arrives while maintenance mode is being
//! turned on or off is therefore never lost, and the run stops at the next safe point.

use tokio::sync::watch;

#[derive(Clone)]
pub struct Stop {
    rx: watch::Receiver<Option<&'static str>>,
}

impl Stop {
    /// Starts listening now. Must be called inside the runtime. The handlers are registered
    /// before this returns, so a signal sent right after is recorded, not acted on by default.
    pub fn listen() -> Stop {
        let (tx, rx) = watch::channel(None);
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
            let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
            tokio::spawn(async move {
                let name = tokio::select! {
                    _ = int.recv() => "Ctrl-C",
                    _ = term.recv() => "SIGTERM",
                };
                tx.send_replace(Some(name));
            });
        }
        #[cfg(windows)]
        {
            let mut c = tokio::signal::windows::ctrl_c().expect("Ctrl-C handler");
            let mut brk = tokio::signal::windows::ctrl_break().expect("Ctrl-Break handler");
            let mut close = tokio::signal::windows::ctrl_close().expect("close handler");
            let mut shutdown = tokio::signal::windows::ctrl_shutdown().expect("shutdown handler");
            tokio::spawn(async move {
                let name = tokio::select! {
                    _ = c.recv() => "Ctrl-C",
                    _ = brk.recv() => "Ctrl-Break",
                    _ = close.recv() => "the console closing",
                    _ = shutdown.recv() => "a system shutdown",
                };
                tx.send_replace(Some(name));
            });
        }
        Stop { rx }
    }

    /// A stop that can be requested by hand (unit tests).
    #[cfg(test)]
    pub fn manual() -> (watch::Sender<Option<&'static str>>, Stop) {
        let (tx, rx) = watch::channel(None);
        (tx, Stop { rx })
    }

    /// What asked to stop, if anything has.
    pub fn requested(&self) -> Option<&'static str> {
        *self.rx.borrow()
    }

    /// Resolves once a stop is requested (at once if it already was).
    pub async fn wait(&self) -> &'static str {
        let mut rx = self.rx.clone();
        match rx.wait_for(Option::is_some).await {
            Ok(v) => v.expect("waited for Some"),
            Err(_) => std::future::pending().await,
        }
    }
}

/// A named point of a run where the lab's fault matrix stops it: with the `lab` feature and
/// `OCTOBACKUP_LAB_PAUSE_AT` naming this point, the run writes the point's name to the file
/// `OCTOBACKUP_LAB_PAUSED_FILE` names and waits there (two minutes) for the test's signal or
/// kill. The shipped binary is built without the lab: there this does nothing.
pub async fn lab_point(point: &str) {
    #[cfg(feature = "lab")]
    if std::env::var("OCTOBACKUP_LAB_PAUSE_AT").is_ok_and(|p| p == point) {
        if let Some(f) = std::env::var_os("OCTOBACKUP_LAB_PAUSED_FILE") {
            let _ = std::fs::write(f, point);
        }
        tokio::time::sleep(std::time::Duration::from_secs(120)).await;
    }
    let _ = point;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_made_before_anyone_waits_is_kept() {
        let (tx, stop) = Stop::manual();
        assert_eq!(stop.requested(), None);
        tx.send_replace(Some("SIGTERM"));
        assert_eq!(stop.requested(), Some("SIGTERM"));
        assert_eq!(stop.wait().await, "SIGTERM");
        assert_eq!(stop.clone().wait().await, "SIGTERM");
    }
}
