//! File-level helpers behind the `caretrail crypto` CLI, kept here so they are testable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::{
    CryptoError, DataKey, HashValue, KeyId, ParsedKey, Result, Signature, SignatureAlgorithm,
    SigningKey, Suite, hash_reader, parse_pem, stream,
};

/// Paths written by [`keygen_files`].
#[derive(Debug, Clone)]
pub struct KeygenOutput {
    pub private_path: PathBuf,
    pub public_path: PathBuf,
    pub algorithm: SignatureAlgorithm,
    pub key_id: KeyId,
}

/// Where the public key of `private` goes: `KEY.pem` → `KEY.pub.pem`, anything else → `NAME.pub.pem`.
pub fn public_key_path(private: &Path) -> PathBuf {
    let name = private
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".pem").unwrap_or(&name);
    private.with_file_name(format!("{stem}.pub.pem"))
}

/// Generate a key pair: PKCS#8 private key at `out` (mode 0600 on Unix) and SPKI public key at
/// [`public_key_path`]. Existing files are only replaced with `force`.
pub fn keygen_files(
    algorithm: SignatureAlgorithm,
    out: &Path,
    force: bool,
) -> Result<KeygenOutput> {
    let public_path = public_key_path(out);
    if !force {
        for p in [out, public_path.as_path()] {
            if p.exists() {
                return Err(CryptoError::Io {
                    kind: io::ErrorKind::AlreadyExists,
                    message: format!("{} already exists (use --force to replace it)", p.display()),
                });
            }
        }
    }
    let key = SigningKey::generate(algorithm)?;
    let private_pem = key.to_pkcs8_pem()?;
    write_file(out, private_pem.as_bytes(), true)?;
    write_file(
        &public_path,
        key.public_key().to_spki_pem().as_bytes(),
        false,
    )?;
    Ok(KeygenOutput {
        private_path: out.to_path_buf(),
        public_path,
        algorithm,
        key_id: key.key_id(),
    })
}

fn write_file(path: &Path, data: &[u8], private: bool) -> Result<()> {
    let mut opts = OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(path).map_err(|e| CryptoError::io_at(path, &e))?;
    #[cfg(unix)]
    if private {
        // `mode` only applies to new files; tighten a replaced one too.
        use std::os::unix::fs::PermissionsExt as _;
        f.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|e| CryptoError::io_at(path, &e))?;
    }
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| CryptoError::io_at(path, &e))
}

fn open_input(path: Option<&Path>) -> Result<Box<dyn Read>> {
    Ok(match path {
        Some(p) => Box::new(BufReader::new(
            File::open(p).map_err(|e| CryptoError::io_at(p, &e))?,
        )),
        None => Box::new(io::stdin().lock()),
    })
}

fn read_all(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| CryptoError::io_at(path, &e))
}

fn read_text(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| CryptoError::io_at(path, &e))
}

/// Hash a file (or stdin with `None`) in constant memory.
pub fn hash_file(suite: Suite, path: Option<&Path>) -> Result<HashValue> {
    let input = open_input(path)?;
    hash_reader(suite, input).map_err(|e| with_path(e, path))
}

/// Read a PEM key file of either kind.
pub fn read_key_file(path: &Path) -> Result<ParsedKey> {
    parse_pem(&read_text(path)?).map_err(|e| match e {
        CryptoError::Malformed(m) => CryptoError::Malformed(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// Sign the contents of `file` with the PKCS#8 private key in `key_path`.
pub fn sign_file(key_path: &Path, file: &Path) -> Result<Signature> {
    let key = match read_key_file(key_path)? {
        ParsedKey::Private(k) => k,
        ParsedKey::Public(_) => {
            return Err(CryptoError::InvalidKey(format!(
                "{} holds a public key; signing needs the private key",
                key_path.display()
            )));
        }
    };
    key.sign(&read_all(file)?)
}

/// The signature argument of `verify --sig`: the path of a file holding base64 (or raw DER /
/// raw 64-byte Ed25519) signature bytes, or else a base64 string.
pub fn load_signature_arg(sig: &str) -> Result<Vec<u8>> {
    let path = Path::new(sig);
    let text_or_bytes = if path.is_file() {
        Some(read_all(path)?)
    } else {
        None
    };
    let decode = |s: &str| {
        B64.decode(s.split_whitespace().collect::<String>())
            .map_err(|_| {
                CryptoError::Malformed("signature is neither a readable file nor base64".into())
            })
    };
    match text_or_bytes {
        Some(bytes) => match std::str::from_utf8(&bytes) {
            Ok(text) => decode(text).or_else(|_| Ok(bytes.clone())),
            Err(_) => Ok(bytes),
        },
        None => decode(sig),
    }
}

/// Verify `sig` (see [`load_signature_arg`]) over `file` with the key in `pub_path` (a public
/// key, or a private key whose public half is used).
pub fn verify_file(pub_path: &Path, sig: &str, file: &Path) -> Result<()> {
    let key = read_key_file(pub_path)?.verifying_key();
    let sig = load_signature_arg(sig)?;
    key.verify_bytes(&read_all(file)?, &sig)
}

fn with_path(e: CryptoError, path: Option<&Path>) -> CryptoError {
    match (e, path) {
        (CryptoError::Io { kind, message }, Some(p)) => CryptoError::Io {
            kind,
            message: format!("{}: {message}", p.display()),
        },
        (e, _) => e,
    }
}

/// Write to `output` through a temporary file renamed into place only on success, so a failed
/// run never leaves a partial (for decryption: partly decrypted) file. `None` = stdout.
fn with_output(
    output: Option<&Path>,
    f: impl FnOnce(&mut dyn Write) -> Result<u64>,
) -> Result<u64> {
    let Some(out) = output else {
        let stdout = io::stdout();
        let mut w = BufWriter::new(stdout.lock());
        let n = f(&mut w)?;
        w.flush()?;
        return Ok(n);
    };
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suffix: [u8; 6] = crate::random_array()?;
    let tmp = dir.join(format!(".{name}.{}.partial", hex::encode(suffix)));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| CryptoError::io_at(&tmp, &e))?;
    let mut w = BufWriter::new(file);
    let result = f(&mut w).and_then(|n| {
        let file = w
            .into_inner()
            .map_err(|e| CryptoError::io_at(&tmp, e.error()))?;
        file.sync_all().map_err(|e| CryptoError::io_at(&tmp, &e))?;
        fs::rename(&tmp, out).map_err(|e| CryptoError::io_at(out, &e))?;
        Ok(n)
    });
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Encrypt `input` (stdin if `None`) into the streaming format at `output` (stdout if `None`),
/// with empty associated data.
pub fn encrypt_file(key: &DataKey, input: Option<&Path>, output: Option<&Path>) -> Result<u64> {
    let reader = open_input(input)?;
    with_output(output, |w| stream::encrypt_stream(key, b"", reader, w))
        .map_err(|e| with_path(e, input))
}

/// Decrypt a stream from `input` into `output`. To a file, the output appears only if the whole
/// stream verified; to stdout, verified chunks are written as they come and a failure is
/// reported at the end (non-zero exit): consumers must not trust output from a failed run.
pub fn decrypt_file(key: &DataKey, input: Option<&Path>, output: Option<&Path>) -> Result<u64> {
    let reader = open_input(input)?;
    with_output(output, |w| stream::decrypt_stream(key, b"", reader, w))
        .map_err(|e| with_path(e, input))
}
