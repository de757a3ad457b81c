//! Plain objects beside a remote repository, through the same OpenDAL service and options as
//! the repository itself: the escrow copies (`octobackup-escrow/<set>/...`) that must be readable
//! without the repository password, and a probe that tells a missing bucket from an empty one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::config::{self, Location};
use crate::error::{RepoError, StorageFault, chain, storage_error};

/// Where a repository is, without its password.
#[derive(Clone)]
pub struct Storage {
    location: String,
    options: BTreeMap<String, String>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl Storage {
    /// The repository at `location` with its backend options, as in the config.
    pub fn new(location: impl Into<String>, options: BTreeMap<String, String>) -> Self {
        Storage {
            location: location.into(),
            options,
        }
    }

    pub fn location(&self) -> &str {
        &self.location
    }

    /// The folder of a local repository; `None` for a remote one.
    pub fn local_folder(&self) -> Option<PathBuf> {
        config::local_folder(&self.location)
    }

    /// The bucket or container and endpoint, for messages (no credentials).
    pub fn describe(&self) -> String {
        match self.resolved() {
            Ok((l, o)) if !l.is_local => config::describe(&l, &o),
            _ => self.location.clone(),
        }
    }

    pub(crate) fn resolved(&self) -> Result<(Location, BTreeMap<String, String>), RepoError> {
        let location = config::location(&self.location)?;
        let options =
            config::resolve_options(&location, &self.options, &|v| std::env::var(v).ok())?;
        Ok((location, options))
    }

    /// Runs `work` with an operator for the remote repository's service, on a runtime of its own
    /// (callers may be on an async runtime's thread, where blocking on another is not allowed).
    fn with_operator<T: Send>(
        &self,
        doing: &str,
        work: impl AsyncFnOnce(opendal::Operator) -> opendal::Result<T> + Send,
    ) -> Result<T, RepoError> {
        let health = crate::budget::known_health(&self.location);
        if let Some(g) = health.as_ref().and_then(|h| h.gone()) {
            return Err(RepoError::StorageGone(g));
        }
        let (location, mut options) = self.resolved()?;
        // Bounded as the repository's own requests are (a server that never answers).
        let timeout = config::set_request_timeout(
            &mut options,
            health.map_or(crate::budget::DEFAULT_RETRY_BUDGET, |h| h.budget()),
        )?;
        config::refuse_sftp_on_windows(&location, &self.location)?;
        let Some(service) = location.service().map(str::to_string) else {
            return Err(RepoError::InvalidInput(format!(
                "{}: plain objects are only kept beside local and opendal repositories",
                crate::error::redact_url_secrets(&self.location)
            )));
        };
        let describe = config::describe(&location, &options);
        std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| RepoError::Other(format!("{doing}: {e}")))?;
                rt.block_on(async {
                    let op = opendal::Operator::via_iter(&service, options)
                        .map_err(|e| storage_error(doing, &describe, Some(&service), &chain(&e)))?
                        .layer(
                            opendal::layers::TimeoutLayer::new()
                                .with_timeout(timeout)
                                .with_io_timeout(timeout),
                        );
                    work(op)
                        .await
                        .map_err(|e| storage_error(doing, &describe, Some(&service), &chain(&e)))
                })
            })
            .join()
            .unwrap_or_else(|_| {
                Err(RepoError::Other(format!(
                    "{doing}: the storage call failed"
                )))
            })
        })
    }

    /// Writes `bytes` at `path` (relative to the repository's root).
    pub fn put(&self, path: &str, bytes: Vec<u8>) -> Result<(), RepoError> {
        let path = path.to_string();
        self.with_operator(
            &format!("cannot write {path} beside the repository"),
            async move |op| op.write(&path, bytes).await.map(|_| ()),
        )
    }

    /// Reads `path`; `None` when it does not exist.
    pub fn get(&self, path: &str) -> Result<Option<Vec<u8>>, RepoError> {
        let owned = path.to_string();
        self.with_operator(
            &format!("cannot read {path} beside the repository"),
            async move |op| match op.read(&owned).await {
                Ok(b) => Ok(Some(b.to_vec())),
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e),
            },
        )
    }

    /// The names directly under `folder` (files and folders, without a trailing `/`).
    pub fn list(&self, folder: &str) -> Result<Vec<String>, RepoError> {
        let folder = format!("{}/", folder.trim_end_matches('/'));
        self.with_operator(
            &format!("cannot list {folder} beside the repository"),
            async move |op| match op.list(&folder).await {
                // Some services (SFTP) list the folder itself too.
                Ok(entries) => Ok(entries
                    .iter()
                    .filter(|e| e.path().trim_start_matches('/') != folder.trim_start_matches('/'))
                    .map(|e| e.name().trim_end_matches('/').to_string())
                    .filter(|n| !n.is_empty())
                    .collect()),
                Err(e) if e.kind() == opendal::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(e),
            },
        )
    }

    /// Removes `folder` and everything under it (nothing to do when it does not exist).
    pub fn remove_all(&self, folder: &str) -> Result<(), RepoError> {
        let folder = format!("{}/", folder.trim_end_matches('/'));
        self.with_operator(
            &format!("cannot remove {folder} beside the repository"),
            async move |op| op.delete_with(&folder).recursive(true).await,
        )
    }

    /// For a remote repository that looks empty: is the bucket or container itself there, and
    /// do the credentials open it? `Ok` when it is (or when this cannot tell).
    pub(crate) fn probe(&self) -> Result<(), RepoError> {
        match self.resolved() {
            Ok((l, _)) if matches!(l.service(), Some("s3" | "azblob")) => {}
            _ => return Ok(()),
        }
        let result = self.with_operator(
            &format!("cannot open the repository {}", self.location),
            async move |op| op.list_with("/").limit(1).await.map(|_| ()),
        );
        match result {
            Err(RepoError::Storage { fault, .. }) if fault != StorageFault::Other => result,
            _ => Ok(()),
        }
    }
}

