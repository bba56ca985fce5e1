//! ServerFeatures (what this server implements, so clients pick gRPC paths) and Gossip (one alive leader: us).

use std::net::SocketAddr;

use tonic::{Request, Response, Status};

use super::proto::gossip::{self, gossip_server, ClusterInfo, MemberInfo};
use super::proto::server_features::{server_features_server, SupportedMethod, SupportedMethods};
use super::proto::Empty;
use super::{uuid_to_proto, UuidFormat};

/// The version clients see; they parse it as dotted numbers.
pub const SERVER_VERSION: &str = "24.10.0";

/// (service, method, features) for every RPC implemented, lower-cased as EventStoreDB lists them.
const METHODS: &[(&str, &str, &[&str])] = &[
    (
        "event_store.client.streams.streams",
        "read",
        &["position", "events"],
    ),
    ("event_store.client.streams.streams", "append", &[]),
    ("event_store.client.streams.streams", "delete", &[]),
    ("event_store.client.streams.streams", "tombstone", &[]),
    (
        "event_store.client.streams.streams",
        "batchappend",
        &["deadline_duration"],
    ),
    (
        "event_store.client.persistent_subscriptions.persistentsubscriptions",
        "create",
        &["stream", "all"],
    ),
    (
        "event_store.client.persistent_subscriptions.persistentsubscriptions",
        "update",
        &["stream", "all"],
    ),
    (
        "event_store.client.persistent_subscriptions.persistentsubscriptions",
        "delete",
        &["stream", "all"],
    ),
    (
        "event_store.client.persistent_subscriptions.persistentsubscriptions",
        "read",
        &["stream", "all"],
    ),
    (
        "event_store.client.persistent_subscriptions.persistentsubscriptions",
        "getinfo",
        &["stream", "all"],
    ),
    (
        "event_store.client.persistent_subscriptions.persistentsubscriptions",
        "replayparked",
        &["stream", "all"],
    ),
    (
        "event_store.client.persistent_subscriptions.persistentsubscriptions",
        "list",
        &["stream", "all"],
    ),
    (
        "event_store.client.persistent_subscriptions.persistentsubscriptions",
        "restartsubsystem",
        &[],
    ),
    (
        "event_store.client.projections.projections",
        "create",
        &["track_emitted_streams"],
    ),
    ("event_store.client.projections.projections", "update", &[]),
    ("event_store.client.projections.projections", "delete", &[]),
    (
        "event_store.client.projections.projections",
        "statistics",
        &[],
    ),
    ("event_store.client.projections.projections", "disable", &[]),
    ("event_store.client.projections.projections", "enable", &[]),
    ("event_store.client.projections.projections", "reset", &[]),
    ("event_store.client.projections.projections", "state", &[]),
    ("event_store.client.projections.projections", "result", &[]),
    (
        "event_store.client.projections.projections",
        "restartsubsystem",
        &[],
    ),
    ("event_store.client.gossip.gossip", "read", &[]),
    (
        "event_store.client.server_features.serverfeatures",
        "getsupportedmethods",
        &[],
    ),
];

pub struct FeaturesService;

#[tonic::async_trait]
impl server_features_server::ServerFeatures for FeaturesService {
    async fn get_supported_methods(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<SupportedMethods>, Status> {
        let methods = METHODS
            .iter()
            .map(|(service, method, features)| SupportedMethod {
                method_name: (*method).to_owned(),
                service_name: (*service).to_owned(),
                features: features.iter().map(|f| (*f).to_owned()).collect(),
            })
            .collect();
        Ok(Response::new(SupportedMethods {
            methods,
            event_store_server_version: SERVER_VERSION.to_owned(),
        }))
    }
}

pub struct GossipService {
    pub advertised: SocketAddr,
    pub instance_id: uuid::Uuid,
}

#[tonic::async_trait]
impl gossip_server::Gossip for GossipService {
    async fn read(&self, _: Request<Empty>) -> Result<Response<ClusterInfo>, Status> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let member = MemberInfo {
            instance_id: Some(uuid_to_proto(self.instance_id, UuidFormat::String)),
            time_stamp: (now.as_nanos() / 100) as i64,
            state: gossip::member_info::VNodeState::Leader as i32,
            is_alive: true,
            http_end_point: Some(gossip::EndPoint {
                address: self.advertised.ip().to_string(),
                port: u32::from(self.advertised.port()),
            }),
        };
        Ok(Response::new(ClusterInfo {
            members: vec![member],
        }))
    }
}
