//! SeaORM entities, one module per table of the `migrations` crate.
//!
//! Relations that cross accounts are impossible at the database level (composite foreign
//! keys); the entities mirror the columns and leave joins to explicit queries.

pub mod account;
pub mod api_token;
pub mod contact;
pub mod contact_consent;
pub mod contact_note;
pub mod contact_phone_number;
pub mod contact_tag;
pub mod disposition_status;
pub mod do_not_contact;
pub mod lead_intake;
pub mod line;
pub mod message;
pub mod powerdialer_item;
pub mod ring_group;
pub mod ring_group_member;
pub mod sequence;
pub mod sequence_enrollment;
pub mod sequence_step;
pub mod tag;
pub mod user;
