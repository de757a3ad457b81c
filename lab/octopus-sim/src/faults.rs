//! Faults the lab injects to see how a client copes with a failing server.

use std::fmt;
use std::time::Duration;

use axum::http::Method;
use serde::{Deserialize, Serialize};

/// What a matched request gets instead of a normal answer.
///
/// JSON (`POST /lab/faults`): `{"kind":"status","value":500}`, `{"kind":"delay","value":1500}`
/// (milliseconds), `{"kind":"reset"}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum FaultKind {
    /// Answer with this status and an Octopus error body, without touching any state.
    Status(u16),
    /// Wait this long, then handle the request normally. The request is handled even if the
    /// client gives up waiting, as a real server would: a timed-out PUT may still apply.
    Delay(#[serde(with = "millis")] Duration),
    /// Close the TCP connection with a RST, without answering.
    Reset,
}

impl fmt::Display for FaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultKind::Status(status) => write!(f, "status {status}"),
            FaultKind::Delay(delay) => write!(f, "delay {}ms", delay.as_millis()),
            FaultKind::Reset => f.write_str("reset"),
        }
    }
}

/// A fault served to the next `times` requests that match `method` (any if `None`) and start with
/// `path_prefix` (the path only, no query). The `/lab/` control surface is never faulted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    #[serde(default, with = "optional_method")]
    pub method: Option<Method>,
    pub path_prefix: String,
    pub kind: FaultKind,
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

impl Fault {
    /// A fault for any method, served once.
    pub fn once(path_prefix: impl Into<String>, kind: FaultKind) -> Self {
        Fault {
            method: None,
            path_prefix: path_prefix.into(),
            kind,
            times: 1,
        }
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        self.method.as_ref().is_none_or(|m| m == method) && path.starts_with(&self.path_prefix)
    }
}

/// The faults still to be served, first injected first matched.
#[derive(Debug, Default)]
pub(crate) struct FaultBook {
    pending: Vec<Fault>,
}

impl FaultBook {
    pub fn inject(&mut self, fault: Fault) {
        if fault.times > 0 {
            self.pending.push(fault);
        }
    }

    pub fn clear(&mut self) {
        self.pending.clear();
    }

    /// The fault this request gets, if any, counting it as served.
    pub fn take(&mut self, method: &Method, path: &str) -> Option<FaultKind> {
        if path.starts_with("/lab/") {
            return None;
        }
        let index = self.pending.iter().position(|f| f.matches(method, path))?;
        let fault = &mut self.pending[index];
        fault.times -= 1;
        let kind = fault.kind.clone();
        if fault.times == 0 {
            self.pending.remove(index);
        }
        Some(kind)
    }

    pub fn pending(&self) -> &[Fault] {
        &self.pending
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(value.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

mod optional_method {
    use axum::http::Method;
    use serde::de::Error;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Method>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(method) => s.serialize_some(method.as_str()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Method>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|name| Method::from_bytes(name.to_ascii_uppercase().as_bytes()))
            .transpose()
            .map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fault_is_served_its_number_of_times_to_matching_requests_only() {
        let mut book = FaultBook::default();
        book.inject(Fault {
            method: Some(Method::PUT),
            path_prefix: "/api/maintenance".into(),
            kind: FaultKind::Status(503),
            times: 2,
        });
        assert_eq!(
            book.take(&Method::GET, "/api/maintenanceconfiguration"),
            None
        );
        assert_eq!(book.take(&Method::PUT, "/api/tasks"), None);
        for _ in 0..2 {
            assert_eq!(
                book.take(&Method::PUT, "/api/maintenanceconfiguration"),
                Some(FaultKind::Status(503))
            );
        }
        assert_eq!(
            book.take(&Method::PUT, "/api/maintenanceconfiguration"),
            None
        );
        assert!(book.pending().is_empty());
    }

    #[test]
    fn the_control_surface_is_never_faulted() {
        let mut book = FaultBook::default();
        book.inject(Fault::once("/", FaultKind::Reset));
        assert_eq!(book.take(&Method::GET, "/lab/state"), None);
        assert_eq!(book.take(&Method::GET, "/api"), Some(FaultKind::Reset));
    }

    #[test]
    fn fault_json_round_trips() {
        let fault: Fault = serde_json::from_str(
            r#"{"method":"put","path_prefix":"/api","kind":{"kind":"delay","value":250}}"#,
        )
        .unwrap();
        assert_eq!(fault.method, Some(Method::PUT));
        assert_eq!(fault.kind, FaultKind::Delay(Duration::from_millis(250)));
        assert_eq!(fault.times, 1);
        let back: Fault = serde_json::from_value(serde_json::to_value(&fault).unwrap()).unwrap();
        assert_eq!(back, fault);
    }
}
