//! Errors a user can act on. rustic's own `Display` is many lines long (guidance, context,
//! backtrace); this keeps one line of cause and one hint of the fix.

use rustic_core::RusticError;

/// Everything that can go wrong with the repository. Messages name the cause and the fix and
/// never contain the password.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepoError {
    #[error(
        "no repository found at {repository}: check the repository location, or create one with `init`"
    )]
    NotFound { repository: String },

    #[error(
        "a repository already exists at {repository}: open it instead, or choose an empty location for a new one"
    )]
    AlreadyExists { repository: String },

    #[error(
        "wrong password for the repository at {repository}: no key in it opens with this password; check where the password comes from"
    )]
    WrongPassword { repository: String },

    #[error(
        "cannot read {}: check that they exist and that this account may read them",
        paths.join(", ")
    )]
    Unreadable { paths: Vec<String> },

    #[error("no snapshot with id `{id}` in the repository: list them with `snapshots`")]
    SnapshotNotFound { id: String },

    #[error(
        "snapshot id `{id}` is ambiguous ({matches} snapshots start with it): give more characters"
    )]
    AmbiguousSnapshot { id: String, matches: usize },

    #[error("`{path}` is not in snapshot {snapshot}: list its contents to find the right path")]
    PathNotFound { snapshot: String, path: String },

    #[error("{0}")]
    InvalidInput(String),

    #[error(
        "cannot write {path}: {source}; check free space there and that this account may write there"
    )]
    RestoreTarget {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "repository storage failed: {0}; check that the repository is reachable and writable, then retry"
    )]
    Backend(String),

    #[error(
        "the repository at {repository} has no key files (its `keys` folder is missing or empty): it is damaged or not a repository; restore the `keys` folder from a copy of the repository"
    )]
    NoKeys { repository: String },

    #[error(
        "pack file {pack} is missing from the repository, and the set needs it: run `octobackup check` to see every set it hits, then `octobackup forget --set SET` for each of them (the next backup stores that data again)"
    )]
    MissingPack { pack: String },

    #[error(
        "the repository's index is damaged ({detail}): rebuild it with `restic repair index` (restic 0.14: `restic rebuild-index`), then run `octobackup check`"
    )]
    DamagedIndex { detail: String },

    /// A storage server's answer, read down to one cause and its fix (the backend's own
    /// context, with URIs, headers and request ids, is logged under [`STORAGE_LOG`]).
    #[error("{message}")]
    Storage {
        message: String,
        fault: StorageFault,
    },

    /// The storage did not answer within the run's retry budget: the run stops (budget.rs).
    #[error("{}", .0.message())]
    StorageGone(crate::budget::Gone),

    #[error("{0}")]
    Other(String),
}

/// What a storage failure comes down to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageFault {
    /// The server refused the key or the signature.
    Credentials,
    /// No credentials were found at all.
    NoCredentials,
    /// The bucket or container does not exist.
    MissingBucket,
    /// The server's clock and ours disagree (S3 signatures are valid for 15 minutes).
    ClockSkew,
    /// The SSH login failed (user, key or host key).
    Ssh,
    /// The SSH server's host key is not in known_hosts, or differs from the one there.
    HostKey,
    /// The SSH server closed the connection before the login (too many at once, or going down).
    SshDropped,
    /// Nothing answered.
    Unreachable,
    Other,
}

/// Reads the backend's error text (opendal's, through rustic) down to a fault. Only the
/// services' own error codes and the transport's words are matched.
pub(crate) fn classify(text: &str) -> StorageFault {
    let has = |words: &[&str]| words.iter().any(|w| text.contains(w));
    if has(&[
        "RequestTimeTooSkewed",
        "too skewed",
        "Request date header too old",
    ]) {
        StorageFault::ClockSkew
    } else if has(&[
        "NoSuchBucket",
        "ContainerNotFound",
        "The specified bucket does not exist",
        "The specified container does not exist",
    ]) {
        StorageFault::MissingBucket
    } else if has(&["failed to load signing credential", "no valid credential"]) {
        StorageFault::NoCredentials
    } else if has(&[
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "AuthorizationFailure",
        "AuthenticationFailed",
        "AccessDenied",
        "status: 403",
    ]) {
        StorageFault::Credentials
    } else if has(&[
        "host key is known",
        "Host key verification failed",
        "HOST IDENTIFICATION HAS CHANGED",
    ]) {
        StorageFault::HostKey
    } else if has(&["ssh error", "failed to connect to the remote host"])
        && has(&[
            "Connection refused",
            "timed out",
            "No route to host",
            "Could not resolve",
        ])
    {
        StorageFault::Unreachable
    } else if has(&[
        "kex_exchange_identification",
        "Connection closed by remote host",
        "Connection reset by peer",
    ]) {
        StorageFault::SshDropped
    } else if has(&["ssh error", "failed to connect to the remote host"]) {
        StorageFault::Ssh
    } else if has(&[
        "Connection refused",
        "ConnectionRefused",
        "error sending request",
        "dns error",
        "connection reset",
        "timed out",
    ]) {
        StorageFault::Unreachable
    } else {
        StorageFault::Other
    }
}

