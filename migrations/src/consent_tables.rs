//! Consent: classification policy versions, grants, referrals, break-glass declarations
//! and the anchoring queue.

use sea_orm_migration::prelude::*;

use crate::common::enable_tenant_rls;

pub struct Tables;

impl MigrationName for Tables {
    fn name(&self) -> &str {
        "m0002_consent_tables"
    }
}

#[derive(DeriveIden)]
enum Policies {
    Table,
    TenantId,
    Version,
    Document,
    ChangedBy,
    Reason,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Grants {
    Table,
    Id,
    TenantId,
    PatientId,
    GrantorInstitution,
    GrantedBy,
    RecipientInstitution,
    RecipientUser,
    Purpose,
    RecordIds,
    Categories,
    DataFrom,
    DataUntil,
    ValidFrom,
    ValidUntil,
    MaxAccesses,
    AccessesUsed,
    Evidence,
    ReferralId,
    Status,
    CreatedAt,
    RevokedAt,
    RevokedBy,
    RevocationReason,
    LedgerIndex,
}

#[derive(DeriveIden)]
enum Referrals {
    Table,
    Id,
    TenantId,
    PatientId,
    FromInstitution,
    FromUser,
    ToInstitution,
    ToUser,
    Reason,
    Urgency,
    GrantId,
    Status,
    Note,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum BreakGlass {
    Table,
    Id,
    TenantId,
    PatientId,
    UserId,
    InstitutionId,
    Justification,
    StartedAt,
    ExpiresAt,
    LedgerIndex,
}

fn id(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string_len(64).not_null().to_owned()
}

fn opt_id(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).string_len(64).null().to_owned()
}

fn ts(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn opt_ts(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Tables {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Policies::Table)
                .col(id(Policies::TenantId))
                .col(ColumnDef::new(Policies::Version).integer().not_null())
                .col(ColumnDef::new(Policies::Document).text().not_null())
                .col(id(Policies::ChangedBy))
                .col(ColumnDef::new(Policies::Reason).text().not_null())
                .col(ts(Policies::CreatedAt))
                .primary_key(
                    Index::create()
                        .col(Policies::TenantId)
                        .col(Policies::Version),
                )
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Grants::Table)
                .col(id(Grants::Id).primary_key())
                .col(id(Grants::TenantId))
                .col(id(Grants::PatientId))
                .col(id(Grants::GrantorInstitution))
                .col(id(Grants::GrantedBy))
                .col(id(Grants::RecipientInstitution))
                .col(opt_id(Grants::RecipientUser))
                .col(ColumnDef::new(Grants::Purpose).string_len(32).not_null())
                .col(ColumnDef::new(Grants::RecordIds).text().not_null())
                .col(ColumnDef::new(Grants::Categories).text().not_null())
                .col(ColumnDef::new(Grants::DataFrom).string_len(10).null())
                .col(ColumnDef::new(Grants::DataUntil).string_len(10).null())
                .col(ts(Grants::ValidFrom))
                .col(ts(Grants::ValidUntil))
                .col(ColumnDef::new(Grants::MaxAccesses).integer().null())
                .col(
                    ColumnDef::new(Grants::AccessesUsed)
                        .integer()
                        .not_null()
                        .default(0),
                )
                .col(ColumnDef::new(Grants::Evidence).text().not_null())
                .col(opt_id(Grants::ReferralId))
                .col(ColumnDef::new(Grants::Status).string_len(16).not_null())
                .col(ts(Grants::CreatedAt))
                .col(opt_ts(Grants::RevokedAt))
                .col(opt_id(Grants::RevokedBy))
                .col(ColumnDef::new(Grants::RevocationReason).text().null())
                .col(ColumnDef::new(Grants::LedgerIndex).big_integer().null())
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("grants_by_patient")
                .table(Grants::Table)
                .col(Grants::TenantId)
                .col(Grants::PatientId)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("grants_by_recipient")
                .table(Grants::Table)
                .col(Grants::TenantId)
                .col(Grants::RecipientInstitution)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Referrals::Table)
                .col(id(Referrals::Id).primary_key())
                .col(id(Referrals::TenantId))
                .col(id(Referrals::PatientId))
                .col(id(Referrals::FromInstitution))
                .col(id(Referrals::FromUser))
                .col(id(Referrals::ToInstitution))
                .col(opt_id(Referrals::ToUser))
                .col(ColumnDef::new(Referrals::Reason).text().not_null())
                .col(ColumnDef::new(Referrals::Urgency).string_len(16).not_null())
                .col(opt_id(Referrals::GrantId))
                .col(ColumnDef::new(Referrals::Status).string_len(16).not_null())
                .col(ColumnDef::new(Referrals::Note).text().null())
                .col(ts(Referrals::CreatedAt))
                .col(ts(Referrals::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("referrals_by_patient")
                .table(Referrals::Table)
                .col(Referrals::TenantId)
                .col(Referrals::PatientId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(BreakGlass::Table)
                .col(id(BreakGlass::Id).primary_key())
                .col(id(BreakGlass::TenantId))
                .col(id(BreakGlass::PatientId))
                .col(id(BreakGlass::UserId))
                .col(id(BreakGlass::InstitutionId))
                .col(ColumnDef::new(BreakGlass::Justification).text().not_null())
                .col(ts(BreakGlass::StartedAt))
                .col(ts(BreakGlass::ExpiresAt))
                .col(ColumnDef::new(BreakGlass::LedgerIndex).big_integer().null())
                .to_owned(),
        )
        .await?;
        crate::anchors::create_table(m).await?;
        for table in ["policies", "grants", "referrals", "break_glass"] {
            enable_tenant_rls(m, table).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for table in ["anchors", "break_glass", "referrals", "grants", "policies"] {
            m.drop_table(Table::drop().table(Alias::new(table)).to_owned())
                .await?;
        }
        Ok(())
    }
}
