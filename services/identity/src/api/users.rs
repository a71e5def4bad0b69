//! Users — the people who log in — and their lifecycle: create, change roles, disable,
//! enable, remove, and hand out one-time password-reset tokens. Every change is an access
//! change ([`crate::access`]): anchored on the ledger, listed by the audit index, and — when it
//! takes access away — the user's tokens are refused everywhere within a second.

use actix_web::{HttpResponse, web};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use caretrail_contracts::{
    InstitutionId, TenantId, UserId,
    auth::{Role, scopes},
    events::CutOffScope,
    identity::AccessChange,
};
use caretrail_platform::auth::Principal;
use chrono::{Duration, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use super::require_member;
use super::sessions::hash_password_blocking;
use crate::{
    IdentityError, State,
    access::{self, Change},
    entities::{institution, password_reset, user},
    model::{PasswordResetOut, UserIn, UserListOut, UserOut, UserPatchIn, UserStatus},
};

/// How long a password-reset token works.
pub const RESET_TTL: Duration = Duration::minutes(30);

pub(crate) fn roles_of(u: &user::Model) -> Vec<Role> {
    u.roles
        .split(' ')
        .filter_map(|r| serde_json::from_value(serde_json::Value::String(r.to_string())).ok())
        .collect()
}

/// What a person with these roles may do, as OAuth scopes (services check either).
pub(crate) fn scopes_for(roles: &[Role]) -> String {
    let mut s: Vec<&str> = Vec::new();
    for r in roles {
        let add: &[&str] = match r {
            Role::Physician => &[
                scopes::RECORDS_READ,
                scopes::RECORDS_WRITE,
                scopes::PATIENTS_WRITE,
                scopes::GRANTS_READ,
                scopes::GRANTS_WRITE,
            ],
            Role::InstitutionAdmin => &[scopes::RECORDS_READ, scopes::GRANTS_READ],
            Role::TenantAdmin => &[scopes::ADMIN],
            Role::Auditor => &[scopes::AUDIT_READ],
        };
        for a in add {
            if !s.contains(a) {
                s.push(a);
            }
        }
    }
    s.join(" ")
}

pub(crate) fn out(u: user::Model) -> Result<UserOut, IdentityError> {
    Ok(UserOut {
        id: u
            .id
            .parse()
            .map_err(|_| IdentityError::Corrupt("user id"))?,
        tenant_id: u
            .tenant_id
            .parse()
            .map_err(|_| IdentityError::Corrupt("tenant id"))?,
        institution_id: u
            .institution_id
            .parse()
            .map_err(|_| IdentityError::Corrupt("institution id"))?,
        username: u.username.clone(),
        display_name: u.display_name.clone(),
        roles: roles_of(&u),
        status: UserStatus::parse(&u.status)?,
        created_at: u.created_at,
    })
}

/// Roles an institution administrator may hold out and take back: its own institution's
/// clinical and administrative staff, not the tenant's administrators or auditors.
const INSTITUTION_ADMIN_GRANTS: [Role; 2] = [Role::Physician, Role::InstitutionAdmin];

/// May `p` manage a user of `institution` holding `held` roles and (if given) give them
/// `given` roles? Tenant administrators (and `admin` apps) manage anyone of their tenant;
/// an institution administrator the physicians and institution administrators of its own
/// institution; the platform operator only tenant administrators, and never their roles.
/// Someone of another tenant gets 404.
fn may_manage(
    p: &Principal,
    tenant: &TenantId,
    institution: &InstitutionId,
    held: &[Role],
    given: Option<&[Role]>,
) -> Result<(), IdentityError> {
    require_member(p, tenant, "user")?;
    let c = &p.0;
    if c.is_operator() {
        let only_admin =
            |roles: &[Role]| !roles.is_empty() && roles.iter().all(|r| *r == Role::TenantAdmin);
        return if only_admin(held) && given.is_none_or(only_admin) {
            Ok(())
        } else {
            Err(IdentityError::Forbidden(
                "the platform operator manages tenant administrators only".into(),
            ))
        };
    }
    if c.has_role(Role::TenantAdmin) || c.has_scope(scopes::ADMIN) {
        return Ok(());
    }
    let within = |roles: &[Role]| roles.iter().all(|r| INSTITUTION_ADMIN_GRANTS.contains(r));
    if c.has_role(Role::InstitutionAdmin)
        && c.institution.as_ref() == Some(institution)
        && within(held)
        && given.is_none_or(within)
    {
        return Ok(());
    }
    Err(IdentityError::Forbidden(
        "this needs a tenant administrator, or the administrator of the user's institution \
         for its physicians and institution administrators"
            .into(),
    ))
}

/// Whether `p` manages anyone in `tenant` at all, checked before any user is looked up: a
/// physician, an auditor or an app without `admin` is refused alike whether the user id it
/// names exists or not (the id is no oracle).
fn manages_someone(p: &Principal, tenant: &TenantId) -> Result<(), IdentityError> {
    require_member(p, tenant, "user")?;
    let c = &p.0;
    if c.is_operator()
        || c.has_role(Role::TenantAdmin)
        || c.has_scope(scopes::ADMIN)
        || c.has_role(Role::InstitutionAdmin)
    {
        Ok(())
    } else {
        Err(IdentityError::Forbidden(
            "this needs a tenant or institution administrator".into(),
        ))
    }
}

/// Creates a user (tenant admins, institution admins for their institution, the operator
/// for tenant administrators, and the demo seed as `by = "seed"`).
pub async fn create_user(
    state: &State,
    tenant: &TenantId,
    input: UserIn,
    by: &str,
) -> Result<UserOut, IdentityError> {
    input.validate()?;
    let hash = hash_password_blocking(input.password.clone()).await?;
    let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
    let ins = institution::Entity::find_by_id(input.institution_id.to_string())
        .filter(institution::Column::TenantId.eq(tenant.as_str()))
        .one(&txn)
        .await?;
    if ins.is_none() {
        return Err(IdentityError::field(
            "institution_id",
            "no such institution in this tenant",
        ));
    }
    let taken = user::Entity::find()
        .filter(user::Column::TenantId.eq(tenant.as_str()))
        .filter(user::Column::Username.eq(input.username.clone()))
        .one(&txn)
        .await?;
    if taken.is_some() {
        return Err(username_taken(&input.username));
    }
    let id = UserId::generate();
    let roles: Vec<&str> = input.roles.iter().map(|r| r.as_str()).collect();
    let inserted = user::ActiveModel {
        id: Set(id.to_string()),
        tenant_id: Set(tenant.to_string()),
        institution_id: Set(input.institution_id.to_string()),
        username: Set(input.username.clone()),
        display_name: Set(input.display_name.trim().to_string()),
        roles: Set(roles.join(" ")),
        password_hash: Set(hash),
        failed_attempts: Set(0),
        locked_until: Set(None),
        status: Set(UserStatus::Active.as_str().into()),
        created_at: Set(Utc::now()),
    }
    .insert(&txn)
    .await;
    let model = match inserted {
        Err(e) if crate::error::is_unique_violation(&e) => {
            return Err(username_taken(&input.username));
        }
        other => other?,
    };
    let recorded = access::record(
        state,
        &txn,
        Change {
            change: AccessChange::UserCreated,
            tenant: tenant.clone(),
            subject: id.to_string(),
            institution: Some(input.institution_id.clone()),
            roles: input.roles.clone(),
            by: by.to_string(),
            cut_off: None,
        },
    )
    .await?;
    txn.commit().await?;
    recorded.apply(state);
    out(model)
}

fn username_taken(username: &str) -> IdentityError {
    IdentityError::Conflict(format!("username {username:?} is taken"))
}

#[utoipa::path(post, operation_id = "create_user", path = "/v1/tenants/{tenant_id}/users", tag = "users",
    params(("tenant_id" = caretrail_contracts::TenantId, Path)), request_body = UserIn,
    responses((status = 201, body = UserOut, description = "Created"),
              (status = 400, body = caretrail_platform::Problem, description = "Invalid input"),
              (status = 403, body = caretrail_platform::Problem, description = "Not this caller's to create (an institution administrator creates physicians and institution administrators of its own institution; the operator tenant administrators only)"),
              (status = 404, body = caretrail_platform::Problem, description = "Not found (also for other tenants)"),
              (status = 409, body = caretrail_platform::Problem, description = "Username taken")),
    security(("bearer" = [])))]
