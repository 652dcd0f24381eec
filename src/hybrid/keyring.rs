//! A recipient's key ring: several X-Wing keys with ids, one of them current.
//!
//! New envelopes are sealed to the current key; [`KeyRing::rotate`] makes a fresh key
//! current; older keys keep opening the envelopes sealed to them until
//! [`KeyRing::retire`] removes them. The ring serialises to bytes
//! ([`KeyRing::to_bytes`], in a buffer that zeroizes on drop): where they are stored is
//! the application's business.
//!
//! # Serialised form (version 1)
//!
//! `PKRG` ‖ version (1) ‖ current key id (u32) ‖ count (u16) ‖ count × (key id (u32) ‖
//! created, Unix seconds (u64) ‖ X-Wing seed (32)), all big-endian. Public keys are not
//! stored: they are derived from the seeds.

use core::fmt;
use std::time::SystemTime;

use ring::rand::SecureRandom;
use zeroize::Zeroizing;

use super::envelope::{self, Header, PREFIX_LEN, StreamOpener, StreamSealer};
use super::xwing::{self, SecretKey};
use super::{HybridError, KeyId};

/// The most keys a ring holds: bounds its memory and the cost of loading it.
pub const MAX_KEYS: usize = 1024;

const MAGIC: [u8; 4] = *b"PKRG";
const VERSION: u8 = 1;
const FIXED_LEN: usize = 4 + 1 + 4 + 2;
const ENTRY_LEN: usize = 4 + 8 + xwing::SECRET_KEY_LEN;

/// One key of a ring.
pub struct RingKey {
    id: KeyId,
    created: u64,
    secret: SecretKey,
}

impl RingKey {
    /// The key's id, written into every envelope sealed to it.
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// When the key was made, in seconds since the Unix epoch.
    pub fn created_unix(&self) -> u64 {
        self.created
    }

    /// The secret key.
    pub fn secret(&self) -> &SecretKey {
        &self.secret
    }

    /// The public key: what senders seal to.
    pub fn public_key(&self) -> &xwing::PublicKey {
        self.secret.public_key()
    }
}

impl fmt::Debug for RingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RingKey")
            .field("id", &self.id)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// A recipient's key ring: several X-Wing keys with ids, one of them current.
///
/// New envelopes are sealed to the current key; [`rotate`](Self::rotate) makes a fresh
/// key current; older keys keep opening the envelopes sealed to them until
/// [`retire`](Self::retire) removes them. [`to_bytes`](Self::to_bytes) gives the
/// serialised ring (`PKRG` ‖ version 1 ‖ current id ‖ count ‖ per key: id, creation time
/// in Unix seconds, the 32-byte X-Wing seed; big-endian) in a buffer that zeroizes on
/// drop; where it is stored is the application's business.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use postern::hybrid::{HybridError, KeyRing};
///
/// let rng = ring::rand::SystemRandom::new();
/// let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
/// let mut ring = KeyRing::generate(&rng, t0)?;
/// let old = ring.seal(&rng, b"", b"", b"sealed to key 1")?;
///
/// let new_id = ring.rotate(&rng, t0 + Duration::from_secs(86_400))?;
/// let new = ring.seal(&rng, b"", b"", b"sealed to key 2")?;
/// assert_eq!(&*ring.open(&old, b"", b"")?, b"sealed to key 1");
/// assert_eq!(&*ring.open(&new, b"", b"")?, b"sealed to key 2");
///
/// // Stored and loaded again (the application writes the bytes somewhere safe).
/// let mut ring = KeyRing::from_bytes(&ring.to_bytes())?;
/// let first = ring.keys().next().unwrap().id();
/// ring.retire(first)?;
/// assert_eq!(ring.open(&old, b"", b"").unwrap_err(), HybridError::UnknownKeyId(first));
/// assert_eq!(ring.current().id(), new_id);
/// # Ok::<(), HybridError>(())
/// ```
pub struct KeyRing {
    /// Older keys, in id order (ids only grow).
    older: Vec<RingKey>,
    /// The current key: always the newest.
    current: RingKey,
}

impl KeyRing {
    /// A new ring with one fresh key (id 1), current.
    pub fn generate(rng: &dyn SecureRandom, now: SystemTime) -> Result<Self, HybridError> {
        let current = RingKey { id: KeyId(1), created: unix(now), secret: SecretKey::generate(rng)? };
        Ok(Self { older: Vec::new(), current })
    }

