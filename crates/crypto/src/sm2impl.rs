//! SM2 signing (GB/T 32918.2 §6.1) over the `sm2` crate's curve arithmetic.
//!
//! We sign ourselves rather than through `sm2::dsa::SigningKey` because that type does not
//! zeroize its secret scalar on drop. Verification still goes through `sm2::dsa`, so the two
//! implementations check each other in the tests, as does OpenSSL.

use sm2::elliptic_curve::PrimeField as _;
use sm2::elliptic_curve::ops::Reduce;
use sm2::elliptic_curve::point::AffineCoordinates as _;
use sm2::elliptic_curve::sec1::ToEncodedPoint as _;
use sm2::{FieldBytes, NonZeroScalar, ProjectivePoint, PublicKey, Scalar, U256};
use sm3::{Digest as _, Sm3};
use zeroize::{Zeroize, Zeroizing};

use crate::hash::KeyedHasher;
use crate::sign::SM2_DEFAULT_DISTID;
use crate::{CryptoError, Result, Suite, random_array};

// Recommended curve parameters, GB/T 32918.5-2017 §2 (the hash input of Z_A).
const CURVE_A: [u8; 32] = hex32("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF00000000FFFFFFFFFFFFFFFC");
const CURVE_B: [u8; 32] = hex32("28E9FA9E9D9F5E344D5A9E4BCF6509A7F39789F515AB8F92DDBCBD414D940E93");
pub(crate) const GX: [u8; 32] =
    hex32("32C4AE2C1F1981195F9904466A39C9948FE30BBFF2660BE1715A4589334C74C7");
pub(crate) const GY: [u8; 32] =
    hex32("BC3736A2F4F6779C59BDCEE36B692153D0A9877CC62A474002DF32E52139F0A0");

const fn hex32(s: &str) -> [u8; 32] {
    const fn nibble(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            b'A'..=b'F' => c - b'A' + 10,
            _ => panic!("not hex"),
        }
    }
    let b = s.as_bytes();
    let mut out = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        out[i] = (nibble(b[2 * i]) << 4) | nibble(b[2 * i + 1]);
        i += 1;
    }
    out
}

/// Z_A = SM3(ENTL_A ‖ ID_A ‖ a ‖ b ‖ x_G ‖ y_G ‖ x_A ‖ y_A), GB/T 32918.2 §5.5.
pub(crate) fn z_a(distid: &[u8], pk: &PublicKey) -> Result<[u8; 32]> {
    let entl = distid
        .len()
        .checked_mul(8)
        .and_then(|bits| u16::try_from(bits).ok())
        .ok_or_else(|| {
            CryptoError::InvalidKey("SM2 distinguishing id longer than 8191 bytes".into())
        })?;
    let point = pk.to_encoded_point(false);
    let (Some(x), Some(y)) = (point.x(), point.y()) else {
        return Err(CryptoError::InvalidKey(
            "SM2 public key is the identity".into(),
        ));
    };
    let mut h = Sm3::new();
    h.update(entl.to_be_bytes());
    h.update(distid);
    h.update(CURVE_A);
    h.update(CURVE_B);
    h.update(GX);
    h.update(GY);
    h.update(x);
    h.update(y);
    Ok(h.finalize().into())
}

fn e_scalar(z: &[u8; 32], msg: &[u8]) -> (FieldBytes, Scalar) {
    let e_bytes = Sm3::new().chain_update(z).chain_update(msg).finalize();
    let e = <Scalar as Reduce<U256>>::reduce_bytes(&e_bytes);
    (e_bytes, e)
}

/// Private scalar d plus the values signing needs: (1 + d)^-1 and the default Z_A.
pub(crate) struct Sm2Secret {
    d: NonZeroScalar,
    d1_inv: Scalar,
    public: PublicKey,
    z_default: [u8; 32],
}

impl Sm2Secret {
    pub(crate) fn new(sk: &sm2::SecretKey) -> Result<Self> {
        let d = sk.to_nonzero_scalar();
        // d = n - 1 makes 1 + d = 0: GB/T 32918.1 §6.1 requires d in [1, n-2].
        let d1_inv = Option::<Scalar>::from((*d + Scalar::ONE).invert())
            .ok_or_else(|| CryptoError::InvalidKey("SM2 private key must be in [1, n-2]".into()))?;
        let public = sk.public_key();
        let z_default = z_a(SM2_DEFAULT_DISTID, &public)?;
        Ok(Self {
            d,
            d1_inv,
            public,
            z_default,
        })
    }

    pub(crate) fn to_bytes(&self) -> Zeroizing<FieldBytes> {
        Zeroizing::new(self.d.to_repr())
    }

