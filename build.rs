//! Compiles the gRPC contracts in `proto/` into Rust clients at build time. `protox` parses the
//! files in pure Rust, so building the gateway needs no system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["proto/model.proto", "proto/grpc/health/v1/health.proto"];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
