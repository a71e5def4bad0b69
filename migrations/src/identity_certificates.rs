//! Identity: X.509 certificates of the tenant CAs and of institution keys.

use sea_orm_migration::prelude::*;

pub struct Certificates;

impl MigrationName for Certificates {
    fn name(&self) -> &str {
        "m0004_identity_certificates"
    }
}

#[derive(DeriveIden)]
enum Tenants {
    Table,
    CaCertPem,
}

#[derive(DeriveIden)]
enum InstitutionKeys {
    Table,
    CertificatePem,
    Serial,
    NotBefore,
    NotAfter,
}

#[sea_orm_migration::async_trait::async_trait]
impl MigrationTrait for Certificates {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite's ALTER TABLE adds one at a time.
        m.alter_table(
            Table::alter()
                .table(Tenants::Table)
                .add_column(ColumnDef::new(Tenants::CaCertPem).text().null())
                .to_owned(),
        )
        .await?;
        for col in [
            ColumnDef::new(InstitutionKeys::CertificatePem)
                .text()
                .null()
                .to_owned(),
            ColumnDef::new(InstitutionKeys::Serial)
                .string_len(64)
                .null()
                .to_owned(),
            ColumnDef::new(InstitutionKeys::NotBefore)
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
            ColumnDef::new(InstitutionKeys::NotAfter)
                .timestamp_with_time_zone()
                .null()
                .to_owned(),
        ] {
            m.alter_table(
                Table::alter()
                    .table(InstitutionKeys::Table)
                    .add_column(col)
                    .to_owned(),
            )
            .await?;
        }
        m.create_index(
            Index::create()
                .name("institution_keys_serial")
                .table(InstitutionKeys::Table)
                .col(InstitutionKeys::Serial)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name("institution_keys_serial").to_owned())
            .await
    }
}
