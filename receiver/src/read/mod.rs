//! The read side: what an account can read back.
//!
//! - [`api`]: the read API: `GET /api/v1/intakes/{id}`, `GET /api/v1/contacts` and
//!   `GET /api/v1/contacts/{id}`, token-authenticated and scoped to the token's account.
//! - [`messages`]: a contact's messages (`GET /api/v1/contacts/{id}/messages`).
//! - [`model`]: the account-scoped read model behind it (intake records and contacts, read
//!   from PostgreSQL).

pub(crate) mod api;
pub(crate) mod messages;
pub use shared::read as model;