    /// Adds a fresh key and makes it current; returns its id. Older keys stay for opening.
    pub fn rotate(&mut self, rng: &dyn SecureRandom, now: SystemTime) -> Result<KeyId, HybridError> {
        if self.older.len() + 1 >= MAX_KEYS {
            return Err(HybridError::KeyRing("the ring is full: retire old keys first"));
        }
        let id = KeyId(self.current.id.0.checked_add(1).ok_or(HybridError::KeyRing("key ids exhausted"))?);
        let fresh = RingKey { id, created: unix(now), secret: SecretKey::generate(rng)? };
        self.older.push(core::mem::replace(&mut self.current, fresh));
        Ok(id)
    }

    /// Removes a key: envelopes sealed to it can no longer be opened. The current key
    /// cannot be retired (rotate first).
    pub fn retire(&mut self, id: KeyId) -> Result<(), HybridError> {
        if id == self.current.id {
            return Err(HybridError::KeyRing("the current key cannot be retired"));
        }
        let before = self.older.len();
        self.older.retain(|k| k.id != id);
        if self.older.len() == before {
            return Err(HybridError::UnknownKeyId(id));
        }
        Ok(())
    }

    /// Retires every key but the current one that was created before `cutoff`; returns
    /// how many.
    pub fn retire_created_before(&mut self, cutoff: SystemTime) -> usize {
        let cutoff = unix(cutoff);
        let before = self.older.len();
        self.older.retain(|k| k.created >= cutoff);
        before - self.older.len()
    }

    /// The current key: new envelopes are sealed to it.
    pub fn current(&self) -> &RingKey {
        &self.current
    }

    /// The key with `id`, if the ring still has it.
    pub fn get(&self, id: KeyId) -> Option<&RingKey> {
        self.keys().find(|k| k.id == id)
    }

    /// Every key, oldest first.
    pub fn keys(&self) -> impl Iterator<Item = &RingKey> {
        self.older.iter().chain(core::iter::once(&self.current))
    }

    /// Seals `plaintext` to the current key as a single-shot envelope.
    pub fn seal(
        &self,
        rng: &dyn SecureRandom,
        info: &[u8],
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, HybridError> {
        let key = self.current();
        envelope::seal(rng, key.public_key(), key.id, info, aad, plaintext)
    }

    /// Starts a stream sealed to the current key (see [`StreamSealer`]).
    pub fn stream_sealer(
        &self,
        rng: &dyn SecureRandom,
        chunk_size: u32,
        info: &[u8],
        aad: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<StreamSealer, HybridError> {
        let key = self.current();
        StreamSealer::new(rng, key.public_key(), key.id, chunk_size, info, aad, out)
    }

    /// Opens a whole envelope (either mode) with the key its header names.
    pub fn open(&self, sealed: &[u8], info: &[u8], aad: &[u8]) -> Result<Zeroizing<Vec<u8>>, HybridError> {
        let header = Header::parse(sealed)?;
        let key = self.get(header.key_id).ok_or(HybridError::UnknownKeyId(header.key_id))?;
        envelope::open(&key.secret, sealed, info, aad)
    }

    /// Starts opening a stream from its first [`PREFIX_LEN`] bytes with the key its
    /// header names.
    pub fn stream_opener(&self, prefix: &[u8], info: &[u8], aad: &[u8]) -> Result<StreamOpener, HybridError> {
        let (header, enc) = envelope::parse_prefix(prefix.get(..PREFIX_LEN).unwrap_or(prefix))?;
        let key = self.get(header.key_id).ok_or(HybridError::UnknownKeyId(header.key_id))?;
        StreamOpener::new(&key.secret, &header, &enc, info, aad)
    }

    /// The serialised ring (secret!), in a buffer that zeroizes on drop.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let count = self.older.len() + 1;
        let mut out = Zeroizing::new(Vec::with_capacity(FIXED_LEN + count * ENTRY_LEN));
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.current.id.0.to_be_bytes());
        // At most MAX_KEYS (< u16::MAX) keys by construction.
        out.extend_from_slice(&u16::try_from(count).unwrap_or(u16::MAX).to_be_bytes());
        for key in self.keys() {
            out.extend_from_slice(&key.id.0.to_be_bytes());
            out.extend_from_slice(&key.created.to_be_bytes());
            out.extend_from_slice(key.secret.to_bytes().as_slice());
        }
        out
    }

