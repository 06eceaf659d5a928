//! Compiles the protobuf schemas with prost, using a vendored `protoc` so a
//! fresh machine needs nothing installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "schemas/veil/v1/link.proto",
        "schemas/veil/v1/handshake.proto",
        "schemas/veil/v1/envelope.proto",
        "schemas/veil/v1/sync.proto",
        "schemas/veil/v1/account.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    prost_build::Config::new()
        .protoc_executable(protoc_bin_vendored::protoc_bin_path()?)
        .compile_protos(&protos, &["schemas"])?;
    Ok(())
}
