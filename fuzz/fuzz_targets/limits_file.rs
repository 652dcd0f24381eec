//! The limits-file parser (`postern::access::limits`) on arbitrary text: it never panics,
//! errors name a line that exists, an accepted file applies onto an `AdmissionConfig`, and
//! the admission built from it decides about a few clients without panicking.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use postern::access::admission::{Admission, AdmissionConfig};
use postern::access::limits::{Limits, LimitsError};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines = text.lines().count();
    match Limits::parse(&text) {
        Err(e) => {
            let line = match e {
                LimitsError::MissingEquals { line }
                | LimitsError::UnknownSetting { line, .. }
                | LimitsError::InvalidValue { line, .. }
                | LimitsError::Duplicate { line, .. }
                | LimitsError::LineTooLong { line } => line,
                _ => return,
            };
            assert!((1..=lines).contains(&line), "{e} of {lines} lines");
        }
        Ok(limits) => {
            for (line, net, _) in &limits.networks {
                assert!((1..=lines).contains(line));
                assert_eq!(net.trunc(), *net);
            }
            let mut config = AdmissionConfig::new(1);
            config.table_capacity = 64;
            if limits.apply_to(&mut config).is_ok() {
                // A fuzzed table capacity could be huge: keep the allocation small.
                config.table_capacity = config.table_capacity.min(1024);
                #[allow(clippy::disallowed_methods)]
                let now = Instant::now();
                let mut admission = Admission::new(config, now);
                for (i, peer) in ["192.0.2.1", "10.0.0.1", "2001:db8::1", "::ffff:10.1.2.3"].iter().enumerate() {
                    let peer = peer.parse().expect("an address");
                    let later = now + Duration::from_millis(i as u64 * 700);
                    let _ = admission.admit(peer, 25, later);
                    let _ = admission.admit(peer, 587, later);
                    let _ = admission.check_rcpt(peer, Some("user"), later);
                    let _ = admission.check_message(peer, None, later);
                    let _ = admission.record_violation(peer, later);
                }
            }
        }
    }
});