/// Create a user (physician, administrator, auditor) of an institution.
pub async fn create(
    state: web::Data<State>,
    p: Principal,
    path: web::Path<TenantId>,
    input: web::Json<UserIn>,
) -> Result<HttpResponse, IdentityError> {
    let tenant = path.into_inner();
    let input = input.into_inner();
    // Whoever creates a physician decides who reads clinical data: the operator sets up a
    // tenant's first administrators, and no one else.
    may_manage(&p, &tenant, &input.institution_id, &input.roles, None)?;
    let user = create_user(&state, &tenant, input, &p.0.sub).await?;
    Ok(HttpResponse::Created().json(user))
}

#[derive(Debug, serde::Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Only users with this status.
    pub status: Option<UserStatus>,
}

#[utoipa::path(get, operation_id = "list_users", path = "/v1/tenants/{tenant_id}/users", tag = "users",
    params(("tenant_id" = caretrail_contracts::TenantId, Path), ListQuery),
    responses((status = 200, body = UserListOut, description = "OK: every user of the tenant for its administrators and the operator; an institution administrator's own institution's users")),
    security(("bearer" = [])))]
/// List a tenant's users (removed ones too: their ids stay in trails).
pub async fn list(
    state: web::Data<State>,
    p: Principal,
    path: web::Path<TenantId>,
    query: web::Query<ListQuery>,
) -> Result<HttpResponse, IdentityError> {
    let tenant = path.into_inner();
    require_member(&p, &tenant, "tenant")?;
    let c = &p.0;
    let only_institution =
        if c.is_operator() || c.has_role(Role::TenantAdmin) || c.has_scope(scopes::ADMIN) {
            None
        } else if c.has_role(Role::InstitutionAdmin) {
            c.institution.clone()
        } else {
            return Err(IdentityError::Forbidden(
                "this operation needs a tenant or institution administrator".into(),
            ));
        };
    super::tenants::load(&state, &tenant).await?;
    let txn = caretrail_db::begin_tenant_read(&state.db, tenant.as_str()).await?;
    let mut find = user::Entity::find().filter(user::Column::TenantId.eq(tenant.as_str()));
    if let Some(ins) = &only_institution {
        find = find.filter(user::Column::InstitutionId.eq(ins.as_str()));
    }
    if let Some(status) = query.status {
        find = find.filter(user::Column::Status.eq(status.as_str()));
    }
    let rows = find.order_by_asc(user::Column::CreatedAt).all(&txn).await?;
    txn.commit().await?;
    let items = rows.into_iter().map(out).collect::<Result<_, _>>()?;
    Ok(HttpResponse::Ok().json(UserListOut { items }))
}

