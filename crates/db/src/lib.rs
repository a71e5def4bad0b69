//! Database access shared by the services: sea-orm connections to SQLite (embedded
//! default) or PostgreSQL (production), migrations, and tenant-scoped transactions that
//! arm PostgreSQL row-level security.

use std::time::Duration;

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    DbErr, Statement, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

#[cfg(feature = "testing")]
pub mod testing;

pub use sea_orm;

/// The session variable RLS policies compare `tenant_id` with.
pub const TENANT_SETTING: &str = "app.tenant_id";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("unsupported database URL scheme (expected sqlite:// or postgres://)")]
    UnsupportedUrl,
    #[error("invalid schema name {0:?} (letters, digits and _ only)")]
    InvalidSchema(String),
    #[error("cannot connect to the database")]
    Connect(#[source] DbErr),
    #[error("migrations failed")]
    Migrate(#[source] DbErr),
    #[error(transparent)]
    Query(#[from] DbErr),
}

#[derive(Debug, Clone, Deserialize)]
pub struct DbSettings {
    /// `sqlite://path/file.db?mode=rwc` or `postgres://user:pass@host:5432/db`.
    pub database_url: SecretString,
    /// PostgreSQL schema the service's tables live in (one per service). Ignored on SQLite.
    #[serde(default)]
    pub database_schema: Option<String>,
    #[serde(default = "default_max_connections")]
    pub database_max_connections: u32,
    /// Apply pending migrations at start-up (otherwise run `caretrail migrate`).
    #[serde(default = "default_true")]
    pub run_migrations: bool,
}

fn default_max_connections() -> u32 {
    10
}
fn default_true() -> bool {
    true
}

impl DbSettings {
    pub fn sqlite_file(path: &std::path::Path) -> Self {
        Self {
            database_url: SecretString::from(format!("sqlite://{}?mode=rwc", path.display())),
            database_schema: None,
            database_max_connections: default_max_connections(),
            run_migrations: true,
        }
    }

    pub fn backend(&self) -> Result<DbBackend, DbError> {
        let url = self.database_url.expose_secret();
        if url.starts_with("sqlite:") {
            Ok(DbBackend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DbBackend::Postgres)
        } else {
            Err(DbError::UnsupportedUrl)
        }
    }

    pub fn validate(&self) -> Result<(), DbError> {
        self.backend()?;
        if let Some(schema) = &self.database_schema {
            validate_schema(schema)?;
        }
        Ok(())
    }
}

fn validate_schema(schema: &str) -> Result<(), DbError> {
    let ok = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && !schema.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(DbError::InvalidSchema(schema.to_string()))
    }
}

/// Opens a pool. SQLite gets WAL, foreign keys and a busy timeout; PostgreSQL gets the
/// service's schema (created if missing) as its search path.
pub async fn connect(settings: &DbSettings) -> Result<DatabaseConnection, DbError> {
    let backend = settings.backend()?;
    let mut options = ConnectOptions::new(settings.database_url.expose_secret().to_string());
    options
        .max_connections(settings.database_max_connections)
        .min_connections(1)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false);
    match backend {
        DbBackend::Sqlite => {
            options.map_sqlx_sqlite_opts(|o| {
                o.journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                    .synchronous(sea_orm::sqlx::sqlite::SqliteSynchronous::Full)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(10))
                    // Deleted or overwritten values are zeroed in the file, so erasing a
                    // secret (a crypto-shredded data key) does not leave it on disk.
                    .pragma("secure_delete", "ON")
            });
        }
        _ => {
            if let Some(schema) = &settings.database_schema {
                validate_schema(schema)?;
                options.set_schema_search_path(schema.clone());
            }
        }
    }
    let db = Database::connect(options).await.map_err(DbError::Connect)?;
    if backend == DbBackend::Postgres
        && let Some(schema) = &settings.database_schema
    {
        // Validated above: safe to interpolate.
        db.execute_unprepared(&format!("CREATE SCHEMA IF NOT EXISTS \"{schema}\""))
            .await
            .map_err(DbError::Connect)?;
    }
    Ok(db)
}

/// Connects and, if configured, applies the service's migrations.
pub async fn connect_and_migrate<M: MigratorTrait>(
    settings: &DbSettings,
) -> Result<DatabaseConnection, DbError> {
    let db = connect(settings).await?;
    if settings.run_migrations {
        migrate::<M>(&db).await?;
    }
    Ok(db)
}

pub async fn migrate<M: MigratorTrait>(db: &DatabaseConnection) -> Result<(), DbError> {
    M::up(db, None).await.map_err(DbError::Migrate)
}

