//! Identity service tables.
//!
//! `tenants`, `apps`, `jwt_keys` and `revoked_tokens` are directories looked up before a
//! tenant is known (token requests, key sets), so they carry no row-level security; every
//! tenant's own data (institutions, their keys, patients) does.

use sea_orm_migration::prelude::*;

use crate::common::enable_tenant_rls;

pub struct Tables;

impl MigrationName for Tables {
    fn name(&self) -> &str {
        "m0002_identity_tables"
    }
}

fn id(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .string_len(64)
        .not_null()
        .primary_key()
        .to_owned()
}

fn ts(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

fn ts_null(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .null()
        .to_owned()
}

fn text(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col).text().not_null().to_owned()
}

fn short(col: impl IntoIden, len: u32) -> ColumnDef {
    ColumnDef::new(col).string_len(len).not_null().to_owned()
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    Id,
    Name,
    Suite,
    Status,
    CaKeyEnc,
    CaPublicPem,
    PseudonymKeyEnc,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Institutions {
    Table,
    Id,
    TenantId,
    Code,
    Name,
    Level,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum InstitutionKeys {
    Table,
    Id,
    TenantId,
    InstitutionId,
    Algorithm,
    Custody,
    PublicKeyPem,
    PrivateKeyEnc,
    Status,
    CreatedAt,
    RetiredAt,
    RevokedAt,
    RevocationReason,
}

#[derive(DeriveIden)]
enum Apps {
    Table,
    Id,
    TenantId,
    InstitutionId,
    Name,
    Kind,
    Scopes,
    SecretHash,
    Status,
    CreatedAt,
    SecretRotatedAt,
}

#[derive(DeriveIden)]
enum Patients {
    Table,
    Id,
    TenantId,
    RegisteredBy,
    CreatedAt,
}

#[derive(DeriveIden)]
enum JwtKeys {
    Table,
    Kid,
    PrivateKeyEnc,
    PublicX,
    Status,
    CreatedAt,
    ActivatedAt,
    RetiredAt,
}

#[derive(DeriveIden)]
enum RevokedTokens {
    Table,
    Jti,
    TenantId,
    ExpiresAt,
    RevokedAt,
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Tables {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Tenants::Table)
                .col(id(Tenants::Id))
                .col(short(Tenants::Name, 200))
                .col(short(Tenants::Suite, 8))
                .col(short(Tenants::Status, 16))
                .col(text(Tenants::CaKeyEnc))
                .col(text(Tenants::CaPublicPem))
                .col(text(Tenants::PseudonymKeyEnc))
                .col(ts(Tenants::CreatedAt))
                .col(ts(Tenants::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Institutions::Table)
                .col(id(Institutions::Id))
                .col(short(Institutions::TenantId, 64))
                .col(short(Institutions::Code, 64))
                .col(short(Institutions::Name, 200))
                .col(short(Institutions::Level, 16))
                .col(ts(Institutions::CreatedAt))
                .col(ts(Institutions::UpdatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("institutions_tenant_code")
                .table(Institutions::Table)
                .col(Institutions::TenantId)
                .col(Institutions::Code)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(InstitutionKeys::Table)
                .col(id(InstitutionKeys::Id))
                .col(short(InstitutionKeys::TenantId, 64))
                .col(short(InstitutionKeys::InstitutionId, 64))
                .col(short(InstitutionKeys::Algorithm, 16))
                .col(short(InstitutionKeys::Custody, 16))
                .col(text(InstitutionKeys::PublicKeyPem))
                .col(ColumnDef::new(InstitutionKeys::PrivateKeyEnc).text().null())
                .col(short(InstitutionKeys::Status, 16))
                .col(ts(InstitutionKeys::CreatedAt))
                .col(ts_null(InstitutionKeys::RetiredAt))
                .col(ts_null(InstitutionKeys::RevokedAt))
                .col(
                    ColumnDef::new(InstitutionKeys::RevocationReason)
                        .text()
                        .null(),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("institution_keys_by_institution")
                .table(InstitutionKeys::Table)
                .col(InstitutionKeys::TenantId)
                .col(InstitutionKeys::InstitutionId)
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Apps::Table)
                .col(id(Apps::Id))
                .col(ColumnDef::new(Apps::TenantId).string_len(64).null())
                .col(ColumnDef::new(Apps::InstitutionId).string_len(64).null())
                .col(short(Apps::Name, 200))
                .col(short(Apps::Kind, 16))
                .col(text(Apps::Scopes))
                .col(short(Apps::SecretHash, 128))
                .col(short(Apps::Status, 16))
                .col(ts(Apps::CreatedAt))
                .col(ts(Apps::SecretRotatedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(Patients::Table)
                .col(id(Patients::Id))
                .col(short(Patients::TenantId, 64))
                .col(short(Patients::RegisteredBy, 64))
                .col(ts(Patients::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(JwtKeys::Table)
                .col(id(JwtKeys::Kid))
                .col(text(JwtKeys::PrivateKeyEnc))
                .col(short(JwtKeys::PublicX, 128))
                .col(short(JwtKeys::Status, 16))
                .col(ts(JwtKeys::CreatedAt))
                .col(ts_null(JwtKeys::ActivatedAt))
                .col(ts_null(JwtKeys::RetiredAt))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(RevokedTokens::Table)
                .col(id(RevokedTokens::Jti))
                .col(
                    ColumnDef::new(RevokedTokens::TenantId)
                        .string_len(64)
                        .null(),
                )
                .col(
                    ColumnDef::new(RevokedTokens::ExpiresAt)
                        .big_integer()
                        .not_null(),
                )
                .col(ts(RevokedTokens::RevokedAt))
                .to_owned(),
        )
        .await?;
        for table in ["institutions", "institution_keys", "patients"] {
            enable_tenant_rls(m, table).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for t in [
            "revoked_tokens",
            "jwt_keys",
            "patients",
            "apps",
            "institution_keys",
            "institutions",
            "tenants",
        ] {
            m.drop_table(Table::drop().table(Alias::new(t)).to_owned())
                .await?;
        }
        Ok(())
    }
}
