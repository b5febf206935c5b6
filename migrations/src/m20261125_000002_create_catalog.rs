//! What a lead can be linked to: ring groups (with members), lines, tags, disposition
//! statuses and sequences. Each is owned by one account.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Tables with the same shape: an account-owned, named thing.
const NAMED: [&str; 5] = [
    "ring_groups",
    "lines",
    "tags",
    "disposition_statuses",
    "sequences",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in NAMED {
            crate::run_sql(
                manager,
                &format!(
                    r#"
CREATE TABLE {table} (
    id         BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    name       VARCHAR(255) NOT NULL CHECK (btrim(name) <> ''),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT {table}_account_id_id_key UNIQUE (account_id, id),
    CONSTRAINT {table}_account_id_name_key UNIQUE (account_id, name)
);
"#
                ),
            )
            .await?;
        }
        crate::run_sql(
            manager,
            r#"
CREATE TABLE ring_group_members (
    ring_group_id BIGINT NOT NULL,
    user_id       BIGINT NOT NULL,
    account_id    BIGINT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (ring_group_id, user_id),
    CONSTRAINT ring_group_members_ring_group_fkey FOREIGN KEY (account_id, ring_group_id)
        REFERENCES ring_groups (account_id, id) ON DELETE CASCADE,
    CONSTRAINT ring_group_members_user_fkey FOREIGN KEY (account_id, user_id)
        REFERENCES users (account_id, id) ON DELETE CASCADE
);
CREATE INDEX ring_group_members_user_id_idx ON ring_group_members (user_id);
"#,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(manager, "DROP TABLE IF EXISTS ring_group_members;").await?;
        for table in NAMED.iter().rev() {
            crate::run_sql(manager, &format!("DROP TABLE IF EXISTS {table};")).await?;
        }
        Ok(())
    }
}