/// The host an SSH error names (`[127.0.0.1]:2222`, `nas.example.com`), if it does.
fn ssh_host(text: &str) -> Option<String> {
    for marker in [
        "host key is known for ",
        "Host key for ",
        "Offending key for ",
    ] {
        if let Some(at) = text.find(marker) {
            let host: String = text[at + marker.len()..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '"' && *c != '\\')
                .collect();
            if !host.is_empty() {
                return Some(host);
            }
        }
    }
    None
}

/// What to do about an unknown or changed SSH host key, naming the host.
fn host_key_fix(text: &str) -> String {
    let host = ssh_host(text).unwrap_or_else(|| "the SFTP server".into());
    // `[host]:port` is how ssh writes a host on another port than 22.
    let (name, port) = match host.strip_prefix('[').and_then(|h| h.split_once("]:")) {
        Some((h, p)) => (h.to_string(), p.to_string()),
        None => (host.clone(), "22".to_string()),
    };
    if text.contains("HOST IDENTIFICATION HAS CHANGED") {
        format!(
            "the SSH host key of {host} differs from the one in known_hosts: if the server was reinstalled, check its new fingerprint with its administrator, then remove the old key with `ssh-keygen -R '{host}'`; otherwise someone may be in between"
        )
    } else {
        format!(
            "the SSH host key of {host} is not known: check its fingerprint with the server's administrator and add it with `ssh-keyscan -p {port} {name} >> ~/.ssh/known_hosts` (or connect once with `ssh -p {port} {name}`), or set known_hosts_strategy = \"add\" in [repository.options] to trust it on first use"
        )
    }
}

/// The cause and fix for a fault, for the service when known.
fn explain_text(fault: StorageFault, service: Option<&str>, text: &str) -> Option<String> {
    if fault == StorageFault::HostKey {
        return Some(host_key_fix(text));
    }
    explain(fault, service)
}

/// The cause and fix for a fault, for the service when known.
fn explain(fault: StorageFault, service: Option<&str>) -> Option<String> {
    let keys = match service {
        Some("s3") => {
            "the access key (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or repository.options)"
        }
        Some("azblob") => {
            "the storage account and key (AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY, or repository.options)"
        }
        Some("sftp") => "the SSH user and key (repository.options key)",
        _ => "the storage credentials (repository.options or the environment)",
    };
    Some(match fault {
        StorageFault::Credentials => format!(
            "the storage server refused the credentials: check {keys}, and that they may read and write there"
        ),
        StorageFault::NoCredentials => format!("no credentials were found: set {keys}"),
        StorageFault::MissingBucket => match service {
            Some("azblob") => "the container does not exist: create it first (`az storage container create --name CONTAINER`, or the Azure portal), or fix the location".into(),
            _ => "the bucket does not exist: create it first (`aws s3 mb s3://BUCKET --endpoint-url URL`, or the storage console), or fix the location".into(),
        },
        StorageFault::ClockSkew => "the storage server says this machine's clock is off: set the clock right (NTP); signed requests are refused when clocks differ by more than 15 minutes".into(),
        StorageFault::HostKey => return None,
        StorageFault::SshDropped => "the SSH server closed the connection before the login: it may be refusing new connections (too many at once for sshd's MaxStartups, or a limit of its own): lower `connections` in [repository.options], then retry".into(),
        StorageFault::Ssh => "the SSH login failed: check the user, the key (repository.options key) and that the server's host key is known (connect once with `ssh -p PORT USER@HOST`, or set known_hosts_strategy = \"add\")".into(),
        StorageFault::Unreachable => "the storage server did not answer: check the endpoint and port, the network and that the server is running".into(),
        StorageFault::Other => return None,
    })
}

