//! Sequence enrollments and PowerDialer lists.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            r#"
CREATE TABLE sequence_enrollments (
    id              BIGSERIAL PRIMARY KEY,
    account_id      BIGINT NOT NULL,
    contact_id      BIGINT NOT NULL,
    sequence_id     BIGINT NOT NULL,
    status          VARCHAR(16) NOT NULL DEFAULT 'active'
                    CHECK (status IN ('active', 'disenrolled')),
    enrolled_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    disenrolled_at  TIMESTAMPTZ,
    CONSTRAINT sequence_enrollments_contact_fkey FOREIGN KEY (account_id, contact_id)
        REFERENCES contacts (account_id, id) ON DELETE CASCADE,
    CONSTRAINT sequence_enrollments_sequence_fkey FOREIGN KEY (account_id, sequence_id)
        REFERENCES sequences (account_id, id) ON DELETE CASCADE,
    CONSTRAINT sequence_enrollments_disenrolled_at_check
        CHECK ((status = 'disenrolled') = (disenrolled_at IS NOT NULL))
);
-- At most one active enrollment per contact.
CREATE UNIQUE INDEX sequence_enrollments_one_active_idx
    ON sequence_enrollments (contact_id) WHERE status = 'active';
CREATE INDEX sequence_enrollments_contact_idx ON sequence_enrollments (contact_id, id);
CREATE INDEX sequence_enrollments_sequence_idx ON sequence_enrollments (sequence_id) WHERE status = 'active';

CREATE TABLE powerdialer_items (
    id          BIGSERIAL PRIMARY KEY,
    account_id  BIGINT NOT NULL,
    -- The user whose PowerDialer list holds the entry.
    user_id     BIGINT NOT NULL,
    contact_id  BIGINT NOT NULL,
    -- Signed: a smaller position is nearer the top; "top" inserts take min - 1.
    position    BIGINT NOT NULL,
    status      VARCHAR(16) NOT NULL DEFAULT 'queued'
                CHECK (status IN ('queued', 'dialed', 'removed')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT powerdialer_items_user_fkey FOREIGN KEY (account_id, user_id)
        REFERENCES users (account_id, id) ON DELETE CASCADE,
    CONSTRAINT powerdialer_items_contact_fkey FOREIGN KEY (account_id, contact_id)
        REFERENCES contacts (account_id, id) ON DELETE CASCADE
);
-- At most one queued entry per contact in an account, whoever's list it is on.
CREATE UNIQUE INDEX powerdialer_items_one_queued_idx
    ON powerdialer_items (account_id, contact_id) WHERE status = 'queued';
-- A list is a strict order: no two queued entries of a user share a position.
CREATE UNIQUE INDEX powerdialer_items_user_position_idx
    ON powerdialer_items (user_id, position) WHERE status = 'queued';
CREATE INDEX powerdialer_items_contact_idx ON powerdialer_items (contact_id);
"#,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            "DROP TABLE IF EXISTS powerdialer_items; DROP TABLE IF EXISTS sequence_enrollments;",
        )
        .await
    }
}
