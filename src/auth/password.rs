//! Passwords: the strength rule, and argon2id hashing.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher as _, PasswordVerifier as _, SaltString};

use crate::config::Secret;
use crate::domain::ParseError;

pub const MIN_LEN: usize = 10;
pub const MAX_LEN: usize = 128;

/// The rule, stated once for forms and API errors.
pub const RULE: &str =
    "must be 10 to 128 characters, not a common password, and not contain your email address";

const COMMON: &[&str] = &[
    "password",
    "password1",
    "password12",
    "password123",
    "passw0rd",
    "qwerty",
    "qwertyuiop",
    "1234567890",
    "12345678910",
    "123456789",
    "letmein",
    "welcome",
    "iloveyou",
    "admin",
    "administrator",
    "changeme",
    "frontdesk",
];

/// A password that passed the rule. It can only be hashed, never printed.
pub struct Password(Secret<String>);

impl Password {
    pub fn parse(raw: &str, email: Option<&str>) -> Result<Self, ParseError> {
        let length = raw.chars().count();
        if length == 0 {
            return Err(ParseError("Password is required.".into()));
        }
        if !(MIN_LEN..=MAX_LEN).contains(&length) {
            return Err(ParseError(format!("Password {RULE}.")));
        }
        let lower = raw.to_lowercase();
        let distinct = {
            let mut chars: Vec<char> = lower.chars().collect();
            chars.sort_unstable();
            chars.dedup();
            chars.len()
        };
        let trimmed = lower.trim_end_matches(|c: char| c.is_ascii_digit() || c == '!');
        if distinct < 4 || COMMON.contains(&lower.as_str()) || COMMON.contains(&trimmed) {
            return Err(ParseError(
                "That password is too common or predictable; choose another.".into(),
            ));
        }
        if let Some(email) = email {
            let local = email.split('@').next().unwrap_or(email).to_lowercase();
            if local.len() >= 3 && lower.contains(&local) {
                return Err(ParseError(format!(
                    "Password cannot contain your email address or its name part, \u{201c}{local}\u{201d}."
                )));
            }
        }
        Ok(Self(Secret::new(raw.to_string())))
    }

    /// Argon2id with the crate's recommended parameters and a random salt.
    pub fn hash(&self) -> Result<String, argon2::password_hash::Error> {
        let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())?;
        Ok(Argon2::default()
            .hash_password(self.0.expose().as_bytes(), &salt)?
            .to_string())
    }
}

/// Checks a candidate against a stored hash. Without a stored hash (unknown
/// account) a dummy hash is checked instead, so both cases take the same time.
pub fn verify(candidate: &str, stored: Option<&str>) -> bool {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let dummy = DUMMY.get_or_init(|| {
        Password(Secret::new("dummy-password-for-timing".into()))
            .hash()
            .unwrap_or_default()
    });
    let (hash, real) = match stored {
        Some(h) => (h, true),
        None => (dummy.as_str(), false),
    };
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    Argon2::default()
        .verify_password(candidate.as_bytes(), &parsed)
        .is_ok()
        && real
}

#[cfg(test)]
mod tests {
    use super::{Password, verify};

    #[test]
    fn the_rule_refuses_short_common_and_email_passwords() {
        let message = |raw: &str| Password::parse(raw, None).err().map(|e| e.0);
        assert_eq!(message("").as_deref(), Some("Password is required."));
        assert!(message("short").is_some_and(|m| m.contains("10 to 128")));
        assert!(Password::parse("short", None).is_err());
        assert!(Password::parse("password123", None).is_err());
        assert!(Password::parse("aaaaaaaaaaaa", None).is_err());
        assert!(Password::parse("ana.lopez-secret", Some("ana.lopez@example.com")).is_err());
        assert!(Password::parse(&"x1".repeat(65), None).is_err());
        assert!(Password::parse("correct horse battery", Some("ana@example.com")).is_ok());
    }

    #[test]
    fn hashes_verify_and_differ_per_salt() {
        let p = Password::parse("correct horse battery", None).unwrap();
        let (a, b) = (p.hash().unwrap(), p.hash().unwrap());
        assert_ne!(a, b);
        assert!(a.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", Some(&a)));
        assert!(!verify("wrong horse battery", Some(&a)));
        assert!(!verify("anything", None));
    }
}
