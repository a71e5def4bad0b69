//! Object store: records (metadata + wrapped data keys), the tenants' KEK versions, and the
//! anchor queue of ledger entries still to append.

use sea_orm_migration::prelude::*;

use crate::common::enable_tenant_rls;

pub struct Tables;

impl MigrationName for Tables {
    fn name(&self) -> &str {
        "m0002_object_store_tables"
    }
}

#[derive(DeriveIden)]
enum Records {
    Table,
    Id,
    TenantId,
    PatientId,
    InstitutionId,
    Category,
    MediaType,
    Title,
    EncounterDate,
    FhirResourceType,
    Size,
    ContentHash,
    Suite,
    StorageKey,
    WrappedKey,
    KekVersion,
    Status,
    CreatedBy,
    CreatedAt,
    Manifest,
    LedgerIndex,
    LeafHash,
    ErasedAt,
    ErasedBy,
    ErasureReason,
}

#[derive(DeriveIden)]
enum KekVersions {
    Table,
    TenantId,
    Version,
    Suite,
    RootKeyId,
    Sealed,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Anchors {
    Table,
    Id,
    TenantId,
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

fn id(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string_len(64).not_null().to_owned()
}

fn ts(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Tables {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Records::Table)
                .col(id(Records::Id).primary_key())
                .col(id(Records::TenantId))
                .col(id(Records::PatientId))
                .col(id(Records::InstitutionId))
                .col(ColumnDef::new(Records::Category).string_len(32).not_null())
                .col(
                    ColumnDef::new(Records::MediaType)
                        .string_len(128)
                        .not_null(),
                )
                .col(ColumnDef::new(Records::Title).text().not_null())
                .col(
                    ColumnDef::new(Records::EncounterDate)
                        .string_len(10)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(Records::FhirResourceType)
                        .string_len(64)
                        .null(),
                )
                .col(ColumnDef::new(Records::Size).big_integer().not_null())
                .col(
                    ColumnDef::new(Records::ContentHash)
                        .string_len(64)
                        .not_null(),
                )
                .col(ColumnDef::new(Records::Suite).string_len(8).not_null())
                .col(ColumnDef::new(Records::StorageKey).text().not_null())
                .col(ColumnDef::new(Records::WrappedKey).text().null())
                .col(ColumnDef::new(Records::KekVersion).integer().not_null())
                .col(ColumnDef::new(Records::Status).string_len(16).not_null())
                .col(ColumnDef::new(Records::CreatedBy).string_len(64).not_null())
                .col(ts(Records::CreatedAt))
                .col(ColumnDef::new(Records::Manifest).text().not_null())
                .col(ColumnDef::new(Records::LedgerIndex).big_integer().null())
                .col(ColumnDef::new(Records::LeafHash).string_len(64).null())
                .col(
                    ColumnDef::new(Records::ErasedAt)
                        .timestamp_with_time_zone()
                        .null(),
                )
                .col(ColumnDef::new(Records::ErasedBy).string_len(64).null())
                .col(ColumnDef::new(Records::ErasureReason).text().null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("records_by_patient")
                .table(Records::Table)
                .col(Records::TenantId)
                .col(Records::PatientId)
                .col(Records::Id)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("records_by_kek")
                .table(Records::Table)
                .col(Records::TenantId)
                .col(Records::KekVersion)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(KekVersions::Table)
                .col(id(KekVersions::TenantId))
                .col(ColumnDef::new(KekVersions::Version).integer().not_null())
                .col(ColumnDef::new(KekVersions::Suite).string_len(8).not_null())
                .col(
                    ColumnDef::new(KekVersions::RootKeyId)
                        .string_len(64)
                        .not_null(),
                )
                .col(ColumnDef::new(KekVersions::Sealed).text().not_null())
                .col(ts(KekVersions::CreatedAt))
                .primary_key(
                    Index::create()
                        .col(KekVersions::TenantId)
                        .col(KekVersions::Version),
                )
                .to_owned(),
        )
        .await?;
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
                .col(id(Anchors::RecordId))
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
                .name("anchors_by_record")
                .table(Anchors::Table)
                .col(Anchors::TenantId)
                .col(Anchors::RecordId)
                .to_owned(),
        )
        .await?;
        for table in ["records", "kek_versions"] {
            enable_tenant_rls(m, table).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Anchors::Table.into_iden(),
            KekVersions::Table.into_iden(),
            Records::Table.into_iden(),
        ] {
            m.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
