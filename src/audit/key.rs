//! Audit keys: the chain's HMAC-SHA256 key, the optional AES-256-GCM body key, and a key ring
//! for verifiers.

use ring::{aead, hmac};
use zeroize::Zeroizing;

use super::AuditError;

/// The HMAC-SHA256 key that chains records, with the id stored in segment headers.
///
/// The raw bytes are only borrowed at construction; what is kept is ring's precomputed
/// HMAC state (inner and outer pad blocks), cloned per record so that signing a record
/// hashes only the record. `Debug` shows the id, never key material.
///
/// Zeroization: the raw key is never stored (slices passed to [`MacKey::from_slice`] are
/// copied into a `Zeroizing` buffer that is wiped at once), but ring keeps its
/// precomputed pad state (key-equivalent) without wiping it on drop, and offers no way to
/// do so. Rebuilding the state per record would wipe it at the cost of two extra SHA-256
/// blocks per record (about 40 % of the append throughput); the application should keep
/// the process's memory private (no core dumps, no swap of secrets) as for any ring key.
///
/// ```
/// use postern::audit::MacKey;
/// let key = MacKey::new(1, &[7u8; 32]);
/// assert_eq!(key.id(), 1);
/// assert_eq!(format!("{key:?}"), "MacKey { id: 1, .. }");
/// ```
#[derive(Clone)]
pub struct MacKey {
    id: u32,
    key: hmac::Key,
}

impl MacKey {
    /// A key from 32 secret bytes (generate them with a CSPRNG, e.g.
    /// `ring::rand::SystemRandom`, and keep them apart from the log).
    #[must_use]
    pub fn new(id: u32, bytes: &[u8; 32]) -> Self {
        Self { id, key: hmac::Key::new(hmac::HMAC_SHA256, bytes) }
    }

    /// A key from a slice, which must be exactly 32 bytes.
    ///
    /// # Errors
    /// [`AuditError::Config`] for another length.
    pub fn from_slice(id: u32, bytes: &[u8]) -> Result<Self, AuditError> {
        let bytes: Zeroizing<[u8; 32]> =
            Zeroizing::new(bytes.try_into().map_err(|_| AuditError::Config("an audit MAC key is 32 bytes"))?);
        Ok(Self::new(id, &bytes))
    }

    /// The key's id.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.id
    }

    pub(crate) fn context(&self) -> hmac::Context {
        hmac::Context::with_key(&self.key)
    }
}

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MacKey").field("id", &self.id).finish_non_exhaustive()
    }
}

/// The AES-256-GCM key that encrypts record bodies, with the id stored in segment headers.
/// `Debug` shows the id only. Like [`MacKey`], the raw bytes are not kept; ring's AES key
/// schedule is not wiped on drop.
///
/// ```
/// use postern::audit::EncryptionKey;
/// let key = EncryptionKey::new(9, &[1u8; 32]);
/// assert_eq!(key.id(), 9);
/// ```
#[derive(Clone)]
pub struct EncryptionKey {
    id: u32,
    key: std::sync::Arc<aead::LessSafeKey>,
}

impl EncryptionKey {
    /// A key from 32 secret bytes.
    #[must_use]
    pub fn new(id: u32, bytes: &[u8; 32]) -> Self {
        // AES-256 accepts every 32-byte key; the fallback is unreachable.
        let unbound = aead::UnboundKey::new(&aead::AES_256_GCM, bytes).unwrap_or_else(|_| unreachable_key());
        Self { id, key: std::sync::Arc::new(aead::LessSafeKey::new(unbound)) }
    }

    /// A key from a slice, which must be exactly 32 bytes.
    ///
    /// # Errors
    /// [`AuditError::Config`] for another length.
    pub fn from_slice(id: u32, bytes: &[u8]) -> Result<Self, AuditError> {
        let bytes: Zeroizing<[u8; 32]> = Zeroizing::new(
            bytes.try_into().map_err(|_| AuditError::Config("an audit encryption key is 32 bytes"))?,
        );
        Ok(Self::new(id, &bytes))
    }

    /// The key's id.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.id
    }

    pub(crate) fn aead(&self) -> &aead::LessSafeKey {
        &self.key
    }
}

#[allow(clippy::panic)]
fn unreachable_key() -> aead::UnboundKey {
    panic!("AES-256-GCM rejected a 32-byte key")
}

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionKey").field("id", &self.id).finish_non_exhaustive()
    }
}

/// The keys a verifier (or a reader of encrypted records) may need, looked up by the ids in
/// segment headers. A verifier needs only the MAC keys; reading encrypted bodies also needs
/// the encryption keys.
///
/// ```
/// use postern::audit::{KeyRing, MacKey};
/// let ring = KeyRing::new().with_mac(MacKey::new(1, &[7; 32])).with_mac(MacKey::new(2, &[8; 32]));
/// assert!(ring.mac(2).is_some());
/// assert!(ring.mac(3).is_none());
/// ```
#[derive(Clone, Debug, Default)]
pub struct KeyRing {
    macs: Vec<MacKey>,
    encryption: Vec<EncryptionKey>,
}

impl KeyRing {
    /// An empty ring.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a MAC key.
    #[must_use]
    pub fn with_mac(mut self, key: MacKey) -> Self {
        self.macs.retain(|k| k.id != key.id);
        self.macs.push(key);
        self
    }

    /// Adds (or replaces) an encryption key.
    #[must_use]
    pub fn with_encryption(mut self, key: EncryptionKey) -> Self {
        self.encryption.retain(|k| k.id != key.id);
        self.encryption.push(key);
        self
    }

    /// The MAC key with this id.
    #[must_use]
    pub fn mac(&self, id: u32) -> Option<&MacKey> {
        self.macs.iter().find(|k| k.id == id)
    }

    /// The encryption key with this id.
    #[must_use]
    pub fn encryption(&self, id: u32) -> Option<&EncryptionKey> {
        self.encryption.iter().find(|k| k.id == id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_key_material_and_lengths_are_checked() {
        let mac = MacKey::from_slice(3, &[0xab; 32]).unwrap();
        let enc = EncryptionKey::from_slice(4, &[0xcd; 32]).unwrap();
        let text = format!(
            "{mac:?} {enc:?} {:?}",
            KeyRing::new().with_mac(mac.clone()).with_encryption(enc.clone())
        );
        assert!(!text.contains("171") && !text.contains("ab") && !text.contains("205"), "{text}");
        assert!(MacKey::from_slice(1, &[0; 31]).is_err());
        assert!(EncryptionKey::from_slice(1, &[0; 33]).is_err());
        let ring = KeyRing::new().with_mac(MacKey::new(1, &[1; 32])).with_mac(MacKey::new(1, &[2; 32]));
        assert!(ring.mac(1).is_some());
    }
}
