//! HTTP handlers. Every handler starts from the caller's verified principal and the tenant
//! of the object it touches; an object of another tenant is "not found", never "forbidden".

use caretrail_contracts::{TenantId, auth::Role};
use caretrail_platform::auth::Principal;

use crate::IdentityError;

pub mod apps;
pub mod institutions;
pub mod keys;
pub mod oauth;
pub mod patients;
pub mod sessions;
pub mod tenants;
pub mod users;
pub mod wellknown;

pub fn require_operator(p: &Principal) -> Result<(), IdentityError> {
    if p.0.is_operator() {
        Ok(())
    } else {
        Err(IdentityError::Forbidden(
            "this operation is for the platform operator".into(),
        ))
    }
}

/// The caller may see objects of `tenant`: the operator, or a member of that tenant.
/// Anyone else gets 404, so that other tenants' ids cannot be probed.
pub fn require_member(
    p: &Principal,
    tenant: &TenantId,
    what: &'static str,
) -> Result<(), IdentityError> {
    if p.0.is_operator() || p.0.tenant.as_ref() == Some(tenant) {
        Ok(())
    } else {
        Err(IdentityError::NotFound(what))
    }
}

/// The caller administers `tenant`: a tenant admin, or an app with the `admin` scope, of that
/// tenant. Not the platform operator: it runs tenants, not what is inside them — who is a
/// physician, which app holds which secret, which key signs for an institution decide who
/// reads clinical data (separation of duties; [`require_admin_or_operator`] for the rest).
pub fn require_admin(
    p: &Principal,
    tenant: &TenantId,
    what: &'static str,
) -> Result<(), IdentityError> {
    require_member(p, tenant, what)?;
    if p.0.is_operator() {
        return Err(IdentityError::Forbidden(
            "the platform operator does not administer what is inside a tenant".into(),
        ));
    }
    if p.0.has_role(Role::TenantAdmin) || p.0.has_scope(caretrail_contracts::auth::scopes::ADMIN) {
        Ok(())
    } else {
        Err(IdentityError::Forbidden(
            "this operation needs a tenant administrator".into(),
        ))
    }
}

/// [`require_admin`], or the platform operator: for what running a tenant needs and gives
/// no access to clinical data (its institutions, its first administrators, listing its
/// users and apps, revoking an app or a key in an incident).
pub fn require_admin_or_operator(
    p: &Principal,
    tenant: &TenantId,
    what: &'static str,
) -> Result<(), IdentityError> {
    if p.0.is_operator() {
        return Ok(());
    }
    require_admin(p, tenant, what)
}

pub fn caller_tenant(p: &Principal) -> Result<TenantId, IdentityError> {
    p.0.tenant
        .clone()
        .ok_or_else(|| IdentityError::Forbidden("this operation needs a tenant's token".into()))
}
