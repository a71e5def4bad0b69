//! Serde helpers: hashes as lowercase hex, bytes as standard base64.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use caretrail_crypto::HashValue;
use serde::{Deserialize, Deserializer, Serializer};

pub(crate) fn ser_hash_hex<S: Serializer>(h: &HashValue, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&h.to_hex())
}

pub(crate) mod base64_bytes {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&B64.encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        B64.decode(text.as_bytes())
            .map_err(|_| serde::de::Error::custom("not standard base64"))
    }
}
