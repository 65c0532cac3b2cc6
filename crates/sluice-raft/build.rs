//! Generates the Raft peer protocol (`proto/peer.proto`) with tonic-prost-build.
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
    println!("cargo:rerun-if-changed=proto/peer.proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    tonic_prost_build::configure()
        // Entry payloads and snapshot chunks are `bytes::Bytes`: decoding slices the receive
        // buffer instead of copying, and encoding shares the stored payload.
        .bytes(".")
        .compile_protos(&["proto/peer.proto"], &["proto"])?;
    Ok(())
}
