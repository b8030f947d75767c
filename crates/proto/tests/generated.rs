//! The committed generated code in `src/gen` must be what the `.proto` files generate.

use std::path::Path;

const PROTOS: &[&str] = &[
    "weir/v1/cluster.proto",
    "weir/v1/raft.proto",
    "weir/v1/replication.proto",
];

#[test]
fn generated_code_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fds = protox::compile(PROTOS, [root.join("proto")]).expect("the .proto files compile");
    let out = tempfile::tempdir().expect("temp dir");
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // Replicated record batches stay shared buffers end to end: no copy on either side.
        .bytes(".weir.v1.ReplicaFetchPartitionData.records")
        .out_dir(out.path())
        .compile_fds(fds)
        .expect("code generation");
    let generated = std::fs::read_to_string(out.path().join("weir.v1.rs")).expect("generated file");
    let committed_path = root.join("src/gen/weir.v1.rs");
    if std::env::var_os("WEIR_REGENERATE_PROTO").is_some() {
        std::fs::write(&committed_path, &generated).expect("write generated code");
        return;
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == generated,
        "src/gen/weir.v1.rs is stale; run WEIR_REGENERATE_PROTO=1 cargo test -p weir-proto --test generated"
    );
}
