//! Access-token issuance and the token-signing keys.
//!
//! Keys are Ed25519 (JOSE `EdDSA`), whatever a tenant's suite: every JWT library verifies
//! them. Rotation never breaks a valid token: a new key is published in the JWKS as `next`
//! before it signs anything; when it becomes `active` the previous one is `retired` and stays
//! published until every token it signed has expired.

use std::sync::RwLock;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use caretrail_contracts::auth::Claims;
use caretrail_crypto::{SignatureAlgorithm, SigningKey};
use chrono::{DateTime, Duration, Utc};
use jsonwebtoken::{
    Algorithm, EncodingKey, Header,
    jwk::{
        AlgorithmParameters, CommonParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm,
        OctetKeyPairParameters, OctetKeyPairType, PublicKeyUse,
    },
};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter,
    QueryOrder, QuerySelect,
};

use crate::{IdentityError, entities::jwt_key, secrets::MasterKey};

const PURPOSE: &str = "jwt-signing-key";

struct ActiveKey {
    kid: String,
    key: EncodingKey,
}

pub struct TokenIssuer {
    db: DatabaseConnection,
    master: MasterKey,
    pub issuer: String,
    pub ttl: Duration,
    activation_delay: Duration,
    active: RwLock<Option<ActiveKey>>,
    published: RwLock<JwkSet>,
}

