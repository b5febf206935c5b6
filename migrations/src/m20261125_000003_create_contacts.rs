//! Contacts, their phone numbers (the dedupe key), notes and tags.

use sea_orm_migration::prelude::*;

/// The tables and their indexes.
const UP: &str = r#"
CREATE TABLE contacts (
    id                    BIGSERIAL PRIMARY KEY,
    account_id            BIGINT NOT NULL REFERENCES accounts (id) ON DELETE CASCADE,
    -- The primary number in E.164; also a row of contact_phone_numbers with is_primary.
    phone_number          VARCHAR(16) NOT NULL CHECK (phone_number ~ '^\+[1-9][0-9]{5,14}$'),
    name                  VARCHAR(255),
    first_name            VARCHAR(255),
    last_name             VARCHAR(255),
    company_name          VARCHAR(255),
    email                 VARCHAR(255),
    lead_source           VARCHAR(255),
    source                VARCHAR(255),
    address               VARCHAR(255),
    city                  VARCHAR(255),
    state                 VARCHAR(255),
    zipcode               VARCHAR(255),
    country               VARCHAR(255),
    csf1                  VARCHAR(255),
    csf2                  VARCHAR(255),
    date_of_birth         DATE,
    timezone              VARCHAR(64),
    website               VARCHAR(2048),
    owner_id              BIGINT,
    line_id               BIGINT,
    disposition_status_id BIGINT,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT contacts_account_id_id_key UNIQUE (account_id, id),
    -- Composite keys: an owner, line or disposition of another account cannot be linked.
    CONSTRAINT contacts_owner_fkey FOREIGN KEY (account_id, owner_id)
        REFERENCES users (account_id, id) ON DELETE SET NULL (owner_id),
    CONSTRAINT contacts_line_fkey FOREIGN KEY (account_id, line_id)
        REFERENCES lines (account_id, id) ON DELETE SET NULL (line_id),
    CONSTRAINT contacts_disposition_status_fkey FOREIGN KEY (account_id, disposition_status_id)
        REFERENCES disposition_statuses (account_id, id) ON DELETE SET NULL (disposition_status_id)
);
-- Read-API filters and cursor pagination (ordered by id within an account).
CREATE INDEX contacts_account_email_idx ON contacts (account_id, lower(email)) WHERE email IS NOT NULL;
CREATE INDEX contacts_account_lead_source_idx ON contacts (account_id, lead_source, id) WHERE lead_source IS NOT NULL;
CREATE INDEX contacts_account_source_idx ON contacts (account_id, source, id) WHERE source IS NOT NULL;
CREATE INDEX contacts_account_line_idx ON contacts (account_id, line_id, id) WHERE line_id IS NOT NULL;
CREATE INDEX contacts_account_owner_idx ON contacts (account_id, owner_id, id) WHERE owner_id IS NOT NULL;
CREATE INDEX contacts_account_created_idx ON contacts (account_id, created_at, id);
CREATE INDEX contacts_disposition_status_idx ON contacts (account_id, disposition_status_id) WHERE disposition_status_id IS NOT NULL;

CREATE TABLE contact_phone_numbers (
    id           BIGSERIAL PRIMARY KEY,
    account_id   BIGINT NOT NULL,
    contact_id   BIGINT NOT NULL,
    phone_number VARCHAR(16) NOT NULL CHECK (phone_number ~ '^\+[1-9][0-9]{5,14}$'),
    label        VARCHAR(255),
    is_primary   BOOLEAN NOT NULL DEFAULT FALSE,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT contact_phone_numbers_contact_fkey FOREIGN KEY (account_id, contact_id)
        REFERENCES contacts (account_id, id) ON DELETE CASCADE,
    -- The dedupe invariant: a number belongs to at most one contact per account.
    CONSTRAINT contact_phone_numbers_account_phone_key UNIQUE (account_id, phone_number)
);
CREATE INDEX contact_phone_numbers_contact_idx ON contact_phone_numbers (contact_id);
-- At most one primary number per contact.
CREATE UNIQUE INDEX contact_phone_numbers_one_primary_idx
    ON contact_phone_numbers (contact_id) WHERE is_primary;

CREATE TABLE contact_notes (
    id         BIGSERIAL PRIMARY KEY,
    account_id BIGINT NOT NULL,
    contact_id BIGINT NOT NULL,
    body       TEXT NOT NULL CHECK (char_length(body) <= 10000),
    -- The intake that brought the note, if any.
    intake_id  UUID,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT contact_notes_contact_fkey FOREIGN KEY (account_id, contact_id)
        REFERENCES contacts (account_id, id) ON DELETE CASCADE
);
CREATE INDEX contact_notes_contact_idx ON contact_notes (contact_id, created_at, id);

CREATE TABLE contact_tags (
    contact_id BIGINT NOT NULL,
    tag_id     BIGINT NOT NULL,
    account_id BIGINT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (contact_id, tag_id),
    CONSTRAINT contact_tags_contact_fkey FOREIGN KEY (account_id, contact_id)
        REFERENCES contacts (account_id, id) ON DELETE CASCADE,
    CONSTRAINT contact_tags_tag_fkey FOREIGN KEY (account_id, tag_id)
        REFERENCES tags (account_id, id) ON DELETE CASCADE
);
-- "Contacts with tag X" in the read API.
CREATE INDEX contact_tags_account_tag_idx ON contact_tags (account_id, tag_id, contact_id);
"#;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(manager, UP).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        crate::run_sql(
            manager,
            "DROP TABLE IF EXISTS contact_tags; DROP TABLE IF EXISTS contact_notes; \
             DROP TABLE IF EXISTS contact_phone_numbers; DROP TABLE IF EXISTS contacts;",
        )
        .await
    }
}
