//! S3 requests octobackup signs itself, beside OpenDAL (which has no call for them):
//! CreateBucket, the bucket's Object Lock configuration (GetObjectLockConfiguration), an
//! object's retention (the `x-amz-object-lock-*` headers of HeadObject), and a delete probe that
//! tells credentials that may not delete (an append-only bucket policy). Signed with AWS
//! Signature Version 4 (AWS's "Signature Version 4 signing process": canonical request, string
//! to sign, derived key), path style, as OpenDAL addresses the bucket.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::error::RepoError;
use zeroize::Zeroizing;

/// One S3 bucket at an endpoint, with the key that signs the requests.
#[derive(Clone)]
pub struct S3Client {
    scheme: String,
    host: String,
    /// The endpoint's own path (before the bucket), without a trailing `/`.
    base: String,
    bucket: String,
    region: String,
    key_id: String,
    secret: Zeroizing<String>,
    token: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for S3Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Client")
            .field("host", &self.host)
            .field("bucket", &self.bucket)
            .finish_non_exhaustive()
    }
}

/// A server's answer.
#[derive(Debug, Clone)]
pub struct S3Response {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl S3Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The S3 error code of the body (`AccessDenied`, `NoSuchBucket`...), if any.
    pub fn code(&self) -> Option<&str> {
        xml_tag(&self.body, "Code")
    }

    /// The answer as one text, for the error classifier (status, code, message).
    pub fn describe(&self) -> String {
        format!("status: {} {}", self.status, self.body)
    }
}

/// A bucket's Object Lock default retention (`Rule/DefaultRetention`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ObjectLock {
    /// `GOVERNANCE` or `COMPLIANCE`.
    pub mode: String,
    /// The default retention in days (`Years` counted as 365 days each); `None` when the bucket
    /// has Object Lock enabled but no default retention (objects are then only locked when a
    /// writer asks, which octobackup does not).
    pub days: Option<u32>,
}

impl ObjectLock {
    pub fn describe(&self) -> String {
        match self.days {
            Some(d) => format!("{} mode, {d} day(s) default retention", self.mode),
            None => "enabled, no default retention".into(),
        }
    }
}

/// An object's own lock: the mode and the date before which its version cannot be deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub mode: String,
    pub until: DateTime<Utc>,
}

/// `<tag>value</tag>` in an XML text (the S3 answers read here are flat and small).
pub(crate) fn xml_tag<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}

