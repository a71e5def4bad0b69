//! Files that hold secrets (keys, credentials) written by the services themselves.

use std::io::Write;
use std::path::Path;

/// Creates `path` readable by its owner only (0600 on Unix) and writes `bytes` durably; fails
/// if the file exists, so a secret is never silently replaced.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn writes_once_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        super::write_private(&path, b"k").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"k");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(super::write_private(&path, b"other").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), b"k");
    }
}
