//! Changes of who may act, and cutting off the tokens they make wrong.
//!
//! Every change ([`AccessChange`]) is one event in the outbox, committed with the change
//! itself: the ledger sync anchors it on the tenant's ledger and the audit index lists it.
//! A change that takes access away also writes a cut-off ([`TokensCutOffV1`]): every
//! access token of the user, app, institution or tenant issued before it is refused by the
//! gateway and every service as soon as the event reaches them (and by replicas that missed
//! it, when they reload the list from identity). Refresh tokens are revoked in the same
//! transaction.

use caretrail_bus::{Event, outbox};
use caretrail_contracts::events::{
    AccessChangedV1, CutOffScope, RevocationsV1, TokenRevokedV1, TokensCutOffV1,
};
use caretrail_contracts::identity::AccessChange;
use caretrail_contracts::{InstitutionId, TenantId, auth::Role};
use chrono::Utc;
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter,
};

use crate::entities::{refresh_token, revoked_token, token_cut_off, user};
use crate::{IdentityError, State};

/// One change, before it is recorded.
pub struct Change {
    pub change: AccessChange,
    pub tenant: TenantId,
    /// The user, app, institution or tenant changed.
    pub subject: String,
    pub institution: Option<InstitutionId>,
    pub roles: Vec<Role>,
    /// `sub` of whoever made the change.
    pub by: String,
    /// Whose tokens it ends, if it takes access away.
    pub cut_off: Option<CutOffScope>,
}

/// What to do once the transaction has committed ([`Recorded::apply`]).
#[must_use = "apply it after the commit"]
pub struct Recorded {
    cut_off: Option<TokensCutOffV1>,
}

impl Recorded {
    /// This replica refuses the tokens at once (others hear the event within milliseconds),
    /// and the outbox relay is woken.
    pub fn apply(self, state: &State) {
        if let Some(c) = &self.cut_off {
            state.verifier.cut_off(c);
        }
        state.outbox.notify_one();
    }
}

fn scope_key(scope: &CutOffScope) -> (&'static str, String) {
    match scope {
        CutOffScope::Subject(id) => ("subject", id.clone()),
        CutOffScope::Institution(id) => ("institution", id.to_string()),
        CutOffScope::Tenant(id) => ("tenant", id.to_string()),
    }
}

fn scope_of(kind: &str, id: &str) -> Result<CutOffScope, IdentityError> {
    Ok(match kind {
        "subject" => CutOffScope::Subject(id.to_string()),
        "institution" => CutOffScope::Institution(
            id.parse()
                .map_err(|_| IdentityError::Corrupt("cut-off institution"))?,
        ),
        "tenant" => CutOffScope::Tenant(
            id.parse()
                .map_err(|_| IdentityError::Corrupt("cut-off tenant"))?,
        ),
        _ => return Err(IdentityError::Corrupt("cut-off scope")),
    })
}

