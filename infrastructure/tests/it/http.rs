//! The HTTP scaffolding: the error mapping, the extractors' rejections as JSON errors, health and readiness,
//! `/metrics`, correlation ids, the OpenAPI document and docs page, and `serve` stopping gracefully.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::BodyExt;
use infrastructure::http::{
    serve, ApiError, ApiJson, ApiPath, ApiQuery, CorrelationId, ErrorBody, Readiness,
    RouterBuilder, CORRELATION_ID_HEADER,
};
use infrastructure::{ActualRevision, CancellationToken, Metrics, StoreError};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;
use uuid::Uuid;

use crate::helpers::within;

#[derive(Debug, Deserialize)]
struct Deposit {
    amount: u64,
}

#[derive(Debug, Deserialize)]
struct Paging {
    limit: u32,
}

fn error_for(kind: &str) -> ApiError {
    match kind {
        "bad" => ApiError::bad_request("sortCode must be 6 digits"),
        "missing" => ApiError::not_found("account 12345612345678 does not exist"),
        "conflict" => ApiError::conflict("the account was opened already"),
        "rule" => ApiError::unprocessable("insufficient funds"),
        "wev" => StoreError::WrongExpectedVersion {
            stream: "account-1".to_owned(),
            expected: infrastructure::eventstore::ExpectedRevision::Exact(1),
            actual: ActualRevision::Revision(2),
        }
        .into(),
        "gone" => StoreError::NotFound("account-1".to_owned()).into(),
        _ => ApiError::Internal("the ledger is inconsistent: secret detail".to_owned()),
    }
}

fn app(readiness: Readiness, metrics: Metrics) -> Router {
    let routes =
        Router::new()
            .route(
                "/errors/:kind",
                get(|ApiPath(kind): ApiPath<String>| async move { Err::<(), _>(error_for(&kind)) }),
            )
            .route(
                "/deposits",
                post(|ApiJson(deposit): ApiJson<Deposit>| async move {
                    format!("deposited {}", deposit.amount)
                }),
            )
            .route(
                "/pages",
                get(|ApiQuery(paging): ApiQuery<Paging>| async move {
                    format!("limit {}", paging.limit)
                }),
            )
            .route(
                "/accounts/:number",
                get(|ApiPath(number): ApiPath<u32>| async move { format!("account {number}") }),
            )
            .route(
                "/whoami",
                get(|id: CorrelationId| async move { id.0.to_string() }),
            );
    RouterBuilder::new("Test service")
        .routes(routes)
        .metrics(metrics)
        .readiness(readiness)
        .build()
}

struct Answer {
    status: StatusCode,
    correlation_id: Option<String>,
    content_type: Option<String>,
    body: String,
}

impl Answer {
    fn error(&self) -> ErrorBody {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("an error body, got {:?}: {e}", self.body))
    }

    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("JSON, got {:?}: {e}", self.body))
    }
}

