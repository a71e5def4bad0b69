//! Migrations that change existing data are tested on a store written by the previous
//! migrations, on SQLite and on PostgreSQL.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use caretrail_db::DbSettings;
use caretrail_migrations::object_store::Migrator;
use sea_orm_migration::MigratorTrait;
use sea_orm_migration::sea_orm::ConnectionTrait;
use sea_orm_migration::sea_orm::{DatabaseConnection, DbBackend, Statement};

const RECORD: &str = "rec_0000000000000000000000000000abcd";
const TEN_A: &str = "ten_0000000000000000000000000000000a";
const TEN_B: &str = "ten_0000000000000000000000000000000b";

async fn insert(db: &DatabaseConnection, tenant: &str, title: &str) -> Result<(), String> {
    let sql = format!(
        "INSERT INTO records (id, tenant_id, patient_id, institution_id, category, media_type, \
         title, encounter_date, fhir_resource_type, size, content_hash, suite, storage_key, \
         wrapped_key, kek_version, status, created_by, created_at, manifest, ledger_index, \
         leaf_hash, erased_at, erased_by, erasure_reason) VALUES ('{RECORD}', '{tenant}', \
         'pat_1', 'ins_1', 'exam_report', 'application/pdf', '{title}', '2026-11-01', NULL, 5, \
         'ab', 'gm', '{tenant}/{RECORD}', 'wrapped', 1, 'active', 'app_1', \
         '2026-11-01T00:00:00Z', 'bWFuaWZlc3Q=', 3, 'cd', NULL, NULL, NULL)"
    );
    // Under the tenant's row-level security context, as the services write.
    let txn = caretrail_db::begin_tenant(db, tenant).await.unwrap();
    let done = txn.execute_unprepared(&sql).await;
    match done {
        Ok(_) => {
            txn.commit().await.unwrap();
            Ok(())
        }
        Err(e) => {
            let _ = txn.rollback().await;
            Err(e.to_string())
        }
    }
}

/// The titles of `tenant`'s records, read as the services read.
async fn titles(db: &DatabaseConnection, tenant: &str) -> Vec<String> {
    let backend = db.get_database_backend();
    let txn = caretrail_db::begin_tenant(db, tenant).await.unwrap();
    let rows = txn
        .query_all_raw(Statement::from_string(
            backend,
            format!("SELECT title FROM records WHERE tenant_id = '{tenant}' ORDER BY title"),
        ))
        .await
        .unwrap();
    txn.commit().await.unwrap();
    rows.iter()
        .map(|r| r.try_get::<String>("", "title").unwrap())
        .collect()
}

/// Records are keyed by (tenant, id) from m0005 on: a store with records keeps them, and
/// another tenant may then use the same id (a BYOK institution chooses its ids), while one
/// tenant still cannot use an id twice.
async fn records_become_tenant_keyed(settings: DbSettings) {
    let db = caretrail_db::connect(&settings).await.unwrap();
    Migrator::up(&db, Some(3)).await.unwrap();
    insert(&db, TEN_A, "before").await.unwrap();
    assert!(
        insert(&db, TEN_B, "other tenant").await.is_err(),
        "before m0005 an id is unique across tenants"
    );
    Migrator::up(&db, None).await.unwrap();
    assert_eq!(
        titles(&db, TEN_A).await,
        vec!["before"],
        "the record survives"
    );
    insert(&db, TEN_B, "other tenant").await.unwrap();
    assert!(
        insert(&db, TEN_A, "again").await.is_err(),
        "unique within a tenant"
    );
    assert_eq!(titles(&db, TEN_A).await, vec!["before"]);
    assert_eq!(titles(&db, TEN_B).await, vec!["other tenant"]);
    // The indexes the queries rely on are back.
    if db.get_database_backend() == DbBackend::Sqlite {
        let rows = db
            .query_all_raw(Statement::from_string(
                DbBackend::Sqlite,
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'records'"
                    .to_string(),
            ))
            .await
            .unwrap();
        let names: Vec<String> = rows
            .iter()
            .map(|r| r.try_get::<String>("", "name").unwrap())
            .collect();
        assert!(
            names.contains(&"records_by_patient".to_string()),
            "{names:?}"
        );
        assert!(names.contains(&"records_by_kek".to_string()), "{names:?}");
    }
}

#[tokio::test]
async fn records_become_tenant_keyed_sqlite() {
    let (settings, _dir) = caretrail_db::testing::fresh_sqlite();
    records_become_tenant_keyed(settings).await;
}

#[tokio::test]
async fn records_become_tenant_keyed_postgres() {
    let settings = caretrail_db::testing::fresh_postgres(Some("object_store")).await;
    records_become_tenant_keyed(settings).await;
}