/// Records `change` in `txn`: its event and, if it cuts access, the cut-off and its event.
pub async fn record(
    state: &State,
    txn: &impl ConnectionTrait,
    change: Change,
) -> Result<Recorded, IdentityError> {
    let payload = AccessChangedV1 {
        change: change.change,
        subject: change.subject,
        institution: change.institution,
        roles: change.roles,
        by: change.by,
    };
    let event = Event::new(
        change.tenant.as_str(),
        crate::SERVICE,
        change.change.as_str(),
        1,
        &payload,
    )?;
    outbox::enqueue(txn, &event).await?;
    let Some(scope) = change.cut_off else {
        return Ok(Recorded { cut_off: None });
    };
    // Every token issued up to now (`iat_ms`) is caught; one issued after is not.
    let now_ms = Utc::now().timestamp_millis() + 1;
    let cut = TokensCutOffV1 {
        scope,
        not_before_ms: now_ms,
        // Every token it catches has expired by then (tokens live `access_token_ttl_secs`).
        until: now_ms.div_euclid(1000) + 1 + state.config.access_token_ttl_secs,
    };
    let (kind, id) = scope_key(&cut.scope);
    token_cut_off::Entity::insert(token_cut_off::ActiveModel {
        scope_kind: Set(kind.to_string()),
        scope_id: Set(id),
        tenant_id: Set(change.tenant.to_string()),
        not_before_ms: Set(cut.not_before_ms),
        until: Set(cut.until),
        created_at: Set(Utc::now()),
    })
    .on_conflict(
        OnConflict::columns([
            token_cut_off::Column::ScopeKind,
            token_cut_off::Column::ScopeId,
        ])
        .update_columns([
            token_cut_off::Column::TenantId,
            token_cut_off::Column::NotBeforeMs,
            token_cut_off::Column::Until,
            token_cut_off::Column::CreatedAt,
        ])
        .to_owned(),
    )
    .exec(txn)
    .await?;
    let event = Event::new(
        change.tenant.as_str(),
        crate::SERVICE,
        caretrail_runtime::revocations::TOKENS_CUT_OFF,
        1,
        &cut,
    )?;
    outbox::enqueue(txn, &event).await?;
    Ok(Recorded { cut_off: Some(cut) })
}

/// Ends every refresh-token family of these users (their sessions cannot be renewed).
pub async fn end_sessions(
    txn: &impl ConnectionTrait,
    tenant: &TenantId,
    users: &[String],
) -> Result<(), IdentityError> {
    if users.is_empty() {
        return Ok(());
    }
    refresh_token::Entity::update_many()
        .col_expr(
            refresh_token::Column::RevokedAt,
            Expr::value(Some(Utc::now())),
        )
        .filter(refresh_token::Column::TenantId.eq(tenant.as_str()))
        .filter(refresh_token::Column::UserId.is_in(users.iter().cloned()))
        .filter(refresh_token::Column::RevokedAt.is_null())
        .exec(txn)
        .await?;
    Ok(())
}

/// The ids of an institution's users (to end their sessions).
pub async fn institution_users(
    txn: &impl ConnectionTrait,
    tenant: &TenantId,
    institution: &InstitutionId,
) -> Result<Vec<String>, IdentityError> {
    Ok(user::Entity::find()
        .filter(user::Column::TenantId.eq(tenant.as_str()))
        .filter(user::Column::InstitutionId.eq(institution.as_str()))
        .all(txn)
        .await?
        .into_iter()
        .map(|u| u.id)
        .collect())
}

/// Every revocation and cut-off still in force (for replicas joining the bus).
pub async fn in_force(db: &DatabaseConnection) -> Result<RevocationsV1, IdentityError> {
    let now = Utc::now().timestamp();
    let items = revoked_token::Entity::find()
        .filter(revoked_token::Column::ExpiresAt.gt(now))
        .all(db)
        .await?
        .into_iter()
        .map(|r| TokenRevokedV1 {
            jti: r.jti,
            expires_at: r.expires_at,
        })
        .collect();
    let cut_offs = token_cut_off::Entity::find()
        .filter(token_cut_off::Column::Until.gt(now))
        .all(db)
        .await?
        .into_iter()
        .map(|c| {
            Ok(TokensCutOffV1 {
                scope: scope_of(&c.scope_kind, &c.scope_id)?,
                not_before_ms: c.not_before_ms,
                until: c.until,
            })
        })
        .collect::<Result<_, IdentityError>>()?;
    Ok(RevocationsV1 { items, cut_offs })
}

/// Identity's own replicas read the list from the database.
pub struct FromDatabase(pub DatabaseConnection);

#[async_trait::async_trait]
impl caretrail_runtime::revocations::RevocationSource for FromDatabase {
    async fn load(&self) -> Result<RevocationsV1, String> {
        in_force(&self.0).await.map_err(|e| e.to_string())
    }
}
