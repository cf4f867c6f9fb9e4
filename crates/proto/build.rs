//! Generates the gRPC code from `proto/` with a vendored `protoc`, so no system package is needed.

use std::path::Path;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let mut prost = tonic_prost_build::Config::new();
    // An explicit PROTOC wins; otherwise the vendored binary, so every machine uses one protoc.
    // (Setting the env var instead would need `unsafe`, which the workspace forbids.)
    match std::env::var_os("PROTOC") {
        Some(protoc) => prost.protoc_executable(protoc),
        None => prost.protoc_executable(protoc_bin_vendored::protoc_bin_path()?),
    };
    tonic_prost_build::configure()
        .bytes(".")
        .compile_with_config(
            prost,
            &[
                root.join("controller.proto"),
                root.join("replication.proto"),
            ],
            std::slice::from_ref(&root),
        )?;
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
