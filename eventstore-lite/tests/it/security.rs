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
