//! Compiles the daemon API (`proto/schemas/veil/v1/daemon.proto`) with
//! tonic's prost code generator, using the vendored `protoc` as
//! `proto/build.rs` does, so a fresh machine needs nothing installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let schema = "../proto/schemas/veil/v1/daemon.proto";
    println!("cargo:rerun-if-changed={schema}");
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?);
    tonic_prost_build::configure().build_client(true).build_server(true).compile_with_config(
        config,
        &[schema],
        &["../proto/schemas"],
    )?;
    Ok(())
}