fn uri_encode(s: &str, keep_slash: bool) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b'/' if keep_slash => "/".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A request ready to send.
#[derive(Clone)]
pub(crate) struct Prepared {
    pub(crate) method: String,
    pub(crate) url: String,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl S3Client {
    /// A client for `bucket` at `endpoint` (`http://host:port` or `https://host`).
    pub fn new(
        endpoint: &str,
        bucket: &str,
        region: &str,
        key_id: &str,
        secret: &str,
    ) -> Result<Self, String> {
        let (scheme, host, base) = split_endpoint(endpoint)?;
        Ok(S3Client {
            scheme: scheme.into(),
            host: host.into(),
            base: base.into(),
            bucket: bucket.into(),
            region: if region.is_empty() {
                "us-east-1".into()
            } else {
                region.into()
            },
            key_id: key_id.into(),
            secret: Zeroizing::new(secret.into()),
            token: None,
        })
    }

    /// A client from a repository's resolved OpenDAL options; the error names what is missing.
    pub(crate) fn from_options(options: &BTreeMap<String, String>) -> Result<Self, String> {
        let get = |k: &str| options.get(k).filter(|v| !v.is_empty());
        let endpoint = get("endpoint").ok_or("no endpoint is known")?;
        let bucket = get("bucket").ok_or("no bucket is named")?;
        let (Some(key_id), Some(secret)) = (get("access_key_id"), get("secret_access_key")) else {
            return Err(
                "no access key is set (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)".into(),
            );
        };
        let region = get("region").map_or("us-east-1", String::as_str);
        let mut c = S3Client::new(endpoint, bucket, region, key_id, secret)?;
        c.token = get("session_token").map(|t| Zeroizing::new(t.clone()));
        Ok(c)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub(crate) fn region(&self) -> &str {
        &self.region
    }

    /// A signed request on the bucket (`key` empty) or on one object, with `query` parameters
    /// (a sub-resource such as `object-lock` has an empty value) and extra headers.
    pub(crate) fn prepare(
        &self,
        method: &str,
        key: &str,
        query: &[(&str, &str)],
        extra: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Prepared {
        self.prepare_at(method, key, query, extra, body, Utc::now())
    }

    fn prepare_at(
        &self,
        method: &str,
        key: &str,
        query: &[(&str, &str)],
        extra: &[(&str, &str)],
        body: Vec<u8>,
        now: DateTime<Utc>,
    ) -> Prepared {
        let amz_date = now.format("%Y%m%dT%H%M%SZ").to_string();
        let day = now.format("%Y%m%d").to_string();
        let payload = sha256_hex(&body);
        let mut path = self.base.clone();
        if !self.bucket.is_empty() {
            path.push('/');
            path.push_str(&uri_encode(&self.bucket, false));
        }
        if !key.is_empty() {
            path.push('/');
            path.push_str(&uri_encode(key.trim_start_matches('/'), true));
        }
        let mut q: Vec<(String, String)> = query
            .iter()
            .map(|(k, v)| (uri_encode(k, false), uri_encode(v, false)))
            .collect();
        q.sort();
        let query_text = q
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let mut headers: Vec<(String, String)> = vec![
            ("host".into(), self.host.clone()),
            ("x-amz-content-sha256".into(), payload.clone()),
            ("x-amz-date".into(), amz_date.clone()),
        ];
        if let Some(token) = &self.token {
            headers.push(("x-amz-security-token".into(), token.to_string()));
        }
        for (k, v) in extra {
            headers.push((k.to_ascii_lowercase(), v.to_string()));
        }
        headers.sort();
        let signed = headers
            .iter()
            .map(|(k, _)| k.as_str())
            .collect::<Vec<_>>()
            .join(";");
        let canonical_headers: String = headers
            .iter()
            .map(|(k, v)| format!("{k}:{}\n", v.trim()))
            .collect();
        if path.is_empty() {
            path.push('/');
        }
        let canonical =
            format!("{method}\n{path}\n{query_text}\n{canonical_headers}\n{signed}\n{payload}");
        let scope = format!("{day}/{}/s3/aws4_request", self.region);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            sha256_hex(canonical.as_bytes())
        );
        let mut signing = hmac_sha256(format!("AWS4{}", *self.secret).as_bytes(), day.as_bytes());
        for part in [self.region.as_str(), "s3", "aws4_request"] {
            signing = hmac_sha256(&signing, part.as_bytes());
        }
        let signature = hex::encode(hmac_sha256(&signing, to_sign.as_bytes()));
        headers.retain(|(k, _)| k != "host");
        headers.push((
            "authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed}, Signature={signature}",
                self.key_id
            ),
        ));
        let mut url = format!("{}://{}{path}", self.scheme, self.host);
        if !query_text.is_empty() {
            url.push('?');
            url.push_str(&query_text);
        }
        Prepared {
            method: method.into(),
            url,
            headers,
            body,
        }
    }

    /// Sends a signed request and waits for the answer (blocking, on a thread of its own, so
    /// it may be called from any context). `Err` is the transport's error (nothing answered).
    pub fn send(
        &self,
        method: &str,
        key: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Result<S3Response, String> {
        send(self.prepare(method, key, query, headers, body))
    }

    /// CreateBucket, with Object Lock enabled when `lock` says so (which also turns on
    /// versioning, as S3 requires). A bucket that already exists is fine.
    pub fn create_bucket(&self, lock: Option<&ObjectLock>) -> Result<(), String> {
        let extra: &[(&str, &str)] = if lock.is_some() {
            &[("x-amz-bucket-object-lock-enabled", "true")]
        } else {
            &[]
        };
        let r = self.send("PUT", "", &[], extra, Vec::new())?;
        if r.status >= 300 && r.status != 409 {
            return Err(r.describe());
        }
        if let Some(l) = lock.filter(|l| l.days.is_some()) {
            let body = format!(
                "<ObjectLockConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>{}</Mode><Days>{}</Days></DefaultRetention></Rule></ObjectLockConfiguration>",
                l.mode,
                l.days.unwrap_or_default()
            );
            let r = self.send("PUT", "", &[("object-lock", "")], &[], body.into_bytes())?;
            if r.status >= 300 {
                return Err(r.describe());
            }
        }
        Ok(())
    }

    /// The bucket's Object Lock configuration (GetObjectLockConfiguration): `Ok(None)` when it
    /// has none (`ObjectLockConfigurationNotFoundError`); `Err` with the answer otherwise.
    pub fn object_lock(&self) -> Result<Option<ObjectLock>, S3Answer> {
        let r = self
            .send("GET", "", &[("object-lock", "")], &[], Vec::new())
            .map_err(S3Answer::Transport)?;
        // 404 ObjectLockConfigurationNotFoundError: none (servers without Object Lock answer
        // 404 or 501 too).
        if r.status == 404 || r.status == 501 {
            return Ok(None);
        }
        if r.status >= 300 {
            return Err(S3Answer::Refused(r));
        }
        Ok(parse_object_lock(&r.body))
    }

    /// An object's retention (HeadObject's `x-amz-object-lock-mode` and
    /// `x-amz-object-lock-retain-until-date`); `None` when it has none or does not exist.
    pub fn retention(&self, key: &str) -> Result<Option<Retention>, S3Answer> {
        let r = self
            .send("HEAD", key, &[], &[], Vec::new())
            .map_err(S3Answer::Transport)?;
        if r.status == 404 {
            return Ok(None);
        }
        if r.status >= 300 {
            return Err(S3Answer::Refused(r));
        }
        let (Some(mode), Some(until)) = (
            r.header("x-amz-object-lock-mode"),
            r.header("x-amz-object-lock-retain-until-date"),
        ) else {
            return Ok(None);
        };
        let until = DateTime::parse_from_rfc3339(until)
            .map_err(|_| S3Answer::Refused(r.clone()))?
            .with_timezone(&Utc);
        Ok(Some(Retention {
            mode: mode.to_string(),
            until,
        }))
    }

    /// May these credentials delete in the bucket? A DeleteObject of a key that does not
    /// exist: S3 answers 204 when deleting is allowed (a bucket policy is evaluated before the
    /// key is looked up), 403 when a policy or the key's rights deny it. In a versioned bucket
    /// (every Object Lock bucket is one) that DeleteObject adds a delete marker, answered with
    /// `x-amz-delete-marker: true` and its `x-amz-version-id`; the marker is then removed by
    /// deleting that version, which leaves no trace (a delete marker has no lock of its own:
    /// https://docs.aws.amazon.com/AmazonS3/latest/userguide/ManagingDelMarkers.html).
    pub fn may_delete(&self, probe_key: &str) -> Result<bool, S3Answer> {
        let r = self
            .send("DELETE", probe_key, &[], &[], Vec::new())
            .map_err(S3Answer::Transport)?;
        match r.status {
            s if s < 300 || s == 404 => {
                if r.header("x-amz-delete-marker") == Some("true")
                    && let Some(version) = r.header("x-amz-version-id")
                {
                    let gone = self
                        .send(
                            "DELETE",
                            probe_key,
                            &[("versionId", version)],
                            &[],
                            Vec::new(),
                        )
                        .map_err(S3Answer::Transport)?;
                    if gone.status >= 300 && gone.status != 404 {
                        log::warn!(
                            "the delete probe left a delete marker on {probe_key} (version {version}): {}",
                            gone.describe()
                        );
                    }
                }
                Ok(true)
            }
            403 if r.code() == Some("AccessDenied") => Ok(false),
            _ => Err(S3Answer::Refused(r)),
        }
    }
}

/// Why an S3 call did not give an answer to use.
#[derive(Debug, Clone)]
pub enum S3Answer {
    /// Nothing answered (the transport's error).
    Transport(String),
    /// The server refused.
    Refused(S3Response),
}

impl S3Answer {
    pub fn text(&self) -> String {
        match self {
            S3Answer::Transport(t) => t.clone(),
            S3Answer::Refused(r) => r.describe(),
        }
    }
}

impl crate::Storage {
    /// The S3 client of an S3 repository, the repository's prefix in the bucket and its
    /// description; `None` for other backends.
    fn s3(&self) -> Result<Option<(S3Client, String, String)>, RepoError> {
        let (location, options) = self.resolved()?;
        if location.service() != Some("s3") {
            return Ok(None);
        }
        let describe = crate::config::describe(&location, &options);
        let client = S3Client::from_options(&options).map_err(|missing| {
            RepoError::InvalidInput(format!(
                "cannot reach {describe} for its Object Lock settings: {missing}"
            ))
        })?;
        let root = options
            .get("root")
            .map_or("", |r| r.trim_matches('/'))
            .to_string();
        Ok(Some((client, root, describe)))
    }

    fn s3_error(doing: &str, describe: &str, answer: &S3Answer) -> RepoError {
        crate::error::storage_error(doing, describe, Some("s3"), &answer.text())
    }

    /// The Object Lock default retention of an S3 repository's bucket; `None` when it has
    /// none, and for other backends.
    pub fn object_lock(&self) -> Result<Option<ObjectLock>, RepoError> {
        let Some((client, _, describe)) = self.s3()? else {
            return Ok(None);
        };
        client.object_lock().map_err(|a| {
            Self::s3_error(
                "cannot read the bucket's Object Lock configuration",
                &describe,
                &a,
            )
        })
    }

    /// The lock of the object at `path` (relative to the repository's root): until when its
    /// current version cannot be deleted. `None` when unlocked, and for other backends.
    pub fn retention(&self, path: &str) -> Result<Option<Retention>, RepoError> {
        let Some((client, root, describe)) = self.s3()? else {
            return Ok(None);
        };
        let key = join_key(&root, path);
        client
            .retention(&key)
            .map_err(|a| Self::s3_error(&format!("cannot read the lock of {path}"), &describe, &a))
    }

    /// May the repository's credentials delete objects? Always for other backends than S3;
    /// on S3, a DeleteObject of a key that is not there (see [`S3Client::may_delete`]).
    pub fn may_delete(&self) -> Result<bool, RepoError> {
        let Some((client, root, describe)) = self.s3()? else {
            return Ok(true);
        };
        let key = join_key(&root, "octobackup-delete-probe");
        client
            .may_delete(&key)
            .map_err(|a| Self::s3_error("cannot tell whether deleting is allowed", &describe, &a))
    }
}

/// Where the lock a repository was made with is recorded, beside the repository.
const LOCK_RECORD: &str = "octobackup-object-lock.txt";

/// A recorded Object Lock: what the bucket had, and when that was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedLock {
    pub lock: ObjectLock,
    pub recorded: String,
}

impl crate::Storage {
    /// Reads the bucket's Object Lock and records it beside the repository (`init` does), so
    /// that a lock taken away later is noticed (`doctor`). `None`: no lock, nothing recorded.
    pub fn record_object_lock(&self) -> Result<Option<ObjectLock>, RepoError> {
        let Some(lock) = self.object_lock()? else {
            return Ok(None);
        };
        let text = format!(
            "mode = {}\ndays = {}\nrecorded = {}\n",
            lock.mode,
            lock.days
                .map_or_else(|| "none".to_string(), |d| d.to_string()),
            Utc::now().format("%Y-%m-%d %H:%M UTC")
        );
        self.put(LOCK_RECORD, text.into_bytes())?;
        Ok(Some(lock))
    }