impl Storage {
    /// Creates the bucket (S3) or container (Azure) the location names, as restic's `init` does:
    /// an S3 `CreateBucket` signed with SigV4, an Azure `Create Container` signed with the account
    /// key (or a SAS). `Ok(false)` when this backend has none to create.
    pub fn create_bucket(&self) -> Result<bool, RepoError> {
        let (location, options) = self.resolved()?;
        let describe = config::describe(&location, &options);
        let service = location.service().map(str::to_string);
        let request = match service.as_deref() {
            Some("s3") => s3_create_bucket(&options),
            Some("azblob") => azure_create_container(&options),
            _ => return Ok(false),
        }
        .map_err(|missing| {
            RepoError::InvalidInput(format!(
                "cannot create the bucket or container of {} ({describe}): {missing}",
                self.location
            ))
        })?;
        let doing = format!("cannot create {describe}");
        let (status, body) = std::thread::scope(|s| {
            s.spawn(|| {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| RepoError::Other(format!("{doing}: {e}")))?;
                rt.block_on(async {
                    // A server that accepts and never answers fails the request, not the run.
                    let client = reqwest::Client::builder()
                        .connect_timeout(std::time::Duration::from_secs(20))
                        .timeout(crate::budget::MAX_REQUEST_TIMEOUT)
                        .build()
                        .map_err(|e| RepoError::Other(format!("{doing}: {e}")))?;
                    let mut req = client.put(&request.url).body(request.body.clone());
                    for (k, v) in &request.headers {
                        req = req.header(k.as_str(), v.as_str());
                    }
                    let resp = req.send().await.map_err(|e| {
                        storage_error(&doing, &describe, service.as_deref(), &chain(&e))
                    })?;
                    let status = resp.status().as_u16();
                    Ok((status, resp.text().await.unwrap_or_default()))
                })
            })
            .join()
            .unwrap_or_else(|_| Err(RepoError::Other(format!("{doing}: the request failed"))))
        })?;
        // 409: it exists already (BucketAlreadyOwnedByYou, ContainerAlreadyExists): fine.
        if status < 300 || status == 409 {
            return Ok(true);
        }
        let text = format!("status: {status} {body}");
        Err(storage_error(&doing, &describe, service.as_deref(), &text))
    }
}

use crate::s3::{Prepared, hmac_sha256, split_endpoint};

/// S3 `CreateBucket` (path style), signed with AWS Signature Version 4 (s3.rs).
fn s3_create_bucket(options: &BTreeMap<String, String>) -> Result<Prepared, String> {
    let client = crate::s3::S3Client::from_options(options)?;
    let body = if client.region() == "us-east-1" {
        Vec::new()
    } else {
        format!(
            "<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><LocationConstraint>{}</LocationConstraint></CreateBucketConfiguration>",
            client.region()
        )
        .into_bytes()
    };
    Ok(client.prepare("PUT", "", &[], &[], body))
}