    /// Loads a serialised ring, checking its structure: magic, version, exact length,
    /// at most [`MAX_KEYS`] keys, ids strictly increasing, the current key the newest.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, HybridError> {
        let fixed = bytes.get(..FIXED_LEN).ok_or(HybridError::KeyRing("too short"))?;
        let [m0, m1, m2, m3, version, c0, c1, c2, c3, n0, n1] =
            <[u8; FIXED_LEN]>::try_from(fixed).map_err(|_| HybridError::KeyRing("too short"))?;
        if [m0, m1, m2, m3] != MAGIC {
            return Err(HybridError::KeyRing("not a key ring (bad magic)"));
        }
        if version != VERSION {
            return Err(HybridError::KeyRing("unsupported key ring version"));
        }
        let current = KeyId(u32::from_be_bytes([c0, c1, c2, c3]));
        let count = usize::from(u16::from_be_bytes([n0, n1]));
        if count == 0 || count > MAX_KEYS {
            return Err(HybridError::KeyRing("bad number of keys"));
        }
        let body = bytes.get(FIXED_LEN..).unwrap_or_default();
        if body.len() != count * ENTRY_LEN {
            return Err(HybridError::KeyRing("length does not match the number of keys"));
        }
        let mut keys: Vec<RingKey> = Vec::with_capacity(count);
        for entry in body.chunks_exact(ENTRY_LEN) {
            let (id, rest) = entry.split_at(4);
            let (created, seed) = rest.split_at(8);
            let id = KeyId(u32::from_be_bytes(id.try_into().map_err(|_| HybridError::KeyRing("bad entry"))?));
            if keys.last().is_some_and(|k| k.id.0 >= id.0) {
                return Err(HybridError::KeyRing("key ids not strictly increasing"));
            }
            let created =
                u64::from_be_bytes(created.try_into().map_err(|_| HybridError::KeyRing("bad entry"))?);
            keys.push(RingKey { id, created, secret: SecretKey::from_bytes(seed)? });
        }
        match keys.pop() {
            Some(newest) if newest.id == current => Ok(Self { older: keys, current: newest }),
            _ => Err(HybridError::KeyRing("the current key is not the newest key")),
        }
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing").field("current", &self.current).field("older", &self.older).finish()
    }
}

/// Seconds since the Unix epoch (0 before it).
fn unix(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use std::time::Duration;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn rotate_retire_and_round_trip() {
        let rng = SystemRandom::new();
        let mut ring = KeyRing::generate(&rng, at(100)).unwrap();
        let one = ring.seal(&rng, b"", b"", b"one").unwrap();
        assert_eq!(ring.rotate(&rng, at(200)).unwrap(), KeyId(2));
        let two = ring.seal(&rng, b"", b"", b"two").unwrap();
        assert_eq!(Header::parse(&two).unwrap().key_id, KeyId(2));
        let loaded = KeyRing::from_bytes(&ring.to_bytes()).unwrap();
        assert_eq!(loaded.to_bytes(), ring.to_bytes());
        assert_eq!(&*loaded.open(&one, b"", b"").unwrap(), b"one");
        assert_eq!(&*loaded.open(&two, b"", b"").unwrap(), b"two");
        assert_eq!(
            ring.retire(KeyId(2)).unwrap_err(),
            HybridError::KeyRing("the current key cannot be retired")
        );
        assert_eq!(ring.retire(KeyId(9)).unwrap_err(), HybridError::UnknownKeyId(KeyId(9)));
        assert_eq!(ring.retire_created_before(at(150)), 1);
        assert_eq!(ring.open(&one, b"", b"").unwrap_err(), HybridError::UnknownKeyId(KeyId(1)));
        assert_eq!(ring.rotate(&rng, at(300)).unwrap(), KeyId(3));
    }

    #[test]
    fn malformed_rings_are_refused() {
        let rng = SystemRandom::new();
        let mut ring = KeyRing::generate(&rng, at(1)).unwrap();
        ring.rotate(&rng, at(2)).unwrap();
        let good = ring.to_bytes().to_vec();
        for len in 0..good.len() {
            assert!(KeyRing::from_bytes(&good[..len]).is_err(), "len {len}");
        }
        let mut long = good.clone();
        long.push(0);
        assert!(KeyRing::from_bytes(&long).is_err());
        let mut bad_current = good.clone();
        bad_current[8] = 7;
        assert_eq!(
            KeyRing::from_bytes(&bad_current).unwrap_err(),
            HybridError::KeyRing("the current key is not the newest key")
        );
        let mut same_ids = good.clone();
        same_ids[FIXED_LEN + ENTRY_LEN + 3] = 1;
        assert!(KeyRing::from_bytes(&same_ids).is_err());
        let mut magic = good;
        magic[0] = b'X';
        assert!(KeyRing::from_bytes(&magic).is_err());
    }

    #[test]
    fn debug_shows_no_secrets() {
        let ring = KeyRing::generate(&SystemRandom::new(), at(5)).unwrap();
        let seed = ring.current().secret().to_bytes();
        let text = format!("{ring:?}");
        let hex: String = seed.iter().take(4).map(|b| format!("{b:02x}")).collect();
        assert!(!text.contains(&hex), "{text}");
    }
}