async fn call(router: &Router, request: Request<Body>) -> Answer {
    let response = router
        .clone()
        .oneshot(request)
        .await
        .expect("the router answers");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let status = response.status();
    let correlation_id = header(CORRELATION_ID_HEADER);
    let content_type = header("content-type");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the body reads")
        .to_bytes();
    Answer {
        status,
        correlation_id,
        content_type,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

async fn get_path(router: &Router, path: &str) -> Answer {
    call(
        router,
        Request::get(path).body(Body::empty()).expect("a request"),
    )
    .await
}

async fn post_json(router: &Router, path: &str, body: &str) -> Answer {
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .expect("a request");
    call(router, request).await
}

#[tokio::test]
async fn errors_map_to_their_documented_status_and_json_body() {
    let router = app(Readiness::new(), Metrics::new());
    let table = [
        ("bad", 400, "bad_request", Some("sortCode must be 6 digits")),
        (
            "missing",
            404,
            "not_found",
            Some("account 12345612345678 does not exist"),
        ),
        (
            "conflict",
            409,
            "conflict",
            Some("the account was opened already"),
        ),
        (
            "rule",
            422,
            "unprocessable_entity",
            Some("insufficient funds"),
        ),
        ("wev", 409, "conflict", None),
        ("gone", 404, "not_found", None),
        ("bug", 500, "internal_error", None),
    ];
    for (kind, status, code, message) in table {
        let answer = get_path(&router, &format!("/errors/{kind}")).await;
        assert_eq!(answer.status.as_u16(), status, "{kind}: {}", answer.body);
        assert_eq!(
            answer.content_type.as_deref(),
            Some("application/json"),
            "{kind}"
        );
        let body = answer.error();
        assert_eq!(body.error, code, "{kind}");
        if let Some(message) = message {
            assert_eq!(body.message, message, "{kind}");
        }
        assert!(!body.message.is_empty());
    }
    let internal = get_path(&router, "/errors/bug").await.error();
    assert!(
        !internal.message.contains("secret"),
        "internal details stay in the log: {}",
        internal.message
    );
}

#[tokio::test]
async fn malformed_requests_get_json_errors_too() {
    let router = app(Readiness::new(), Metrics::new());
    let table: [(Answer, u16, &str); 6] = [
        (
            post_json(&router, "/deposits", "{not json").await,
            400,
            "bad_request",
        ),
        (
            post_json(&router, "/deposits", r#"{"amount": "lots"}"#).await,
            422,
            "unprocessable_entity",
        ),
        (
            get_path(&router, "/pages?limit=many").await,
            400,
            "bad_request",
        ),
        (get_path(&router, "/accounts/abc").await, 400, "bad_request"),
        (get_path(&router, "/no/such/route").await, 404, "not_found"),
        (
            call(
                &router,
                Request::delete("/deposits")
                    .body(Body::empty())
                    .expect("a request"),
            )
            .await,
            405,
            "method_not_allowed",
        ),
    ];
    for (answer, status, code) in table {
        assert_eq!(answer.status.as_u16(), status, "{}", answer.body);
        assert_eq!(answer.error().error, code, "{}", answer.body);
    }
    let ok = post_json(&router, "/deposits", r#"{"amount": 12}"#).await;
    assert_eq!(
        (ok.status, ok.body.as_str()),
        (StatusCode::OK, "deposited 12")
    );
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let readiness = Readiness::new();
    let connected = readiness.flag("eventstore");
    let metrics = Metrics::new();
    metrics
        .counter("payments_received_total", "Payments received.", &[])
        .add(3);
    let router = app(readiness.clone(), metrics);

    let live = get_path(&router, "/health/live").await;
    assert_eq!(
        (live.status, live.json()["status"].clone()),
        (StatusCode::OK, "live".into())
    );

    let not_ready = get_path(&router, "/health/ready").await;
    assert_eq!(not_ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        not_ready.json(),
        serde_json::json!({"status": "not_ready", "checks": {"eventstore": false}})
    );
    connected.set(true);
    readiness.add_check("projector", || true);
    let ready = get_path(&router, "/health/ready").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(
        ready.json(),
        serde_json::json!({"status": "ready", "checks": {"eventstore": true, "projector": true}})
    );

    get_path(&router, "/errors/missing").await;
    let scraped = get_path(&router, "/metrics").await;
    assert_eq!(scraped.status, StatusCode::OK);
    assert!(scraped
        .content_type
        .as_deref()
        .is_some_and(|t| t.starts_with("text/plain")));
    for line in [
        "# TYPE payments_received_total counter",
        "payments_received_total 3",
        "http_requests_total{method=\"GET\",route=\"/errors/:kind\",status=\"404\"} 1",
        "http_requests_total{method=\"GET\",route=\"/health/ready\",status=\"503\"} 1",
    ] {
        assert!(scraped.body.contains(line), "{line} in\n{}", scraped.body);
    }
}

#[tokio::test]
async fn correlation_ids_are_taken_from_the_request_or_created_and_echoed() {
    let router = app(Readiness::new(), Metrics::new());
    let given = Uuid::new_v4();
    let request = Request::get("/whoami")
        .header(CORRELATION_ID_HEADER, given.to_string())
        .body(Body::empty())
        .expect("a request");
    let answer = call(&router, request).await;
    assert_eq!(
        answer.body,
        given.to_string(),
        "the handler sees the caller's id"
    );
    assert_eq!(
        answer.correlation_id,
        Some(given.to_string()),
        "and the response carries it"
    );

    let fresh = get_path(&router, "/whoami").await;
    let id = fresh.correlation_id.expect("a correlation id is created");
    assert_eq!(fresh.body, id);
    assert!(Uuid::parse_str(&id).is_ok());

    // A caller's id that is not a UUID still correlates, stably.
    let foreign = |router: Router| async move {
        let request = Request::get("/whoami")
            .header(CORRELATION_ID_HEADER, "scheme-msg-77")
            .body(Body::empty())
            .expect("a request");
        call(&router, request).await.body
    };
    assert_eq!(foreign(router.clone()).await, foreign(router.clone()).await);

    // Errors carry it too, and it becomes the events' correlation id.
    assert!(get_path(&router, "/errors/bad")
        .await
        .correlation_id
        .is_some());
    let metadata = CorrelationId(given).metadata();
    assert_eq!(
        (metadata.correlation_id, metadata.causation_id),
        (given, given)
    );
}

#[tokio::test]
async fn the_openapi_document_and_docs_page_describe_the_service() {
    #[derive(utoipa::OpenApi)]
    #[openapi(info(title = "Accounts API", version = "1.2.3"), paths(list_accounts))]
    struct AccountsApi;

    /// Lists accounts.
    #[utoipa::path(get, path = "/accounts", responses((status = 200, description = "The accounts")))]
    #[allow(dead_code)]
    async fn list_accounts() {}

    let router = RouterBuilder::new("ignored when a document is given")
        .openapi(<AccountsApi as utoipa::OpenApi>::openapi())
        .build();
    let document = get_path(&router, "/openapi.json").await;
    assert_eq!(document.status, StatusCode::OK);
    let json = document.json();
    assert_eq!(json["info"]["title"], "Accounts API");
    for path in ["/accounts", "/health/live", "/health/ready", "/metrics"] {
        assert!(json["paths"].get(path).is_some(), "{path} in the document");
    }
    assert!(json["components"]["schemas"].get("ErrorBody").is_some());

    let docs = get_path(&router, "/docs").await;
    assert_eq!(docs.status, StatusCode::OK);
    assert!(docs
        .content_type
        .as_deref()
        .is_some_and(|t| t.starts_with("text/html")));
    assert!(docs.body.contains("Accounts API") && docs.body.contains("<code>/accounts</code>"));
    assert!(docs.body.contains("Lists accounts."));
}

#[tokio::test]
async fn serve_answers_until_shutdown_then_returns() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let address = listener.local_addr().expect("an address");
    let shutdown = CancellationToken::new();
    let stop = shutdown.clone();
    let server = tokio::spawn(serve(
        listener,
        app(Readiness::new(), Metrics::new()),
        async move { stop.cancelled().await },
    ));

    let mut socket = tokio::net::TcpStream::connect(address)
        .await
        .expect("connects");
    socket
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .await
        .expect("sends");
    let mut raw = Vec::new();
    within("the answer", socket.read_to_end(&mut raw))
        .await
        .expect("reads");
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains(r#"{"status":"live"}"#), "{text}");

    shutdown.cancel();
    within("serve to return", server)
        .await
        .expect("the task runs")
        .expect("serve ends cleanly");
    let refused = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::net::TcpStream::connect(address),
    )
    .await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "nothing listens after shutdown"
    );
}