/// Begins a transaction scoped to `tenant`: on PostgreSQL the tenant is set for the
/// transaction (`SET LOCAL` semantics) so row-level security policies filter every
/// statement, in addition to the `tenant_id = ?` every query carries itself.
pub async fn begin_tenant(
    db: &DatabaseConnection,
    tenant: &str,
) -> Result<DatabaseTransaction, DbError> {
    scoped(db, begin_write(db).await?, tenant).await
}

/// A read-only transaction scoped to `tenant` (row-level security as in [`begin_tenant`]). On
/// SQLite it takes no write lock: for reads that must not queue behind writers, or make them
/// queue (a login reads the account, then hashes for tens of milliseconds).
pub async fn begin_tenant_read(
    db: &DatabaseConnection,
    tenant: &str,
) -> Result<DatabaseTransaction, DbError> {
    scoped(db, db.begin().await?, tenant).await
}

/// `txn` with `tenant` set for it on PostgreSQL, for the row-level security policies.
async fn scoped(
    db: &DatabaseConnection,
    txn: DatabaseTransaction,
    tenant: &str,
) -> Result<DatabaseTransaction, DbError> {
    if db.get_database_backend() == DbBackend::Postgres {
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT set_config($1, $2, true)",
            [TENANT_SETTING.into(), tenant.into()],
        ))
        .await?;
    }
    Ok(txn)
}

/// Begins a transaction that may write. On SQLite it takes the write lock up front
/// (`BEGIN IMMEDIATE`): a deferred transaction that reads and then writes can fail with
/// SQLITE_BUSY at once, without waiting, when another writer got there first.
pub async fn begin_write(db: &DatabaseConnection) -> Result<DatabaseTransaction, DbError> {
    let options = match db.get_database_backend() {
        DbBackend::Sqlite => sea_orm::TransactionOptions {
            sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
            ..Default::default()
        },
        _ => sea_orm::TransactionOptions::default(),
    };
    Ok(db.begin_with_options(options).await?)
}

/// A cheap round trip, for readiness checks.
pub async fn ping(db: &DatabaseConnection) -> Result<(), DbError> {
    db.ping().await.map_err(DbError::from)
}

/// After destroying a secret (crypto-shredding), pushes the change into the main SQLite file
/// and empties the write-ahead log, so no older copy of the page stays in either file
/// (`secure_delete` zeroes freed cells). On PostgreSQL the old row version lives until
/// VACUUM reclaims it (docs/ARCHITECTURE.md, object store). Best effort: failures are logged.
pub async fn compact_after_erasure(db: &DatabaseConnection) {
    if db.get_database_backend() != DbBackend::Sqlite {
        return;
    }
    let checkpoint = Statement::from_string(
        DbBackend::Sqlite,
        "PRAGMA wal_checkpoint(TRUNCATE)".to_string(),
    );
    if let Err(error) = db.execute_raw(checkpoint).await {
        tracing::warn!(%error, "WAL checkpoint after an erasure failed");
    }
}

/// Whether the connected PostgreSQL role bypasses row-level security (superusers and
/// BYPASSRLS roles do). Services warn at start-up: RLS is then only the query filter.
pub async fn role_bypasses_rls(db: &DatabaseConnection) -> Result<bool, DbError> {
    if db.get_database_backend() != DbBackend::Postgres {
        return Ok(false);
    }
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT (rolsuper OR rolbypassrls) AS bypass FROM pg_roles WHERE rolname = current_user",
        ))
        .await?;
    Ok(match row {
        Some(row) => row.try_get::<bool>("", "bypass")?,
        None => false,
    })
}

/// Statements that put `table` under tenant row-level security on PostgreSQL: rows are
/// visible and writable only inside a transaction begun with [`begin_tenant`] for their
/// tenant. `FORCE` makes the policy apply to the table owner too (the app role owns its
/// tables); only superusers and BYPASSRLS roles escape it.
pub fn tenant_rls_statements(table: &str) -> Vec<String> {
    vec![
        format!("ALTER TABLE \"{table}\" ENABLE ROW LEVEL SECURITY"),
        format!("ALTER TABLE \"{table}\" FORCE ROW LEVEL SECURITY"),
        format!(
            "CREATE POLICY tenant_isolation ON \"{table}\" \
             USING (tenant_id = current_setting('{TENANT_SETTING}', true)) \
             WITH CHECK (tenant_id = current_setting('{TENANT_SETTING}', true))"
        ),
    ]
}
