//! Starting and stopping the server: opens the store, binds one port for gRPC (HTTP/2) and HTTP/1.1 endpoints,
//! with TLS and Basic authentication unless `--insecure`, and shuts down gracefully.

use std::net::SocketAddr;
use std::path::Path;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::auth::{Principal, Users};
use crate::grpc::features::{FeaturesService, GossipService};
use crate::grpc::persistent::PersistentService;
use crate::grpc::projections::ProjectionsService;
use crate::grpc::proto::gossip::gossip_server::GossipServer;
use crate::grpc::proto::persistent_subscriptions::persistent_subscriptions_server::PersistentSubscriptionsServer;
use crate::grpc::proto::projections::projections_server::ProjectionsServer;
use crate::grpc::proto::server_features::server_features_server::ServerFeaturesServer;
use crate::grpc::proto::streams::streams_server::StreamsServer;
use crate::grpc::streams::StreamsService;
use crate::http::{self, HttpState};
use crate::persistent::Subsystem;
use crate::projections::subsystem::Subsystem as ProjectionSubsystem;
use crate::storage::{Store, StoreOptions, MAX_APPEND_SIZE};
use crate::{ServerConfig, StorageLocation};

/// How long open connections get to finish after shutdown starts.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// The remote address of the connection a request came on (in the request's extensions).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerAddr(pub SocketAddr);

/// A server started by [`start`].
pub struct RunningServer {
    addr: SocketAddr,
    secure: bool,
    shutdown: CancellationToken,
    connections: TaskTracker,
    accept_loop: tokio::task::JoinHandle<()>,
    subsystem: Arc<Subsystem>,
    projections: Arc<ProjectionSubsystem>,
    store: Store,
}

impl RunningServer {
    /// The address the server listens on (gRPC and HTTP share it).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A connection string for the official clients: `esdb://host:port?tls=false`, or with `tls=true` and the
    /// default admin credentials when secure (certificate verification off, as for a self-signed certificate).
    pub fn connection_string(&self) -> String {
        if self.secure {
            format!(
                "esdb://admin:changeit@{}?tls=true&tlsVerifyCert=false",
                self.addr
            )
        } else {
            format!("esdb://{}?tls=false", self.addr)
        }
    }

    /// Stops accepting, ends open streams, waits for connections to drain, then flushes and closes the store.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        self.subsystem.shutdown().await;
        self.projections.shutdown().await;
        self.stop_serving().await;
        self.store.close().await;
        self.release().await;
        Ok(())
    }

    /// Simulates a crash: stops serving at once and closes the store without its final index checkpoint.
    pub async fn crash(self) {
        self.projections.halt().await;
        self.accept_loop.abort();
        self.shutdown.cancel();
        self.connections.close();
        let _ = tokio::time::timeout(DRAIN_TIMEOUT, self.connections.wait()).await;
        self.store.crash().await;
        self.release().await;
    }

    /// Drops the server and waits until no task holds the store any more, so that its directory can be opened
    /// again (by a restart in the same process) as soon as this returns.
    async fn release(self) {
        let released = self.store.released();
        drop(self);
        if !released.wait(DRAIN_TIMEOUT).await {
            tracing::warn!("the store is still held {DRAIN_TIMEOUT:?} after the server stopped");
        }
    }

    async fn stop_serving(&self) {
        self.shutdown.cancel();
        self.connections.close();
        if tokio::time::timeout(DRAIN_TIMEOUT, self.connections.wait())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
        }
        self.accept_loop.abort();
    }

    /// Waits until shutdown was requested through [`RunningServer::shutdown_token`].
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }
}

