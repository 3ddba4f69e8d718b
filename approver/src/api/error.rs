//! [`Failure`]: every refused API call — a clear status, a stable code, a message, and
//! (through the audit middleware in [`super`]) one record in the approver's audit table.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dbward_approval_api::ApiError;
use uuid::Uuid;

use crate::service::ServiceError;

/// A refused call.
#[derive(Debug, Clone)]
pub struct Failure {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable error code.
    pub code: &'static str,
    /// What was wrong and what to do.
    pub message: String,
    /// Who called, when known.
    pub actor: Option<String>,
    /// Request concerned, when known.
    pub request_id: Option<Uuid>,
}

/// Attached to refused responses so the audit middleware can record them.
#[derive(Debug, Clone)]
pub struct Rejected(pub Failure);

impl Failure {
    /// A failure with status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            actor: None,
            request_id: None,
        }
    }

    /// 400 `malformed_json`.
    pub fn malformed(detail: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "malformed_json",
            format!("request body is not valid: {detail}"),
        )
    }

    /// Sets the actor.
    pub fn by(mut self, actor: &str) -> Self {
        self.actor = Some(actor.to_string());
        self
    }

    /// Sets the request.
    pub fn on(mut self, id: Uuid) -> Self {
        self.request_id = Some(id);
        self
    }
}

impl From<ServiceError> for Failure {
    fn from(e: ServiceError) -> Self {
        let status = match &e {
            ServiceError::UnknownRequest(_) => StatusCode::NOT_FOUND,
            ServiceError::NotPending { .. } | ServiceError::Conflict(_) => StatusCode::CONFLICT,
            ServiceError::Expired(_) => StatusCode::GONE,
            ServiceError::Rule(r) => match r {
                crate::rules::RuleViolation::DoubleVote { .. } => StatusCode::CONFLICT,
                crate::rules::RuleViolation::ReasonRequired => StatusCode::BAD_REQUEST,
                _ => StatusCode::FORBIDDEN,
            },
            ServiceError::UnknownPrincipal(_) => StatusCode::FORBIDDEN,
            ServiceError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ServiceError::Store(err) => {
                tracing::error!(error = %err, "storage failure");
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        Self::new(status, e.code(), e.to_string())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let body = ApiError {
            code: self.code.to_string(),
            error: self.message.clone(),
        };
        let mut resp = (self.status, Json(body)).into_response();
        resp.extensions_mut().insert(Rejected(self));
        resp
    }
}
