//! Starting a simulator for a test, calling it, and watching its events.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use octopus_sim::{ApiKey, OctopusConfig, OctopusHandle};
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// The events a simulator reported, in order: kind and detail.
pub type Events = Arc<Mutex<Vec<(String, Value)>>>;

/// A running simulator with an administrator key, a read-only key and its recorded events.
pub struct TestApi {
    pub octopus: OctopusHandle,
    pub admin: String,
    pub viewer: String,
    pub events: Events,
    pub http: reqwest::Client,
}

/// The configuration every test starts from: one admin key (user `admin`), one key without
/// AdministerSystem (user `viewer`), events recorded.
pub fn config() -> (OctopusConfig, Events) {
    let mut config = OctopusConfig::new(std::env::temp_dir().join("octopus-sim-tests"));
    config.api_keys.push(ApiKey::generate("viewer", false));
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    config.events = Some(Arc::new(move |kind, detail| {
        sink.lock().unwrap().push((kind.to_string(), detail));
    }));
    (config, events)
}

pub async fn start() -> TestApi {
    let (config, events) = config();
    start_with(config, events).await
}

pub async fn start_with(config: OctopusConfig, events: Events) -> TestApi {
    let admin = config
        .api_keys
        .iter()
        .find(|k| k.administer_system)
        .unwrap()
        .key
        .clone();
    let viewer = config
        .api_keys
        .iter()
        .find(|k| !k.administer_system)
        .map(|k| k.key.clone())
        .unwrap_or_default();
    let octopus = octopus_sim::start(config).await.expect("simulator starts");
    TestApi {
        octopus,
        admin,
        viewer,
        events,
        http: reqwest::Client::new(),
    }
}

impl TestApi {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.octopus.url())
    }

    /// A request signed with `key` in the `X-Octopus-ApiKey` header (none if empty).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        key: &str,
        body: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, self.url(path));
        if !key.is_empty() {
            request = request.header("X-Octopus-ApiKey", key);
        }
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let response = request.send().await.expect("the simulator answers");
        let status = response.status();
        let text = response.text().await.expect("a body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"))
        };
        (status, value)
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, &self.admin, None).await
    }

    pub fn events_of(&self, kind: &str) -> Vec<Value> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, detail)| detail.clone())
            .collect()
    }
}

/// Polls `check` until it returns `Some`, for at most 20 seconds (a bound, not a timing claim).
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    for _ in 0..1000 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("gave up waiting for {what}");
}
