//! API tokens: `lit_` followed by 40 hex characters (160 random bits). Only the SHA-256 of
//! a token is stored; the token is shown once, when created.

use rand::RngCore;
use sha2::{Digest, Sha256};

const PREFIX: &str = "lit_";

/// A new random token.
pub fn generate() -> String {
    let mut bytes = [0u8; 20];
    rand::rng().fill_bytes(&mut bytes);
    format!("{PREFIX}{}", hex::encode(bytes))
}

/// Hex SHA-256 of `token`, as stored in `api_tokens.token_hash`.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The first characters of `token`, safe to show and store (`api_tokens.token_prefix`).
pub fn display_prefix(token: &str) -> String {
    token.chars().take(PREFIX.len() + 4).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_to_64_hex() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(a.starts_with("lit_") && a.len() == 44);
        let h = hash(&a);
        assert_eq!(h.len(), 64);
        assert!(
            h.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(h, hash(&a));
        assert_ne!(h, hash(&b));
        assert_eq!(display_prefix(&a).len(), 8);
    }
}
