//! HTTP scaffolding shared by the services: a router builder that adds health, metrics, the OpenAPI document and
//! docs page, JSON errors for unknown routes, correlation ids and request tracing; and `serve` with graceful
//! shutdown.
//!
//! - `error`: `ApiError` (the status-code mapping), `ErrorBody`, and the `ApiJson` / `ApiQuery` / `ApiPath`
//!   extractors that reject with it.
//! - `correlation`: `CorrelationId` and the tracing middleware.
//! - `health`: `Readiness` and the `/health/*` and `/metrics` handlers.
//! - `docs`: the merged OpenAPI document and its HTML page.

mod correlation;
mod docs;
mod error;
mod health;

use std::future::Future;
use std::sync::Arc;

use axum::http::{header, Method, Uri};
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;

pub use self::correlation::{CorrelationId, CORRELATION_ID_HEADER};
pub use self::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorBody};
pub use self::health::{LivenessBody, Readiness, ReadinessBody, ReadyFlag};
pub use utoipa::openapi::OpenApi as OpenApiDocument;

use self::health::OperationsState;
use crate::metrics::Metrics;

/// Builds a service's router: its own routes plus what every service serves.
///
/// | route            | what                                                        |
/// |------------------|-------------------------------------------------------------|
/// | `/health/live`   | 200 while the process answers                               |
/// | `/health/ready`  | 200 when every [`Readiness`] check passes, else 503         |
/// | `/metrics`       | the [`Metrics`] registry, Prometheus text                   |
/// | `/openapi.json`  | the service's OpenAPI document, with the routes above added |
/// | `/docs`          | that document as an HTML page                               |
///
/// Every request gets a [`CorrelationId`] and a span; unknown routes and methods answer with an [`ErrorBody`].
pub struct RouterBuilder {
    title: String,
    routes: Router,
    metrics: Metrics,
    readiness: Readiness,
    openapi: Option<OpenApiDocument>,
}

impl RouterBuilder {
    /// `title` names the service in the docs page when no OpenAPI document is given.
    pub fn new(title: impl Into<String>) -> Self {
        Self {
            title: title.into(),
            routes: Router::new(),
            metrics: Metrics::new(),
            readiness: Readiness::new(),
            openapi: None,
        }
    }

    /// Adds the service's routes (state already supplied with `with_state`).
    pub fn routes(mut self, routes: Router) -> Self {
        self.routes = self.routes.merge(routes);
        self
    }

    pub fn metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn readiness(mut self, readiness: Readiness) -> Self {
        self.readiness = readiness;
        self
    }

    /// The service's OpenAPI document (e.g. from `#[derive(utoipa::OpenApi)]`).
    pub fn openapi(mut self, document: OpenApiDocument) -> Self {
        self.openapi = Some(document);
        self
    }

    pub fn build(self) -> Router {
        let document = docs::document(self.openapi, &self.title);
        let openapi_json: Arc<str> = document
            .to_pretty_json()
            .unwrap_or_else(|_| "{}".to_owned())
            .into();
        let docs_page: Arc<str> = docs::render_html(&document).into();
        let operations = Router::new()
            .route("/health/live", get(health::live))
            .route("/health/ready", get(health::ready))
            .route("/metrics", get(health::metrics))
            .with_state(OperationsState {
                metrics: self.metrics.clone(),
                readiness: self.readiness,
            });
        let documentation = Router::new()
            .route(
                "/openapi.json",
                get(move || {
                    let json = openapi_json.clone();
                    async move {
                        (
                            [(header::CONTENT_TYPE, "application/json")],
                            json.to_string(),
                        )
                    }
                }),
            )
            .route(
                "/docs",
                get(move || {
                    let page = docs_page.clone();
                    async move { Html(page.to_string()) }
                }),
            );
        self.routes
            .merge(operations)
            .merge(documentation)
            .fallback(no_route)
            .method_not_allowed_fallback(method_not_allowed)
            .layer(axum::middleware::from_fn_with_state(
                self.metrics,
                correlation::trace_requests,
            ))
    }
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> impl IntoResponse {
    let body = ErrorBody {
        error: "method_not_allowed".to_owned(),
        message: format!("{} does not accept {method}", uri.path()),
    };
    (axum::http::StatusCode::METHOD_NOT_ALLOWED, axum::Json(body))
}

/// How long a service's tasks get to finish once shutdown starts.
pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// A service's last step: serves `router` until `tasks`' shutdown starts, then shuts `tasks` down (waiting at
/// most [`SHUTDOWN_GRACE`]) and reports how serving went.
pub async fn serve_until_shutdown(
    tasks: &crate::Shutdown,
    listener: TcpListener,
    router: Router,
) -> std::io::Result<()> {
    let token = tasks.token();
    let served = serve(listener, router, async move { token.cancelled().await }).await;
    tasks.shut_down(SHUTDOWN_GRACE).await;
    served
}

/// A service binary's `main` after parsing its options: binds `address`, then runs `run` with the listener and
/// a token that Ctrl-C / SIGTERM cancels.
pub async fn run_until_signalled<F, Fut, E>(address: std::net::SocketAddr, run: F) -> Result<(), E>
where
    F: FnOnce(TcpListener, tokio_util::sync::CancellationToken) -> Fut,
    Fut: Future<Output = Result<(), E>>,
    E: From<std::io::Error>,
{
    let listener = TcpListener::bind(address).await.map_err(|error| {
        std::io::Error::new(error.kind(), format!("binding {address}: {error}"))
    })?;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let signalled = shutdown.clone();
    tokio::spawn(async move {
        crate::shutdown_signal().await;
        signalled.cancel();
    });
    run(listener, shutdown).await
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting and lets requests in progress
/// finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "serving HTTP");
    }
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