/// An error and its causes, on one line: OpenDAL's `Display` leaves out the source's own
/// source (ssh's stderr: "Connection refused", "Permission denied (publickey)").
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let t = e.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        source = e.source();
    }
    text
}

/// The log target of the backend's own context; programs show it only when asked (`-v`).
pub const STORAGE_LOG: &str = "octobackup_repo::storage";

/// A storage error read down to one line: `doing` (with where), the cause and the fix. The
/// backend's own text is logged under [`STORAGE_LOG`] (`-v`) for whoever needs the details.
pub(crate) fn storage_error(
    doing: &str,
    place: &str,
    service: Option<&str>,
    err: &dyn std::fmt::Display,
) -> RepoError {
    let text = redact_url_secrets(&err.to_string());
    log::warn!(target: STORAGE_LOG, "{doing} ({place}): {text}");
    let fault = classify(&text);
    match explain_text(fault, service, &text) {
        Some(why) => RepoError::Storage {
            message: format!("{doing} ({place}): {why}"),
            fault,
        },
        None => RepoError::Backend(format!("{doing} ({place}): {}", first_line(&text))),
    }
}

/// Query parameters that carry a secret in a storage URL: an Azure SAS token's signature, a
/// presigned S3 URL's signature and session token. A URL in an error (reqwest's, opendal's
/// context) would otherwise print them.
const URL_SECRETS: [&str; 4] = [
    "sig=",
    "X-Amz-Signature=",
    "X-Amz-Security-Token=",
    "X-Amz-Credential=",
];

/// `text` with the value of every [`URL_SECRETS`] parameter, and the password of every
/// `scheme://user:password@host` (restic's `rest:` form, an S3 key pair written into the URL),
/// replaced by `***`.
pub(crate) fn redact_url_secrets(text: &str) -> String {
    let mut out = redact_userinfo_passwords(text);
    for name in URL_SECRETS {
        let mut from = 0;
        while let Some(found) = out[from..].find(name) {
            let start = from + found + name.len();
            let end = out[start..]
                .find(['&', '"', '\'', ')', '>', ' ', '\n'])
                .map_or(out.len(), |n| start + n);
            out.replace_range(start..end, "***");
            from = start + 3;
        }
    }
    out
}

/// Every `scheme://user:password@` in `text` as `scheme://user:***@` (the authority only: an `@`
/// later in the path is not a password).
fn redact_userinfo_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority_end = tail
            .find(['/', ' ', '\n', '"', '\'', ')', '>', '`', ','])
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority
            .rfind('@')
            .and_then(|a| authority[..a].find(':').map(|c| (c, a)))
        {
            Some((colon, at)) => {
                out.push_str(&authority[..=colon]);
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

/// Maps a rustic error to a short message; `doing` says what we were doing ("cannot back up").
pub(crate) fn from_rustic(doing: &str, err: &RusticError) -> RepoError {
    from_rustic_at(doing, None, err)
}

/// As [`from_rustic`], knowing the repository's service (`s3`, `azblob`, `sftp`) for the fix.
pub(crate) fn from_rustic_at(doing: &str, service: Option<&str>, err: &RusticError) -> RepoError {
    if let Some(pack) = missing_pack(err) {
        return RepoError::MissingPack { pack };
    }
    if let Some(detail) = index_file(err) {
        return RepoError::DamagedIndex { detail };
    }
    let full = format!("{} {} {err:?}", err.display_log(), chain(err));
    let fault = classify(&full);
    if let Some(why) = explain_text(fault, service, &full) {
        log::warn!(
            target: STORAGE_LOG,
            "{doing}: {}",
            redact_url_secrets(&err.display_log())
        );
        return RepoError::Storage {
            message: format!("{doing}: {why}"),
            fault,
        };
    }
    let (kind, text) = summarize(err);
    // A nested rustic error's text carries its own guidance and backtrace: keep one line.
    let message = one_line(&redact_url_secrets(&format!("{doing}: {text}")));
    match kind.as_str() {
        "the backend" | "input/output operations" => RepoError::Backend(message),
        _ => RepoError::Other(message),
    }
}

/// `data/ab/abcd…` when `err` says a pack file is not there (deleted, lost in a copy).
fn missing_pack(err: &RusticError) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    let mut not_found = false;
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            not_found |= io.kind() == std::io::ErrorKind::NotFound;
        }
        source = e.source();
    }
    if !not_found {
        return None;
    }
    // The backend names the file it could not open: `<repository>/data/ab/<64 hex digits>`.
    let text = err.to_string();
    let normalized = text.replace('\\', "/");
    let start = normalized.find("/data/")?;
    let rest = &normalized[start + 1..];
    let name: String = rest
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || *c == '/' || c.is_ascii_alphabetic())
        .collect();
    let id = name.rsplit('/').next()?;
    (id.len() == 64 && id.chars().all(|c| c.is_ascii_hexdigit())).then(|| name.clone())
}

