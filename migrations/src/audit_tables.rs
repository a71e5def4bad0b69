//! Audit: the index of every anchored domain event, one row per event.

use sea_orm_migration::prelude::*;

use crate::common::enable_tenant_rls;

pub struct Tables;

impl MigrationName for Tables {
    fn name(&self) -> &str {
        "m0002_audit_tables"
    }
}

#[derive(DeriveIden)]
enum AuditEvents {
    Table,
    Id,
    TenantId,
    Service,
    Kind,
    OccurredAt,
    LedgerIndex,
    LeafHash,
    RecordId,
    PatientId,
    GrantId,
    ReferralId,
    BreakGlassId,
    Category,
    OwnerInstitution,
    ActorSubject,
    ActorInstitution,
    RecipientInstitution,
    Purpose,
    Action,
    Permit,
    DecidedByKind,
    DecidedById,
    Payload,
}

fn opt(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string_len(64).null().to_owned()
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Tables {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(AuditEvents::Table)
                .col(
                    ColumnDef::new(AuditEvents::Id)
                        .string_len(64)
                        .not_null()
                        .primary_key(),
                )
                .col(
                    ColumnDef::new(AuditEvents::TenantId)
                        .string_len(64)
                        .not_null(),
                )
                .col(
                    ColumnDef::new(AuditEvents::Service)
                        .string_len(32)
                        .not_null(),
                )
                .col(ColumnDef::new(AuditEvents::Kind).string_len(64).not_null())
                .col(
                    ColumnDef::new(AuditEvents::OccurredAt)
                        .timestamp_with_time_zone()
                        .not_null(),
                )
                .col(
                    ColumnDef::new(AuditEvents::LedgerIndex)
                        .big_integer()
                        .null(),
                )
                .col(ColumnDef::new(AuditEvents::LeafHash).string_len(128).null())
                .col(opt(AuditEvents::RecordId))
                .col(opt(AuditEvents::PatientId))
                .col(opt(AuditEvents::GrantId))
                .col(opt(AuditEvents::ReferralId))
                .col(opt(AuditEvents::BreakGlassId))
                .col(opt(AuditEvents::Category))
                .col(opt(AuditEvents::OwnerInstitution))
                .col(opt(AuditEvents::ActorSubject))
                .col(opt(AuditEvents::ActorInstitution))
                .col(opt(AuditEvents::RecipientInstitution))
                .col(opt(AuditEvents::Purpose))
                .col(opt(AuditEvents::Action))
                .col(ColumnDef::new(AuditEvents::Permit).boolean().null())
                .col(opt(AuditEvents::DecidedByKind))
                .col(opt(AuditEvents::DecidedById))
                .col(ColumnDef::new(AuditEvents::Payload).text().not_null())
                .to_owned(),
        )
        .await?;
        for (name, cols) in [
            (
                "audit_by_record",
                vec![AuditEvents::TenantId, AuditEvents::RecordId],
            ),
            (
                "audit_by_patient",
                vec![AuditEvents::TenantId, AuditEvents::PatientId],
            ),
            (
                "audit_by_grant",
                vec![AuditEvents::TenantId, AuditEvents::GrantId],
            ),
            (
                "audit_by_kind",
                vec![AuditEvents::TenantId, AuditEvents::Kind],
            ),
            (
                "audit_by_time",
                vec![AuditEvents::TenantId, AuditEvents::OccurredAt],
            ),
        ] {
            let mut index = Index::create();
            index.name(name).table(AuditEvents::Table);
            for c in cols {
                index.col(c);
            }
            m.create_index(index.to_owned()).await?;
        }
        enable_tenant_rls(m, "audit_events").await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_table(Table::drop().table(AuditEvents::Table).to_owned())
            .await
    }
}
