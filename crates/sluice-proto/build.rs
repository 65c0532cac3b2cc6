//! Generates the client protocol (`proto/client.proto`) and the internal records brokers store
//! (`proto/internal.proto`) with tonic-prost-build.
//!
//! protoc comes from the `protoc-bin-vendored` crate unless `PROTOC` already names one, so a
//! build needs no system protobuf compiler.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: a build script is single-threaded here; nothing else reads or writes the
        // environment concurrently.
        #[allow(unsafe_code)]
        unsafe {
            std::env::set_var("PROTOC", protoc);
        }
    }
    println!("cargo:rerun-if-changed=proto/client.proto");
    println!("cargo:rerun-if-changed=proto/internal.proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    tonic_prost_build::configure()
        // Record batches are `bytes::Bytes`: a broker decodes a produce request by slicing the
        // receive buffer and answers a fetch by sharing the bytes it read, never copying them.
        .bytes(".")
        .compile_protos(&["proto/client.proto", "proto/internal.proto"], &["proto"])?;
    Ok(())
}
