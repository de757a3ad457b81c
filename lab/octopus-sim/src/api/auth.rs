//! API-key authentication, as Octopus does it: the `X-Octopus-ApiKey` header (or
//! `X-NuGet-ApiKey`), else an `apikey` query parameter.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;

use super::error::OctopusError;
use crate::state::Simulator;

/// The user whose key signed the request.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub user: String,
    /// `Users-N`, the user's id.
    pub user_id: String,
    pub administer_system: bool,
}

impl Caller {
    /// Changing maintenance mode and node settings needs the system permission `AdministerSystem`.
    pub fn require_administer_system(&self, help_text: &str) -> Result<(), OctopusError> {
        if self.administer_system {
            Ok(())
        } else {
            Err(OctopusError::missing_permission(
                "AdministerSystem",
                help_text,
            ))
        }
    }
}

impl FromRequestParts<Arc<Simulator>> for Caller {
    type Rejection = OctopusError;

    async fn from_request_parts(
        parts: &mut Parts,
        sim: &Arc<Simulator>,
    ) -> Result<Self, Self::Rejection> {
        let presented = presented_key(parts).ok_or_else(OctopusError::not_logged_in)?;
        let (index, key) = sim
            .key_with_index(&presented)
            .ok_or_else(OctopusError::invalid_api_key)?;
        Ok(Caller {
            user: key.user.clone(),
            user_id: super::users::user_id(index),
            administer_system: key.administer_system,
        })
    }
}

fn presented_key(parts: &Parts) -> Option<String> {
    let from_header = ["X-Octopus-ApiKey", "X-NuGet-ApiKey"]
        .iter()
        .find_map(|name| {
            parts
                .headers
                .get(*name)
                .and_then(|value| value.to_str().ok())
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .map(str::to_string)
        });
    from_header.or_else(|| {
        let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&parts.uri).ok()?;
        pairs
            .into_iter()
            .find(|(name, value)| name.eq_ignore_ascii_case("apikey") && !value.is_empty())
            .map(|(_, value)| value)
    })
}
