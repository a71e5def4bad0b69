//! The tenant's classification policy: read by anyone of the tenant, changed by tenant
//! admins; every change is validated, versioned and anchored (`policy.changed`).

use actix_web::{HttpResponse, web};
use caretrail_contracts::auth::policy::{TenantAdmin, TenantMember};
use caretrail_platform::auth::Guarded;
use caretrail_runtime::anchoring::NewAnchor;
use chrono::Utc;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
};

use super::{Caller, Result, canonical, queue_anchor, settle, tenant_suite, text};
use crate::State;
use crate::engine::{Engine, IndexChanged, publish_change};
use crate::entities::policy;
use crate::error::ConsentError;
use crate::model::{PolicyIn, PolicyOut, PolicyVersionsOut};
use crate::policy::Policy;

pub const KIND_CHANGED: &str = "policy.changed";

fn out(row: &policy::Model) -> Result<PolicyOut> {
    Ok(PolicyOut {
        version: row.version,
        policy: serde_json::from_str(&row.document)
            .map_err(|_| ConsentError::Corrupt("policy document"))?,
        changed_by: Some(row.changed_by.clone()),
        reason: Some(row.reason.clone()),
        changed_at: Some(row.created_at),
        receipt: None,
    })
}

fn default_out() -> PolicyOut {
    PolicyOut {
        version: 0,
        policy: Policy::default_policy(),
        changed_by: None,
        reason: None,
        changed_at: None,
        receipt: None,
    }
}

#[utoipa::path(get, operation_id = "get_policy", path = "/v1/policy", tag = "consent",
    responses((status = 200, body = PolicyOut, description = "The policy in force (version 0 is the built-in default)")),
    security(("bearer" = [])))]
/// The tenant's classification policy in force.
pub async fn get(state: web::Data<State>, g: Guarded<TenantMember>) -> Result<HttpResponse> {
    let caller = Caller::of(&g)?;
    let txn = caretrail_db::begin_tenant(&state.db, caller.tenant.as_str()).await?;
    let row = policy::Entity::find()
        .filter(policy::Column::TenantId.eq(caller.tenant.as_str()))
        .order_by_desc(policy::Column::Version)
        .one(&txn)
        .await?;
    txn.commit().await?;
    Ok(HttpResponse::Ok().json(match row {
        Some(row) => out(&row)?,
        None => default_out(),
    }))
}

#[utoipa::path(get, operation_id = "list_policy_versions", path = "/v1/policy/versions", tag = "consent",
    responses((status = 200, body = PolicyVersionsOut, description = "Every version, newest first, ending with the default (0)")),
    security(("bearer" = [])))]
/// The policy's history.
pub async fn versions(state: web::Data<State>, g: Guarded<TenantMember>) -> Result<HttpResponse> {
    let caller = Caller::of(&g)?;
    let txn = caretrail_db::begin_tenant(&state.db, caller.tenant.as_str()).await?;
    let rows = policy::Entity::find()
        .filter(policy::Column::TenantId.eq(caller.tenant.as_str()))
        .order_by_desc(policy::Column::Version)
        .all(&txn)
        .await?;
    txn.commit().await?;
    let mut items = rows.iter().map(out).collect::<Result<Vec<_>>>()?;
    items.push(default_out());
    Ok(HttpResponse::Ok().json(PolicyVersionsOut { items }))
}

#[utoipa::path(put, operation_id = "put_policy", path = "/v1/policy", tag = "consent",
    request_body = PolicyIn,
    responses((status = 200, body = PolicyOut, description = "The new version, in force on every replica within a second; `policy.changed` is anchored"),
              (status = 400, body = caretrail_platform::Problem, description = "The document is invalid (every problem is listed)"),
              (status = 403, body = caretrail_platform::Problem, description = "Not a tenant admin acting for an institution (whose key signs the change)")),
    security(("bearer" = [])))]
/// Replace the tenant's policy (tenant admins). The change is signed by the admin's
/// institution and anchored.
pub async fn put(
    state: web::Data<State>,
    g: Guarded<TenantAdmin>,
    body: web::Json<PolicyIn>,
) -> Result<HttpResponse> {
    let caller = Caller::of(&g)?;
    let signer = caller.institution()?.to_string();
    let body = body.into_inner();
    let mut errors = body.policy.problems();
    let reason = text(&mut errors, "reason", &body.reason, 1, 1000);
    if !errors.is_empty() {
        return Err(ConsentError::Validation(errors));
    }
    let suite = tenant_suite(&state, &caller.tenant).await?;
    let document =
        serde_json::to_value(&body.policy).map_err(|_| ConsentError::Corrupt("policy"))?;
    let document_bytes = canonical(document.clone())?;
    let txn = caretrail_db::begin_tenant(&state.db, caller.tenant.as_str()).await?;
    let (_, current) = Engine::current_policy(&txn, caller.tenant.as_str()).await?;
    let version = current + 1;
    let now = Utc::now();
    let row = policy::Model {
        tenant_id: caller.tenant.to_string(),
        version,
        document: String::from_utf8(document_bytes.clone())
            .map_err(|_| ConsentError::Corrupt("policy"))?,
        changed_by: caller.id.clone(),
        reason: reason.clone(),
        created_at: now,
    };
    // A concurrent change took this version number: the primary key refuses the second.
    let row = row.into_active_model().insert(&txn).await.map_err(|e| {
        if matches!(
            e.sql_err(),
            Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
        ) {
            ConsentError::Conflict("the policy changed concurrently; read it and retry".into())
        } else {
            e.into()
        }
    })?;
    publish_change(&txn, caller.tenant.as_str(), &IndexChanged::policy(version)).await?;
    let payload = canonical(serde_json::json!({
        "v": 1,
        "version": version,
        "policy_hash": caretrail_crypto::hash(suite, &document_bytes).to_hex(),
        "changed_by": caller.id,
        "at": now.timestamp_millis(),
    }))?;
    let anchor = queue_anchor(
        &txn,
        NewAnchor {
            tenant: caller.tenant.to_string(),
            subject: format!("policy:{version}"),
            kind: KIND_CHANGED,
            request_id: format!("policy:{version}"),
            signer,
            payload,
            submission: None,
            event_name: KIND_CHANGED,
            event: serde_json::json!({"version": version, "changed_by": caller.id, "reason": reason, "policy": document}),
            hold: std::time::Duration::ZERO,
        },
    )
    .await?;
    txn.commit().await?;
    state.outbox.notify_one();
    state
        .engine
        .apply(caller.tenant.as_str(), &IndexChanged::policy(version))
        .await?;
    let mut reply = out(&row)?;
    reply.receipt = settle(&state, anchor).await?;
    Ok(HttpResponse::Ok().json(reply))
}
