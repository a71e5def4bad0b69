//! Audit: the built-in witness's last accepted checkpoint per tenant.

use sea_orm_migration::prelude::*;

use crate::common::enable_tenant_rls;

pub struct Witness;

impl MigrationName for Witness {
    fn name(&self) -> &str {
        "m0004_audit_witness"
    }
}

#[derive(DeriveIden)]
enum AuditWitness {
    Table,
    TenantId,
    LedgerKey,
    TreeSize,
    Root,
    Checkpoint,
    CosignedSize,
    AcceptedAt,
    CheckedAt,
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Witness {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(AuditWitness::Table)
                .col(
                    ColumnDef::new(AuditWitness::TenantId)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(ColumnDef::new(AuditWitness::LedgerKey).text().not_null())
                .col(
                    ColumnDef::new(AuditWitness::TreeSize)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(AuditWitness::Root)
                        .string_len(128)
                        .not_null(),
                )
                .col(ColumnDef::new(AuditWitness::Checkpoint).text().not_null())
                .col(
                    ColumnDef::new(AuditWitness::CosignedSize)
                        .big_integer()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(AuditWitness::AcceptedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(AuditWitness::CheckedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        enable_tenant_rls(m, "audit_witness").await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(AuditWitness::Table).to_owned())
            .await
    }
}
