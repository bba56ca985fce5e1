//! Correlation ids and request tracing: every request gets the `x-correlation-id` it came with (or a new one),
//! carried in the request's extensions (the `CorrelationId` extractor), in a tracing span around the handler, in
//! the response's header, and — through `CorrelationId::metadata` — in the events the request causes.

use std::time::Instant;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use events::EventMetadata;
use tracing::Instrument;
use uuid::Uuid;

use crate::metrics::Metrics;

pub const CORRELATION_ID_HEADER: &str = "x-correlation-id";

/// Namespace for turning a caller's non-UUID correlation id into a UUID, stably.
const FOREIGN_CORRELATION_NAMESPACE: Uuid =
    Uuid::from_u128(0x6c0e_1a7e_d1d5_4c0f_9b3a_c0aa_e1a7_10d5);

/// The correlation id of the current request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CorrelationId(pub Uuid);

impl CorrelationId {
    /// The id a caller sent: a UUID as it is; any other text becomes a UUID v5 of it, so the same text always
    /// correlates the same way.
    pub fn from_header(value: &str) -> Option<Self> {
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        Some(CorrelationId(Uuid::parse_str(value).unwrap_or_else(|_| {
            Uuid::new_v5(&FOREIGN_CORRELATION_NAMESPACE, value.as_bytes())
        })))
    }

    /// Metadata for the first event this request causes: correlated with, and caused by, the request.
    pub fn metadata(&self) -> EventMetadata {
        EventMetadata::for_request(self.0)
    }
}

#[axum::async_trait]
impl<S: Send + Sync> FromRequestParts<S> for CorrelationId {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        if let Some(id) = parts.extensions.get::<CorrelationId>() {
            return Ok(*id);
        }
        // Without the middleware (a router not built by `RouterBuilder`): the header, or a fresh id.
        let id = parts
            .headers
            .get(CORRELATION_ID_HEADER)
            .and_then(|value| value.to_str().ok())
            .and_then(CorrelationId::from_header)
            .unwrap_or_else(|| CorrelationId(Uuid::new_v4()));
        parts.extensions.insert(id);
        Ok(id)
    }
}

/// Middleware: assigns the correlation id, runs the request in a span, counts it in
/// `http_requests_total{method,route,status}` and logs its outcome.
pub(crate) async fn trace_requests(
    State(metrics): State<Metrics>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let correlation_id = request
        .headers()
        .get(CORRELATION_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .and_then(CorrelationId::from_header)
        .unwrap_or_else(|| CorrelationId(Uuid::new_v4()));
    request.extensions_mut().insert(correlation_id);
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|path| path.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let span = tracing::info_span!(
        "http",
        method = %method,
        route = %route,
        correlation_id = %correlation_id.0,
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status();
    if let Ok(value) = HeaderValue::from_str(&correlation_id.0.to_string()) {
        response.headers_mut().insert(CORRELATION_ID_HEADER, value);
    }
    metrics
        .counter(
            "http_requests_total",
            "HTTP requests answered, by method, route and status.",
            &[
                ("method", method.as_str()),
                ("route", &route),
                ("status", status.as_str()),
            ],
        )
        .inc();
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    // Probes and scrapes arrive every few seconds; they would drown the log at INFO.
    if route.starts_with("/health") || route == "/metrics" {
        tracing::debug!(parent: &span, status = status.as_u16(), elapsed_ms, "request answered");
    } else {
        tracing::info!(parent: &span, status = status.as_u16(), elapsed_ms, "request answered");
    }
    response
}