/// Azure `Create Container`, signed with the account key (Microsoft Learn, "Authorize with
/// Shared Key"), or with the SAS token when that is what is given.
fn azure_create_container(options: &BTreeMap<String, String>) -> Result<Prepared, String> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let get = |k: &str| options.get(k).filter(|v| !v.is_empty());
    let endpoint = get("endpoint").ok_or("no endpoint is known")?;
    let container = get("container").ok_or("no container is named")?;
    let url = format!(
        "{}/{container}?restype=container",
        endpoint.trim_end_matches('/')
    );
    if let (None, Some(sas)) = (get("account_key"), get("sas_token")) {
        return Ok(Prepared {
            method: "PUT".into(),
            url: format!("{url}&{}", sas.trim_start_matches('?')),
            headers: vec![("x-ms-version".into(), "2021-08-06".into())],
            body: Vec::new(),
        });
    }
    let (Some(account), Some(key)) = (get("account_name"), get("account_key")) else {
        return Err(
            "no account key is set (AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY, or a SAS)".into(),
        );
    };
    let (_, _, base) = split_endpoint(endpoint)?;
    let date = chrono::Utc::now()
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    let version = "2021-08-06";
    let to_sign = format!(
        "PUT\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:{date}\nx-ms-version:{version}\n/{account}{base}/{container}\nrestype:container"
    );
    let key = b64
        .decode(key.trim())
        .map_err(|_| "the account key is not base64".to_string())?;
    let signature = b64.encode(hmac_sha256(&key, to_sign.as_bytes()));
    Ok(Prepared {
        method: "PUT".into(),
        url,
        headers: vec![
            ("x-ms-date".into(), date),
            ("x-ms-version".into(), version.into()),
            (
                "authorization".into(),
                format!("SharedKey {account}:{signature}"),
            ),
        ],
        body: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        // RFC 4231, test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn create_bucket_requests_are_signed_and_name_what_is_missing() {
        let s3 = map(&[
            ("endpoint", "https://s3.eu-west-1.amazonaws.com"),
            ("bucket", "octo"),
            ("region", "eu-west-1"),
            ("access_key_id", "AKIDEXAMPLE"),
            (
                "secret_access_key",
                "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            ),
        ]);
        let r = s3_create_bucket(&s3).unwrap();
        assert_eq!(r.url, "https://s3.eu-west-1.amazonaws.com/octo");
        assert!(
            String::from_utf8(r.body)
                .unwrap()
                .contains("<LocationConstraint>eu-west-1</LocationConstraint>")
        );
        let auth = &r
            .headers
            .iter()
            .find(|(k, _)| k == "authorization")
            .unwrap()
            .1;
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
            "{auth}"
        );
        assert!(auth.contains("/eu-west-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature="), "{auth}");
        assert!(!auth.contains("wJalr"), "{auth}");
        let mut no_keys = s3.clone();
        no_keys.remove("secret_access_key");
        assert!(
            s3_create_bucket(&no_keys)
                .err()
                .unwrap()
                .contains("AWS_SECRET_ACCESS_KEY")
        );

        let az = map(&[
            ("endpoint", "https://acct.blob.core.windows.net"),
            ("container", "octo"),
            ("account_name", "acct"),
            ("account_key", "a2V5"),
        ]);
        let r = azure_create_container(&az).unwrap();
        assert_eq!(
            r.url,
            "https://acct.blob.core.windows.net/octo?restype=container"
        );
        assert!(
            r.headers
                .iter()
                .any(|(k, v)| k == "authorization" && v.starts_with("SharedKey acct:"))
        );
        let sas = map(&[
            ("endpoint", "https://acct.blob.core.windows.net/"),
            ("container", "octo"),
            ("sas_token", "?sv=2022&sig=abc"),
        ]);
        let r = azure_create_container(&sas).unwrap();
        assert_eq!(
            r.url,
            "https://acct.blob.core.windows.net/octo?restype=container&sv=2022&sig=abc"
        );
        let e = azure_create_container(&map(&[("endpoint", "https://a"), ("container", "c")]))
            .err()
            .unwrap();
        assert!(e.contains("AZURE_STORAGE_KEY"), "{e}");
    }
}