    /// The lock recorded when the repository was made, if any.
    pub fn recorded_object_lock(&self) -> Result<Option<RecordedLock>, RepoError> {
        if self.s3()?.is_none() {
            return Ok(None);
        }
        let Some(bytes) = self.get(LOCK_RECORD)? else {
            return Ok(None);
        };
        Ok(parse_record(&String::from_utf8_lossy(&bytes)))
    }
}

fn parse_record(text: &str) -> Option<RecordedLock> {
    let field = |name: &str| {
        text.lines()
            .filter_map(|l| l.split_once('='))
            .find(|(k, _)| k.trim() == name)
            .map(|(_, v)| v.trim().to_string())
    };
    Some(RecordedLock {
        lock: ObjectLock {
            mode: field("mode")?,
            days: field("days").and_then(|d| d.parse().ok()),
        },
        recorded: field("recorded").unwrap_or_default(),
    })
}

/// What is wrong when the bucket's lock now is weaker than the one recorded: taken away, or a
/// shorter default retention. `None` when it is as strong.
pub fn weakened(recorded: &ObjectLock, now: Option<&ObjectLock>) -> Option<String> {
    match (recorded.days, now) {
        (_, None) => Some("the bucket has no Object Lock now".into()),
        (Some(was), Some(n)) if n.days.is_none_or(|d| d < was) => {
            Some(format!("the bucket's Object Lock is now {}", n.describe()))
        }
        _ => None,
    }
}

fn join_key(root: &str, path: &str) -> String {
    let path = path.trim_start_matches('/');
    if root.is_empty() {
        path.to_string()
    } else {
        format!("{root}/{path}")
    }
}

pub(crate) fn parse_object_lock(xml: &str) -> Option<ObjectLock> {
    if xml_tag(xml, "ObjectLockEnabled") != Some("Enabled") {
        return None;
    }
    let mode = xml_tag(xml, "Mode").unwrap_or("").to_string();
    let days = xml_tag(xml, "Days")
        .and_then(|d| d.trim().parse::<u32>().ok())
        .or_else(|| {
            xml_tag(xml, "Years")
                .and_then(|y| y.trim().parse::<u32>().ok())
                .map(|y| y.saturating_mul(365))
        });
    Some(ObjectLock {
        mode: if mode.is_empty() { "NONE".into() } else { mode },
        days: days.filter(|_| xml.contains("<DefaultRetention>")),
    })
}

/// Sends a request, trying again (up to four tries, 3.5 s of waits) when nothing answered or
/// the server answered that it is busy (500, 502, 503 SlowDown, 504): AWS asks clients to retry
/// these (https://docs.aws.amazon.com/AmazonS3/latest/API/ErrorResponses.html), and a loaded
/// Ceph RGW answers them too. Any other answer, a refusal included, is returned at once, and
/// so is a failure after 10 s of trying: a server that hangs is not waited on four times.
pub(crate) fn send(p: Prepared) -> Result<S3Response, String> {
    let started = std::time::Instant::now();
    let mut wait = std::time::Duration::from_millis(500);
    let mut tries = 1;
    loop {
        let answer = send_once(p.clone());
        let busy = match &answer {
            Err(_) => true,
            Ok(r) => matches!(r.status, 500 | 502 | 503 | 504),
        };
        if !busy || tries == 4 || started.elapsed() > std::time::Duration::from_secs(10) {
            return answer;
        }
        std::thread::sleep(wait);
        wait *= 2;
        tries += 1;
    }
}

fn send_once(p: Prepared) -> Result<S3Response, String> {
    std::thread::scope(|s| {
        s.spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async move {
                let client = reqwest::Client::builder()
                    .timeout(std::time::Duration::from_secs(60))
                    .build()
                    .map_err(|e| crate::error::chain(&e))?;
                let method =
                    reqwest::Method::from_bytes(p.method.as_bytes()).map_err(|e| e.to_string())?;
                let mut req = client.request(method, &p.url).body(p.body);
                for (k, v) in &p.headers {
                    req = req.header(k.as_str(), v.as_str());
                }
                let resp = req.send().await.map_err(|e| crate::error::chain(&e))?;
                let status = resp.status().as_u16();
                let headers = resp
                    .headers()
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_ascii_lowercase(),
                            v.to_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect();
                Ok(S3Response {
                    status,
                    headers,
                    body: resp.text().await.unwrap_or_default(),
                })
            })
        })
        .join()
        .unwrap_or_else(|_| Err("the request failed".into()))
    })
}

