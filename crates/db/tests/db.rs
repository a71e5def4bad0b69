//! Connection, tenant transactions and row-level security, on SQLite and on the real
//! PostgreSQL (a fresh database per run, reached as a role without RLS bypass).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use caretrail_db::{
    begin_tenant, connect,
    sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement},
    tenant_rls_statements,
};

async fn create_notes(db: &DatabaseConnection) {
    let serial = match db.get_database_backend() {
        DbBackend::Postgres => "id SERIAL PRIMARY KEY",
        _ => "id INTEGER PRIMARY KEY AUTOINCREMENT",
    };
    db.execute_unprepared(&format!(
        "CREATE TABLE notes ({serial}, tenant_id TEXT NOT NULL, body TEXT NOT NULL)"
    ))
    .await
    .unwrap();
    if db.get_database_backend() == DbBackend::Postgres {
        for sql in tenant_rls_statements("notes") {
            db.execute_unprepared(&sql).await.unwrap();
        }
    }
}

fn stmt(
    db: &impl ConnectionTrait,
    sql: &str,
    values: Vec<caretrail_db::sea_orm::Value>,
) -> Statement {
    let sql = match db.get_database_backend() {
        DbBackend::Postgres => {
            let mut n = 0;
            sql.chars()
                .map(|c| {
                    if c == '?' {
                        n += 1;
                        format!("${n}")
                    } else {
                        c.to_string()
                    }
                })
                .collect()
        }
        _ => sql.to_string(),
    };
    Statement::from_sql_and_values(db.get_database_backend(), sql, values)
}

async fn insert(
    db: &DatabaseConnection,
    tenant: &str,
    body: &str,
) -> Result<(), caretrail_db::DbError> {
    let txn = begin_tenant(db, tenant).await?;
    txn.execute_raw(stmt(
        &txn,
        "INSERT INTO notes (tenant_id, body) VALUES (?, ?)",
        vec![tenant.into(), body.into()],
    ))
    .await?;
    txn.commit().await?;
    Ok(())
}

/// Every row visible to a transaction scoped to `tenant`, with no tenant filter in the SQL.
async fn visible_unfiltered(db: &DatabaseConnection, tenant: &str) -> Vec<String> {
    let txn = begin_tenant(db, tenant).await.unwrap();
    let rows = txn
        .query_all_raw(stmt(
            &txn,
            "SELECT tenant_id FROM notes ORDER BY id",
            vec![],
        ))
        .await
        .unwrap();
    txn.commit().await.unwrap();
    rows.iter()
        .map(|r| r.try_get::<String>("", "tenant_id").unwrap())
        .collect()
}

#[tokio::test]
async fn postgres_rls_hides_other_tenants_rows() {
    let settings = caretrail_db::testing::fresh_postgres(Some("rls_test")).await;
    let db = connect(&settings).await.unwrap();
    assert!(
        !caretrail_db::role_bypasses_rls(&db).await.unwrap(),
        "tests must run as a role RLS applies to"
    );
    create_notes(&db).await;
    insert(&db, "ten_a", "a1").await.unwrap();
    insert(&db, "ten_a", "a2").await.unwrap();
    insert(&db, "ten_b", "b1").await.unwrap();

    assert_eq!(visible_unfiltered(&db, "ten_b").await, vec!["ten_b"]);
    assert_eq!(
        visible_unfiltered(&db, "ten_a").await,
        vec!["ten_a", "ten_a"]
    );

    // Outside any tenant transaction nothing is visible.
    let rows = db
        .query_all_raw(stmt(&db, "SELECT * FROM notes", vec![]))
        .await
        .unwrap();
    assert!(rows.is_empty(), "no tenant set: no rows");

    // Writing another tenant's row from inside tenant B's transaction is refused.
    let txn = begin_tenant(&db, "ten_b").await.unwrap();
    let err = txn
        .execute_raw(stmt(
            &txn,
            "INSERT INTO notes (tenant_id, body) VALUES (?, ?)",
            vec!["ten_a".into(), "forged".into()],
        ))
        .await;
    assert!(
        err.is_err(),
        "RLS WITH CHECK refuses a row of another tenant"
    );
    drop(txn);
    // And updating or deleting tenant A's rows from B's transaction touches nothing.
    let txn = begin_tenant(&db, "ten_b").await.unwrap();
    let res = txn
        .execute_raw(stmt(
            &txn,
            "DELETE FROM notes WHERE tenant_id = ?",
            vec!["ten_a".into()],
        ))
        .await
        .unwrap();
    assert_eq!(res.rows_affected(), 0);
    txn.commit().await.unwrap();
    assert_eq!(visible_unfiltered(&db, "ten_a").await.len(), 2);

    // The tenant setting does not leak to the next transaction on the same pool.
    let txn = begin_tenant(&db, "ten_a").await.unwrap();
    txn.commit().await.unwrap();
    let rows = db
        .query_all_raw(stmt(&db, "SELECT * FROM notes", vec![]))
        .await
        .unwrap();
    assert!(rows.is_empty());
}

#[tokio::test]
async fn postgres_schema_per_service() {
    let settings = caretrail_db::testing::fresh_postgres(Some("svc_one")).await;
    let db = connect(&settings).await.unwrap();
    create_notes(&db).await;
    let row = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'notes'",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.try_get::<String>("", "table_schema").unwrap(),
        "svc_one"
    );
}

#[tokio::test]
async fn sqlite_tenant_transactions_and_durability() {
    let (settings, _dir) = caretrail_db::testing::fresh_sqlite();
    let db = connect(&settings).await.unwrap();
    create_notes(&db).await;
    insert(&db, "ten_a", "a1").await.unwrap();
    // A transaction that is not committed leaves nothing behind.
    {
        let txn = begin_tenant(&db, "ten_a").await.unwrap();
        txn.execute_raw(stmt(
            &txn,
            "INSERT INTO notes (tenant_id, body) VALUES (?, ?)",
            vec!["ten_a".into(), "rolled back".into()],
        ))
        .await
        .unwrap();
    }
    db.close().await.unwrap();
    // Reopen: committed data survived, WAL mode is on.
    let db = connect(&settings).await.unwrap();
    let rows = db
        .query_all_raw(stmt(&db, "SELECT body FROM notes", vec![]))
        .await
        .unwrap();
    let bodies: Vec<String> = rows
        .iter()
        .map(|r| r.try_get("", "body").unwrap())
        .collect();
    assert_eq!(bodies, vec!["a1"]);
    let mode = db
        .query_one_raw(Statement::from_string(
            DbBackend::Sqlite,
            "PRAGMA journal_mode",
        ))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mode.try_get::<String>("", "journal_mode").unwrap(), "wal");
}

#[test]
fn settings_validation() {
    let bad = caretrail_db::DbSettings {
        database_url: "mysql://x".to_string().into(),
        database_schema: None,
        database_max_connections: 1,
        run_migrations: true,
    };
    assert!(bad.validate().is_err());
    let bad_schema = caretrail_db::DbSettings {
        database_url: "postgres://x@y/z".to_string().into(),
        database_schema: Some("x; DROP TABLE y".into()),
        database_max_connections: 1,
        run_migrations: true,
    };
    assert!(bad_schema.validate().is_err());
}
