//! The retry budget: how long a run keeps retrying a storage server that does not answer, added
//! up over the whole run, not per request. OpenDAL's own retry (5 tries, about 45 s per pack)
//! is turned off and every backend call goes through [`Budgeted`]: a call that fails for a
//! reason that may pass (connection refused or reset, timeout, 5xx, an SSH connection dropped)
//! is retried with a growing pause while the run's outage time stays under the budget. Past it,
//! the storage is declared gone: the failing call and every later one fail at once with one line
//! that names the endpoint, the operation and how long it was tried, so a run with its storage
//! down ends within the budget instead of retrying each pack in turn.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustic_core::{
    BytesList, ErrorKind, FileType, Id, ReadBackend, RusticError, RusticResult, WriteBackend,
};

/// The retry budget when the config gives none (`repository.retry_budget`).
pub const DEFAULT_RETRY_BUDGET: Duration = Duration::from_secs(120);

/// The longest a single storage request may take by default (backend option `timeout`, in
/// seconds, overrides it): a server that accepts the connection and never answers fails the try
/// after this long, and the try's time counts against the budget.
pub const MAX_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The bound on one request for a run with `budget`: at most [`MAX_REQUEST_TIMEOUT`], and never
/// longer than the budget, so that a run whose storage hangs ends within about twice its budget
/// at worst (the budget, plus the one try that was under way when it ran out). A pack upload is
/// bounded apart, by at least [`MAX_REQUEST_TIMEOUT`] (`config::set_upload_timeout`): it may
/// rightly take longer than a short budget.
pub fn request_timeout(budget: Duration) -> Duration {
    budget.clamp(Duration::from_secs(1), MAX_REQUEST_TIMEOUT)
}

/// The first pause between two tries, doubled up to [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(500);
const MAX_PAUSE: Duration = Duration::from_secs(10);

/// What made the run give up on the storage.
#[derive(Debug, Clone)]
pub struct Gone {
    /// The storage, as [`crate::Storage::describe`] says it (endpoint, bucket; no credentials).
    pub place: String,
    /// The operation that used up the budget ("writing data/ab/abcd…").
    pub operation: String,
    /// The storage's outage time over the run.
    pub tried: Duration,
    pub budget: Duration,
    /// The last failure, in a few words ("connection refused").
    pub cause: String,
}

impl Gone {
    pub fn message(&self) -> String {
        format!(
            "the repository storage did not answer ({}): {} failed with {} after {} of retries in all (repository.retry_budget = {}); check that the storage server is running and reachable, then run again",
            self.place,
            self.operation,
            self.cause,
            human(self.tried),
            human(self.budget),
        )
    }
}

