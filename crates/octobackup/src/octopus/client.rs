//! A small client for the parts of the Octopus REST API a backup needs. Reads retry on connection
//! failures and 5xx answers; the maintenance-mode PUT is idempotent (it sets a value), so it retries
//! too, and putting maintenance mode back retries for longer than anything else.

use crate::secret::Secret;
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum OctopusError {
    #[error(
        "cannot reach the Octopus Server at {url}: {cause}. Check the url in the config and that the server is running."
    )]
    Unreachable { url: String, cause: String },
    #[error(
        "the Octopus Server at {url} refused the API key (401 Unauthorized). Check that the key is current and belongs to an active user."
    )]
    Unauthorized { url: String },
    #[error(
        "the API key's user may not {action} (403 Forbidden: {message}). octobackup needs a user with the Administer System permission to change maintenance mode."
    )]
    Forbidden { action: String, message: String },
    #[error("the Octopus Server answered {status} to {what}: {message}")]
    Http {
        what: String,
        status: u16,
        message: String,
    },
    #[error("the Octopus Server's answer to {what} could not be read: {cause}")]
    Decode { what: String, cause: String },
}

impl OctopusError {
    /// Worth another try: the server may answer next time. For a change, also: it may have been
    /// applied although no answer said so.
    pub fn transient(&self) -> bool {
        match self {
            OctopusError::Unreachable { .. } => true,
            OctopusError::Http { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RootInfo {
    #[serde(default)]
    pub application: String,
    pub version: String,
    #[serde(default)]
    pub installation_id: Option<String>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct MaintenanceConfiguration {
    #[serde(default)]
    pub id: Option<String>,
    pub is_in_maintenance_mode: bool,
    #[serde(default)]
    pub last_modified_by: Option<String>,
    #[serde(default)]
    pub last_modified_on: Option<String>,
}

#[derive(Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct LicenseResource {
    #[serde(default)]
    pub license_text: String,
    #[serde(default)]
    pub serial_number: Option<String>,
}

impl std::fmt::Debug for LicenseResource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LicenseResource(***)")
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct LicenseStatus {
    #[serde(default)]
    pub is_compliant: bool,
    #[serde(default)]
    pub effective_expiry_date: Option<String>,
    #[serde(default)]
    pub days_to_effective_expiry_date: Option<i64>,
}

#[derive(Clone, Debug, Deserialize, Serialize, Default)]
#[serde(rename_all = "PascalCase")]
pub struct ServerFolderValues {
    #[serde(default)]
    pub packages_directory: Option<String>,
    #[serde(default)]
    pub artifacts_directory: Option<String>,
    #[serde(default)]
    pub logs_directory: Option<String>,
    #[serde(default)]
    pub event_exports_directory: Option<String>,
}

impl ServerFolderValues {
    /// (octobackup's folder name, path) for the folders the procedure names.
    pub fn named(&self) -> Vec<(&'static str, String)> {
        [
            ("Packages", &self.packages_directory),
            ("Artifacts", &self.artifacts_directory),
            ("TaskLogs", &self.logs_directory),
            ("EventExports", &self.event_exports_directory),
        ]
        .into_iter()
        .filter_map(|(n, p)| p.clone().filter(|p| !p.is_empty()).map(|p| (n, p)))
        .collect()
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TaskInfo {
    pub id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub state: String,
    #[serde(default)]
    pub server_node: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TaskPage {
    items: Vec<TaskInfo>,
    #[serde(default)]
    total_results: u64,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct NodeInfo {
    pub name: String,
    #[serde(default)]
    pub is_in_maintenance_mode: bool,
    #[serde(default)]
    pub is_offline: bool,
    #[serde(default)]
    pub running_task_count: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NodeSummary {
    nodes: Vec<NodeInfo>,
}

/// `GET /api/users/me`: the user the API key belongs to (`UserResource`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct CurrentUser {
    pub id: String,
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub display_name: String,
}

impl CurrentUser {
    /// How to name the user in a message.
    pub fn name(&self) -> &str {
        [&self.username, &self.display_name, &self.id]
            .into_iter()
            .find(|s| !s.is_empty())
            .map_or("", |s| s.as_str())
    }
}

/// `GET /api/users/{id}/permissions` (`UserPermissionSetResource`): only the system permissions
/// are read; space permissions do not govern maintenance mode.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PermissionSet {
    #[serde(default)]
    system_permissions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ErrorBody {
    #[serde(default)]
    error_message: String,
    #[serde(default)]
    errors: Vec<String>,
}

#[derive(Clone)]
pub struct OctopusClient {
    http: reqwest::Client,
    base: String,
    api_key: Secret,
    /// Tries for reads; 1 means no retry.
    pub attempts: u32,
    pub retry_delay: Duration,
    /// How long one request may take before octobackup gives up on it.
    pub timeout: Duration,
}

impl OctopusClient {
    pub fn new(url: &str, api_key: Secret) -> Result<Self, OctopusError> {
        Self::with_timeout(url, api_key, Duration::from_secs(60))
    }

    pub fn with_timeout(
        url: &str,
        api_key: Secret,
        timeout: Duration,
    ) -> Result<Self, OctopusError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(15))
            .user_agent(concat!("octobackup/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| OctopusError::Unreachable {
                url: url.to_string(),
                cause: e.to_string(),
            })?;
        Ok(OctopusClient {
            http,
            base: url.trim_end_matches('/').to_string(),
            api_key,
            attempts: 4,
            retry_delay: Duration::from_millis(500),
            timeout,
        })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    async fn send_once(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response, OctopusError> {
        let url = format!("{}{}", self.base, path);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header("X-Octopus-ApiKey", self.api_key.expose());
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| OctopusError::Unreachable {
            url: self.base.clone(),
            cause: describe_reqwest(&e),
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| {
                if b.errors.is_empty() {
                    b.error_message
                } else {
                    format!("{} {}", b.error_message, b.errors.join("; "))
                }
            })
            .unwrap_or_else(|_| text.chars().take(200).collect());
        Err(match status.as_u16() {
            401 => OctopusError::Unauthorized {
                url: self.base.clone(),
            },
            403 => OctopusError::Forbidden {
                action: format!("{method} {path}"),
                message,
            },
            s => OctopusError::Http {
                what: format!("{method} {path}"),
                status: s,
                message,
            },
        })
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
        attempts: u32,
    ) -> Result<reqwest::Response, OctopusError> {
        let mut delay = self.retry_delay;
        let mut last = None;
        for attempt in 0..attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            match self.send_once(method.clone(), path, body).await {
                Ok(r) => return Ok(r),
                Err(e) if e.transient() => {
                    tracing::warn!(
                        "{method} {path}: {e} (attempt {} of {attempts})",
                        attempt + 1
                    );
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<T, OctopusError> {
        let resp = self
            .send(reqwest::Method::GET, path, None, self.attempts)
            .await?;
        resp.json().await.map_err(|e| OctopusError::Decode {
            what: format!("GET {path}"),
            cause: e.to_string(),
        })
    }

    pub async fn root(&self) -> Result<RootInfo, OctopusError> {
        self.get("/api").await
    }

    /// `GET /api` and the server's `Date` header, for a clock comparison.
    pub async fn root_with_date(
        &self,
    ) -> Result<(RootInfo, Option<chrono::DateTime<chrono::Utc>>), OctopusError> {
        let resp = self
            .send(reqwest::Method::GET, "/api", None, self.attempts)
            .await?;
        let date = resp
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|d| d.to_str().ok())
            .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
            .map(|d| d.with_timezone(&chrono::Utc));
        let root = resp.json().await.map_err(|e| OctopusError::Decode {
            what: "GET /api".into(),
            cause: e.to_string(),
        })?;
        Ok((root, date))
    }

    pub async fn maintenance(&self) -> Result<MaintenanceConfiguration, OctopusError> {
        self.get("/api/maintenanceconfiguration").await
    }

    /// Sets maintenance mode; `attempts` decides how hard to try (putting it back tries hardest).
    pub async fn set_maintenance(
        &self,
        on: bool,
        attempts: u32,
    ) -> Result<MaintenanceConfiguration, OctopusError> {
        let body = serde_json::json!({"Id": "maintenance", "IsInMaintenanceMode": on});
        let resp = self
            .send(
                reqwest::Method::PUT,
                "/api/maintenanceconfiguration",
                Some(&body),
                attempts,
            )
            .await?;
        resp.json().await.map_err(|e| OctopusError::Decode {
            what: "PUT /api/maintenanceconfiguration".into(),
            cause: e.to_string(),
        })
    }

    /// The user the API key belongs to.
    pub async fn current_user(&self) -> Result<CurrentUser, OctopusError> {
        self.get("/api/users/me").await
    }

    /// The user's system permissions (`AdministerSystem`, ...). Octopus answers this for the
    /// current user only (swagger: "Available for the current authenticated user only").
    pub async fn system_permissions(&self, user_id: &str) -> Result<Vec<String>, OctopusError> {
        let path = format!("/api/users/{}/permissions", path_segment(user_id));
        Ok(self.get::<PermissionSet>(&path).await?.system_permissions)
    }

    pub async fn license(&self) -> Result<LicenseResource, OctopusError> {
        self.get("/api/licenses/licenses-current").await
    }

    pub async fn license_status(&self) -> Result<LicenseStatus, OctopusError> {
        self.get("/api/licenses/licenses-current-status").await
    }

    pub async fn server_folders(&self) -> Result<ServerFolderValues, OctopusError> {
        self.get("/api/configuration/server-folders/values").await
    }

    /// Tasks in the given states across all spaces, system tasks included, every page.
    pub async fn tasks(&self, states: &[&str]) -> Result<Vec<TaskInfo>, OctopusError> {
        let mut out = Vec::new();
        let take = 100;
        loop {
            let path = format!(
                "/api/tasks?states={}&spaces=all&includeSystem=true&skip={}&take={take}",
                states.join(","),
                out.len()
            );
            let page: TaskPage = self.get(&path).await?;
            let n = page.items.len();
            out.extend(page.items);
            if n == 0 || out.len() as u64 >= page.total_results {
                return Ok(out);
            }
        }
    }

    pub async fn nodes(&self) -> Result<Vec<NodeInfo>, OctopusError> {
        Ok(self
            .get::<NodeSummary>("/api/octopusservernodes/summary")
            .await?
            .nodes)
    }
}

/// A user id as one path segment: Octopus ids are `Users-N`, but one from a server is not trusted
/// to hold no `/`, `?` or `#`.
fn path_segment(id: &str) -> String {
    id.chars()
        .flat_map(|c| match c {
            'A'..='Z' | 'a'..='z' | '0'..='9' | '-' | '_' | '.' | '~' => vec![c.to_string()],
            c => {
                let mut buf = [0u8; 4];
                c.encode_utf8(&mut buf)
                    .bytes()
                    .map(|b| format!("%{b:02X}"))
                    .collect()
            }
        })
        .collect()
}

/// reqwest's Display hides the cause chain ("error sending request"): show the root cause.
fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    let mut last = None;
    while let Some(inner) = source {
        last = Some(inner.to_string());
        source = inner.source();
    }
    if let Some(l) = last {
        s.push_str(": ");
        s.push_str(&l);
    }
    s
}
