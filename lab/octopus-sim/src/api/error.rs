//! Octopus's error body (`Error` in the swagger) and the errors the simulator answers with.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::json_response;

/// An error answered the way Octopus answers: `{"ErrorMessage": ..., "Errors": [...]}`, with
/// `HelpText` where Octopus gives one.
#[derive(Debug, Clone)]
pub(crate) struct OctopusError {
    pub status: StatusCode,
    pub message: String,
    pub errors: Vec<String>,
    pub help_text: Option<String>,
}

impl OctopusError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        OctopusError {
            status,
            message: message.into(),
            errors: Vec::new(),
            help_text: None,
        }
    }

    /// No API key at all.
    pub fn not_logged_in() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "You must be logged in to perform this action. Please provide a valid API key or log in again.",
        )
    }

    /// A key that belongs to nobody. The key itself is never repeated back.
    pub fn invalid_api_key() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "The API key you provided was not valid. Please double-check your API key and try again. \
             For instructions on finding your API key, please visit: https://oc.to/ApiKey",
        )
    }

    pub fn missing_permission(permission: &str, help_text: &str) -> Self {
        let mut error = Self::new(
            StatusCode::FORBIDDEN,
            format!(
                "You do not have permission to perform this action. Please contact your Octopus \
                 administrator. Missing permission: {permission}"
            ),
        );
        error.help_text = Some(help_text.to_string());
        error
    }

    /// Octopus's model-binding and validation failures.
    pub fn bad_request(errors: Vec<String>) -> Self {
        let mut error = Self::new(
            StatusCode::BAD_REQUEST,
            "There was a problem with your request.",
        );
        error.errors = errors;
        error
    }

    pub fn resource_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            format!("The resource '{id}' was not found."),
        )
    }

    pub fn route_not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "The resource you requested was not found.",
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "The requested method is not allowed for this resource.",
        )
    }

    pub fn body(&self) -> Value {
        let mut body = Map::new();
        body.insert("ErrorMessage".into(), json!(self.message));
        body.insert("Errors".into(), json!(self.errors));
        if let Some(help) = &self.help_text {
            body.insert("HelpText".into(), json!(help));
        }
        Value::Object(body)
    }
}

impl IntoResponse for OctopusError {
    fn into_response(self) -> Response {
        json_response(self.status, &self.body())
    }
}
