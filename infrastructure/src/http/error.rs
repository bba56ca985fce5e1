//! JSON errors for HTTP APIs: `ApiError` and its documented mapping to status codes, and extractors whose
//! rejections are `ApiError`s too, so a malformed request gets the same JSON shape as any other error.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::repository::ExecuteError;
use crate::store::StoreError;

/// The body of every error response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// A stable, machine-readable code, e.g. `not_found`.
    #[schema(example = "not_found")]
    pub error: String,
    /// What went wrong, for a person.
    #[schema(example = "account 12345612345678 does not exist")]
    pub message: String,
}

/// An error an HTTP handler returns, and how it answers:
///
/// | variant         | status | `error`                 | when                                                        |
/// |-----------------|--------|-------------------------|-------------------------------------------------------------|
/// | `BadRequest`    | 400    | `bad_request`           | the request is malformed: unparseable JSON, bad path/query |
/// | `NotFound`      | 404    | `not_found`             | no such resource (or route)                                 |
/// | `Conflict`      | 409    | `conflict`              | a concurrent change won, or the resource already exists    |
/// | `Unprocessable` | 422    | `unprocessable_entity`  | well-formed, but breaks a rule (a field's value, a balance) |
/// | `Unavailable`   | 503    | `service_unavailable`   | a dependency (the event store) cannot be reached            |
/// | `Busy`          | 503    | `busy`                  | the service has as much work as it takes; `Retry-After` set |
/// | `Internal`      | 500    | `internal_error`        | a bug or a broken invariant; logged once, details withheld  |
///
/// Conversions: a [`StoreError`] is 409 for a wrong expected version, 404 for a missing or deleted stream, 503
/// when the store cannot be reached and 500 otherwise; an [`ExecuteError`] is its rejection's own mapping (the
/// domain error implements `Into<ApiError>`) or 409 when the retries ran out; a JSON body that does not parse
/// is 400 and one of the wrong shape 422; a bad path or query parameter is 400. Unknown routes answer 404 and
/// unsupported methods 405 (`method_not_allowed`), with the same body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Unavailable(String),
    /// Overloaded: try again after `retry_after_secs` (sent as `Retry-After`). Not a fault, so not logged.
    #[error("{message}")]
    Busy {
        message: String,
        retry_after_secs: u32,
    },
    /// The cause is logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::BadRequest(message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::NotFound(message.into())
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        ApiError::Conflict(message.into())
    }

    pub fn unprocessable(message: impl Into<String>) -> Self {
        ApiError::Unprocessable(message.into())
    }

    /// An internal error with its cause (and the chain of its sources) for the log.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        let mut text = cause.to_string();
        let mut source = cause.source();
        while let Some(next) = source {
            text.push_str(": ");
            text.push_str(&next.to_string());
            source = next.source();
        }
        ApiError::Internal(text)
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) | ApiError::Busy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unprocessable(_) => "unprocessable_entity",
            ApiError::Unavailable(_) => "service_unavailable",
            ApiError::Busy { .. } => "busy",
            ApiError::Internal(_) => "internal_error",
        }
    }

    pub fn body(&self) -> ErrorBody {
        let message = match self {
            ApiError::Internal(_) => {
                "an internal error occurred; it has been logged with the request's correlation id"
                    .to_owned()
            }
            other => other.to_string(),
        };
        ErrorBody {
            error: self.code().to_owned(),
            message,
        }
    }

    /// Maps an extractor's rejection: axum answers 422 for JSON of the wrong shape and 4xx otherwise.
    fn from_rejection(status: StatusCode, text: String) -> Self {
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            ApiError::Unprocessable(text)
        } else if status.is_client_error() {
            ApiError::BadRequest(text)
        } else {
            ApiError::Internal(text)
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            // Logged here, where it is handled, and only here.
            ApiError::Internal(cause) => tracing::error!(%cause, "internal error"),
            ApiError::Unavailable(cause) => tracing::warn!(%cause, "dependency unavailable"),
            ApiError::Busy {
                retry_after_secs, ..
            } => {
                let retry_after = [(
                    axum::http::header::RETRY_AFTER,
                    retry_after_secs.to_string(),
                )];
                return (self.status(), retry_after, axum::Json(self.body())).into_response();
            }
            _ => {}
        }
        (self.status(), axum::Json(self.body())).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match &error {
            StoreError::WrongExpectedVersion { .. } => ApiError::Conflict(
                "the resource was changed by another request at the same time; try again"
                    .to_owned(),
            ),
            StoreError::NotFound(_) | StoreError::Deleted(_) => {
                ApiError::NotFound(error.to_string())
            }
            StoreError::Other {
                source:
                    eventstore::Error::ConnectionClosed
                    | eventstore::Error::GrpcConnectionError(_)
                    | eventstore::Error::DeadlineExceeded,
                ..
            } => ApiError::Unavailable("the event store cannot be reached".to_owned()),
            _ => ApiError::internal(&error),
        }
    }
}

impl<E: Into<ApiError>> From<ExecuteError<E>> for ApiError {
    fn from(error: ExecuteError<E>) -> Self {
        match error {
            ExecuteError::Rejected(rejection) => rejection.into(),
            ExecuteError::Conflict { stream, attempts } => ApiError::Conflict(format!(
                "'{stream}' is being changed by many requests at once ({attempts} attempts); try again"
            )),
            ExecuteError::Store(store) => store.into(),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        ApiError::from_rejection(rejection.status(), rejection.body_text())
    }
}

impl From<QueryRejection> for ApiError {
    fn from(rejection: QueryRejection) -> Self {
        ApiError::from_rejection(rejection.status(), rejection.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(rejection: PathRejection) -> Self {
        ApiError::from_rejection(rejection.status(), rejection.body_text())
    }
}

/// `axum::Json`, rejecting with an [`ApiError`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

#[axum::async_trait]
impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<T>::from_request(request, state).await?;
        Ok(ApiJson(value))
    }
}

impl<T: Serialize> IntoResponse for ApiJson<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// `axum::extract::Query`, rejecting with an [`ApiError`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

#[axum::async_trait]
impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state).await?;
        Ok(ApiQuery(value))
    }
}

/// `axum::extract::Path`, rejecting with an [`ApiError`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiPath<T>(pub T);

#[axum::async_trait]
impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let axum::extract::Path(value) =
            axum::extract::Path::<T>::from_request_parts(parts, state).await?;
        Ok(ApiPath(value))
    }
}