/// The user, locked for the change, in a write transaction of its tenant.
async fn load_for_change(
    state: &State,
    tenant: &TenantId,
    id: &UserId,
) -> Result<(caretrail_db::sea_orm::DatabaseTransaction, user::Model), IdentityError> {
    let txn = caretrail_db::begin_tenant(&state.db, tenant.as_str()).await?;
    let row = user::Entity::find_by_id(id.to_string())
        .filter(user::Column::TenantId.eq(tenant.as_str()))
        .lock_exclusive()
        .one(&txn)
        .await?
        .ok_or(IdentityError::NotFound("user"))?;
    Ok((txn, row))
}

fn institution_of(u: &user::Model) -> Result<InstitutionId, IdentityError> {
    u.institution_id
        .parse()
        .map_err(|_| IdentityError::Corrupt("institution id"))
}

/// Nobody cuts themselves off (the last administrator would lock the tenant out).
fn not_self(p: &Principal, u: &user::Model, what: &str) -> Result<(), IdentityError> {
    if p.0.sub == u.id {
        return Err(IdentityError::Conflict(format!(
            "you cannot {what} your own account"
        )));
    }
    Ok(())
}

type UserPath = web::Path<(TenantId, UserId)>;

#[utoipa::path(get, operation_id = "get_user", path = "/v1/tenants/{tenant_id}/users/{user_id}", tag = "users",
    params(("tenant_id" = caretrail_contracts::TenantId, Path), ("user_id" = caretrail_contracts::UserId, Path)),
    responses((status = 200, body = UserOut, description = "OK"),
              (status = 403, body = caretrail_platform::Problem, description = "Not this caller's to manage"),
              (status = 404, body = caretrail_platform::Problem, description = "Not found (also for other tenants)")),
    security(("bearer" = [])))]