    pub(crate) fn secret_key(&self) -> sm2::SecretKey {
        sm2::SecretKey::from(self.d)
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> Result<([u8; 32], [u8; 32])> {
        self.sign_z(&self.z_default, msg)
    }

    pub(crate) fn sign_with_distid(
        &self,
        msg: &[u8],
        distid: &[u8],
    ) -> Result<([u8; 32], [u8; 32])> {
        let z = z_a(distid, &self.public)?;
        self.sign_z(&z, msg)
    }

    fn sign_z(&self, z: &[u8; 32], msg: &[u8]) -> Result<([u8; 32], [u8; 32])> {
        let (e_bytes, e) = e_scalar(z, msg);
        // Hedged nonce: k = HMAC-SM3(seed, counter) with seed = HMAC-SM3(d, fresh random ‖ e).
        // A broken RNG then still gives distinct k per (key, message), never a repeated k.
        let fresh: [u8; 32] = random_array()?;
        let d_bytes = self.to_bytes();
        let mut seed_mac = KeyedHasher::with_raw_key(Suite::Gm, &d_bytes[..]);
        seed_mac.update(&fresh);
        seed_mac.update(&e_bytes);
        let seed = seed_mac.finalize_secret();
        for counter in 0u32..1024 {
            let mut kmac = KeyedHasher::with_raw_key(Suite::Gm, seed.as_ref());
            kmac.update(&counter.to_be_bytes());
            let k_bytes = kmac.finalize_secret();
            let Some(mut k) =
                Option::<NonZeroScalar>::from(NonZeroScalar::from_repr((*k_bytes).into()))
            else {
                continue;
            };
            let out = self.sign_with_k(&e, &k);
            k.zeroize();
            if let Some(rs) = out {
                return Ok(rs);
            }
        }
        // Each attempt fails with probability about 2^-32; 1024 failures means the RNG/HMAC is broken.
        Err(CryptoError::Rng)
    }

    /// GB/T 32918.2 §6.1 steps A4–A7 for a given k. `None` means "pick another k".
    pub(crate) fn sign_with_k(
        &self,
        e: &Scalar,
        k: &NonZeroScalar,
    ) -> Option<([u8; 32], [u8; 32])> {
        let x1 = (ProjectivePoint::GENERATOR * **k).to_affine().x();
        let r = *e + <Scalar as Reduce<U256>>::reduce_bytes(&x1);
        if bool::from(r.is_zero() | (r + **k).is_zero()) {
            return None;
        }
        let s = self.d1_inv * (**k - r * *self.d);
        if bool::from(s.is_zero()) {
            return None;
        }
        Some((r.to_repr().into(), s.to_repr().into()))
    }
}

impl Drop for Sm2Secret {
    fn drop(&mut self) {
        self.d.zeroize();
        self.d1_inv.zeroize();
    }
}

/// GB/T 32918.2 §7.1 verification with an explicit Z_A (for non-default distinguishing ids).
pub(crate) fn verify(pk: &PublicKey, z: &[u8; 32], msg: &[u8], r: &[u8; 32], s: &[u8; 32]) -> bool {
    use sm2::dsa::signature::hazmat::PrehashVerifier as _;
    let Ok(sig) = sm2::dsa::Signature::from_scalars(*r, *s) else {
        return false;
    };
    // The prehash verifier ignores the key's own distid: the caller's Z_A is what counts.
    let Ok(vk) = sm2::dsa::VerifyingKey::new("", *pk) else {
        return false;
    };
    let (e_bytes, _) = e_scalar(z, msg);
    vk.verify_prehash(&e_bytes, &sig).is_ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    #[test]
    fn constants_match_the_sm2_crate_generator() {
        let g = ProjectivePoint::GENERATOR
            .to_affine()
            .to_encoded_point(false);
        assert_eq!(g.x().unwrap().to_vec(), GX.to_vec());
        assert_eq!(g.y().unwrap().to_vec(), GY.to_vec());
    }

    /// GB/T 32918.5-2017 (= GM/T 0003.5-2012) Annex A: signature on the recommended curve with
    /// ID "1234567812345678", message "message digest" and the fixed k of the example.
    #[test]
    fn reproduces_the_standard_example_with_its_k() {
        let d = h("3945208F 7B2144B1 3F36E38A C6D39F95 88939369 2860B51A 42FB81EF 4DF7C5B8");
        let sk = sm2::SecretKey::from_slice(&d).unwrap();
        let secret = Sm2Secret::new(&sk).unwrap();
        assert_eq!(
            secret.z_default.to_vec(),
            h("B2E14C5C 79C6DF5B 85F4FE7E D8DB7A26 2B9DA7E0 7CCB0EA9 F4747B8C CDA8A4F3")
        );
        let (e_bytes, e) = e_scalar(&secret.z_default, b"message digest");
        assert_eq!(
            e_bytes.to_vec(),
            h("F0B43E94 BA45ACCA ACE692ED 534382EB 17E6AB5A 19CE7B31 F4486FDF C0D28640")
        );
        let k_bytes = h("59276E27 D506861A 16680F3A D9C02DCC EF3CC1FA 3CDBE4CE 6D54B80D EAC1BC21");
        let k = Option::<NonZeroScalar>::from(NonZeroScalar::from_repr(FieldBytes::from(
            <[u8; 32]>::try_from(k_bytes.as_slice()).unwrap(),
        )))
        .unwrap();
        let (r, s) = secret.sign_with_k(&e, &k).unwrap();
        assert_eq!(
            r.to_vec(),
            h("F5A03B06 48D2C463 0EEAC513 E1BB81A1 5944DA38 27D5B741 43AC7EAC EEE720B3")
        );
        assert_eq!(
            s.to_vec(),
            h("B1B6AA29 DF212FD8 763182BC 0D421CA1 BB9038FD 1F7F42D4 840B69C4 85BBC1AA")
        );
    }

    #[test]
    fn rejects_d_equal_n_minus_1() {
        let n_minus_1 = h("FFFFFFFEFFFFFFFFFFFFFFFFFFFFFFFF7203DF6B21C6052B53BBF40939D54122");
        let sk = sm2::SecretKey::from_slice(&n_minus_1).unwrap();
        assert!(matches!(
            Sm2Secret::new(&sk),
            Err(CryptoError::InvalidKey(_))
        ));
    }
}
