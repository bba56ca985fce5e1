//! Compiles eventstore-lite's own `.proto` files with protox (no system `protoc` needed) and generates the
//! tonic server traits.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "streams.proto",
        "persistent.proto",
        "projections.proto",
        "serverfeatures.proto",
        "gossip.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed=proto/{file}");
    }
    println!("cargo:rerun-if-changed=proto/shared.proto");
    println!("cargo:rerun-if-changed=proto/status.proto");
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_build::configure()
        .build_client(false)
        .build_server(true)
        .bytes(["."])
        // The metadata maps hold two or three entries: a BTreeMap is cheaper to fill than a hashed map.
        .btree_map(["."])
        .extern_path(
            ".event_store.client.streams.ReadResp",
            "crate::grpc::wire::ReadResp",
        )
        .extern_path(
            ".event_store.client.persistent_subscriptions.ReadResp",
            "crate::grpc::wire::PersistentReadResp",
        )
        .compile_fds(descriptors)?;
    Ok(())
}
