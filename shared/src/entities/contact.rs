//! A contact of an account: the `contacts` table. Its text fields come from
//! [`with_contact_text_fields!`](crate::with_contact_text_fields).

use crate::contact_fields::TextField;
use sea_orm::entity::prelude::*;

macro_rules! contact_model {
    ($( $(#[doc = $doc:literal])* #[schema($($schema:tt)*)] $field:ident : $variant:ident = $kind:ident, )*) => {
        #[derive(Clone, Debug, PartialEq, Eq, Default, DeriveEntityModel)]
        #[sea_orm(table_name = "contacts")]
        pub struct Model {
            #[sea_orm(primary_key)]
            pub id: i64,
            pub account_id: i64,
            /// Primary number in E.164; also a `contact_phone_numbers` row with `is_primary`.
            pub phone_number: String,
            $( $(#[doc = $doc])* pub $field: Option<String>, )*
            pub date_of_birth: Option<Date>,
            /// IANA zone name.
            pub timezone: Option<String>,
            /// The owning user (same account), if any.
            pub owner_id: Option<i64>,
            pub line_id: Option<i64>,
            pub disposition_status_id: Option<i64>,
            pub created_at: DateTimeUtc,
            pub updated_at: DateTimeUtc,
        }

        impl Model {
            /// The value of the text field `field`.
            pub fn text(&self, field: TextField) -> Option<&String> {
                match field {
                    $( TextField::$variant => self.$field.as_ref(), )*
                }
            }

            /// The text field `field`, to write.
            pub fn text_mut(&mut self, field: TextField) -> &mut Option<String> {
                match field {
                    $( TextField::$variant => &mut self.$field, )*
                }
            }
        }

        impl From<TextField> for Column {
            fn from(field: TextField) -> Column {
                match field {
                    $( TextField::$variant => Column::$variant, )*
                }
            }
        }
    };
}

crate::with_contact_text_fields!(contact_model);

impl Column {
    /// Whether a contact's update may write this column: all but the id, the account, the
    /// primary number (a contact is found by it) and the creation time.
    pub fn is_updatable(&self) -> bool {
        !matches!(
            self,
            Column::Id | Column::AccountId | Column::PhoneNumber | Column::CreatedAt
        )
    }
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
