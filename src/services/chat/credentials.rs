//! Re-encrypting stored provider keys after `ENCRYPTION_KEY` changes.
//!
//! Rotation: set the new key as `ENCRYPTION_KEY`, list the old one in
//! `ENCRYPTION_KEY_PREVIOUS` (the server keeps opening values sealed under it),
//! run `frontdesk keys rotate`, then drop the old key once it reports nothing
//! left under it.

use crate::crypto::{CryptoError, Keyring};
use crate::db::DbConnection;
use crate::db::models::ProviderCredential;
use crate::domain::OrganizationId;
use crate::services::chat::credential_context;
use crate::services::chat::providers::ProviderKind;

/// What a re-encryption pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Sealed again under the current key.
    pub resealed: usize,
    /// Already under the current key.
    pub current: usize,
    /// Changed by someone else during the pass (they sealed under the current key).
    pub raced: usize,
    /// Could not be opened: (credential id, organization, why).
    pub failed: Vec<(i64, OrganizationId, CryptoError)>,
}

/// Seals every provider key that is not under the current key again, one row
/// at a time (each write checks the row still holds what was read).
pub fn reseal_all(conn: &mut DbConnection, keyring: &Keyring) -> diesel::QueryResult<Rotation> {
    let mut rotation = Rotation::default();
    for credential in ProviderCredential::all_for_rotation(conn)? {
        if !keyring.needs_rotation(&credential.sealed_key) {
            rotation.current += 1;
            continue;
        }
        let Some(kind) = ProviderKind::parse(&credential.provider) else {
            rotation.failed.push((
                credential.id,
                credential.organization_id,
                CryptoError::Malformed,
            ));
            continue;
        };
        let context = credential_context(credential.organization_id, kind);
        let resealed = keyring
            .open(&credential.sealed_key, &context)
            .and_then(|plain| keyring.seal(&plain, &context));
        match resealed {
            Ok(sealed) => {
                if ProviderCredential::replace_sealed(
                    conn,
                    credential.id,
                    &credential.sealed_key,
                    &sealed,
                )? {
                    rotation.resealed += 1;
                } else {
                    rotation.raced += 1;
                }
            }
            Err(e) => rotation
                .failed
                .push((credential.id, credential.organization_id, e)),
        }
    }
    Ok(rotation)
}
