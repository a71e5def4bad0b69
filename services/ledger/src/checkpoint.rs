//! Signed checkpoints (c2sp.org/tlog-checkpoint) of the tenants' trees.
//!
//! Every node of a cluster holds the same two checkpoint keys (an Ed25519 key for `intl`
//! tenants, an SM2 key for `gm` tenants) from one PEM file, so whichever node serves a
//! checkpoint signs it with the key verifiers pinned. The note key name is the tenant's origin
//! (`<prefix>/<tenant id>`), so each tenant has its own verifier key (`vkey`).
//!
//! The checkpoint body is a pure function of the tree: origin, size, root and one extension
//! line `time <ms>` — the leader timestamp of the last entry — so every node produces the same
//! body for the same size, and witness cosignatures made against one node's checkpoint attach
//! to any node's.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use caretrail_crypto::{HashValue, SignatureAlgorithm, SigningKey, Suite};
use caretrail_ledger_proofs::{Checkpoint, NoteKeyType, NoteSigner, VerifierKey};

use crate::storage::{TenantInfo, TenantTree};

/// A signed checkpoint: its size, root and the note text with the ledger's signature line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub size: u64,
    pub root: HashValue,
    /// The signed note (`<body>\n— <origin> <signature>\n`).
    pub note: String,
}

/// The cluster's two checkpoint signing keys.
pub struct CheckpointKeys {
    ed25519: SigningKey,
    sm2: SigningKey,
}

impl CheckpointKeys {
    pub fn generate() -> anyhow::Result<Self> {
        Ok(Self {
            ed25519: SigningKey::generate(SignatureAlgorithm::Ed25519)?,
            sm2: SigningKey::generate(SignatureAlgorithm::Sm2)?,
        })
    }

    /// The key entries are sealed at rest with (storage::at_rest): derived from the Ed25519
    /// key, which every node of the cluster holds and a restore needs anyway.
    pub fn at_rest_key(&self) -> anyhow::Result<crate::storage::at_rest::AtRestKey> {
        let der = self.ed25519.to_pkcs8_der()?;
        Ok(crate::storage::at_rest::AtRestKey::derive(&der)?)
    }

    /// Both keys as one PEM text (two PKCS#8 blocks).
    pub fn to_pem(&self) -> anyhow::Result<String> {
        Ok(format!(
            "{}{}",
            self.ed25519.to_pkcs8_pem()?.as_str(),
            self.sm2.to_pkcs8_pem()?.as_str()
        ))
    }

    pub fn from_pem(pem: &str) -> anyhow::Result<Self> {
        const END: &str = "-----END PRIVATE KEY-----";
        let mut ed25519 = None;
        let mut sm2 = None;
        for block in pem.split_inclusive(END).filter(|b| b.contains(END)) {
            let key = SigningKey::from_pkcs8_pem(block.trim())?;
            match key.algorithm() {
                SignatureAlgorithm::Ed25519 => ed25519 = Some(key),
                SignatureAlgorithm::Sm2 => sm2 = Some(key),
                other => anyhow::bail!("checkpoint keys: unexpected {other} key"),
            }
        }
        match (ed25519, sm2) {
            (Some(ed25519), Some(sm2)) => Ok(Self { ed25519, sm2 }),
            _ => anyhow::bail!("checkpoint keys: need one Ed25519 and one SM2 PKCS#8 key"),
        }
    }

    /// Reads the key file; with `create`, writes fresh keys (mode 0600) when it is missing.
    pub fn load(path: &Path, create: bool) -> anyhow::Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(pem) => Self::from_pem(&pem).map_err(|e| anyhow::anyhow!("{}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                let keys = Self::generate()?;
                if let Some(dir) = path.parent() {
                    std::fs::create_dir_all(dir)?;
                }
                caretrail_platform::files::write_private(path, keys.to_pem()?.as_bytes())?;
                tracing::info!(path = %path.display(), "created the ledger's checkpoint keys");
                Ok(keys)
            }
            Err(e) => Err(anyhow::anyhow!(
                "checkpoint key file {}: {e}",
                path.display()
            )),
        }
    }

    fn key(&self, suite: Suite) -> &SigningKey {
        match suite {
            Suite::Intl => &self.ed25519,
            Suite::Gm => &self.sm2,
        }
    }

    /// The note signer of a tenant (key name = origin).
    pub fn signer(&self, suite: Suite, origin: &str) -> anyhow::Result<NoteSigner> {
        let key = self.key(suite);
        let copy = SigningKey::from_secret_bytes(key.algorithm(), &key.to_secret_bytes())?;
        Ok(NoteSigner::new(origin, copy)?)
    }

    /// The verifier key (`vkey`) of a tenant's checkpoints.
    pub fn verifier_key(&self, suite: Suite, origin: &str) -> anyhow::Result<VerifierKey> {
        let key = self.key(suite);
        Ok(VerifierKey::new(
            origin,
            NoteKeyType::for_algorithm(key.algorithm(), false)?,
            key.public_key(),
        )?)
    }
}

