//! Audit: anomaly flags (break-glass uses, refused access attempts, unusual access volume).

use sea_orm_migration::prelude::*;

use crate::common::enable_tenant_rls;

pub struct Anomalies;

impl MigrationName for Anomalies {
    fn name(&self) -> &str {
        "m0003_audit_anomalies"
    }
}

#[derive(DeriveIden)]
enum AuditAnomalies {
    Table,
    Id,
    TenantId,
    Kind,
    DedupeKey,
    Subject,
    Institution,
    PatientId,
    RecordId,
    EventId,
    Detail,
    FlaggedAt,
}

fn opt(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string_len(64).null().to_owned()
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Anomalies {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(AuditAnomalies::Table)
                .col(
                    ColumnDef::new(AuditAnomalies::Id)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(AuditAnomalies::TenantId)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(AuditAnomalies::Kind)
                        .string_len(32)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(AuditAnomalies::DedupeKey)
                        .string_len(200)
                        .not_null(),
                )
                .col(opt(AuditAnomalies::Subject))
                .col(opt(AuditAnomalies::Institution))
                .col(opt(AuditAnomalies::PatientId))
                .col(opt(AuditAnomalies::RecordId))
                .col(
                    ColumnDef::new(AuditAnomalies::EventId)
                        .string_len(64)
                        .not_null(),
                )
                .col(ColumnDef::new(AuditAnomalies::Detail).text().not_null())
                .col(
                    ColumnDef::new(AuditAnomalies::FlaggedAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("audit_anomalies_once")
                .table(AuditAnomalies::Table)
                .col(AuditAnomalies::TenantId)
                .col(AuditAnomalies::Kind)
                .col(AuditAnomalies::DedupeKey)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("audit_by_subject_time")
                .table(Alias::new("audit_events"))
                .col(Alias::new("tenant_id"))
                .col(Alias::new("actor_subject"))
                .col(Alias::new("occurred_at"))
                .to_owned(),
        )
        .await?;
        enable_tenant_rls(m, "audit_anomalies").await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(AuditAnomalies::Table).to_owned())
            .await
    }
}
