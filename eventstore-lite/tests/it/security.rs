//! Secure mode: TLS (a self-signed certificate made for the test) and Basic authentication with EventStoreDB's
//! default users; bad credentials and anonymous callers are refused where EventStoreDB refuses them.

use eventstore::{Error, ReadAllOptions};

use crate::helpers::{client_for, json_event, quick_to_connect, unique_stream, within};

struct SecureServer {
    server: eventstore_lite::RunningServer,
    _certificates: tempfile::TempDir,
}

async fn spawn_secure() -> SecureServer {
    let certificates = tempfile::tempdir().expect("a temporary directory");
    let identity =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("a self-signed certificate");
    let cert_file = certificates.path().join("node.crt");
    let key_file = certificates.path().join("node.key");
    std::fs::write(&cert_file, identity.cert.pem()).expect("certificate written");
    std::fs::write(&key_file, identity.signing_key.serialize_pem()).expect("key written");
    let mut config = eventstore_lite::ServerConfig::in_memory();
    config.insecure = false;
    config.certificate_file = Some(cert_file);
    config.certificate_private_key_file = Some(key_file);
    let server = within("the secure server to start", eventstore_lite::start(config))
        .await
        .expect("the secure server starts");
    SecureServer {
        server,
        _certificates: certificates,
    }
}

