//! `caretrail crypto …`: tools for partner developers who sign with their own keys.
//!
//! The logic lives in `caretrail_crypto::tools` (tested there); this file parses arguments,
//! prints, and maps errors to exit codes: 0 success / valid, 1 verification failed (bad
//! signature, tampered or truncated ciphertext), 2 usage or I/O error.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use caretrail_crypto::{CryptoError, DataKey, Suite, tools};

/// Algorithm suite: `intl` (SHA-256, AES-256-GCM, Ed25519) or `gm` (SM3, SM4-GCM, SM2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SuiteArg {
    Intl,
    Gm,
}

impl From<SuiteArg> for Suite {
    fn from(s: SuiteArg) -> Self {
        match s {
            SuiteArg::Intl => Suite::Intl,
            SuiteArg::Gm => Suite::Gm,
        }
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum CryptoCommand {
    /// Generate a signing key pair (intl: Ed25519, gm: SM2).
    ///
    /// Writes the PKCS#8 private key to --out (mode 0600) and the SPKI public key next to it:
    /// KEY.pem -> KEY.pub.pem. Existing files are kept unless --force.
    Keygen {
        #[arg(long, value_enum)]
        suite: SuiteArg,
        #[arg(long, value_name = "KEY.pem")]
        out: PathBuf,
        /// Replace existing files.
        #[arg(long)]
        force: bool,
    },
    /// Print the hash of FILE as hex (intl: SHA-256, gm: SM3).
    ///
    /// Without FILE, or with "-", reads stdin.
    Hash {
        #[arg(long, value_enum)]
        suite: SuiteArg,
        file: Option<PathBuf>,
    },
    /// Sign FILE with a PKCS#8 private key; prints the signature as base64.
    ///
    /// SM2 signatures are DER with the distinguishing id 1234567812345678 (OpenSSL 3 defaults
    /// to an empty id: pass `-sigopt distid:1234567812345678`); Ed25519 signatures are the raw
    /// 64 bytes (RFC 8032); ECDSA P-256 signatures are DER.
    Sign {
        #[arg(long, value_name = "KEY.pem")]
        key: PathBuf,
        file: PathBuf,
    },
    /// Verify a signature over FILE (exit 0 valid, 1 invalid, 2 usage or I/O error).
    Verify {
        /// Public key PEM (a private key PEM also works).
        #[arg(long = "pub", value_name = "PUB.pem")]
        public: PathBuf,
        /// Base64 signature, or a file holding it (base64 or raw bytes).
        #[arg(long, value_name = "SIG")]
        sig: String,
        file: PathBuf,
    },
    /// Encrypt into the Caretrail streaming format (AES-256-GCM or SM4-GCM, 64 KiB chunks).
    Encrypt(StreamArgs),
    /// Decrypt the Caretrail streaming format (exit 1 if tampered or truncated).
    ///
    /// With --out, the file appears only if the whole stream verified. On stdout, verified
    /// chunks are written as they come: after a non-zero exit, discard what was written.
    Decrypt(StreamArgs),
}

#[derive(Debug, clap::Args)]
pub struct StreamArgs {
    #[arg(long, value_enum)]
    pub suite: SuiteArg,
    /// Data key as hex: 32 bytes (intl) or 16 bytes (gm). Prefer the environment variable,
    /// which other users cannot see in the process list.
    #[arg(
        long,
        env = "CARETRAIL_CRYPTO_KEY_HEX",
        hide_env_values = true,
        value_name = "HEX"
    )]
    pub key_hex: String,
    /// Input file (default: stdin).
    #[arg(long = "in", value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Output file (default: stdout).
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

pub fn run(cmd: CryptoCommand) -> ExitCode {
    match execute(cmd) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "caretrail crypto: {e}");
            ExitCode::from(if e.is_verification_failure() { 1 } else { 2 })
        }
    }
}

fn execute(cmd: CryptoCommand) -> Result<(), CryptoError> {
    match cmd {
        CryptoCommand::Keygen { suite, out, force } => {
            let suite = Suite::from(suite);
            let made = tools::keygen_files(suite.signature_algorithm(), &out, force)?;
            say(&format!(
                "{} key {}: private {} public {}",
                made.algorithm,
                made.key_id,
                made.private_path.display(),
                made.public_path.display()
            ))
        }
        CryptoCommand::Hash { suite, file } => {
            let file = file.filter(|f| f != Path::new("-"));
            let digest = tools::hash_file(suite.into(), file.as_deref())?;
            say(&digest.to_hex())
        }
        CryptoCommand::Sign { key, file } => say(&tools::sign_file(&key, &file)?.to_base64()),
        CryptoCommand::Verify { public, sig, file } => {
            tools::verify_file(&public, &sig, &file)?;
            say("signature valid")
        }
        CryptoCommand::Encrypt(args) => {
            let key = DataKey::from_hex(args.suite.into(), &args.key_hex)?;
            tools::encrypt_file(&key, args.input.as_deref(), args.out.as_deref()).map(drop)
        }
        CryptoCommand::Decrypt(args) => {
            let key = DataKey::from_hex(args.suite.into(), &args.key_hex)?;
            tools::decrypt_file(&key, args.input.as_deref(), args.out.as_deref()).map(drop)
        }
    }
}

fn say(line: &str) -> Result<(), CryptoError> {
    writeln!(std::io::stdout().lock(), "{line}").map_err(CryptoError::from)
}
