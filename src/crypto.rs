//! Secrets at rest (provider API keys): AES-256-GCM under `ENCRYPTION_KEY`.
//!
//! A stored value reads `v1.<key id>.<base64(nonce || ciphertext)>`. The key id
//! names the key that sealed it, so after a rotation the server can still open
//! values sealed under a previous key (`ENCRYPTION_KEY_PREVIOUS`) and tell an
//! unknown key apart from a tampered value.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};

use crate::config::EncryptionKey;

const VERSION: &str = "v1";
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the stored secret is not in a format this server understands")]
    Malformed,
    #[error("the stored secret was sealed with key {0}, which this server does not have")]
    UnknownKey(String),
    #[error("the stored secret does not match its key (wrong key or tampered value)")]
    Rejected,
}

/// The current key (seals and opens) and earlier ones (open only).
#[derive(Clone)]
pub struct Keyring {
    current: (String, Aes256Gcm),
    previous: Vec<(String, Aes256Gcm)>,
}

/// A short, stable, non-secret name for a key: the first 8 hex digits of its SHA-256.
pub fn key_id(key: &EncryptionKey) -> String {
    hex::encode(&Sha256::digest(key.bytes())[..4])
}

fn cipher(key: &EncryptionKey) -> (String, Aes256Gcm) {
    (key_id(key), Aes256Gcm::new(key.bytes().into()))
}

impl Keyring {
    pub fn new(current: &EncryptionKey, previous: &[EncryptionKey]) -> Self {
        Self {
            current: cipher(current),
            previous: previous.iter().map(cipher).collect(),
        }
    }

    pub fn current_key_id(&self) -> &str {
        &self.current.0
    }

    /// Seals `plain`; `context` (say, "org:7:openai") is bound to the value, so a
    /// ciphertext copied to another organization's row does not open there.
    pub fn seal(&self, plain: &str, context: &str) -> Result<String, CryptoError> {
        let (id, cipher) = &self.current;
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce_bytes),
                Payload {
                    msg: plain.as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Rejected)?;
        let mut blob = nonce_bytes.to_vec();
        blob.extend_from_slice(&sealed);
        let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(blob);
        Ok(format!("{VERSION}.{id}.{encoded}"))
    }

    pub fn open(&self, stored: &str, context: &str) -> Result<String, CryptoError> {
        let mut parts = stored.splitn(3, '.');
        let (Some(VERSION), Some(id), Some(encoded)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(CryptoError::Malformed);
        };
        let cipher = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|(kid, _)| kid == id)
            .map(|(_, c)| c)
            .ok_or_else(|| CryptoError::UnknownKey(id.to_string()))?;
        let blob = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(encoded)
            .map_err(|_| CryptoError::Malformed)?;
        if blob.len() <= NONCE_LEN {
            return Err(CryptoError::Malformed);
        }
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let plain = cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Rejected)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Malformed)
    }

    /// Whether a stored value should be sealed again under the current key.
    pub fn needs_rotation(&self, stored: &str) -> bool {
        stored.split('.').nth(1) != Some(self.current.0.as_str())
    }
}

/// What may be shown of a secret: its last four characters.
pub fn hint(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    format!("…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> EncryptionKey {
        let raw: Vec<u8> = (0..32u8)
            .map(|i| i.wrapping_mul(7).wrapping_add(byte))
            .collect();
        EncryptionKey::parse(&hex::encode(raw)).unwrap()
    }

    #[test]
    fn round_trip_and_fresh_nonce_each_time() {
        let ring = Keyring::new(&key(1), &[]);
        let a = ring.seal("sk-live-123456", "org:1:openai").unwrap();
        let b = ring.seal("sk-live-123456", "org:1:openai").unwrap();
        assert_ne!(a, b, "a nonce is never reused");
        assert!(!a.contains("123456"));
        assert_eq!(ring.open(&a, "org:1:openai").unwrap(), "sk-live-123456");
    }

    #[test]
    fn wrong_key_context_or_tampering_fail_cleanly() {
        let sealed = Keyring::new(&key(1), &[])
            .seal("secret", "org:1:openai")
            .unwrap();
        // A different key that happens to be configured under the same id cannot exist;
        // a different key is reported as unknown.
        let other = Keyring::new(&key(2), &[]);
        assert!(matches!(
            other.open(&sealed, "org:1:openai"),
            Err(CryptoError::UnknownKey(_))
        ));
        let ring = Keyring::new(&key(1), &[]);
        assert_eq!(
            ring.open(&sealed, "org:2:openai"),
            Err(CryptoError::Rejected)
        );
        let mut tampered = sealed.clone();
        let last = tampered.pop().unwrap();
        tampered.push(if last == 'A' { 'B' } else { 'A' });
        assert!(ring.open(&tampered, "org:1:openai").is_err());
        assert_eq!(ring.open("nonsense", "x"), Err(CryptoError::Malformed));
        assert_eq!(
            ring.open("v1.abc.!!!", "x"),
            Err(CryptoError::UnknownKey("abc".into()))
        );
    }

    #[test]
    fn previous_keys_still_open_after_rotation() {
        let old = Keyring::new(&key(1), &[]);
        let sealed = old.seal("secret", "ctx").unwrap();
        let rotated = Keyring::new(&key(2), &[key(1)]);
        assert!(rotated.needs_rotation(&sealed));
        assert_eq!(rotated.open(&sealed, "ctx").unwrap(), "secret");
        let resealed = rotated.seal("secret", "ctx").unwrap();
        assert!(!rotated.needs_rotation(&resealed));
    }

    #[test]
    fn hints_show_only_the_tail() {
        assert_eq!(hint("sk-abcdefgh"), "…efgh");
        assert_eq!(hint("ab"), "…ab");
    }
}