fn secure_client(server: &SecureServer, credentials: Option<&str>) -> eventstore::Client {
    let credentials = credentials.map(|c| format!("{c}@")).unwrap_or_default();
    let addr = server.server.local_addr();
    client_for(&quick_to_connect(&format!(
        "esdb://{credentials}{addr}?tls=true&tlsVerifyCert=false"
    )))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_works_over_tls_and_bad_credentials_are_refused() -> anyhow::Result<()> {
    let server = spawn_secure().await;
    let stream = unique_stream("account");

    let admin = secure_client(&server, Some("admin:changeit"));
    within(
        "an append over TLS",
        admin.append_to_stream(
            stream.as_str(),
            &Default::default(),
            json_event("Opened", 0),
        ),
    )
    .await?;
    let mut read = within(
        "a $all read",
        admin.read_all(&ReadAllOptions::default().max_count(10)),
    )
    .await?;
    let mut seen = 0;
    while within("the next event", read.next()).await?.is_some() {
        seen += 1;
    }
    assert!(seen >= 1, "admin reads $all");

    let intruder = secure_client(&server, Some("admin:wrong"));
    let refused = within(
        "a refused append",
        intruder.append_to_stream(
            stream.as_str(),
            &Default::default(),
            json_event("Opened", 1),
        ),
    )
    .await;
    assert!(
        matches!(refused, Err(Error::AccessDenied)),
        "wrong password: {refused:?}"
    );

    let anonymous = secure_client(&server, None);
    let refused = match within(
        "an anonymous $all read",
        anonymous.read_all(&ReadAllOptions::default().max_count(1)),
    )
    .await
    {
        Err(error) => Err(error),
        Ok(mut read) => within("the anonymous read's first answer", read.next())
            .await
            .map(|_| ()),
    };
    assert!(
        matches!(refused, Err(Error::AccessDenied)),
        "anonymous $all read: {refused:?}"
    );

    let ops = secure_client(&server, Some("ops:changeit"));
    let refused = within(
        "ops writing a system stream",
        ops.append_to_stream(
            "$system-settings",
            &Default::default(),
            json_event("Changed", 0),
        ),
    )
    .await;
    assert!(
        matches!(refused, Err(Error::AccessDenied)),
        "ops may not write system streams: {refused:?}"
    );

    server.server.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secure_server_needs_a_certificate() {
    let mut config = eventstore_lite::ServerConfig::in_memory();
    config.insecure = false;
    let error = eventstore_lite::start(config)
        .await
        .err()
        .expect("no certificate, no secure server");
    assert!(
        error.to_string().contains("--certificate-file"),
        "the error says what is missing: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_users_authenticate_and_stream_acls_keep_domains_apart() -> anyhow::Result<()> {
    let server = spawn_secure().await;
    let base = format!("https://{}", server.server.local_addr());
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()?;
    for (login, group) in [
        ("accounts", "accounts-domain"),
        ("payments", "payments-domain"),
    ] {
        let created = http
            .post(format!("{base}/users"))
            .basic_auth("admin", Some("changeit"))
            .json(&serde_json::json!({ "loginName": login, "fullName": login, "groups": [group], "password": "s3cret" }))
            .send()
            .await?;
        assert_eq!(created.status(), reqwest::StatusCode::CREATED, "{login}");
    }
    let again = http
        .post(format!("{base}/users"))
        .basic_auth("admin", Some("changeit"))
        .json(&serde_json::json!({ "loginName": "accounts", "password": "x" }))
        .send()
        .await?;
    assert_eq!(again.status(), reqwest::StatusCode::CONFLICT);
    let not_admin = http
        .get(format!("{base}/users"))
        .basic_auth("payments", Some("s3cret"))
        .send()
        .await?;
    assert_eq!(not_admin.status(), reqwest::StatusCode::UNAUTHORIZED);
    let listed: serde_json::Value = http
        .get(format!("{base}/users"))
        .basic_auth("admin", Some("changeit"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(2), "{listed}");

    // The accounts domain owns account-… streams: only its group may write them; everyone known may read.
    let admin = secure_client(&server, Some("admin:changeit"));
    let stream = unique_stream("account");
    let acl = eventstore::StreamMetadata::builder()
        .acl(eventstore::Acl::Stream(
            eventstore::StreamAclBuilder::new()
                .add_write_roles("accounts-domain")
                .add_read_roles("$all")
                .build(),
        ))
        .build();
    within(
        "setting the ACL",
        admin.set_stream_metadata(stream.as_str(), &Default::default(), &acl),
    )
    .await?;

    let accounts = secure_client(&server, Some("accounts:s3cret"));
    within(
        "the owner's append",
        accounts.append_to_stream(
            stream.as_str(),
            &Default::default(),
            json_event("Opened", 0),
        ),
    )
    .await?;
    let payments = secure_client(&server, Some("payments:s3cret"));
    let refused = within(
        "another domain's append",
        payments.append_to_stream(
            stream.as_str(),
            &Default::default(),
            json_event("Opened", 1),
        ),
    )
    .await;
    assert!(
        matches!(refused, Err(Error::AccessDenied)),
        "another domain cannot write: {refused:?}"
    );
    let mut read = within(
        "another domain's read",
        payments.read_stream(stream.as_str(), &Default::default()),
    )
    .await?;
    assert!(
        within("the first event", read.next()).await?.is_some(),
        "reading is allowed by $r"
    );

    let wrong = secure_client(&server, Some("accounts:wrong"));
    let refused = within(
        "a wrong password",
        wrong.append_to_stream(
            stream.as_str(),
            &Default::default(),
            json_event("Opened", 2),
        ),
    )
    .await;
    assert!(matches!(refused, Err(Error::AccessDenied)), "{refused:?}");

    let disabled = http
        .post(format!("{base}/users/accounts/command/disable"))
        .basic_auth("admin", Some("changeit"))
        .send()
        .await?;
    assert!(disabled.status().is_success());
    let fresh = secure_client(&server, Some("accounts:s3cret"));
    let refused = within(
        "a disabled user",
        fresh.append_to_stream(
            stream.as_str(),
            &Default::default(),
            json_event("Opened", 3),
        ),
    )
    .await;
    assert!(matches!(refused, Err(Error::AccessDenied)), "{refused:?}");

    server.server.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_mode_serves_tls_with_a_self_signed_certificate() -> anyhow::Result<()> {
    let mut config = eventstore_lite::ServerConfig::in_memory();
    config.insecure = false;
    config.dev = true;
    let server = within("the dev server to start", eventstore_lite::start(config)).await?;
    let client = client_for(&quick_to_connect(&server.connection_string()));
    let stream = unique_stream("dev");
    within(
        "an append in dev mode",
        client.append_to_stream(
            stream.as_str(),
            &Default::default(),
            json_event("Opened", 0),
        ),
    )
    .await?;
    server.shutdown().await
}
