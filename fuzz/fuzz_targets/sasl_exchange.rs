//! `sasl::Exchange` for every mechanism on arbitrary client responses: the first byte
//! picks the mechanism, the rest is split at `\n` into the initial response (an empty
//! first piece means none) and the following response lines, alternately decoded from
//! base64 (`respond_line`) and taken raw (`respond`). Never panics, and never
//! authenticates against secrets the input cannot know.
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use postern::sasl::{
    Channel, Config, CredentialStore, Exchange, Mechanism, PasswordHash, ScramSecret, SharedSecret, Step,
};

struct Store {
    hash: PasswordHash,
    scram: ScramSecret,
}

impl CredentialStore for Store {
    fn password(&self, _: &str) -> Option<PasswordHash> {
        Some(self.hash.clone())
    }
    fn scram_sha256(&self, _: &str) -> Option<ScramSecret> {
        Some(self.scram.clone())
    }
    fn shared_secret(&self, _: &str) -> Option<SharedSecret> {
        Some(SharedSecret::new("fuzz-unguessable-shared-secret"))
    }
}

fn setup() -> &'static (Arc<Config>, Store) {
    static S: OnceLock<(Arc<Config>, Store)> = OnceLock::new();
    S.get_or_init(|| {
        let rng = ring::rand::SystemRandom::new();
        let mut config = Config::new(&rng).unwrap().with_dummy_iterations(1).unwrap();
        config.mechanisms = Mechanism::ALL.to_vec();
        config.max_response = 2048;
        let store = Store {
            hash: PasswordHash::with_salt(b"fuzz-unguessable", b"saltsalt", 1).unwrap(),
            scram: ScramSecret::with_salt(b"fuzz-unguessable", b"saltsalt", 4096).unwrap(),
        };
        (Arc::new(config), store)
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else { return };
    let mechanism = Mechanism::ALL[usize::from(selector) % Mechanism::ALL.len()];
    let (config, store) = setup();
    let channel = Channel::default().with_tls_exporter([7; 32]).with_peer_identity("CN=fuzz");
    let mut x = Exchange::with_nonce(mechanism, Arc::clone(config), channel, "fuzznonce").unwrap();
    let mut pieces = rest.split(|b| *b == b'\n');
    let initial = pieces.next().filter(|p| !p.is_empty());
    let mut steps = vec![x.start(initial, store)];
    for (i, piece) in pieces.take(8).enumerate() {
        steps.push(if i % 2 == 0 { x.respond_line(piece, store) } else { x.respond(piece, store) });
    }
    for step in steps {
        assert!(!matches!(step, Step::Success(_) | Step::SecondFactor { .. }), "{mechanism:?}: {step:?}");
    }
});