/// `2m 5s`, `45s`, `0.5s`.
pub(crate) fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m {}s", secs / 60, secs % 60)
    } else if secs >= 1 {
        format!("{secs}s")
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[derive(Default)]
struct State {
    /// When the current outage began (the first failure since the last answer).
    failing_since: Option<Instant>,
    /// The outages before the current one, added up.
    spent: Duration,
    /// The last answer: an outage that a try started before it noticed began no earlier.
    last_answer: Option<Instant>,
    gone: Option<Gone>,
}

/// One storage's health over the run, shared by every backend and plain-object call on it.
pub struct Health {
    place: String,
    budget: Duration,
    state: Mutex<State>,
}

impl Health {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// Set once the budget is used up.
    pub fn gone(&self) -> Option<Gone> {
        self.state().gone.clone()
    }

    /// The storage answered (with data or with a refusal that is not about reaching it).
    fn answered(&self) {
        let mut s = self.state();
        let now = Instant::now();
        if let Some(since) = s.failing_since.take() {
            s.spent += now.saturating_duration_since(since);
        }
        s.last_answer = Some(now);
    }

    /// A try failed for a reason that may pass: the pause before the next try, or `Err` when
    /// the budget is used up (and from then on for every call).
    /// The outage is counted from when the failed try began (a request that hung until its
    /// timeout was the storage's time too), but not from before the storage's last answer.
    fn failed(
        &self,
        operation: &str,
        cause: &str,
        attempt: u32,
        try_began: Instant,
    ) -> Result<Duration, Gone> {
        let mut s = self.state();
        if let Some(g) = &s.gone {
            return Err(g.clone());
        }
        let now = Instant::now();
        let began = s.last_answer.map_or(try_began, |a| a.max(try_began));
        let since = *s.failing_since.get_or_insert(began);
        let tried = s.spent + (now - since);
        if tried >= self.budget {
            let g = Gone {
                place: self.place.clone(),
                operation: operation.to_string(),
                tried,
                budget: self.budget,
                cause: cause.to_string(),
            };
            s.gone = Some(g.clone());
            return Err(g);
        }
        let pause = FIRST_PAUSE
            .saturating_mul(1 << attempt.min(8))
            .min(MAX_PAUSE)
            .min(self.budget - tried);
        Ok(pause.max(Duration::from_millis(10)))
    }

    /// Runs `call` until it succeeds, fails for good, or the budget is used up.
    pub(crate) fn retry<T, E>(
        &self,
        operation: impl Fn() -> String,
        mut call: impl FnMut() -> Result<T, E>,
        transient: impl Fn(&E) -> Option<String>,
        gone: impl Fn(&Gone) -> E,
    ) -> Result<T, E> {
        if let Some(g) = self.gone() {
            return Err(gone(&g));
        }
        let mut attempt = 0;
        loop {
            let try_began = Instant::now();
            match call() {
                Ok(v) => {
                    self.answered();
                    return Ok(v);
                }
                Err(e) => {
                    let Some(cause) = transient(&e) else {
                        self.answered();
                        return Err(e);
                    };
                    let op = operation();
                    match self.failed(&op, &cause, attempt, try_began) {
                        Ok(pause) => {
                            log::warn!(
                                target: crate::error::STORAGE_LOG,
                                "{op} failed ({cause}); trying again in {}",
                                human(pause)
                            );
                            std::thread::sleep(pause);
                            attempt += 1;
                        }
                        Err(g) => {
                            log::warn!(target: crate::error::STORAGE_LOG, "{}", g.message());
                            return Err(gone(&g));
                        }
                    }
                }
            }
        }
    }
}

/// Every storage's health in this process (one process is one run), by location.
static ALL: OnceLock<Mutex<HashMap<String, Arc<Health>>>> = OnceLock::new();

fn registry() -> std::sync::MutexGuard<'static, HashMap<String, Arc<Health>>> {
    ALL.get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
}

/// The health of the storage at `location`, made with `place` and `budget` the first time.
pub(crate) fn health(location: &str, place: &str, budget: Duration) -> Arc<Health> {
    registry()
        .entry(location.trim().to_string())
        .or_insert_with(|| {
            Arc::new(Health {
                place: place.to_string(),
                budget,
                state: Mutex::new(State::default()),
            })
        })
        .clone()
}

/// The health of `location` if a repository there was opened in this run (plain-object calls
/// must not fix the budget before the repository is opened with the configured one).
pub(crate) fn known_health(location: &str) -> Option<Arc<Health>> {
    registry().get(location.trim()).cloned()
}

/// Why a backend error may pass with time, in a few words; `None` when it will not (a refusal,
/// a missing file, a wrong key), which is returned at once as before.
pub(crate) fn transient_cause(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut temporary = false;
    let mut text = String::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(o) = e.downcast_ref::<opendal::Error>() {
            temporary |= o.is_temporary();
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            temporary |= matches!(
                io.kind(),
                K::ConnectionRefused
                    | K::ConnectionReset
                    | K::ConnectionAborted
                    | K::NotConnected
                    | K::TimedOut
                    | K::BrokenPipe
                    | K::HostUnreachable
                    | K::NetworkUnreachable
                    | K::NetworkDown
            );
        }
        text.push_str(&e.to_string());
        text.push('\n');
        source = e.source();
    }
    text.push_str(&format!("{err:?}"));
    transient_text(&without_backtraces(&text), temporary)
}

