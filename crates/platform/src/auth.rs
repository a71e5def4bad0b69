//! Verifying Caretrail access tokens, shared by the gateway and every service.
//!
//! Tokens are JWTs signed by the identity service with EdDSA. The verifier pins the
//! algorithm (no `none`, no HS*/RS* confusion), requires `kid`, `iss`, `aud`, `exp`, `nbf`,
//! `iat`, `jti` and `sub`, keeps the identity service's JWKS cached (refetched when an unknown
//! `kid` appears, at most every few seconds so that forged kids cannot hammer identity), and
//! refuses revoked `jti`s and tokens issued before a cut-off of their subject, institution
//! or tenant, which arrive over the bus ([`caretrail_contracts::events`]).

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use actix_web::{
    FromRequest, HttpRequest, HttpResponse, ResponseError, dev::Payload, http::StatusCode, web,
};
use caretrail_contracts::auth::{AUDIENCE, Claims};
use caretrail_contracts::events::{CutOffScope, RevocationsV1, TokensCutOffV1};
use futures::future::LocalBoxFuture;
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation, decode, decode_header,
    jwk::{AlgorithmParameters, EllipticCurve, JwkSet},
};
use serde::Deserialize;

use crate::problem::{ApiError, respond};

/// Any refetch waits this long after the previous one (bounds load from forged kids).
const MIN_REFETCH_INTERVAL: Duration = Duration::from_millis(200);
/// A kid that was missing after a refetch is not looked up again for this long.
const NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Keys are refetched at least this often, so removed (rotated-out) keys disappear.
const MAX_KEY_AGE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Deserialize)]
pub struct AuthSettings {
    /// `iss` every token must carry.
    #[serde(default = "default_issuer")]
    pub token_issuer: String,
    /// Where the identity service publishes its keys.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Clock skew tolerated on `exp`/`nbf`, seconds.
    #[serde(default = "default_leeway")]
    pub token_leeway_secs: u64,
}

pub fn default_issuer() -> String {
    "https://caretrail.local".into()
}
fn default_leeway() -> u64 {
    30
}

