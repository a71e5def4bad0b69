//! The anchoring queue (`anchors`): ledger entries a service owes, committed with the state
//! change that caused them and worked off by `caretrail_runtime::anchoring`. No row-level
//! security: the anchorer works across tenants, and the rows hold ids and hashes only.

use sea_orm_migration::prelude::*;

#[derive(DeriveIden)]
enum Anchors {
    Table,
    Id,
    TenantId,
    SubjectId,
    RecordId,
    Kind,
    RequestId,
    Signer,
    Payload,
    Submission,
    Status,
    Attempts,
    NextAttemptAt,
    LastError,
    Event,
    LedgerIndex,
    Receipt,
    CreatedAt,
    AnchoredAt,
}

fn ts(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn id(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string_len(64).not_null().to_owned()
}

/// Creates the `anchors` table and its indexes.
pub async fn create_table(m: &SchemaManager<'_>) -> Result<(), DbErr> {
    m.create_table(
        Table::create()
            .table(Anchors::Table)
            .col(
                ColumnDef::new(Anchors::Id)
                    .big_integer()
                    .not_null()
                    .auto_increment()
                    .primary_key(),
            )
            .col(id(Anchors::TenantId))
            .col(id(Anchors::SubjectId))
            .col(ColumnDef::new(Anchors::Kind).string_len(64).not_null())
            .col(
                ColumnDef::new(Anchors::RequestId)
                    .string_len(128)
                    .not_null(),
            )
            .col(id(Anchors::Signer))
            .col(ColumnDef::new(Anchors::Payload).text().not_null())
            .col(ColumnDef::new(Anchors::Submission).text().null())
            .col(ColumnDef::new(Anchors::Status).string_len(16).not_null())
            .col(
                ColumnDef::new(Anchors::Attempts)
                    .integer()
                    .not_null()
                    .default(0),
            )
            .col(ts(Anchors::NextAttemptAt))
            .col(ColumnDef::new(Anchors::LastError).text().null())
            .col(ColumnDef::new(Anchors::Event).text().not_null())
            .col(ColumnDef::new(Anchors::LedgerIndex).big_integer().null())
            .col(ColumnDef::new(Anchors::Receipt).text().null())
            .col(ts(Anchors::CreatedAt))
            .col(
                ColumnDef::new(Anchors::AnchoredAt)
                    .timestamp_with_time_zone()
                    .null(),
            )
            .to_owned(),
    )
    .await?;
    m.create_index(
        Index::create()
            .name("anchors_request")
            .table(Anchors::Table)
            .col(Anchors::TenantId)
            .col(Anchors::Signer)
            .col(Anchors::RequestId)
            .unique()
            .to_owned(),
    )
    .await?;
    m.create_index(
        Index::create()
            .name("anchors_due")
            .table(Anchors::Table)
            .col(Anchors::Status)
            .col(Anchors::NextAttemptAt)
            .to_owned(),
    )
    .await?;
    m.create_index(
        Index::create()
            .name("anchors_by_subject")
            .table(Anchors::Table)
            .col(Anchors::TenantId)
            .col(Anchors::SubjectId)
            .to_owned(),
    )
    .await
}

/// The object store's queue predates the shared one: its `record_id` becomes `subject_id`.
pub struct ObjectStoreAnchorSubject;

impl MigrationName for ObjectStoreAnchorSubject {
    fn name(&self) -> &str {
        "m0003_object_store_anchor_subject"
    }
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for ObjectStoreAnchorSubject {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Anchors::Table)
                .rename_column(Anchors::RecordId, Anchors::SubjectId)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(Anchors::Table)
                .rename_column(Anchors::SubjectId, Anchors::RecordId)
                .to_owned(),
        )
        .await
    }
}
