//! Generates the Rust code of proto/kappa/v1 with tonic (needs `protoc`: apt protobuf-compiler).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let file = root.join("kappa/v1/cluster.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    tonic_prost_build::configure().compile_protos(&[file], &[root])?;
    Ok(())
}