/// Opens the store and starts serving.
pub async fn start(config: ServerConfig) -> anyhow::Result<RunningServer> {
    let opened = Instant::now();
    let directory = match &config.storage {
        StorageLocation::InMemory => None,
        StorageLocation::Directory(dir) => Some(dir.clone()),
    };
    let options = StoreOptions::new(directory, config.start_standard_projections);
    let store = tokio::task::spawn_blocking(move || Store::open(options))
        .await
        .context("store opening task failed")?
        .context("cannot open the store")?;
    let tls = if config.insecure {
        None
    } else {
        Some(tls_acceptor(&config)?)
    };
    let listener = TcpListener::bind((config.node_ip, config.http_port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", config.node_ip, config.http_port))?;
    let addr = listener
        .local_addr()
        .context("listener has no local address")?;
    let shutdown = CancellationToken::new();
    let users = (!config.insecure).then(|| {
        Arc::new(
            Users::new(
                config.default_admin_password.clone(),
                config.default_ops_password.clone(),
            )
            .with_store(store.clone()),
        )
    });

    let subsystem = Arc::new(
        Subsystem::start(store.clone(), config.live_read_interval)
            .await
            .context("cannot start the persistent subscriptions")?,
    );
    let projections = Arc::new(
        ProjectionSubsystem::start(store.clone())
            .await
            .context("cannot start the projections")?,
    );
    let streams = StreamsService::new(store.clone(), shutdown.clone(), config.live_read_interval);
    let live_subscriptions = streams.live_subscriptions.clone();
    let grpc = tonic::service::Routes::new(
        StreamsServer::new(streams)
            .max_decoding_message_size(MAX_APPEND_SIZE + 1024 * 1024)
            .max_encoding_message_size(usize::MAX),
    )
    .add_service(PersistentSubscriptionsServer::new(PersistentService::new(
        subsystem.clone(),
    )))
    .add_service(ProjectionsServer::new(ProjectionsService::new(
        projections.clone(),
    )))
    .add_service(ServerFeaturesServer::new(FeaturesService))
    .add_service(GossipServer::new(GossipService {
        advertised: addr,
        instance_id: uuid::Uuid::new_v4(),
    }))
    .into_axum_router();
    let http_state = HttpState {
        store: store.clone(),
        users: users.clone(),
        started: Instant::now(),
        live_subscriptions,
        secure: tls.is_some(),
    };
    // gRPC calls go to the gRPC services (unknown ones get UNIMPLEMENTED); anything else unknown is a plain 404.
    let grpc_fallback = tower::service_fn(move |request: Request| {
        let grpc = grpc.clone();
        async move {
            if is_grpc(&request) {
                grpc.oneshot(request).await
            } else {
                Ok(axum::http::StatusCode::NOT_FOUND.into_response())
            }
        }
    });
    let app = http::router(http_state)
        .fallback_service(grpc_fallback)
        .layer(axum::middleware::from_fn_with_state(users, authenticate));

    let connections = TaskTracker::new();
    let accept_loop = tokio::spawn(accept_loop(
        listener,
        tls,
        app,
        shutdown.clone(),
        connections.clone(),
    ));
    tracing::info!(%addr, secure = !config.insecure, ready_in = ?opened.elapsed(), "eventstore-lite is serving");
    Ok(RunningServer {
        addr,
        secure: !config.insecure,
        shutdown,
        connections,
        accept_loop,
        subsystem,
        projections,
        store,
    })
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: axum::Router,
    shutdown: CancellationToken,
    connections: TaskTracker,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = tcp.set_nodelay(true);
        let tcp = QuickAck(tcp);
        let (app, shutdown, tls) = (app.clone(), shutdown.clone(), tls.clone());
        connections.spawn(async move {
            let app = app.layer(axum::Extension(PeerAddr(peer)));
            match tls {
                None => serve_connection(tcp, app, shutdown).await,
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(stream) => serve_connection(stream, app, shutdown).await,
                    Err(error) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                },
            }
        });
    }
}