/// The error's text without the backtraces OpenDAL and rustic attach when `RUST_BACKTRACE` is
/// set: their frames name the layers a call went through (`opendal_layer_timeout`,
/// `tokio::time::timeout`), and a cut upload read as "timeout" on a persistent error, which is
/// not retried, so the budget never ran and the run ended on the first failure.
fn without_backtraces(text: &str) -> String {
    // Debug form: `Backtrace [{ fn: "..", file: "..", line: 1 }, ..]`.
    let mut flat = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("Backtrace [") {
        flat.push_str(&rest[..at]);
        let mut depth = 0usize;
        let mut end = rest.len();
        for (i, c) in rest[at..].char_indices() {
            match c {
                '[' => depth += 1,
                ']' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = at + i + 1;
                        break;
                    }
                }
                _ => {}
            }
        }
        rest = &rest[end..];
    }
    flat.push_str(rest);
    // A message held as a string shows in a Debug form with its line breaks escaped.
    let flat = flat.replace("\\n", "\n");
    // Display form: a `Backtrace:` line, then `  0: frame` and `  at file:line` lines (or
    // "disabled backtrace ..."), up to the first line that is neither.
    let mut out = String::with_capacity(flat.len());
    let mut in_trace = false;
    for line in flat.lines() {
        let t = line.trim();
        if t == "Backtrace:" || t.starts_with("stack backtrace:") {
            in_trace = true;
            continue;
        }
        if in_trace {
            let numbered = t
                .split_once(':')
                .is_some_and(|(n, _)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            let frame = numbered
                || t.starts_with("at ")
                || t.contains("disabled backtrace")
                || t.contains("unsupported backtrace")
                || t.contains("RUST_BACKTRACE");
            if frame {
                continue;
            }
            in_trace = false;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The transient cause in a backend error's text. An SSH connection that could not be made is
/// retried (OpenDAL marks it permanent) unless the login itself was refused.
fn transient_text(text: &str, temporary: bool) -> Option<String> {
    let ssh_refused = [
        "Permission denied",
        "Host key verification failed",
        "host key is known",
        "HOST IDENTIFICATION HAS CHANGED",
        "Too many authentication failures",
    ];
    let is_ssh =
        text.contains("ssh error") || text.contains("failed to connect to the remote host");
    if is_ssh && ssh_refused.iter().any(|w| text.contains(w)) {
        return None;
    }
    let words = [
        ("Connection refused", "connection refused"),
        ("ConnectionRefused", "connection refused"),
        ("Connection reset", "connection reset"),
        ("connection reset", "connection reset"),
        (
            "Connection closed by remote host",
            "connection closed by the server",
        ),
        (
            "kex_exchange_identification",
            "connection closed by the server",
        ),
        ("Broken pipe", "connection lost"),
        // OpenDAL's TimeoutLayer (a server that accepted and never answered, or stalled a body):
        // after a try with retries off it is marked persistent, but it is the server's silence.
        ("operation timeout reached", "timeout (no answer in time)"),
        ("timed out", "timeout"),
        ("timeout", "timeout"),
        ("dns error", "name not resolved"),
        ("No route to host", "no route to host"),
        ("Network is unreachable", "network unreachable"),
        ("error sending request", "request not sent"),
    ];
    let named = words
        .iter()
        .find(|(w, _)| text.contains(w))
        .map(|(_, say)| say.to_string());
    if let Some(status) = server_error(text) {
        return Some(named.unwrap_or(status));
    }
    match named {
        Some(n) if temporary || is_ssh || n != "timeout" => Some(n),
        _ if temporary => Some("a temporary storage error".into()),
        _ if is_ssh => Some("the SSH connection failed".into()),
        _ => None,
    }
}

/// `server error 503` when the text carries a 5xx status (OpenDAL's `status: 503`).
fn server_error(text: &str) -> Option<String> {
    let at = text.find("status: 5")? + "status: ".len();
    let code: String = text[at..].chars().take(3).collect();
    (code.len() == 3 && code.chars().all(|c| c.is_ascii_digit()))
        .then(|| format!("server error {code}"))
}

/// A repository backend whose calls share the storage's retry budget.
pub(crate) struct Budgeted {
    inner: Arc<dyn WriteBackend>,
    health: Arc<Health>,
}

impl Budgeted {
    pub(crate) fn wrap(inner: Arc<dyn WriteBackend>, health: Arc<Health>) -> Arc<dyn WriteBackend> {
        Arc::new(Budgeted { inner, health })
    }

    fn call<T>(
        &self,
        operation: impl Fn() -> String,
        call: impl FnMut() -> RusticResult<T>,
    ) -> RusticResult<T> {
        self.health.retry(
            operation,
            call,
            |e| transient_cause(&**e),
            |g| {
                RusticError::new(ErrorKind::Backend, "{message}")
                    .attach_context("message", g.message())
            },
        )
    }
}

fn folder(tpe: FileType) -> String {
    match tpe {
        FileType::Config => "config".into(),
        _ => format!("{}/", tpe.dirname()),
    }
}

fn file(tpe: FileType, id: &Id) -> String {
    let hex = id.to_hex();
    match tpe {
        FileType::Config => "config".into(),
        FileType::Pack => format!("data/{}/{}", &hex[..2], &hex[..]),
        _ => format!("{}/{}", tpe.dirname(), &hex[..]),
    }
}

impl ReadBackend for Budgeted {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn list_with_size(&self, tpe: FileType) -> RusticResult<Vec<(Id, u32)>> {
        self.call(
            || format!("listing {}", folder(tpe)),
            || self.inner.list_with_size(tpe),
        )
    }

    fn list(&self, tpe: FileType) -> RusticResult<Vec<Id>> {
        self.call(
            || format!("listing {}", folder(tpe)),
            || self.inner.list(tpe),
        )
    }

    fn read_full(&self, tpe: FileType, id: &Id) -> RusticResult<Bytes> {
        self.call(
            || format!("reading {}", file(tpe, id)),
            || self.inner.read_full(tpe, id),
        )
    }

    fn read_partial(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        offset: u32,
        length: u32,
    ) -> RusticResult<Bytes> {
        self.call(
            || format!("reading {}", file(tpe, id)),
            || self.inner.read_partial(tpe, id, cacheable, offset, length),
        )
    }

    fn warmup_path(&self, tpe: FileType, id: &Id) -> String {
        self.inner.warmup_path(tpe, id)
    }

    fn needs_warm_up(&self) -> bool {
        self.inner.needs_warm_up()
    }

    fn warm_up(&self, tpe: FileType, id: &Id) -> RusticResult<()> {
        self.inner.warm_up(tpe, id)
    }
}

impl WriteBackend for Budgeted {
    fn create(&self) -> RusticResult<()> {
        self.call(
            || "creating the repository's folders".into(),
            || self.inner.create(),
        )
    }

    fn write_bytes(
        &self,
        tpe: FileType,
        id: &Id,
        cacheable: bool,
        content: BytesList,
    ) -> RusticResult<()> {
        self.call(
            || format!("writing {}", file(tpe, id)),
            || self.inner.write_bytes(tpe, id, cacheable, content.clone()),
        )
    }

    fn remove(&self, tpe: FileType, id: &Id, cacheable: bool) -> RusticResult<()> {
        self.call(
            || format!("removing {}", file(tpe, id)),
            || self.inner.remove(tpe, id, cacheable),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(budget: Duration) -> Health {
        Health {
            place: "S3 bucket `b` at http://127.0.0.1:9".into(),
            budget,
            state: Mutex::new(State::default()),
        }
    }

    #[test]
    fn a_try_that_hung_until_its_timeout_counts_against_the_budget() {
        let h = health(Duration::from_millis(200));
        let mut tries = 0;
        let r: Result<(), std::io::Error> = h.retry(
            || "reading config".into(),
            || {
                tries += 1;
                std::thread::sleep(Duration::from_millis(250));
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "operation timeout reached",
                ))
            },
            |e| transient_cause(e),
            |g| std::io::Error::other(g.message()),
        );
        let msg = r.unwrap_err().to_string();
        assert_eq!(tries, 1, "the hung try used the budget up: {msg}");
        assert!(msg.contains("failed with timeout"), "{msg}");
    }

    #[test]
    fn the_request_timeout_follows_the_budget_up_to_a_minute() {
        assert_eq!(
            request_timeout(Duration::from_secs(3)),
            Duration::from_secs(3)
        );
        assert_eq!(
            request_timeout(Duration::from_secs(120)),
            MAX_REQUEST_TIMEOUT
        );
        assert_eq!(request_timeout(Duration::ZERO), Duration::from_secs(1));
    }

    /// What the copy through a server cut half way got back from a pack upload, with
    /// `RUST_BACKTRACE=1`: the frames of the timeout layer it went through must not make the
    /// cut a "timeout" that is not retried.
    const CUT_UPLOAD: &str = "Unexpected (persistent) at write => send http request

Context:
   url: http://127.0.0.1:39723/octobackup/midway/data/12/12adeb
   called: reqwest::send
   written: 8127430

Source:
   error sending request for url (http://127.0.0.1:39723/octobackup/midway/data/12/12adeb): client error (SendRequest): connection closed before message completed

Backtrace:
   0: opendal_core::types::error::Error::new
             at /cargo/opendal-core-0.58.2/src/types/error.rs:330:20
  10: <tokio::time::timeout::Timeout<T> as core::future::future::Future>::poll
  11: <opendal_layer_timeout::TimeoutWrapper<R> as opendal_core::raw::oio::write::api::Write>::close::{{closure}}
";

    #[test]
    fn a_cut_upload_is_retried_whatever_its_backtrace_names() {
        assert_eq!(
            transient_text(&without_backtraces(CUT_UPLOAD), false).as_deref(),
            Some("request not sent")
        );
        let debug = "RusticError { kind: Backend, backtrace: Some(Backtrace [{ fn: \"tokio::time::timeout::Timeout<[u8]>::poll\", line: 3 }, { fn: \"opendal_layer_timeout::x\" }]), source: Some(connection closed before message completed) }";
        assert_eq!(transient_text(&without_backtraces(debug), false), None);
        assert!(without_backtraces(debug).contains("connection closed"));
        // A real timeout still reads as one.
        assert_eq!(
            transient_text(
                &without_backtraces(
                    "Unexpected (persistent) at write => io operation timeout reached\n\nBacktrace:\n   0: x\n"
                ),
                false
            )
            .as_deref(),
            Some("timeout (no answer in time)")
        );

        // Through the budget: tried again until it is used up, then the budget's one line.
        let h = health(Duration::from_millis(300));
        let mut tries = 0;
        let r: Result<(), std::io::Error> = h.retry(
            || "writing data/12/12adeb".into(),
            || {
                tries += 1;
                Err(std::io::Error::other(CUT_UPLOAD))
            },
            |e| transient_cause(e),
            |g| std::io::Error::other(g.message()),
        );
        let msg = r.unwrap_err().to_string();
        assert!(tries > 1, "not tried again: {msg}");
        assert!(msg.contains("failed with request not sent"), "{msg}");
        assert!(h.gone().is_some());
    }

    fn refused() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "Connection refused")
    }

    #[test]
    fn an_outage_longer_than_the_budget_stops_every_later_call_at_once() {
        let h = health(Duration::from_millis(300));
        let mut tries = 0;
        let r: Result<(), std::io::Error> = h.retry(
            || "writing data/ab/ab12".into(),
            || {
                tries += 1;
                Err(refused())
            },
            |e| transient_cause(e),
            |g| std::io::Error::other(g.message()),
        );
        let msg = r.unwrap_err().to_string();
        assert!(tries >= 2, "retried: {tries}");
        for part in [
            "did not answer (S3 bucket `b` at http://127.0.0.1:9)",
            "writing data/ab/ab12",
            "connection refused",
            "retry_budget",
        ] {
            assert!(msg.contains(part), "`{part}` missing: {msg}");
        }
        assert!(h.gone().is_some());
        // Later calls are not tried at all.
        let mut later = 0;
        let r: Result<(), String> = h.retry(
            || "listing snapshots/".into(),
            || {
                later += 1;
                Ok(())
            },
            |_: &String| None,
            Gone::message,
        );
        assert!(r.is_err());
        assert_eq!(later, 0);
    }

    #[test]
    fn outages_add_up_over_the_run_and_answers_close_them() {
        let h = health(Duration::from_secs(3600));
        let mut n = 0;
        let r: Result<u32, std::io::Error> = h.retry(
            || "reading config".into(),
            || {
                n += 1;
                if n < 3 { Err(refused()) } else { Ok(n) }
            },
            |e| transient_cause(e),
            |_| refused(),
        );
        assert_eq!(r.unwrap(), 3);
        let s = h.state();
        assert!(s.failing_since.is_none());
        assert!(s.spent > Duration::ZERO);
    }

    #[test]
    fn refusals_are_not_retried() {
        let h = health(Duration::from_secs(3600));
        let mut n = 0;
        let r: Result<(), std::io::Error> = h.retry(
            || "reading config".into(),
            || {
                n += 1;
                Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "denied",
                ))
            },
            |e| transient_cause(e),
            |_| refused(),
        );
        assert!(r.is_err());
        assert_eq!(n, 1);
        assert!(h.gone().is_none());
    }

    #[test]
    fn transient_causes_are_told_from_refusals() {
        let t = |s: &str| transient_text(s, false);
        assert_eq!(
            t("Unexpected (temporary) at write => error sending request: tcp connect error: Connection refused (os error 111)").as_deref(),
            Some("connection refused")
        );
        assert_eq!(
            t("Unexpected at write, context: { response: Parts { status: 503 } }").as_deref(),
            Some("server error 503")
        );
        assert_eq!(
            t("ssh error, source: failed to connect to the remote host: kex_exchange_identification: Connection closed by remote host").as_deref(),
            Some("connection closed by the server")
        );
        assert_eq!(
            t(
                "ssh error: failed to connect to the remote host: user@127.0.0.1: Permission denied (publickey)."
            ),
            None
        );
        assert_eq!(
            t(
                "ssh error: No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking. Host key verification failed."
            ),
            None
        );
        assert_eq!(
            t("Unexpected (persistent) at stat, context: { timeout: 3 } => operation timeout reached").as_deref(),
            Some("timeout (no answer in time)")
        );
        assert_eq!(t("NotFound (permanent) at stat"), None);
        assert_eq!(t("PermissionDenied at write, status: 403"), None);
        assert_eq!(human(Duration::from_secs(125)), "2m 5s");
        assert_eq!(human(Duration::from_secs(45)), "45s");
    }
}
