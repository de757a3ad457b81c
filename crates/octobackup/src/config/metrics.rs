//! `[metrics]`: where the Prometheus metrics go (a textfile for node_exporter, a Pushgateway).
//! The schema and its checks; `metrics` writes and pushes.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Clone, Debug, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// The file node_exporter's textfile collector reads (`--collector.textfile.directory`), e.g.
    /// `/var/lib/prometheus/node-exporter/octobackup.prom`. Must end in `.prom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub textfile: Option<PathBuf>,
    /// A Pushgateway's base URL, e.g. `http://pushgateway:9091`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushgateway: Option<String>,
    /// The `job` of the Pushgateway group. Default: octobackup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
}

impl MetricsConfig {
    pub fn validate(&self) -> Result<(), String> {
        if let Some(t) = &self.textfile
            && t.extension().is_none_or(|e| e != "prom")
        {
            return Err(format!(
                "metrics.textfile {} must end in .prom (node_exporter's textfile collector reads only *.prom)",
                t.display()
            ));
        }
        if let Some(u) = &self.pushgateway
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            // Up to an `@` only: what comes before it may be a password.
            let host = u.rsplit_once('@').map_or(u.as_str(), |(_, host)| host);
            return Err(format!(
                "metrics.pushgateway '{host}' must start with http:// or https://"
            ));
        }
        if self.job.as_deref().is_some_and(|j| j.is_empty()) {
            return Err("metrics.job is empty".into());
        }
        Ok(())
    }
}
