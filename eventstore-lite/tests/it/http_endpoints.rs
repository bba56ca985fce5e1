//! HTTP on the gRPC port: `/health/live`, `/info` and `/stats` (JSON) and `/metrics` (Prometheus text), served
//! alongside gRPC on the same listener.

use crate::helpers::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_live_answers_without_a_body() -> anyhow::Result<()> {
    let app = spawn_app().await;

    let response = http_get(app.addr(), "/health/live").await;

    assert!(matches!(response.status, 200 | 204), "{response:?}");
    if response.status == 204 {
        assert!(response.body.is_empty());
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn info_and_stats_are_json() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let grpc_version = app.client.server_info().await?.version();

    let info = http_get(app.addr(), "/info").await;
    assert_eq!(info.status, 200, "{info:?}");
    assert!(
        info.header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{info:?}"
    );
    let info: serde_json::Value = serde_json::from_slice(&info.body)?;
    let es_version = info["esVersion"]
        .as_str()
        .unwrap_or_else(|| panic!("/info names esVersion: {info}"));
    assert!(
        es_version.starts_with(&format!(
            "{}.{}",
            grpc_version.major(),
            grpc_version.minor()
        )),
        "/info ({es_version}) and gRPC ({grpc_version}) agree on the version"
    );

    let stats = http_get(app.addr(), "/stats").await;
    assert_eq!(stats.status, 200, "{stats:?}");
    assert!(
        stats
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{stats:?}"
    );
    let stats: serde_json::Value = serde_json::from_slice(&stats.body)?;
    assert!(
        stats.as_object().is_some_and(|o| !o.is_empty()),
        "/stats is a non-empty object: {stats}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text() -> anyhow::Result<()> {
    let app = spawn_app().await;
    app.client
        .append_to_stream(
            unique_stream("metered"),
            &Default::default(),
            json_events("Counted", 0, 3),
        )
        .await?;

    let metrics = http_get(app.addr(), "/metrics").await;

    assert_eq!(metrics.status, 200, "{metrics:?}");
    assert!(
        metrics
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain")),
        "{metrics:?}"
    );
    let text = metrics.body_text();
    let mut samples = 0;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(comment) = line.strip_prefix('#') {
            let comment = comment.trim_start();
            if let Some(declaration) = comment.strip_prefix("TYPE ") {
                let kind = declaration.split_whitespace().nth(1).unwrap_or_default();
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "a known metric type in {line:?}"
                );
            }
            continue;
        }
        let (name, rest) = match line.rfind('}') {
            Some(end) => (
                &line[..line.find('{').expect("labels open")],
                &line[end + 1..],
            ),
            None => line
                .split_once(char::is_whitespace)
                .expect("a name and a value"),
        };
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "a metric name in {line:?}"
        );
        let value = rest.split_whitespace().next().expect("a value");
        assert!(value.parse::<f64>().is_ok(), "a numeric value in {line:?}");
        samples += 1;
    }
    assert!(samples > 0, "at least one sample:\n{text}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_grpc_share_the_port() -> anyhow::Result<()> {
    let app = spawn_app().await;
    let stream = unique_stream("shared");
    app.client
        .append_to_stream(
            stream.as_str(),
            &Default::default(),
            json_event("Before", 0),
        )
        .await?;

    for path in [
        "/health/live",
        "/info",
        "/stats",
        "/metrics",
        "/health/live",
    ] {
        let response = http_get(app.addr(), path).await;
        assert!(response.status < 300, "{path}: {response:?}");
    }
    let unknown = http_get(app.addr(), "/no-such-page").await;
    assert_eq!(
        unknown.status, 404,
        "an unknown page is not found: {unknown:?}"
    );

    app.client
        .append_to_stream(stream.as_str(), &Default::default(), json_event("After", 1))
        .await?;
    assert_eq!(stream_revisions(&app.client, &stream).await?, vec![0, 1]);
    let fresh = client_for(&quick_to_connect(&app.server.connection_string()));
    assert_eq!(
        stream_revisions(&fresh, &stream).await?,
        vec![0, 1],
        "a new gRPC connection after HTTP traffic"
    );
    Ok(())
}
