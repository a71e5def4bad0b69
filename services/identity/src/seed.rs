//! The operator's first credential (`caretrail bootstrap`) and the demo tenant of
//! `caretrail serve --seed-demo`, modelled on the pilot.

use caretrail_contracts::auth::{Role, scopes};
use caretrail_crypto::Suite;
use serde::Serialize;

use crate::{
    IdentityError, State,
    api::{
        apps::create_app, institutions::create_institution, tenants::create_tenant,
        users::create_user,
    },
    model::{InstitutionIn, Level, TenantIn, UserIn, UserStatus},
};

#[derive(Debug, Serialize)]
pub struct Credential {
    pub client_id: String,
    pub client_secret: String,
    pub scopes: Vec<String>,
}

/// Creates an operator credential (scope `platform:admin`).
pub async fn bootstrap_operator(state: &State, name: &str) -> Result<Credential, IdentityError> {
    let created = create_app(
        state,
        None,
        None,
        name,
        "operator",
        &[scopes::PLATFORM_ADMIN.to_string()],
        SEED,
    )
    .await?;
    Ok(Credential {
        client_id: created.app.client_id,
        client_secret: created.client_secret,
        scopes: created.app.scopes,
    })
}

#[derive(Debug, Serialize)]
pub struct DemoUser {
    pub username: String,
    pub password: String,
    pub roles: Vec<Role>,
    pub status: UserStatus,
}

#[derive(Debug, Serialize)]
pub struct DemoInstitution {
    pub id: String,
    pub name: String,
    pub level: Level,
    pub app: Credential,
    /// Log in with `POST /v1/auth/login` and the tenant id.
    pub users: Vec<DemoUser>,
}

fn demo_password() -> Result<String, IdentityError> {
    use base64::Engine;
    let key = caretrail_crypto::DataKey::generate(Suite::Intl)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&key.expose_secret()[..15]))
}

/// One user per role, spread over the pilot's institutions.
/// Demo people per institution level, and whether they still work there: `dr.wu` has left
/// the hospital (disabled by the seed — a login shows the refusal).
fn demo_users(level: Level) -> &'static [(&'static str, &'static [Role], UserStatus)] {
    match level {
        Level::Primary => &[
            ("dr.zhang", &[Role::Physician], UserStatus::Active),
            (
                "admin.benniu",
                &[Role::InstitutionAdmin],
                UserStatus::Active,
            ),
        ],
        Level::Tertiary => &[
            ("dr.li", &[Role::Physician], UserStatus::Active),
            ("dr.wu", &[Role::Physician], UserStatus::Disabled),
        ],
        Level::Regulator => &[
            ("auditor.chen", &[Role::Auditor], UserStatus::Active),
            ("admin.bureau", &[Role::TenantAdmin], UserStatus::Active),
        ],
        _ => &[],
    }
}

/// Who the seed's changes are by, in events and on the ledger.
pub(crate) const SEED: &str = "seed";

#[derive(Debug, Serialize)]
pub struct DemoTenant {
    pub id: String,
    pub name: String,
    pub suite: Suite,
    pub institutions: Vec<DemoInstitution>,
}

#[derive(Debug, Serialize)]
pub struct DemoCredentials {
    pub note: &'static str,
    pub token_endpoint: String,
    pub operator: Credential,
    pub tenants: Vec<DemoTenant>,
}

/// Code, name, level and app scopes of one demo institution.
type DemoPlan<'a> = (&'a str, &'a str, Level, &'a [&'a str]);

/// The pilot: a district consortium with a town health centre, a tertiary hospital and the
/// district health bureau; plus a second tenant to show isolation.
pub async fn demo(state: &State, base_url: &str) -> Result<DemoCredentials, IdentityError> {
    let operator = bootstrap_operator(state, "demo operator").await?;
    let mut tenants = Vec::new();
    let plans: [(&str, Suite, &[DemoPlan]); 2] = [
        (
            "Tianning District Health Consortium",
            Suite::Gm,
            &[
                (
                    "TN-HC-BENNIU",
                    "Benniu Town Health Centre",
                    Level::Primary,
                    &[
                        scopes::RECORDS_READ,
                        scopes::RECORDS_WRITE,
                        scopes::PATIENTS_WRITE,
                        scopes::GRANTS_WRITE,
                        scopes::GRANTS_READ,
                    ],
                ),
                (
                    "TN-H-CITY1",
                    "Changzhou No.1 People's Hospital",
                    Level::Tertiary,
                    &[
                        scopes::RECORDS_READ,
                        scopes::GRANTS_READ,
                        scopes::PATIENTS_WRITE,
                    ],
                ),
                (
                    "TN-REG-BUREAU",
                    "Tianning District Health Bureau",
                    Level::Regulator,
                    &[scopes::AUDIT_READ, scopes::RECORDS_READ, scopes::ADMIN],
                ),
            ],
        ),
        (
            "Wujin District Health Consortium",
            Suite::Intl,
            &[(
                "WJ-HC-HUTANG",
                "Hutang Town Health Centre",
                Level::Primary,
                &[
                    scopes::RECORDS_READ,
                    scopes::RECORDS_WRITE,
                    scopes::PATIENTS_WRITE,
                    scopes::GRANTS_WRITE,
                    scopes::GRANTS_READ,
                    scopes::AUDIT_READ,
                ],
            )],
        ),
    ];
    for (name, suite, institutions) in plans {
        let tenant = create_tenant(
            state,
            TenantIn {
                name: name.into(),
                suite,
            },
        )
        .await?;
        let mut out = Vec::new();
        for (code, iname, level, app_scopes) in institutions {
            let ins = create_institution(
                state,
                &tenant.id,
                InstitutionIn {
                    code: (*code).into(),
                    name: (*iname).into(),
                    level: *level,
                },
            )
            .await?;
            let scopes: Vec<String> = app_scopes.iter().map(|s| (*s).to_string()).collect();
            let app = create_app(
                state,
                Some(&tenant.id),
                Some(&ins.id),
                &format!("{iname} app"),
                "app",
                &scopes,
                SEED,
            )
            .await?;
            let mut users = Vec::new();
            if suite == Suite::Gm {
                for (username, roles, status) in demo_users(*level) {
                    let password = demo_password()?;
                    let user = create_user(
                        state,
                        &tenant.id,
                        UserIn {
                            institution_id: ins.id.clone(),
                            username: (*username).into(),
                            display_name: (*username).into(),
                            roles: roles.to_vec(),
                            password: password.clone(),
                        },
                        SEED,
                    )
                    .await?;
                    if *status == UserStatus::Disabled {
                        crate::api::users::disable_as_seed(state, &tenant.id, &user.id).await?;
                    }
                    users.push(DemoUser {
                        username: (*username).into(),
                        password,
                        roles: roles.to_vec(),
                        status: *status,
                    });
                }
            }
            out.push(DemoInstitution {
                id: ins.id.to_string(),
                name: ins.name,
                level: *level,
                users,
                app: Credential {
                    client_id: app.app.client_id,
                    client_secret: app.client_secret,
                    scopes: app.app.scopes,
                },
            });
        }
        tenants.push(DemoTenant {
            id: tenant.id.to_string(),
            name: tenant.name,
            suite,
            institutions: out,
        });
    }
    Ok(DemoCredentials {
        note: "Demo credentials for a local Caretrail. Never use them anywhere else.",
        token_endpoint: format!("{}/v1/oauth/token", base_url.trim_end_matches('/')),
        operator,
        tenants,
    })
}
