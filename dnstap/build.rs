//! Compiles proto/dnstap.proto with protox (pure Rust, so no protoc on build machines).
//! Bytes fields become `bytes::Bytes`, so decoding slices the frame buffer instead of copying.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto/dnstap.proto");
    let fds = protox::compile(["dnstap.proto"], ["proto"])?;
    prost_build::Config::new().bytes(["."]).compile_fds(fds)?;
    Ok(())
}