async fn serve_connection<S>(stream: S, app: axum::Router, shutdown: CancellationToken)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .max_concurrent_streams(4096)
        .initial_stream_window_size(4 * 1024 * 1024)
        .initial_connection_window_size(16 * 1024 * 1024)
        .max_frame_size(1024 * 1024)
        .keep_alive_interval(Some(Duration::from_secs(20)))
        .keep_alive_timeout(Duration::from_secs(20));
    let service = TowerToHyperService::new(app);
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    let mut connection = pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%error, "connection ended with an error");
            }
        }
        () = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(DRAIN_TIMEOUT, connection.as_mut()).await;
        }
    }
}

/// A TCP stream that re-arms `TCP_QUICKACK` after every read. Clients that leave Nagle's algorithm on (the
/// official Rust client does) send a request's headers and body in two segments and wait for the first to be
/// acknowledged; with Linux's delayed acknowledgements that costs ~40 ms per call. Acknowledging at once removes
/// the stall.
struct QuickAck(tokio::net::TcpStream);

impl AsyncRead for QuickAck {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let result = std::pin::Pin::new(&mut this.0).poll_read(cx, buf);
        if let std::task::Poll::Ready(Ok(())) = &result {
            let _ = socket2::SockRef::from(&this.0).set_quickack(true);
        }
        result
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
}

/// Puts the caller's [`Principal`] in the request's extensions, or refuses bad credentials.
async fn authenticate(
    State(users): State<Option<Arc<Users>>>,
    mut request: Request,
    next: Next,
) -> Response {
    let principal = match users.as_ref() {
        None => Principal::insecure(),
        Some(users) => {
            let header = request
                .headers()
                .get(http::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            match users.authenticate(header) {
                Ok(principal) => principal,
                Err(_) => {
                    if is_grpc(&request) {
                        return tonic::Status::unauthenticated("Bad credentials")
                            .into_http()
                            .map(axum::body::Body::new);
                    }
                    return (axum::http::StatusCode::UNAUTHORIZED, "bad credentials")
                        .into_response();
                }
            }
        }
    };
    request.extensions_mut().insert(principal);
    next.run(request).await
}

fn is_grpc(request: &Request) -> bool {
    request
        .headers()
        .get(http::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"))
}

fn tls_acceptor(config: &ServerConfig) -> anyhow::Result<TlsAcceptor> {
    let (certs, key) = match (&config.certificate_file, &config.certificate_private_key_file) {
        (Some(cert_file), Some(key_file)) => {
            let certs = read_pem(cert_file, |reader| {
                rustls_pemfile::certs(reader).collect::<Result<Vec<_>, _>>()
            })?;
            let key = read_pem(key_file, |reader| rustls_pemfile::private_key(reader))?
                .with_context(|| format!("no private key in {}", key_file.display()))?;
            (certs, key)
        }
        _ if config.dev => dev_certificate(config)?,
        _ => anyhow::bail!(
            "a secure server needs --certificate-file and --certificate-private-key-file, or --dev for a \
             self-signed development certificate (or run with --insecure)"
        ),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("no TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and private key do not make a valid TLS identity")?;
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(tls)))
}

/// `--dev`: a self-signed certificate for the node's address and `localhost`, made at start-up, as
/// EventStoreDB's development mode does. Clients connect with `tls=true&tlsVerifyCert=false`.
fn dev_certificate(
    config: &ServerConfig,
) -> anyhow::Result<(
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
)> {
    let names = vec!["localhost".to_owned(), config.node_ip.to_string()];
    let identity = rcgen::generate_simple_self_signed(names)
        .context("cannot make a development certificate")?;
    let key = rustls::pki_types::PrivateKeyDer::try_from(identity.signing_key.serialize_der())
        .map_err(|e| anyhow::anyhow!("development key: {e}"))?;
    tracing::warn!("--dev: serving TLS with a self-signed development certificate");
    Ok((vec![identity.cert.der().clone()], key))
}

fn read_pem<T>(
    path: &Path,
    parse: impl FnOnce(&mut dyn std::io::BufRead) -> std::io::Result<T>,
) -> anyhow::Result<T> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    parse(&mut reader).with_context(|| format!("cannot parse PEM in {}", path.display()))
}