fn lock<T>(r: Result<T, std::sync::PoisonError<T>>) -> T {
    r.unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl TokenIssuer {
    pub fn new(
        db: DatabaseConnection,
        master: MasterKey,
        issuer: String,
        ttl: Duration,
        activation_delay: Duration,
    ) -> Self {
        Self {
            db,
            master,
            issuer,
            ttl,
            activation_delay,
            active: RwLock::new(None),
            published: RwLock::new(JwkSet { keys: Vec::new() }),
        }
    }

    async fn create_key(&self, status: &str) -> Result<String, IdentityError> {
        let key = SigningKey::generate(SignatureAlgorithm::Ed25519)?;
        let kid = format!("jwk_{}", uuid::Uuid::now_v7().simple());
        let pkcs8 = key.to_pkcs8_der()?;
        let now = Utc::now();
        jwt_key::ActiveModel {
            kid: Set(kid.clone()),
            private_key_enc: Set(self.master.seal(PURPOSE, &kid, &pkcs8)?),
            public_x: Set(URL_SAFE_NO_PAD.encode(key.public_key().to_raw_bytes())),
            status: Set(status.to_string()),
            created_at: Set(now),
            activated_at: Set((status == "active").then_some(now)),
            retired_at: Set(None),
        }
        .insert(&self.db)
        .await?;
        Ok(kid)
    }

    /// At start-up: make sure a key signs, and bring the key states up to date.
    pub async fn start(&self) -> Result<(), IdentityError> {
        let active = jwt_key::Entity::find()
            .filter(jwt_key::Column::Status.eq("active"))
            .one(&self.db)
            .await?;
        if active.is_none() {
            self.create_key("active").await?;
        }
        self.tick().await
    }

    /// Publishes a new key as `next`; it starts signing after the activation delay.
    pub async fn rotate(&self) -> Result<String, IdentityError> {
        let kid = self.create_key("next").await?;
        self.tick().await?;
        Ok(kid)
    }

    /// Promotes due `next` keys, retires the previous active one, forgets keys whose tokens
    /// have all expired, and reloads the signing key.
    pub async fn tick(&self) -> Result<(), IdentityError> {
        let now = Utc::now();
        // One replica at a time changes key states (rows locked on PostgreSQL, the write lock
        // on SQLite), so there is never a moment without exactly one active key.
        let txn = caretrail_db::begin_write(&self.db).await?;
        let keys = jwt_key::Entity::find()
            .order_by_asc(jwt_key::Column::CreatedAt)
            .lock_exclusive()
            .all(&txn)
            .await?;
        let due = keys
            .iter()
            .rfind(|k| k.status == "next" && k.created_at + self.activation_delay <= now)
            .cloned();
        if let Some(next) = due {
            for k in keys.iter().filter(|k| {
                k.status == "active"
                    || (k.status == "next" && k.created_at <= next.created_at && k.kid != next.kid)
            }) {
                let mut am: jwt_key::ActiveModel = k.clone().into();
                am.status = Set("retired".into());
                am.retired_at = Set(Some(now));
                am.update(&txn).await?;
            }
            let mut am: jwt_key::ActiveModel = next.clone().into();
            am.status = Set("active".into());
            am.activated_at = Set(Some(now));
            am.update(&txn).await?;
        }
        // A retired key verifies the tokens it signed until they expire (plus clock skew).
        let grace = self.ttl + Duration::seconds(60);
        jwt_key::Entity::delete_many()
            .filter(jwt_key::Column::Status.eq("retired"))
            .filter(jwt_key::Column::RetiredAt.lt(now - grace))
            .exec(&txn)
            .await?;
        txn.commit().await?;
        self.load_active().await?;
        let set = self.jwks().await?;
        *lock(self.published.write()) = set;
        Ok(())
    }

    /// The key set as of the last tick (for this replica's own token verification).
    pub fn published(&self) -> JwkSet {
        lock(self.published.read()).clone()
    }

    async fn load_active(&self) -> Result<(), IdentityError> {
        let Some(row) = jwt_key::Entity::find()
            .filter(jwt_key::Column::Status.eq("active"))
            .one(&self.db)
            .await?
        else {
            return Err(IdentityError::Corrupt("no active token-signing key"));
        };
        let current = lock(self.active.read()).as_ref().map(|a| a.kid.clone());
        if current.as_deref() != Some(row.kid.as_str()) {
            let der = self.master.open(PURPOSE, &row.kid, &row.private_key_enc)?;
            *lock(self.active.write()) = Some(ActiveKey {
                kid: row.kid,
                key: EncodingKey::from_ed_der(&der),
            });
        }
        Ok(())
    }

    /// The published key set: active, next and still-needed retired keys.
    pub async fn jwks(&self) -> Result<JwkSet, IdentityError> {
        let keys = jwt_key::Entity::find()
            .order_by_asc(jwt_key::Column::CreatedAt)
            .all(&self.db)
            .await?;
        Ok(JwkSet {
            keys: keys
                .into_iter()
                .map(|k| Jwk {
                    common: CommonParameters {
                        public_key_use: Some(PublicKeyUse::Signature),
                        key_algorithm: Some(KeyAlgorithm::EdDSA),
                        key_id: Some(k.kid),
                        ..Default::default()
                    },
                    algorithm: AlgorithmParameters::OctetKeyPair(OctetKeyPairParameters {
                        key_type: OctetKeyPairType::OctetKeyPair,
                        curve: EllipticCurve::Ed25519,
                        x: k.public_x,
                    }),
                })
                .collect(),
        })
    }

    /// Fills in iss/aud/times/jti and signs with the active key.
    /// Signs `claims` as of `now` (`iat_ms` too: cut-offs compare milliseconds).
    pub fn issue(
        &self,
        mut claims: Claims,
        now: DateTime<Utc>,
    ) -> Result<(String, Claims), IdentityError> {
        let guard = lock(self.active.read());
        let active = guard
            .as_ref()
            .ok_or(IdentityError::Corrupt("no active token-signing key"))?;
        claims.iss = self.issuer.clone();
        claims.aud = caretrail_contracts::auth::AUDIENCE.to_string();
        claims.iat = now.timestamp();
        claims.iat_ms = Some(now.timestamp_millis());
        claims.nbf = now.timestamp();
        claims.exp = (now + self.ttl).timestamp();
        claims.jti = format!("jti_{}", uuid::Uuid::new_v4().simple());
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(active.kid.clone());
        header.typ = Some("at+jwt".into());
        let token = jsonwebtoken::encode(&header, &claims, &active.key)
            .map_err(|_| IdentityError::Corrupt("token signing failed"))?;
        Ok((token, claims))
    }
}