/// `index file 1a2b3c4d cannot be read: ...` when `err` is rustic failing on an index file.
fn index_file(err: &RusticError) -> Option<String> {
    let text = err.to_string();
    let at = text.find("error processing Index:")?;
    let id: String = text[at + "error processing Index:".len()..]
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect();
    let cause = one_line(&text[at..]);
    let cause = cause.split_once(": ").map_or("", |(_, c)| c);
    Some(format!("index file index/{id}... cannot be read: {cause}"))
}

/// The `check` finding for an index file rustic cannot read, with the way back.
pub(crate) fn damaged_index(err: &RusticError) -> Option<String> {
    index_file(err).map(|detail| {
        format!(
            "{detail}; rebuild the index with `restic repair index` (restic 0.14: `restic rebuild-index`), then run `check` again"
        )
    })
}

/// Splits rustic's one-line log form `Error: <guidance> (kind: related to <kind>[, code: ..])
/// [: caused by: <cause>]` into the kind and `<guidance>: <cause>`.
pub(crate) fn summarize(err: &RusticError) -> (String, String) {
    let line = err.display_log();
    let line = line.strip_prefix("Error: ").unwrap_or(&line);
    let Some((guidance, rest)) = line.split_once(" (kind: related to ") else {
        return (String::new(), line.to_string());
    };
    let (kind, cause) = match rest.split_once(')') {
        Some((kind, tail)) => (kind, tail.strip_prefix(": caused by: ").unwrap_or("")),
        None => (rest, ""),
    };
    let kind = kind.split(", code:").next().unwrap_or(kind).to_string();
    let guidance = guidance.trim_end_matches(['.', ' ']);
    let text = if cause.is_empty() {
        guidance.to_string()
    } else {
        format!("{guidance}: {cause}")
    };
    (kind, text)
}