/// The checkpoint body of the first `size` entries of a tenant's tree.
pub fn body(tree: &TenantTree, size: u64) -> anyhow::Result<Checkpoint> {
    let root = tree.root_at(size)?;
    let mut checkpoint = Checkpoint::new(tree.info().origin.clone(), size, root)?;
    if size > 0 {
        let last = tree.entry(size - 1)?;
        checkpoint = checkpoint.with_extensions(vec![format!("time {}", last.timestamp_ms)])?;
    }
    Ok(checkpoint)
}

/// Signs checkpoints, keeping the latest one per tenant (signing SM2 is not free, and every
/// receipt of a batch shares one).
pub struct Checkpoints {
    keys: CheckpointKeys,
    signers: Mutex<HashMap<String, Arc<NoteSigner>>>,
    latest: Mutex<HashMap<String, Arc<SignedCheckpoint>>>,
}

impl Checkpoints {
    pub fn new(keys: CheckpointKeys) -> Self {
        Self {
            keys,
            signers: Mutex::new(HashMap::new()),
            latest: Mutex::new(HashMap::new()),
        }
    }

    pub fn keys(&self) -> &CheckpointKeys {
        &self.keys
    }

    pub fn verifier_key(&self, info: &TenantInfo) -> anyhow::Result<VerifierKey> {
        self.keys.verifier_key(info.suite, &info.origin)
    }

    fn signer(&self, info: &TenantInfo) -> anyhow::Result<Arc<NoteSigner>> {
        let mut signers = self
            .signers
            .lock()
            .map_err(|_| anyhow::anyhow!("checkpoint signer cache poisoned"))?;
        if let Some(s) = signers.get(&info.tenant) {
            return Ok(s.clone());
        }
        let signer = Arc::new(self.keys.signer(info.suite, &info.origin)?);
        signers.insert(info.tenant.clone(), signer.clone());
        Ok(signer)
    }

    /// A signed checkpoint of the first `size` entries (blocking: reads the store).
    pub fn sign_at(&self, tree: &TenantTree, size: u64) -> anyhow::Result<Arc<SignedCheckpoint>> {
        let tenant = &tree.info().tenant;
        if let Ok(latest) = self.latest.lock()
            && let Some(c) = latest.get(tenant)
            && c.size == size
        {
            return Ok(c.clone());
        }
        let checkpoint = body(tree, size)?;
        let note = checkpoint.sign(&*self.signer(tree.info())?)?;
        let signed = Arc::new(SignedCheckpoint {
            size,
            root: *checkpoint.root(),
            note: note.encode(),
        });
        if let Ok(mut latest) = self.latest.lock() {
            let newer = latest.get(tenant).is_none_or(|c| c.size < size);
            if newer {
                latest.insert(tenant.clone(), signed.clone());
            }
        }
        Ok(signed)
    }

    /// The latest signed checkpoint if it has at least `min_size` entries and `tree` has
    /// reached it, else the checkpoint of the whole tree as of `tree`.
    pub fn covering(
        &self,
        tree: &TenantTree,
        min_size: u64,
    ) -> anyhow::Result<Arc<SignedCheckpoint>> {
        if let Ok(latest) = self.latest.lock()
            && let Some(c) = latest.get(&tree.info().tenant)
            && c.size >= min_size
            && c.size <= tree.size()
        {
            return Ok(c.clone());
        }
        self.latest(tree)
    }

    /// The checkpoint of the whole tree as of `tree`.
    pub fn latest(&self, tree: &TenantTree) -> anyhow::Result<Arc<SignedCheckpoint>> {
        self.sign_at(tree, tree.size())
    }
}
