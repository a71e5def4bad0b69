//! Test support: a fresh PostgreSQL database per test, owned by a role without RLS bypass,
//! so that tests see what production sees.

use sea_orm::{ConnectionTrait, Database, DbBackend, Statement};
use secrecy::SecretString;

use crate::DbSettings;

/// Role the services connect as in tests (and the name the infra scripts create).
pub const APP_ROLE: &str = "caretrail_app";
const APP_PASSWORD: &str = "caretrail";

/// Admin URL of the PostgreSQL under test (`CARETRAIL_TEST_PG_URL`), default the local one.
pub fn admin_url() -> String {
    std::env::var("CARETRAIL_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// Creates `ct_test_<random>` owned by [`APP_ROLE`] and returns settings to reach it as that
/// role. Panics with a clear message if PostgreSQL is unreachable: tests that need it must
/// not silently pass.
pub async fn fresh_postgres(schema: Option<&str>) -> DbSettings {
    let admin = admin_url();
    let db = match Database::connect(admin.as_str()).await {
        Ok(db) => db,
        Err(e) => panic!(
            "PostgreSQL is required for this test and is not reachable at {admin}: {e}. \
             Start it with infra/start-postgres.sh"
        ),
    };
    let create_role = format!(
        "DO $$ BEGIN CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{APP_PASSWORD}' NOSUPERUSER NOBYPASSRLS; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
    );
    if let Err(e) = db.execute_unprepared(&create_role).await {
        panic!("creating role {APP_ROLE}: {e}");
    }
    let name = format!("ct_test_{}", uuid::Uuid::new_v4().simple());
    if let Err(e) = db
        .execute_raw(Statement::from_string(
            DbBackend::Postgres,
            format!("CREATE DATABASE {name} OWNER {APP_ROLE}"),
        ))
        .await
    {
        panic!("creating database {name}: {e}");
    }
    let _ = db.close().await;
    let url = replace_credentials_and_db(&admin, &name);
    DbSettings {
        database_url: SecretString::from(url),
        database_schema: schema.map(str::to_string),
        database_max_connections: 5,
        run_migrations: true,
    }
}

fn replace_credentials_and_db(admin: &str, db: &str) -> String {
    // postgres://user[:pass]@host:port/dbname[?query]
    let rest = admin
        .strip_prefix("postgres://")
        .or_else(|| admin.strip_prefix("postgresql://"))
        .unwrap_or(admin);
    let host_part = rest.rsplit_once('@').map(|(_, h)| h).unwrap_or(rest);
    let host = host_part.split('/').next().unwrap_or("127.0.0.1:5432");
    format!("postgres://{APP_ROLE}:{APP_PASSWORD}@{host}/{db}")
}

/// SQLite file in a temp dir that lives as long as the returned guard.
pub fn fresh_sqlite() -> (DbSettings, tempfile::TempDir) {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => panic!("temp dir: {e}"),
    };
    let settings = DbSettings::sqlite_file(&dir.path().join("test.db"));
    (settings, dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn url_rewrite() {
        assert_eq!(
            replace_credentials_and_db("postgres://postgres@127.0.0.1:5432/postgres", "x"),
            "postgres://caretrail_app:caretrail@127.0.0.1:5432/x"
        );
        assert_eq!(
            replace_credentials_and_db("postgresql://a:b@db:6543/postgres?sslmode=disable", "y"),
            "postgres://caretrail_app:caretrail@db:6543/y"
        );
    }
}