/// Get a user.
pub async fn get(
    state: web::Data<State>,
    p: Principal,
    path: UserPath,
) -> Result<HttpResponse, IdentityError> {
    let (tenant, id) = path.into_inner();
    manages_someone(&p, &tenant)?;
    let txn = caretrail_db::begin_tenant_read(&state.db, tenant.as_str()).await?;
    let row = user::Entity::find_by_id(id.to_string())
        .filter(user::Column::TenantId.eq(tenant.as_str()))
        .one(&txn)
        .await?
        .ok_or(IdentityError::NotFound("user"))?;
    txn.commit().await?;
    may_manage(&p, &tenant, &institution_of(&row)?, &roles_of(&row), None)?;
    Ok(HttpResponse::Ok().json(out(row)?))
}

#[utoipa::path(patch, operation_id = "update_user", path = "/v1/tenants/{tenant_id}/users/{user_id}", tag = "users",
    params(("tenant_id" = caretrail_contracts::TenantId, Path), ("user_id" = caretrail_contracts::UserId, Path)), request_body = UserPatchIn,
    responses((status = 200, body = UserOut, description = "Changed; with new roles, the user's tokens stop working within a second and they log in again"),
              (status = 400, body = caretrail_platform::Problem, description = "Invalid input"),
              (status = 403, body = caretrail_platform::Problem, description = "Not this caller's to change"),
              (status = 404, body = caretrail_platform::Problem, description = "Not found (also for other tenants)"),
              (status = 409, body = caretrail_platform::Problem, description = "Removed users do not change; nobody changes their own roles")),
    security(("bearer" = [])))]
/// Change a user's roles (`user.role_changed`: their tokens are cut off) or display name.
pub async fn update(
    state: web::Data<State>,
    p: Principal,
    path: UserPath,
    input: web::Json<UserPatchIn>,
) -> Result<HttpResponse, IdentityError> {
    let (tenant, id) = path.into_inner();
    let input = input.into_inner();
    manages_someone(&p, &tenant)?;
    input.validate()?;
    let (txn, row) = load_for_change(&state, &tenant, &id).await?;
    let institution = institution_of(&row)?;
    let held = roles_of(&row);
    may_manage(&p, &tenant, &institution, &held, input.roles.as_deref())?;
    if UserStatus::parse(&row.status)? == UserStatus::Removed {
        return Err(IdentityError::Conflict("the user has been removed".into()));
    }
    let mut roles = input.roles.clone().unwrap_or_else(|| held.clone());
    roles.sort();
    roles.dedup();
    let roles_changed = {
        let mut before = held.clone();
        before.sort();
        before != roles
    };
    if roles_changed {
        not_self(&p, &row, "change the roles of")?;
    }
    let mut am: user::ActiveModel = row.into();
    if let Some(name) = &input.display_name {
        am.display_name = Set(name.trim().to_string());
    }
    if roles_changed {
        am.roles = Set(roles
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(" "));
    }
    let model = am.update(&txn).await?;
    let recorded = if roles_changed {
        access::end_sessions(&txn, &tenant, std::slice::from_ref(&model.id)).await?;
        Some(
            access::record(
                &state,
                &txn,
                Change {
                    change: AccessChange::UserRoleChanged,
                    tenant: tenant.clone(),
                    subject: model.id.clone(),
                    institution: Some(institution),
                    roles: roles.clone(),
                    by: p.0.sub.clone(),
                    cut_off: Some(CutOffScope::Subject(model.id.clone())),
                },
            )
            .await?,
        )
    } else {
        None
    };
    txn.commit().await?;
    if let Some(r) = recorded {
        r.apply(&state);
    }
    Ok(HttpResponse::Ok().json(out(model)?))
}