pub(crate) fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use hmac::{KeyInit, Mac};
    let mut mac =
        hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

pub(crate) fn sha256_hex(data: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(data))
}

/// `(scheme, authority, path)` of an endpoint URL.
pub(crate) fn split_endpoint(endpoint: &str) -> Result<(&str, &str, &str), String> {
    let (scheme, rest) = endpoint
        .split_once("://")
        .ok_or_else(|| format!("the endpoint `{endpoint}` is not a URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    Ok((scheme, authority, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's published GET Object example ("Signature Calculations for the Authorization
    /// Header: Transferring Payload in a Single Chunk", example key and date): the same
    /// signature, with the Range header and the virtual-host bucket left to the example's form.
    #[test]
    fn signature_matches_aws_example() {
        let c = S3Client::new(
            "https://examplebucket.s3.amazonaws.com",
            "",
            "us-east-1",
            "AKIAIOSFODNN7EXAMPLE",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        )
        .unwrap();
        let now = DateTime::parse_from_rfc3339("2013-05-24T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        // The example signs `/test.txt` on a virtual-host bucket: an empty bucket name and
        // base give that path here.
        let mut c = c;
        c.bucket = String::new();
        let p = c.prepare_at(
            "GET",
            "test.txt",
            &[],
            &[("range", "bytes=0-9")],
            Vec::new(),
            now,
        );
        let auth = &p
            .headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .unwrap()
            .1;
        assert!(
            auth.ends_with(
                "SignedHeaders=host;range;x-amz-content-sha256;x-amz-date, Signature=f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
            ),
            "{auth}"
        );
    }

    #[test]
    fn a_recorded_lock_is_read_back_and_a_weaker_one_is_told() {
        let r = parse_record("mode = COMPLIANCE\ndays = 30\nrecorded = 2026-11-30 01:00 UTC\n")
            .unwrap();
        let lock = ObjectLock {
            mode: "COMPLIANCE".into(),
            days: Some(30),
        };
        assert_eq!(r.lock, lock);
        assert_eq!(r.recorded, "2026-11-30 01:00 UTC");
        assert_eq!(weakened(&lock, Some(&lock)), None);
        let shorter = ObjectLock {
            days: Some(1),
            ..lock.clone()
        };
        assert!(
            weakened(&lock, Some(&shorter))
                .unwrap()
                .contains("1 day(s)")
        );
        assert!(weakened(&lock, None).unwrap().contains("no Object Lock"));
        assert_eq!(parse_record("nothing"), None);
    }

    #[test]
    fn object_lock_configurations_are_read() {
        let g = "<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>GOVERNANCE</Mode><Days>30</Days></DefaultRetention></Rule></ObjectLockConfiguration>";
        assert_eq!(
            parse_object_lock(g),
            Some(ObjectLock {
                mode: "GOVERNANCE".into(),
                days: Some(30)
            })
        );
        let c = "<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled><Rule><DefaultRetention><Mode>COMPLIANCE</Mode><Years>1</Years></DefaultRetention></Rule></ObjectLockConfiguration>";
        assert_eq!(parse_object_lock(c).unwrap().days, Some(365));
        let none = "<ObjectLockConfiguration><ObjectLockEnabled>Enabled</ObjectLockEnabled></ObjectLockConfiguration>";
        assert_eq!(parse_object_lock(none).unwrap().days, None);
        assert_eq!(parse_object_lock("<ObjectLockConfiguration/>"), None);
    }

    #[test]
    fn keys_and_queries_are_encoded_once() {
        let c = S3Client::new("http://127.0.0.1:9000", "b", "", "k", "s").unwrap();
        let p = c.prepare(
            "DELETE",
            "lab/snapshots/a b",
            &[("versionId", "x+y")],
            &[],
            Vec::new(),
        );
        assert_eq!(
            p.url,
            "http://127.0.0.1:9000/b/lab/snapshots/a%20b?versionId=x%2By"
        );
        assert_eq!(c.region(), "us-east-1");
    }
}