/// rustic's findings can embed a whole `RusticError` (guidance, context, backtrace over many
/// lines): keep the messages, one line.
pub(crate) fn one_line(text: &str) -> String {
    let text = text.split("Backtrace:").next().unwrap_or(text);
    let mut parts: Vec<&str> = Vec::new();
    for line in text.lines().map(str::trim) {
        // "`rustic_core` experienced an error related to `...`." says nothing to a user.
        let line = match line.find("`rustic_core` experienced an error") {
            Some(i) => line[..i].trim_end().trim_end_matches(':').trim_end(),
            None => line,
        };
        let noise = line.is_empty()
            || line.starts_with("Some additional details")
            || line.starts_with("For more information")
            || line.starts_with("- ")
            || matches!(line, "Message:" | "Caused by:" | "Context:");
        let line = line.trim_end_matches(':').trim_end();
        if !noise && !parts.contains(&line) {
            parts.push(line);
        }
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustic_core::ErrorKind;

    #[test]
    fn rustic_errors_become_one_line() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "access denied");
        let err = RusticError::with_source(
            ErrorKind::Backend,
            "Failed to write `{path}`. Please check.",
            io,
        )
        .attach_context("path", "/r/config");
        let mapped = from_rustic("cannot save", &err);
        let text = mapped.to_string();
        assert!(matches!(mapped, RepoError::Backend(_)), "{mapped:?}");
        assert!(
            text.contains("cannot save: Failed to write `/r/config`. Please check: access denied"),
            "{text}"
        );
        assert!(!text.contains('\n'), "{text}");
        assert!(!text.contains("Backtrace"), "{text}");
    }

    #[test]
    fn secrets_in_storage_urls_are_redacted() {
        let text = "error sending request for url (https://a.blob.core.windows.net/c?restype=container&sv=2022-11-02&sig=S3CRET%2Bx&se=2030): refused; https://b/k?X-Amz-Signature=abc123&X-Amz-Security-Token=tok\n";
        let r = redact_url_secrets(text);
        for secret in ["S3CRET", "abc123", "tok"] {
            assert!(!r.contains(secret), "{r}");
        }
        assert!(r.contains("sig=***&se=2030"), "{r}");
        assert!(r.contains("restype=container"), "{r}");
        let r = redact_url_secrets(
            "rest:https://backup:P4ss@host:8000/ and s3://KEY:SECRET@minio/bucket, https://host/a@b:c",
        );
        for secret in ["P4ss", "SECRET"] {
            assert!(!r.contains(secret), "{r}");
        }
        assert!(r.contains("https://backup:***@host:8000/"), "{r}");
        assert!(r.contains("s3://KEY:***@minio/bucket"), "{r}");
        assert!(r.contains("https://host/a@b:c"), "{r}");
    }

    #[test]
    fn storage_answers_become_a_cause_and_a_fix() {
        let cases = [
            (
                r#"PermissionDenied (permanent) at list, context: { response: Parts { status: 403 } } => S3Error { code: "SignatureDoesNotMatch", request_id: "X" }"#,
                StorageFault::Credentials,
            ),
            (
                r#"stat failed, context: { response: Parts { status: 403, headers: {"x-ms-error-code": "AuthorizationFailure"} } }"#,
                StorageFault::Credentials,
            ),
            (
                r#"NotFound at list => S3Error { code: "NoSuchBucket" }"#,
                StorageFault::MissingBucket,
            ),
            (
                "ContainerNotFound: The specified container does not exist.",
                StorageFault::MissingBucket,
            ),
            (
                "failed to load signing credential",
                StorageFault::NoCredentials,
            ),
            (
                "RequestTimeTooSkewed: The difference between the request time and the server's time is too large",
                StorageFault::ClockSkew,
            ),
            (
                "Unexpected (temporary) at stat => ssh error, source: failed to connect to the remote host",
                StorageFault::Ssh,
            ),
            (
                "error sending request: client error (Connect): tcp connect error: Connection refused (os error 111)",
                StorageFault::Unreachable,
            ),
            (
                "Failed to write `/r/config`: Permission denied (os error 13)",
                StorageFault::Other,
            ),
        ];
        for (text, fault) in cases {
            assert_eq!(classify(text), fault, "{text}");
        }
        let err = storage_error(
            "cannot open the repository s3://h/b",
            "S3 bucket `b` at https://h",
            Some("s3"),
            &cases[0].0,
        );
        let text = err.to_string();
        assert!(matches!(
            err,
            RepoError::Storage {
                fault: StorageFault::Credentials,
                ..
            }
        ));
        assert!(text.contains("refused the credentials"), "{text}");
        assert!(text.contains("AWS_SECRET_ACCESS_KEY"), "{text}");
        assert!(
            !text.contains("request_id") && !text.contains("403"),
            "{text}"
        );
        let err = storage_error(
            "cannot open",
            "Azure container `c`",
            Some("azblob"),
            &cases[3].0,
        );
        assert!(
            err.to_string().contains("az storage container create"),
            "{err}"
        );
        // A local folder's refusal is not about storage credentials.
        let err = storage_error("cannot save", "/r", None, &cases[8].0);
        assert!(matches!(err, RepoError::Backend(_)), "{err:?}");
    }

    #[test]
    fn an_unknown_ssh_host_key_names_the_host_and_the_fix() {
        let text = "Unexpected at stat => ssh error, source: failed to connect to the remote host: No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\r\nHost key verification failed.";
        assert_eq!(classify(text), StorageFault::HostKey);
        let e = storage_error(
            "cannot open the repository",
            "SFTP folder /r on ssh://127.0.0.1:2222",
            Some("sftp"),
            &text,
        )
        .to_string();
        for part in [
            "host key of [127.0.0.1]:2222 is not known",
            "ssh-keyscan -p 2222 127.0.0.1 >> ~/.ssh/known_hosts",
            "known_hosts_strategy = \"add\"",
        ] {
            assert!(e.contains(part), "`{part}` missing: {e}");
        }
        let changed = "ssh error: @@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@ ... Offending key for nas.example.com in /root/.ssh/known_hosts:3 Host key verification failed.";
        let e = storage_error("x", "y", Some("sftp"), &changed).to_string();
        assert!(e.contains("host key of nas.example.com differs"), "{e}");
        assert!(e.contains("ssh-keygen -R 'nas.example.com'"), "{e}");
    }

    #[test]
    fn ssh_connections_that_fail_before_the_login_are_not_called_a_wrong_key() {
        assert_eq!(
            classify(
                "Unexpected at stat => ssh error: failed to connect to the remote host: kex_exchange_identification: Connection closed by remote host"
            ),
            StorageFault::SshDropped
        );
        assert_eq!(
            classify(
                "ssh error: failed to connect to the remote host: ssh: connect to host 127.0.0.1 port 2222: Connection refused"
            ),
            StorageFault::Unreachable
        );
        assert_eq!(
            classify(
                "ssh error: failed to connect to the remote host: obk@127.0.0.1: Permission denied (publickey)."
            ),
            StorageFault::Ssh
        );
        let e = storage_error(
            "cannot read config",
            "SFTP folder /r on ssh://h",
            Some("sftp"),
            &"ssh error: kex_exchange_identification: Connection closed by remote host",
        )
        .to_string();
        assert!(e.contains("lower `connections`"), "{e}");
    }

    #[test]
    fn a_lost_pack_file_is_named_with_the_way_back() {
        let pack = "41e9e9b29736432ada28b00b3d3e5de1c1f61cdd78f76e3aaf67b5e38d1b6d7a";
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let err = RusticError::with_source(
            ErrorKind::Backend,
            "Failed to open the file `{path}`. Please check the file and try again.",
            io,
        )
        .attach_context("path", format!("/srv/repo/data/41/{pack}"));
        let mapped = from_rustic("cannot restore", &err);
        assert!(
            matches!(&mapped, RepoError::MissingPack { pack: p } if *p == format!("data/41/{pack}")),
            "{mapped:?}"
        );
        let text = mapped.to_string();
        assert!(text.contains("octobackup check") && text.contains("forget --set"));
        // Another file missing (a snapshot, the config) is not a lost pack.
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let err = RusticError::with_source(ErrorKind::Backend, "Failed to open `{path}`", io)
            .attach_context("path", format!("/srv/repo/snapshots/{pack}"));
        assert!(!matches!(
            from_rustic("x", &err),
            RepoError::MissingPack { .. }
        ));
    }

    #[test]
    fn a_damaged_index_file_says_how_to_rebuild_it() {
        let inner = RusticError::new(ErrorKind::Cryptography, "Data decryption failed");
        let err = RusticError::with_source(
            ErrorKind::Cryptography,
            "error processing {tpe}:{id}",
            inner,
        )
        .attach_context("tpe", "Index")
        .attach_context("id", "f5d0c62e");
        let mapped = from_rustic("cannot restore", &err);
        let text = mapped.to_string();
        assert!(matches!(mapped, RepoError::DamagedIndex { .. }), "{text}");
        assert!(text.contains("index/f5d0c62e"), "{text}");
        assert!(text.contains("restic repair index"), "{text}");
        assert!(!text.contains('\n'), "{text}");
        let finding = damaged_index(&err).unwrap();
        assert!(finding.contains("restic repair index"), "{finding}");
        // A pack's decryption error is not the index's.
        let other = RusticError::new(ErrorKind::Cryptography, "error processing Pack:1234abcd");
        assert!(damaged_index(&other).is_none());
    }

    #[test]
    fn other_kinds_are_not_storage_errors() {
        let err = RusticError::new(ErrorKind::InvalidInput, "bad thing");
        let mapped = from_rustic("cannot list", &err);
        assert!(
            matches!(mapped, RepoError::Other(ref m) if m == "cannot list: bad thing"),
            "{mapped:?}"
        );
    }
}