/// Moves a user to `status` and records `change` (cutting their tokens off unless enabled),
/// as `p` (checked) or, without one, as `by` (the demo seed).
async fn set_status(
    state: &State,
    p: Option<&Principal>,
    tenant: TenantId,
    id: UserId,
    status: UserStatus,
    change: AccessChange,
) -> Result<user::Model, IdentityError> {
    if let Some(p) = p {
        manages_someone(p, &tenant)?;
    }
    let (txn, row) = load_for_change(state, &tenant, &id).await?;
    let institution = institution_of(&row)?;
    let roles = roles_of(&row);
    if let Some(p) = p {
        may_manage(p, &tenant, &institution, &roles, None)?;
    }
    let current = UserStatus::parse(&row.status)?;
    if current == UserStatus::Removed {
        return Err(IdentityError::Conflict("the user has been removed".into()));
    }
    if let Some(p) = p
        && status != UserStatus::Active
    {
        not_self(
            p,
            &row,
            if status == UserStatus::Removed {
                "remove"
            } else {
                "disable"
            },
        )?;
    }
    if current == status {
        // Already so: nothing to record, the same answer.
        txn.commit().await?;
        return Ok(row);
    }
    let mut am: user::ActiveModel = row.into();
    am.status = Set(status.as_str().into());
    if status == UserStatus::Active {
        am.failed_attempts = Set(0);
        am.locked_until = Set(None);
    }
    if status == UserStatus::Removed {
        // No way back in, and the name is free again; the id stays in every trail.
        am.password_hash = Set(String::new());
        am.username = Set(format!("removed~{}", id));
    }
    let model = am.update(&txn).await?;
    let cuts = status != UserStatus::Active;
    if cuts {
        access::end_sessions(&txn, &tenant, std::slice::from_ref(&model.id)).await?;
        password_reset::Entity::delete_many()
            .filter(password_reset::Column::TenantId.eq(tenant.as_str()))
            .filter(password_reset::Column::UserId.eq(model.id.clone()))
            .exec(&txn)
            .await?;
    }
    let recorded = access::record(
        state,
        &txn,
        Change {
            change,
            tenant: tenant.clone(),
            subject: model.id.clone(),
            institution: Some(institution),
            roles,
            by: p.map_or_else(|| crate::seed::SEED.to_string(), |p| p.0.sub.clone()),
            cut_off: cuts.then(|| CutOffScope::Subject(model.id.clone())),
        },
    )
    .await?;
    txn.commit().await?;
    recorded.apply(state);
    Ok(model)
}

/// Disables a user as the demo seed (a demo physician who has left).
pub(crate) async fn disable_as_seed(
    state: &State,
    tenant: &TenantId,
    id: &UserId,
) -> Result<(), IdentityError> {
    set_status(
        state,
        None,
        tenant.clone(),
        id.clone(),
        UserStatus::Disabled,
        AccessChange::UserDisabled,
    )
    .await
    .map(drop)
}

#[utoipa::path(post, operation_id = "disable_user", path = "/v1/tenants/{tenant_id}/users/{user_id}/disable", tag = "users",
    params(("tenant_id" = caretrail_contracts::TenantId, Path), ("user_id" = caretrail_contracts::UserId, Path)),
    responses((status = 200, body = UserOut, description = "Disabled: the user cannot log in, and their tokens stop working within a second"),
              (status = 403, body = caretrail_platform::Problem, description = "Not this caller's to manage"),
              (status = 404, body = caretrail_platform::Problem, description = "Not found (also for other tenants)"),
              (status = 409, body = caretrail_platform::Problem, description = "Removed, or the caller's own account")),
    security(("bearer" = [])))]
/// Disable a user (`user.disabled`): no login, sessions ended, tokens cut off everywhere.
pub async fn disable(
    state: web::Data<State>,
    p: Principal,
    path: UserPath,
) -> Result<HttpResponse, IdentityError> {
    let (tenant, id) = path.into_inner();
    let model = set_status(
        &state,
        Some(&p),
        tenant,
        id,
        UserStatus::Disabled,
        AccessChange::UserDisabled,
    )
    .await?;
    Ok(HttpResponse::Ok().json(out(model)?))
}

#[utoipa::path(post, operation_id = "enable_user", path = "/v1/tenants/{tenant_id}/users/{user_id}/enable", tag = "users",
    params(("tenant_id" = caretrail_contracts::TenantId, Path), ("user_id" = caretrail_contracts::UserId, Path)),
    responses((status = 200, body = UserOut, description = "Enabled: the user may log in again (tokens cut off before stay refused)"),
              (status = 403, body = caretrail_platform::Problem, description = "Not this caller's to manage"),
              (status = 404, body = caretrail_platform::Problem, description = "Not found (also for other tenants)"),
              (status = 409, body = caretrail_platform::Problem, description = "Removed")),
    security(("bearer" = [])))]
/// Enable a disabled user again (`user.enabled`); clears a lockout.
pub async fn enable(
    state: web::Data<State>,
    p: Principal,
    path: UserPath,
) -> Result<HttpResponse, IdentityError> {
    let (tenant, id) = path.into_inner();
    let model = set_status(
        &state,
        Some(&p),
        tenant,
        id,
        UserStatus::Active,
        AccessChange::UserEnabled,
    )
    .await?;
    Ok(HttpResponse::Ok().json(out(model)?))
}

