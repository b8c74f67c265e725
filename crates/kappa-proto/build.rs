//! Generates the Rust code of proto/kappa/v1 with tonic (needs `protoc`: apt protobuf-compiler).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../proto");
    let files = [
        root.join("kappa/v1/cluster.proto"),
        root.join("kappa/v1/secrets.proto"),
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
    }
    tonic_prost_build::configure().compile_protos(&files, &[root])?;
    Ok(())
}
