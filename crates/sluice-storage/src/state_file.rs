//! Small files replaced atomically: write a temporary file, fsync it, rename it over the old one,
//! fsync the directory. A reader sees the old content or the new, never a mix.
//!
//! ```text
//! | magic "SLST" | crc u32 | len u32 | body (len bytes) |      crc = crc32(len ++ body)
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{Result, StorageError};

const MAGIC: [u8; 4] = *b"SLST";
const HEADER_LEN: usize = 12;

/// Atomically replaces `dir/name` with `body`, durably: when this returns Ok the new content
/// survives a crash or power loss.
pub fn write_state_file(dir: &Path, name: &str, body: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let tmp = dir.join(format!("{name}.tmp"));
    let len = u32::try_from(body.len()).expect("state files are small");
    let mut crc = crc32fast::Hasher::new();
    crc.update(&len.to_le_bytes());
    crc.update(body);
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(body);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(StorageError::io("create", &tmp))?;
    f.write_all(&out).map_err(StorageError::io("write", &tmp))?;
    f.sync_data().map_err(StorageError::io("fdatasync", &tmp))?;
    fs::rename(&tmp, &path).map_err(StorageError::io("rename to", &path))?;
    sync_dir(dir)
}

/// Reads `dir/name`; `Ok(None)` if it does not exist, an error naming the file if it is corrupt.
pub fn read_state_file(dir: &Path, name: &str) -> Result<Option<Vec<u8>>> {
    let path = dir.join(name);
    let raw = match fs::read(&path) {
        Ok(raw) => raw,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StorageError::io("read", &path)(e)),
    };
    if raw.len() < HEADER_LEN || raw[..4] != MAGIC {
        return Err(StorageError::corrupt(&path, 0, "not a state file (bad magic or too short)"));
    }
    let crc = u32::from_le_bytes(raw[4..8].try_into().expect("4 bytes"));
    let len = u32::from_le_bytes(raw[8..12].try_into().expect("4 bytes")) as usize;
    if raw.len() != HEADER_LEN + len || crc32fast::hash(&raw[8..]) != crc {
        return Err(StorageError::corrupt(&path, 0, "state file checksum or length mismatch"));
    }
    Ok(Some(raw[HEADER_LEN..].to_vec()))
}

/// fsyncs a directory so that files created, renamed or deleted in it stay that way.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(StorageError::io("fsync directory", dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_replaces_and_detects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_state_file(dir.path(), "vote").unwrap(), None);
        write_state_file(dir.path(), "vote", b"term 1").unwrap();
        write_state_file(dir.path(), "vote", b"term 22").unwrap();
        assert_eq!(read_state_file(dir.path(), "vote").unwrap().unwrap(), b"term 22");
        assert!(!dir.path().join("vote.tmp").exists());
        let path = dir.path().join("vote");
        let mut raw = fs::read(&path).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        fs::write(&path, raw).unwrap();
        let err = read_state_file(dir.path(), "vote").unwrap_err().to_string();
        assert!(err.contains("vote") && err.contains("checksum"), "{err}");
    }
}