#[utoipa::path(delete, operation_id = "remove_user", path = "/v1/tenants/{tenant_id}/users/{user_id}", tag = "users",
    params(("tenant_id" = caretrail_contracts::TenantId, Path), ("user_id" = caretrail_contracts::UserId, Path)),
    responses((status = 200, body = UserOut, description = "Removed: no login, tokens cut off, the username free again; the id and what they did stay in the trail"),
              (status = 403, body = caretrail_platform::Problem, description = "Not this caller's to manage"),
              (status = 404, body = caretrail_platform::Problem, description = "Not found (also for other tenants)"),
              (status = 409, body = caretrail_platform::Problem, description = "Already removed, or the caller's own account")),
    security(("bearer" = [])))]
/// Remove a user for good (`user.removed`). The row stays, without password, so that every
/// trail still names who did what.
pub async fn remove(
    state: web::Data<State>,
    p: Principal,
    path: UserPath,
) -> Result<HttpResponse, IdentityError> {
    let (tenant, id) = path.into_inner();
    let model = set_status(
        &state,
        Some(&p),
        tenant,
        id,
        UserStatus::Removed,
        AccessChange::UserRemoved,
    )
    .await?;
    Ok(HttpResponse::Ok().json(out(model)?))
}

/// `<tenant id>.<256 random bits>`: the tenant tells which RLS scope to look in.
pub(crate) fn new_tenant_token(tenant: &TenantId) -> Result<String, IdentityError> {
    let key = caretrail_crypto::DataKey::generate(caretrail_crypto::Suite::Intl)?;
    Ok(format!(
        "{tenant}.{}",
        URL_SAFE_NO_PAD.encode(key.expose_secret())
    ))
}

/// How tenant-scoped bearer secrets (refresh and reset tokens) are stored.
pub(crate) fn token_hash(token: &str) -> String {
    caretrail_crypto::hash(caretrail_crypto::Suite::Intl, token.as_bytes()).to_hex()
}

#[utoipa::path(post, operation_id = "start_password_reset", path = "/v1/tenants/{tenant_id}/users/{user_id}/password-reset", tag = "users",
    params(("tenant_id" = caretrail_contracts::TenantId, Path), ("user_id" = caretrail_contracts::UserId, Path)),
    responses((status = 201, body = PasswordResetOut, description = "A one-time token, valid 30 minutes, for the administrator to hand to the user (earlier unused ones stop working)"),
              (status = 403, body = caretrail_platform::Problem, description = "Not this caller's to manage"),
              (status = 404, body = caretrail_platform::Problem, description = "Not found (also for other tenants)"),
              (status = 409, body = caretrail_platform::Problem, description = "The user is disabled or removed")),
    security(("bearer" = [])))]
/// Start a password reset: a one-time token (shown once) the user redeems at
/// `POST /v1/auth/password-reset`. No mail is sent: the administrator hands it over.
pub async fn start_password_reset(
    state: web::Data<State>,
    p: Principal,
    path: UserPath,
) -> Result<HttpResponse, IdentityError> {
    let (tenant, id) = path.into_inner();
    manages_someone(&p, &tenant)?;
    let (txn, row) = load_for_change(&state, &tenant, &id).await?;
    may_manage(&p, &tenant, &institution_of(&row)?, &roles_of(&row), None)?;
    if UserStatus::parse(&row.status)? != UserStatus::Active {
        return Err(IdentityError::Conflict(
            "the user is disabled or removed: enable them first".into(),
        ));
    }
    password_reset::Entity::delete_many()
        .filter(password_reset::Column::TenantId.eq(tenant.as_str()))
        .filter(password_reset::Column::UserId.eq(row.id.clone()))
        .exec(&txn)
        .await?;
    let token = new_tenant_token(&tenant)?;
    let now = Utc::now();
    let expires_at = now + RESET_TTL;
    password_reset::ActiveModel {
        id: Set(format!("pwr_{}", uuid::Uuid::now_v7().simple())),
        tenant_id: Set(tenant.to_string()),
        user_id: Set(row.id.clone()),
        token_hash: Set(token_hash(&token)),
        created_by: Set(p.0.sub.clone()),
        expires_at: Set(expires_at),
        used_at: Set(None),
        created_at: Set(now),
    }
    .insert(&txn)
    .await?;
    txn.commit().await?;
    Ok(HttpResponse::Created()
        .insert_header(("cache-control", "no-store"))
        .json(PasswordResetOut {
            user_id: id,
            reset_token: token,
            expires_at,
        }))
}
