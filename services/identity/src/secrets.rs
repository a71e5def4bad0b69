//! The master key seals what identity must keep secret at rest: custodial private keys,
//! tenant CA keys, pseudonymisation keys, token-signing keys. Each sealed value is bound to
//! its purpose and owner, so a sealed blob copied to another row does not open.

use base64::{Engine, engine::general_purpose::STANDARD};
use caretrail_crypto::{DataKey, Suite};
use secrecy::{ExposeSecret, SecretString};

use crate::IdentityError;

#[derive(Clone)]
pub struct MasterKey(std::sync::Arc<DataKey>);

impl MasterKey {
    /// From 64 hex characters (32 bytes).
    pub fn from_hex(hex: &SecretString) -> Result<Self, IdentityError> {
        DataKey::from_hex(Suite::Intl, hex.expose_secret().trim())
            .map(|k| Self(std::sync::Arc::new(k)))
            .map_err(|_| IdentityError::Config("master_key must be 64 hex characters".into()))
    }

    pub fn generate_hex() -> Result<SecretString, IdentityError> {
        let key = DataKey::generate(Suite::Intl)?;
        Ok(SecretString::from(hex::encode(key.expose_secret())))
    }

    fn aad(purpose: &str, owner: &str) -> Vec<u8> {
        format!("caretrail/identity/v1/{purpose}/{owner}").into_bytes()
    }

    pub fn seal(&self, purpose: &str, owner: &str, secret: &[u8]) -> Result<String, IdentityError> {
        let sealed = caretrail_crypto::seal(&self.0, &Self::aad(purpose, owner), secret)?;
        Ok(STANDARD.encode(sealed))
    }

    pub fn open(
        &self,
        purpose: &str,
        owner: &str,
        sealed: &str,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, IdentityError> {
        let bytes = STANDARD
            .decode(sealed)
            .map_err(|_| IdentityError::Corrupt("sealed secret is not base64"))?;
        let opened = caretrail_crypto::open(&self.0, &Self::aad(purpose, owner), &bytes)?;
        Ok(zeroize::Zeroizing::new(opened))
    }
}