impl Default for AuthSettings {
    fn default() -> Self {
        Self {
            token_issuer: default_issuer(),
            jwks_url: None,
            token_leeway_secs: default_leeway(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("an access token is required (Authorization: Bearer <token>)")]
    Missing,
    #[error("the access token is malformed")]
    Malformed,
    #[error("the access token's algorithm is not accepted")]
    Algorithm,
    #[error("the access token was signed with an unknown key")]
    UnknownKey,
    #[error("the access token's signature is invalid")]
    Signature,
    #[error("the access token has expired")]
    Expired,
    #[error("the access token is not valid yet")]
    NotYetValid,
    #[error("the access token is not meant for this service")]
    WrongAudience,
    #[error("the access token was not issued by this deployment")]
    WrongIssuer,
    #[error("the access token has been revoked")]
    Revoked,
    #[error("the token's keys cannot be fetched right now")]
    KeysUnavailable,
    #[error("this operation needs {0}")]
    Forbidden(String),
}

impl ApiError for AuthError {
    fn status(&self) -> StatusCode {
        match self {
            AuthError::KeysUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            AuthError::Forbidden(_) => StatusCode::FORBIDDEN,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            AuthError::Missing => "token_missing",
            AuthError::Expired => "token_expired",
            AuthError::NotYetValid => "token_not_yet_valid",
            AuthError::Revoked => "token_revoked",
            AuthError::KeysUnavailable => "keys_unavailable",
            AuthError::Forbidden(_) => "forbidden",
            _ => "invalid_token",
        }
    }
}

impl ResponseError for AuthError {
    fn status_code(&self) -> StatusCode {
        ApiError::status(self)
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = respond(self);
        if ApiError::status(self) == StatusCode::UNAUTHORIZED
            && let Ok(v) = actix_web::http::header::HeaderValue::from_str(&format!(
                "Bearer realm=\"caretrail\", error=\"invalid_token\", error_description=\"{self}\""
            ))
        {
            resp.headers_mut()
                .insert(actix_web::http::header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}

/// Where verification keys come from.
#[derive(Clone)]
pub enum KeySource {
    /// The identity service's JWKS endpoint.
    Jwks(String),
    /// A function returning the current key set (identity verifies its own tokens).
    Local(Arc<dyn Fn() -> JwkSet + Send + Sync>),
}

struct Inner {
    issuer: String,
    leeway: u64,
    source: KeySource,
    client: reqwest::Client,
    keys: RwLock<HashMap<String, DecodingKey>>,
    last_fetch: tokio::sync::Mutex<Option<Instant>>,
    /// Kids looked up in vain, and when.
    missing: RwLock<HashMap<String, Instant>>,
    /// jti → expiry (unix seconds); entries past expiry are dropped.
    revoked: RwLock<HashMap<String, i64>>,
    /// Per kind of scope (subject, institution, tenant), its id → (not before in ms,
    /// until): tokens of the scope issued earlier are refused. Keyed by string so that the
    /// check on every request looks up `&str`s without allocating.
    cut_offs: RwLock<[HashMap<String, (i64, i64)>; 3]>,
}

/// Where a scope's cut-offs are kept in [`Inner::cut_offs`], and under which id.
fn scope_slot(scope: &CutOffScope) -> (usize, &str) {
    match scope {
        CutOffScope::Subject(id) => (0, id.as_str()),
        CutOffScope::Institution(id) => (1, id.as_str()),
        CutOffScope::Tenant(id) => (2, id.as_str()),
    }
}

/// Cheap to clone; shares its caches.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

fn lock_err<T>(r: Result<T, std::sync::PoisonError<T>>) -> T {
    r.unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Verifier {
    pub fn new(issuer: impl Into<String>, leeway_secs: u64, source: KeySource) -> Self {
        Self {
            inner: Arc::new(Inner {
                issuer: issuer.into(),
                leeway: leeway_secs,
                source,
                client: reqwest::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap_or_default(),
                keys: RwLock::new(HashMap::new()),
                last_fetch: tokio::sync::Mutex::new(None),
                missing: RwLock::new(HashMap::new()),
                revoked: RwLock::new(HashMap::new()),
                cut_offs: RwLock::new(Default::default()),
            }),
        }
    }

    pub fn from_settings(settings: &AuthSettings, jwks_url: String) -> Self {
        Self::new(
            settings.token_issuer.clone(),
            settings.token_leeway_secs,
            KeySource::Jwks(jwks_url),
        )
    }

    /// Refuses `jti` from now on (until `expires_at`, after which it is expired anyway).
    pub fn revoke(&self, jti: &str, expires_at: i64) {
        let now = now_secs();
        let mut revoked = lock_err(self.inner.revoked.write());
        revoked.retain(|_, exp| *exp + self.inner.leeway as i64 >= now);
        revoked.insert(jti.to_string(), expires_at);
    }

    pub fn is_revoked(&self, jti: &str) -> bool {
        lock_err(self.inner.revoked.read()).contains_key(jti)
    }

    /// Refuses the scope's tokens issued before `c.not_before_ms` (until `c.until`, when
    /// they have all expired). A later cut-off of the same scope extends an earlier one.
    pub fn cut_off(&self, c: &TokensCutOffV1) {
        let now = now_secs();
        let leeway = self.inner.leeway as i64;
        let mut cut_offs = lock_err(self.inner.cut_offs.write());
        for map in cut_offs.iter_mut() {
            map.retain(|_, (_, until)| *until + leeway >= now);
        }
        if c.until + leeway < now {
            return;
        }
        let (slot, id) = scope_slot(&c.scope);
        let entry = cut_offs[slot]
            .entry(id.to_string())
            .or_insert((i64::MIN, i64::MIN));
        entry.0 = entry.0.max(c.not_before_ms);
        entry.1 = entry.1.max(c.until);
    }

    /// Everything identity says is revoked (a replica joining or rejoining the bus).
    pub fn apply(&self, revocations: &RevocationsV1) {
        for item in &revocations.items {
            self.revoke(&item.jti, item.expires_at);
        }
        for c in &revocations.cut_offs {
            self.cut_off(c);
        }
    }

    /// The latest cut-off (unix milliseconds) among the subject's, its institution's and its
    /// tenant's: tokens issued before it are refused.
    pub fn cut_off_ms(
        &self,
        sub: &str,
        institution: Option<&caretrail_contracts::InstitutionId>,
        tenant: Option<&caretrail_contracts::TenantId>,
    ) -> Option<i64> {
        let cut_offs = lock_err(self.inner.cut_offs.read());
        let ids = [
            Some(sub),
            institution.map(|i| i.as_str()),
            tenant.map(|t| t.as_str()),
        ];
        cut_offs
            .iter()
            .zip(ids)
            .filter_map(|(map, id)| map.get(id?).map(|(not_before, _)| *not_before))
            .max()
    }

    fn is_cut_off(&self, claims: &Claims) -> bool {
        // A token without `iat_ms` counts from the start of its second: caught rather than
        // let through when the cut-off falls in that second.
        let issued_ms = claims
            .iat_ms
            .unwrap_or_else(|| claims.iat.saturating_mul(1000));
        self.cut_off_ms(
            &claims.sub,
            claims.institution.as_ref(),
            claims.tenant.as_ref(),
        )
        .is_some_and(|cut| issued_ms < cut)
    }

    /// Refetches the key set unless another fetch finished moments ago. Returns whether it
    /// fetched. Never sleeps while holding the lock, so a flood of forged kids costs at most
    /// one fetch per interval and delays nobody.
    async fn refresh_keys(&self, force: bool) -> Result<bool, AuthError> {
        let mut last = self.inner.last_fetch.lock().await;
        let local = matches!(self.inner.source, KeySource::Local(_));
        if !force && !local && last.is_some_and(|t| t.elapsed() < MIN_REFETCH_INTERVAL) {
            return Ok(false);
        }
        let fetched = match &self.inner.source {
            KeySource::Local(f) => Ok(f()),
            KeySource::Jwks(url) => self.fetch_jwks(url).await,
        };
        // Stamped once the fetch is over (a request dropped mid-fetch must not leave a
        // stamp without keys); failures count too: a down identity is not hammered either.
        *last = Some(Instant::now());
        let set = fetched?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            // Only Ed25519 keys are ever accepted, whatever else a key set holds.
            let AlgorithmParameters::OctetKeyPair(okp) = &jwk.algorithm else {
                continue;
            };
            if okp.curve != EllipticCurve::Ed25519 {
                continue;
            }
            let (Some(kid), Ok(key)) =
                (&jwk.common.key_id, DecodingKey::from_ed_components(&okp.x))
            else {
                continue;
            };
            keys.insert(kid.clone(), key);
        }
        *lock_err(self.inner.keys.write()) = keys;
        Ok(true)
    }

    async fn fetch_jwks(&self, url: &str) -> Result<JwkSet, AuthError> {
        let resp = self.inner.client.get(url).send().await.map_err(|e| {
            tracing::warn!(error = %e, "fetching the JWKS failed");
            AuthError::KeysUnavailable
        })?;
        resp.error_for_status()
            .map_err(|_| AuthError::KeysUnavailable)?
            .json::<JwkSet>()
            .await
            .map_err(|_| AuthError::KeysUnavailable)
    }

    fn key(&self, kid: &str) -> Option<DecodingKey> {
        lock_err(self.inner.keys.read()).get(kid).cloned()
    }

    /// Verifies a compact JWS and returns its claims.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let header = decode_header(token).map_err(|_| AuthError::Malformed)?;
        if header.alg != Algorithm::EdDSA {
            return Err(AuthError::Algorithm);
        }
        let kid = header.kid.ok_or(AuthError::Malformed)?;
        let stale = self
            .inner
            .last_fetch
            .try_lock()
            .map(|t| t.is_none_or(|t| t.elapsed() > MAX_KEY_AGE))
            .unwrap_or(false);
        if stale && let Err(error) = self.refresh_keys(false).await {
            // Keep verifying with the keys we have: identity being down must not take every
            // other service down with it.
            tracing::warn!(%error, "refreshing the token keys failed; using the cached ones");
        }
        let key = match self.key(&kid) {
            Some(k) => k,
            None => {
                let recently_missing = lock_err(self.inner.missing.read())
                    .get(&kid)
                    .is_some_and(|t| t.elapsed() < NEGATIVE_TTL);
                if recently_missing {
                    return Err(AuthError::UnknownKey);
                }
                let fetched = self.refresh_keys(false).await?;
                match self.key(&kid) {
                    Some(k) => k,
                    None => {
                        if fetched {
                            let mut missing = lock_err(self.inner.missing.write());
                            missing.retain(|_, t| t.elapsed() < NEGATIVE_TTL);
                            if missing.len() < 10_000 {
                                missing.insert(kid, Instant::now());
                            }
                        }
                        return Err(AuthError::UnknownKey);
                    }
                }
            }
        };
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = self.inner.leeway;
        validation.validate_nbf = true;
        validation.set_audience(&[AUDIENCE]);
        validation.set_issuer(&[self.inner.issuer.as_str()]);
        validation.set_required_spec_claims(&["exp", "nbf", "iat", "iss", "aud", "sub", "jti"]);
        let data = decode::<Claims>(token, &key, &validation).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind;
            match e.kind() {
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::ImmatureSignature => AuthError::NotYetValid,
                ErrorKind::InvalidAudience => AuthError::WrongAudience,
                ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                ErrorKind::InvalidSignature => AuthError::Signature,
                ErrorKind::InvalidAlgorithm => AuthError::Algorithm,
                _ => AuthError::Malformed,
            }
        })?;
        if self.is_revoked(&data.claims.jti) || self.is_cut_off(&data.claims) {
            return Err(AuthError::Revoked);
        }
        Ok(data.claims)
    }

    /// Forgets cached keys (tests of rotation).
    pub async fn reload_keys(&self) -> Result<(), AuthError> {
        self.refresh_keys(true).await.map(|_| ())
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// The bearer token of a request, if any.
pub fn bearer(req: &HttpRequest) -> Option<&str> {
    req.headers()
        .get(actix_web::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The verified caller. Extracting it requires a valid token; handlers then check roles,
/// scopes and — always — that every object they touch belongs to `claims.tenant`.
#[derive(Debug, Clone)]
pub struct Principal(pub Claims);

impl FromRequest for Principal {
    type Error = AuthError;
    type Future = LocalBoxFuture<'static, Result<Self, AuthError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let verifier = req.app_data::<web::Data<Verifier>>().cloned();
        let token = bearer(req).map(str::to_owned);
        Box::pin(async move {
            let token = token.ok_or(AuthError::Missing)?;
            let verifier = verifier.ok_or(AuthError::KeysUnavailable)?;
            verifier.verify(&token).await.map(Principal)
        })
    }
}

/// The verified caller, admitted by policy `P` (`Guarded<AuditReader>` in a handler's
/// signature): a missing or invalid token is a 401, a token `P` does not allow a 403, both
/// before the handler runs. Checks that need the object (its tenant, its owner) stay in the
/// handler's operation.
pub struct Guarded<P> {
    principal: Principal,
    _policy: std::marker::PhantomData<fn() -> P>,
}

impl<P> Guarded<P> {
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    pub fn claims(&self) -> &Claims {
        &self.principal.0
    }

    pub fn into_principal(self) -> Principal {
        self.principal
    }

    /// The caller's tenant (every tenant policy requires one).
    pub fn tenant(&self) -> Result<&caretrail_contracts::TenantId, AuthError> {
        self.principal
            .0
            .tenant
            .as_ref()
            .ok_or_else(|| AuthError::Forbidden("a tenant's token".into()))
    }
}

impl<P: caretrail_contracts::auth::Policy> FromRequest for Guarded<P> {
    type Error = AuthError;
    type Future = LocalBoxFuture<'static, Result<Self, AuthError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let principal = Principal::from_request(req, payload);
        Box::pin(async move {
            let principal = principal.await?;
            if !P::allows(&principal.0) {
                return Err(AuthError::Forbidden(P::NEEDS.into()));
            }
            Ok(Self {
                principal,
                _policy: std::marker::PhantomData,
            })
        })
    }
}

/// Adds the `bearer` security scheme (JWT access tokens) to a service's OpenAPI document;
/// every service's `#[openapi(modifiers(&BearerAuth))]` uses it.
pub struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("Access token from POST /v1/oauth/token"))
                    .build(),
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use caretrail_contracts::{InstitutionId, TenantId};

    fn verifier() -> Verifier {
        Verifier::new(
            "https://caretrail.test",
            30,
            KeySource::Local(Arc::new(JwkSet::default)),
        )
    }

    fn cut(scope: CutOffScope, not_before_ms: i64, until: i64) -> TokensCutOffV1 {
        TokensCutOffV1 {
            scope,
            not_before_ms,
            until,
        }
    }

    #[test]
    fn a_cut_off_catches_its_scope_only_and_the_latest_wins() {
        let v = verifier();
        let now = now_secs();
        let tenant: TenantId = "ten_0193c1d2e8a97b4c8f2a6d1e0b3c4d5e".parse().unwrap();
        let ins: InstitutionId = "ins_0193c1d2e8a97b4c8f2a6d1e0b3c4d5e".parse().unwrap();
        let other: InstitutionId = "ins_0193c1d2e8a97b4c8f2a6d1e0b3c4d5f".parse().unwrap();
        assert_eq!(v.cut_off_ms("usr_a", Some(&ins), Some(&tenant)), None);
        v.cut_off(&cut(
            CutOffScope::Subject("usr_a".into()),
            now - 5,
            now + 900,
        ));
        v.cut_off(&cut(
            CutOffScope::Institution(ins.clone()),
            now - 2,
            now + 900,
        ));
        assert_eq!(
            v.cut_off_ms("usr_a", Some(&ins), Some(&tenant)),
            Some(now - 2)
        );
        assert_eq!(v.cut_off_ms("usr_a", Some(&other), None), Some(now - 5));
        assert_eq!(v.cut_off_ms("usr_b", Some(&other), Some(&tenant)), None);
        // An older cut-off of the same scope does not move it back.
        v.cut_off(&cut(
            CutOffScope::Subject("usr_a".into()),
            now - 60,
            now + 900,
        ));
        assert_eq!(v.cut_off_ms("usr_a", None, None), Some(now - 5));
        v.cut_off(&cut(CutOffScope::Tenant(tenant.clone()), now, now + 900));
        assert_eq!(v.cut_off_ms("usr_b", None, Some(&tenant)), Some(now));
    }

    #[test]
    fn a_lapsed_cut_off_is_forgotten() {
        let v = verifier();
        let now = now_secs();
        v.cut_off(&cut(
            CutOffScope::Subject("usr_a".into()),
            now - 2000,
            now - 100,
        ));
        assert_eq!(v.cut_off_ms("usr_a", None, None), None);
        v.apply(&RevocationsV1 {
            items: vec![caretrail_contracts::events::TokenRevokedV1 {
                jti: "j1".into(),
                expires_at: now + 60,
            }],
            cut_offs: vec![cut(CutOffScope::Subject("usr_b".into()), now, now + 60)],
        });
        assert!(v.is_revoked("j1"));
        assert_eq!(v.cut_off_ms("usr_b", None, None), Some(now));
    }
}
