//! The sanctioned-names list over HTTP (kept with snapshots) and `/screen` scores.

use events::streams;
use infrastructure::snapshot_stream;
use serde_json::{json, Value};

use crate::helpers::*;

fn names(body: &Value) -> Vec<String> {
    body.as_array()
        .expect("an array")
        .iter()
        .map(|entry| entry["name"].as_str().expect("a name").to_owned())
        .collect()
}

#[tokio::test]
async fn names_are_added_once_listed_and_removed() {
    let app = spawn_app().await;
    let (status, body) = app
        .post("/sanctioned-names", &json!({"name": "Vladimir Petrov"}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["name"], "Vladimir Petrov");
    let (status, _) = app
        .post("/sanctioned-names", &json!({"name": "VLADIMIR  PETROV"}))
        .await;
    assert_eq!(status, 200, "already listed");
    for name in ["Acme Shell Holdings", "Ivan Drago", "Boris Badenov"] {
        let (status, _) = app.post("/sanctioned-names", &json!({"name": name})).await;
        assert_eq!(status, 201);
    }
    let (status, listed) = app.get("/sanctioned-names").await;
    assert_eq!(status, 200);
    assert_eq!(
        names(&listed),
        [
            "Acme Shell Holdings",
            "Boris Badenov",
            "Ivan Drago",
            "Vladimir Petrov"
        ]
    );

    let (status, _) = app.delete("/sanctioned-names/ivan%20drago").await;
    assert_eq!(status, 204);
    let (status, body) = app.delete("/sanctioned-names/Nobody").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"], "not_found");
    let (status, _) = app
        .post("/sanctioned-names", &json!({"name": " ... "}))
        .await;
    assert_eq!(status, 422);
    let (status, listed) = app.get("/sanctioned-names").await;
    assert_eq!(status, 200);
    assert_eq!(
        names(&listed),
        ["Acme Shell Holdings", "Boris Badenov", "Vladimir Petrov"]
    );

    // Five events with a snapshot every three: the list was snapshotted.
    let snapshots = app
        .store
        .client()
        .read_stream(
            snapshot_stream(streams::SANCTIONED_NAMES).as_str(),
            &Default::default(),
        )
        .await;
    let mut snapshots = snapshots.expect("the snapshot stream reads");
    assert!(
        snapshots.next().await.expect("reads").is_some(),
        "a snapshot was written"
    );
    app.stop().await;
}

#[tokio::test]
async fn screen_returns_the_matches_with_scores() {
    let app = spawn_app().await;
    for name in ["Vladimir Petrov", "Acme Shell Holdings"] {
        app.post("/sanctioned-names", &json!({"name": name})).await;
    }
    let (status, body) = app
        .post("/screen", &json!({"name": "Mr Wladimir Petrow"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let matches = body["matches"].as_array().expect("matches");
    assert_eq!(matches.len(), 1);
    assert_eq!(matches[0]["sanctionedName"], "Vladimir Petrov");
    let score = matches[0]["score"].as_f64().expect("a score");
    assert!((0.9..=1.0).contains(&score), "{score}");
    assert_eq!(body["threshold"], 0.9);

    let (status, body) = app.post("/screen", &json!({"name": "Ada Lovelace"})).await;
    assert_eq!(status, 200);
    assert_eq!(body["matches"], json!([]));
    let (status, _) = app.post("/screen", &json!({"nom": "x"})).await;
    assert_eq!(status, 422);

    let (_, doc) = app.get("/openapi.json").await;
    for path in [
        "/sanctioned-names",
        "/sanctioned-names/{name}",
        "/screen",
        "/held-payments",
        "/held-payments/{paymentId}/release",
        "/held-payments/{paymentId}/reject",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} is documented");
    }
    app.stop().await;
}
