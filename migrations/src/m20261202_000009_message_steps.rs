//! Sequences that send (§10): a line's sending number, a sequence's ordered steps, and the
//! messages: each outbound one is first a due row that a worker claims, then the record of
//! its sending; each inbound one is kept as received.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            r#"
-- The number a line sends from; one line per number across accounts, so an inbound message
-- to a number names its account.
ALTER TABLE lines ADD COLUMN number VARCHAR(16)
    CHECK (number ~ '^\+[1-9][0-9]{5,14}$');
CREATE UNIQUE INDEX lines_number_idx ON lines (number) WHERE number IS NOT NULL;

-- The line a sequence's messages go from when the contact has none.
ALTER TABLE sequences ADD COLUMN line_id BIGINT;
ALTER TABLE sequences ADD CONSTRAINT sequences_line_fkey FOREIGN KEY (account_id, line_id)
    REFERENCES lines (account_id, id) ON DELETE SET NULL (line_id);

-- A sequence's steps in order: an SMS with a template over the contact's fields, sent
-- `delay_seconds` after the previous step (the first: after enrollment).
CREATE TABLE sequence_steps (
    id             BIGSERIAL PRIMARY KEY,
    account_id     BIGINT NOT NULL,
    sequence_id    BIGINT NOT NULL,
    position       INTEGER NOT NULL CHECK (position > 0),
    kind           VARCHAR(8) NOT NULL DEFAULT 'sms' CHECK (kind IN ('sms')),
    body           TEXT NOT NULL CHECK (length(body) BETWEEN 1 AND 1600),
    delay_seconds  BIGINT NOT NULL DEFAULT 0 CHECK (delay_seconds >= 0),
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT sequence_steps_sequence_fkey FOREIGN KEY (account_id, sequence_id)
        REFERENCES sequences (account_id, id) ON DELETE CASCADE,
    CONSTRAINT sequence_steps_position_key UNIQUE (sequence_id, position)
);

-- Every message of a contact. An outbound step is inserted `scheduled` with its due time,
-- claimed by a worker and ends `sent`, `failed`, `blocked` (the contact policy) or
-- `cancelled` (disenrollment, STOP). Inbound messages are `received`.
CREATE TABLE messages (
    id             BIGSERIAL PRIMARY KEY,
    account_id     BIGINT NOT NULL,
    contact_id     BIGINT,
    direction      VARCHAR(8) NOT NULL CHECK (direction IN ('outbound', 'inbound')),
    status         VARCHAR(12) NOT NULL
                   CHECK (status IN ('scheduled', 'sent', 'failed', 'blocked', 'cancelled', 'received')),
    enrollment_id  BIGINT REFERENCES sequence_enrollments (id) ON DELETE CASCADE,
    step_id        BIGINT REFERENCES sequence_steps (id) ON DELETE SET NULL,
    -- The intake whose processing scheduled the step (its first verdict is on that intake).
    intake_id      UUID,
    due_at         TIMESTAMPTZ,
    attempts       INTEGER NOT NULL DEFAULT 0,
    from_number    VARCHAR(16),
    -- The contact's number when the step was sent or blocked (read at send time).
    to_number      VARCHAR(16),
    body           TEXT,
    provider_sid   VARCHAR(64),
    error_code     VARCHAR(32),
    error_message  TEXT,
    -- The contact policy's last verdict on the step when it blocked or delayed it.
    policy         JSONB,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at        TIMESTAMPTZ,
    CONSTRAINT messages_contact_fkey FOREIGN KEY (account_id, contact_id)
        REFERENCES contacts (account_id, id) ON DELETE CASCADE,
    CONSTRAINT messages_scheduled_due_check CHECK ((status = 'scheduled') = (due_at IS NOT NULL)),
    CONSTRAINT messages_outbound_step_check CHECK (direction = 'inbound' OR enrollment_id IS NOT NULL)
);
-- A step is sent at most once per enrollment.
CREATE UNIQUE INDEX messages_enrollment_step_idx ON messages (enrollment_id, step_id)
    WHERE enrollment_id IS NOT NULL AND step_id IS NOT NULL;
-- Disenrollment cancels an enrollment's pending steps.
CREATE INDEX messages_enrollment_scheduled_idx ON messages (enrollment_id)
    WHERE status = 'scheduled';
-- The scheduler's lookup: a range read over the due steps only.
CREATE INDEX messages_due_idx ON messages (due_at) WHERE status = 'scheduled';
CREATE INDEX messages_contact_idx ON messages (contact_id, id);
-- Frequency caps count what was sent to a number recently.
CREATE INDEX messages_sent_to_idx ON messages (account_id, to_number, sent_at)
    WHERE status = 'sent';
CREATE UNIQUE INDEX messages_inbound_sid_idx ON messages (provider_sid)
    WHERE direction = 'inbound';
"#,
        )
        .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            "DROP TABLE IF EXISTS messages;
DROP TABLE IF EXISTS sequence_steps;
ALTER TABLE sequences DROP CONSTRAINT IF EXISTS sequences_line_fkey;
ALTER TABLE sequences DROP COLUMN IF EXISTS line_id;
DROP INDEX IF EXISTS lines_number_idx;
ALTER TABLE lines DROP COLUMN IF EXISTS number;",
        )
        .await
    }
}
