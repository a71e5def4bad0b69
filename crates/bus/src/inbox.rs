//! Inbox: the ids of messages a consumer has processed. Claiming a message id and applying
//! its effects happen in one transaction, so a redelivered message changes nothing.

use chrono::Utc;
use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, sea_query::OnConflict};
use uuid::Uuid;

pub mod entity {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "inbox")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub consumer: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub message_id: String,
        pub processed_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Records that `consumer` processes `message_id`, inside the caller's transaction.
/// Returns `false` if it was processed before: the caller must then skip its effects (and
/// may commit or roll back; nothing was written).
pub async fn claim<C: ConnectionTrait>(
    txn: &C,
    consumer: &str,
    message_id: Uuid,
) -> Result<bool, sea_orm::DbErr> {
    let row = entity::ActiveModel {
        consumer: Set(consumer.to_string()),
        message_id: Set(message_id.to_string()),
        processed_at: Set(Utc::now()),
    };
    let inserted = entity::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([entity::Column::Consumer, entity::Column::MessageId])
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    Ok(inserted == 1)
}
