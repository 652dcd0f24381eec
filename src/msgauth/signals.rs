//! Signals a receiver can act on: DKIM replay (RFC 6376 §8.6) and From spoofing.
//!
//! These are observations, not verdicts: the application decides what to do (score,
//! quarantine, rate-limit the signature).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use ring::digest;

use super::results::{AuthResult, DkimVerdict};

/// A DKIM replay signal.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplaySignal {
    /// The same signature (`d=`, `s=`, `b=`) arrived from this many distinct sending
    /// addresses (IPv6 counted per /64) within the window.
    ManySources {
        /// `d=`
        domain: String,
        /// `s=`
        selector: String,
        /// Distinct sources seen in the window (capped at the threshold).
        sources: usize,
    },
    /// The same signature was addressed to this many distinct recipients within the window.
    ManyRecipients {
        /// `d=`
        domain: String,
        /// `s=`
        selector: String,
        /// Distinct recipients seen in the window (capped at the threshold).
        recipients: usize,
    },
    /// The signature covers too few header fields: From not oversigned, or one of
    /// Subject/To/Date missing from `h=`, so a replayer may add or swap them.
    WeakHeaderCoverage {
        /// `d=`
        domain: String,
        /// From is signed as many times as it occurs, not once more.
        from_not_oversigned: bool,
        /// Fields among Subject, To, Date that `h=` does not list.
        missing: Vec<String>,
    },
    /// `l=` limits the signed body and content follows the signed part.
    UnsignedBodyContent {
        /// `d=`
        domain: String,
        /// `l=`
        signed: u64,
        /// The body's length in bytes (as received).
        body: u64,
    },
    /// `x=` is at or before the check's time.
    Expired {
        /// `d=`
        domain: String,
        /// `x=` (seconds since the Unix epoch)
        expiration: u64,
    },
}

/// Replay tracking bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayConfig {
    /// How long a signature's sightings count.
    pub window: Duration,
    /// Distinct sources at which [`ReplaySignal::ManySources`] fires.
    pub max_sources: usize,
    /// Distinct recipients at which [`ReplaySignal::ManyRecipients`] fires.
    pub max_recipients: usize,
    /// Signatures remembered at most (the oldest is forgotten first).
    pub capacity: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            window: Duration::from_secs(3600),
            max_sources: 4,
            max_recipients: 100,
            capacity: 50_000,
        }
    }
}

type Fingerprint = [u8; 16];

fn fingerprint(parts: &[&[u8]]) -> Fingerprint {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in parts {
        ctx.update(&(p.len() as u64).to_be_bytes());
        ctx.update(p);
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(ctx.finish().as_ref().get(..16).unwrap_or(&[0u8; 16]));
    out
}

#[derive(Debug)]
struct Sightings {
    since: Instant,
    sources: Vec<Fingerprint>,
    recipients: Vec<Fingerprint>,
}

/// Counts where each passing DKIM signature is seen from, in a table of bounded size.
///
/// ```
/// use std::time::Instant;
/// use postern::msgauth::{ReplayConfig, ReplayDetector};
/// let mut replay = ReplayDetector::new(ReplayConfig::default());
/// let now = Instant::now();
/// // Normally called with each passing DkimVerdict; here the raw (d, s, b).
/// for i in 1..=3u8 {
///     let ip = std::net::IpAddr::from([192, 0, 2, i]);
///     assert!(replay.observe_raw("example.org", "s1", b"sig", ip, &["bob@example.net"], now).is_empty());
/// }
/// let ip = std::net::IpAddr::from([198, 51, 100, 9]);
/// assert!(!replay.observe_raw("example.org", "s1", b"sig", ip, &["bob@example.net"], now).is_empty());
/// ```
#[derive(Debug)]
pub struct ReplayDetector {
    config: ReplayConfig,
    table: HashMap<Fingerprint, Sightings>,
    order: VecDeque<(Fingerprint, Instant)>,
}

impl ReplayDetector {
    /// An empty detector.
    #[must_use]
    pub fn new(config: ReplayConfig) -> Self {
        let config = ReplayConfig { capacity: config.capacity.max(1), ..config };
        ReplayDetector { config, table: HashMap::new(), order: VecDeque::new() }
    }

    /// Signatures currently remembered (at most the configured capacity).
    #[must_use]
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// `true` when nothing is remembered.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Records a message carrying the signature `dkim` (only passing signatures count:
    /// a failing one proves nothing) from `source` to `recipients`, at `now`.
    pub fn observe(
        &mut self,
        dkim: &DkimVerdict,
        source: IpAddr,
        recipients: &[&str],
        now: Instant,
    ) -> Vec<ReplaySignal> {
        if dkim.result != AuthResult::Pass {
            return Vec::new();
        }
        self.observe_raw(&dkim.domain, &dkim.selector, &dkim.b, source, recipients, now)
    }

    /// [`ReplayDetector::observe`] with the signature's `d=`, `s=` and `b=` given directly.
    pub fn observe_raw(
        &mut self,
        domain: &str,
        selector: &str,
        b: &[u8],
        source: IpAddr,
        recipients: &[&str],
        now: Instant,
    ) -> Vec<ReplaySignal> {
        let key = fingerprint(&[domain.to_ascii_lowercase().as_bytes(), selector.as_bytes(), b]);
        let window = self.config.window;
        let expired = self.table.get(&key).is_some_and(|s| now.saturating_duration_since(s.since) > window);
        if expired {
            self.table.remove(&key);
        }
        if !self.table.contains_key(&key) {
            while self.table.len() >= self.config.capacity {
                match self.order.pop_front() {
                    Some((old, since)) => {
                        if self.table.get(&old).is_some_and(|s| s.since == since) {
                            self.table.remove(&old);
                        }
                    }
                    None => break,
                }
            }
            self.table.insert(key, Sightings { since: now, sources: Vec::new(), recipients: Vec::new() });
            self.order.push_back((key, now));
            // Stale queue entries (signatures reset after their window) are skipped above;
            // keep the queue bounded by dropping them, never a live record's entry (which
            // eviction could then no longer reach). After this the queue holds at most
            // `capacity` entries, so the O(n) pass runs once per `capacity` insertions.
            if self.order.len() > self.config.capacity.saturating_mul(2) {
                let table = &self.table;
                self.order.retain(|(k, since)| table.get(k).is_some_and(|s| s.since == *since));
            }
        }
        let (max_sources, max_recipients) = (self.config.max_sources, self.config.max_recipients);
        let Some(entry) = self.table.get_mut(&key) else { return Vec::new() };
        let src = match source {
            IpAddr::V4(v4) => fingerprint(&[&v4.octets()]),
            IpAddr::V6(v6) => fingerprint(&[v6.octets().get(..8).unwrap_or(&[])]),
        };
        if entry.sources.len() < max_sources && !entry.sources.contains(&src) {
            entry.sources.push(src);
        }
        for r in recipients {
            if entry.recipients.len() >= max_recipients {
                break;
            }
            let fp = fingerprint(&[r.to_ascii_lowercase().as_bytes()]);
            if !entry.recipients.contains(&fp) {
                entry.recipients.push(fp);
            }
        }
        let mut signals = Vec::new();
        if entry.sources.len() >= max_sources {
            signals.push(ReplaySignal::ManySources {
                domain: domain.to_ascii_lowercase(),
                selector: selector.to_owned(),
                sources: entry.sources.len(),
            });
        }
        if entry.recipients.len() >= max_recipients {
            signals.push(ReplaySignal::ManyRecipients {
                domain: domain.to_ascii_lowercase(),
                selector: selector.to_owned(),
                recipients: entry.recipients.len(),
            });
        }
        signals
    }
}

/// The header block and body of `message` (split at the first empty line).
fn split_message(message: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memmem::find(message, b"\r\n\r\n") {
        Some(i) => (message.get(..i + 2).unwrap_or(message), message.get(i + 4..).unwrap_or(&[])),
        None => (message, &[]),
    }
}

fn count_header(headers: &[u8], name: &str) -> usize {
    headers
        .split(|&b| b == b'\n')
        .filter(|line| {
            line.iter()
                .position(|&b| b == b':')
                .is_some_and(|i| line.get(..i).is_some_and(|n| n.eq_ignore_ascii_case(name.as_bytes())))
        })
        .count()
}

/// Signature-coverage signals for one DKIM signature of `message` (as received): weak
/// header coverage, `l=` with content after the signed part, and expiry.
///
/// `l=` is compared with the body as received; the signed length is measured after
/// canonicalization, so only content beyond `l=` plus trailing blank lines counts.
#[must_use]
pub fn coverage_signals(dkim: &DkimVerdict, message: &[u8]) -> Vec<ReplaySignal> {
    let mut out = Vec::new();
    if dkim.domain.is_empty() {
        return out;
    }
    let (headers, body) = split_message(message);
    let signed =
        |name: &str| dkim.signed_headers.iter().filter(|h| h.trim().eq_ignore_ascii_case(name)).count();
    let from_not_oversigned = signed("from") <= count_header(headers, "from");
    let missing: Vec<String> =
        ["Subject", "To", "Date"].iter().filter(|h| signed(h) == 0).map(|h| (*h).to_owned()).collect();
    if from_not_oversigned || !missing.is_empty() {
        out.push(ReplaySignal::WeakHeaderCoverage {
            domain: dkim.domain.clone(),
            from_not_oversigned,
            missing,
        });
    }
    if let Some(l) = dkim.body_length {
        let mut trimmed = body;
        while let Some(rest) = trimmed.strip_suffix(b"\r\n") {
            trimmed = rest;
        }
        let body_len = trimmed.len() as u64 + 2;
        if body_len > l {
            out.push(ReplaySignal::UnsignedBodyContent {
                domain: dkim.domain.clone(),
                signed: l,
                body: body.len() as u64,
            });
        }
    }
    if dkim.expired {
        out.push(ReplaySignal::Expired { domain: dkim.domain.clone(), expiration: dkim.expiration });
    }
    out
}

/// A From-spoofing signal.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpoofSignal {
    /// The From display name names an internal domain (or an address there) while the
    /// address itself is outside.
    DisplayNameSpoof {
        /// The display name.
        display_name: String,
        /// The internal domain it names.
        internal: String,
        /// The actual From address.
        address: String,
    },
    /// The Return-Path (or MAIL FROM) domain is not aligned with the From domain.
    ReturnPathMisaligned {
        /// From domain.
        from: String,
        /// Return-Path domain.
        return_path: String,
    },
    /// The Reply-To domain is not aligned with the From domain.
    ReplyToMisaligned {
        /// From domain.
        from: String,
        /// Reply-To domain.
        reply_to: String,
    },
    /// A domain in From, Reply-To or Return-Path looks like a protected domain without
    /// being it (confusable characters, IDN homograph, mixed scripts).
    LookAlike {
        /// The domain seen (as Unicode when it was an IDN).
        domain: String,
        /// The protected domain it resembles.
        resembles: String,
    },
}

/// The registrable domain by a heuristic (the last two labels, three under a two-letter
/// country code with a short second level such as `co.uk`); no public-suffix list.
///
/// ```
/// use postern::msgauth::registrable_domain;
/// assert_eq!(registrable_domain("mail.Example.ORG."), "example.org");
/// assert_eq!(registrable_domain("a.b.example.co.uk"), "example.co.uk");
/// ```
#[must_use]
pub fn registrable_domain(domain: &str) -> String {
    let domain = domain.trim_end_matches('.').to_lowercase();
    let labels: Vec<&str> = domain.split('.').filter(|l| !l.is_empty()).collect();
    let n = labels.len();
    let take = match (labels.get(n.wrapping_sub(1)), labels.get(n.wrapping_sub(2))) {
        (Some(tld), Some(sld)) if n >= 3 && tld.len() == 2 && sld.len() <= 3 => 3,
        _ => 2,
    };
    labels.get(n.saturating_sub(take)..).map(|l| l.join(".")).unwrap_or_default()
}

fn domain_of(address: &str) -> Option<String> {
    let (_, d) = address.trim().trim_matches(|c| c == '<' || c == '>').rsplit_once('@')?;
    let d = d.trim().trim_end_matches('.').to_lowercase();
    (!d.is_empty()).then_some(d)
}

/// Confusable skeleton of one character (a small table of the common Latin look-alikes
/// from Cyrillic, Greek and digits, after Unicode TR39's idea).
fn skeleton_char(c: char) -> &'static str {
    match c {
        'а' | 'α' | 'ɑ' => "a",
        'Ь' | 'ь' | 'в' => "b",
        'с' | 'ϲ' => "c",
        'ԁ' => "d",
        'е' | 'ε' | 'ё' => "e",
        'ɡ' => "g",
        'һ' => "h",
        'і' | 'ι' | 'ı' | 'l' | '1' | '|' | 'ӏ' | 'ɩ' => "l",
        'ј' => "j",
        'к' | 'κ' => "k",
        'м' => "m",
        'п' | 'η' => "n",
        'о' | 'ο' | '0' | 'σ' => "o",
        'р' | 'ρ' => "p",
        'ԛ' => "q",
        'г' => "r",
        'ѕ' | '5' => "s",
        'т' | 'τ' => "t",
        'υ' | 'ս' => "u",
        'ν' | 'ѵ' => "v",
        'ԝ' | 'ω' => "w",
        'х' | 'χ' => "x",
        'у' | 'ү' | 'γ' => "y",
        'ᴢ' => "z",
        _ => "",
    }
}

/// The confusable skeleton of a domain: Unicode form, look-alike characters mapped to
/// Latin, `rn` → `m`, `vv` → `w`, `i` → `l`.
fn skeleton(domain: &str) -> String {
    let (unicode, _) = idna::domain_to_unicode(domain);
    let mut out = String::with_capacity(unicode.len());
    for c in unicode.to_lowercase().chars() {
        let mapped = skeleton_char(c);
        if !mapped.is_empty() {
            out.push_str(mapped);
        } else if c == 'i' {
            out.push('l');
        } else {
            out.push(c);
        }
    }
    out.replace("rn", "m").replace("vv", "w")
}

fn mixed_script(domain: &str) -> bool {
    let (unicode, _) = idna::domain_to_unicode(domain);
    unicode.split('.').any(|label| {
        let latin = label.chars().any(|c| c.is_ascii_alphabetic());
        let other = label.chars().any(|c| c.is_alphabetic() && !c.is_ascii());
        latin && other
    })
}

/// From-spoofing signals for `message` (as received) with envelope `mail_from`.
/// `internal` are the receiver's own domains; `protected` are domains whose look-alikes
/// should be flagged (usually the internal ones and important partners).
#[must_use]
pub fn spoof_signals(
    message: &[u8],
    mail_from: &str,
    internal: &[&str],
    protected: &[&str],
) -> Vec<SpoofSignal> {
    let mut out = Vec::new();
    let (headers, _) = split_message(message);
    let Some(parsed) = mail_parser::MessageParser::default().parse_headers(headers) else { return out };
    let from = parsed.from().and_then(|a| a.first());
    let from_addr = from.and_then(|a| a.address()).unwrap_or_default().to_owned();
    let Some(from_domain) = domain_of(&from_addr) else { return out };
    let is_internal = |d: &str| {
        internal.iter().any(|i| {
            let i = i.trim_end_matches('.').to_lowercase();
            d == i || d.ends_with(&format!(".{i}"))
        })
    };
    // Display name spoofing.
    if let Some(name) = from.and_then(|a| a.name())
        && !is_internal(&from_domain)
    {
        let lower = name.to_lowercase();
        if let Some(hit) = internal.iter().find(|i| {
            let i = i.trim_end_matches('.').to_lowercase();
            !i.is_empty() && lower.contains(&i)
        }) {
            out.push(SpoofSignal::DisplayNameSpoof {
                display_name: name.to_owned(),
                internal: hit.to_lowercase(),
                address: from_addr.clone(),
            });
        }
    }
    let org = registrable_domain(&from_domain);
    let return_path = parsed
        .return_path()
        .as_text()
        .map(str::to_owned)
        .or_else(|| (!mail_from.is_empty()).then(|| mail_from.to_owned()));
    let rp_domain = return_path.as_deref().and_then(domain_of);
    if let Some(rp) = &rp_domain
        && registrable_domain(rp) != org
    {
        out.push(SpoofSignal::ReturnPathMisaligned { from: from_domain.clone(), return_path: rp.clone() });
    }
    let reply_domain =
        parsed.reply_to().and_then(|a| a.first()).and_then(|a| a.address()).and_then(domain_of);
    if let Some(rt) = &reply_domain
        && registrable_domain(rt) != org
    {
        out.push(SpoofSignal::ReplyToMisaligned { from: from_domain.clone(), reply_to: rt.clone() });
    }
    let mut seen = Vec::new();
    for d in [Some(from_domain), reply_domain, rp_domain].into_iter().flatten() {
        if seen.contains(&d) {
            continue;
        }
        let sk = skeleton(&registrable_domain(&d));
        for p in protected {
            let p = p.trim_end_matches('.').to_lowercase();
            if registrable_domain(&d) == registrable_domain(&p) {
                continue;
            }
            let resembles = sk == skeleton(&registrable_domain(&p))
                || (mixed_script(&d) && skeleton(&d).contains(&skeleton(&p)));
            if resembles {
                let (shown, _) = idna::domain_to_unicode(&d);
                out.push(SpoofSignal::LookAlike { domain: shown, resembles: p.clone() });
            }
        }
        seen.push(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skeletons_catch_homographs() {
        assert_eq!(skeleton("exаmple.org"), skeleton("example.org")); // Cyrillic а
        assert_eq!(skeleton("xn--exmple-4nf.org"), skeleton("exаmple.org"));
        assert_eq!(skeleton("paypa1.com"), skeleton("paypal.com"));
        assert_eq!(skeleton("rnicrosoft.com"), skeleton("microsoft.com"));
        assert_ne!(skeleton("example.net"), skeleton("example.org"));
        assert!(mixed_script("exаmple.org"));
        assert!(!mixed_script("example.org"));
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // the base of a virtual clock
    fn replay_table_stays_bounded_and_resets_after_window() {
        let cfg = ReplayConfig { capacity: 10, max_sources: 2, ..ReplayConfig::default() };
        let mut r = ReplayDetector::new(cfg);
        let now = Instant::now();
        for i in 0..100u32 {
            let b = i.to_be_bytes();
            r.observe_raw("d.example", "s", &b, IpAddr::from([10, 0, 0, 1]), &[], now);
            assert!(r.len() <= 10);
        }
        let ip = |n| IpAddr::from([10, 0, 0, n]);
        assert!(r.observe_raw("x.example", "s", b"b", ip(1), &[], now).is_empty());
        assert!(!r.observe_raw("x.example", "s", b"b", ip(2), &[], now).is_empty());
        let later = now + Duration::from_secs(7200);
        assert!(r.observe_raw("x.example", "s", b"b", ip(3), &[], later).is_empty());
    }

    /// Signatures seen again after their window leave stale entries in the eviction queue;
    /// trimming that queue must never leave live records that eviction can no longer reach,
    /// so the table stays within its capacity whatever the sequence.
    #[test]
    #[allow(clippy::disallowed_methods)] // the base of a virtual clock
    fn capacity_holds_when_stale_queue_entries_are_trimmed() {
        let cfg = ReplayConfig { capacity: 4, window: Duration::from_secs(10), ..ReplayConfig::default() };
        let mut r = ReplayDetector::new(cfg);
        let start = Instant::now();
        let ip = IpAddr::from([10, 0, 0, 1]);
        // Directed: one signature seen once, then another seen again after every window
        // until the queue is trimmed; the first must stay reachable.
        r.observe_raw("d.example", "s", b"first", ip, &[], start);
        for n in 1..12u64 {
            r.observe_raw("d.example", "s", b"again", ip, &[], start + Duration::from_secs(n * 11));
        }
        for (key, sightings) in &r.table {
            assert!(r.order.contains(&(*key, sightings.since)), "orphaned record after the trim");
        }
        let mut state = 7u32;
        for step in 0..5000u64 {
            // A small set of signatures, revisited after their window again and again,
            // interleaved with fresh ones.
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let sig = if step % 3 == 0 { state % 1000 } else { state % 6 };
            let now = start + Duration::from_secs(step * 4);
            r.observe_raw("d.example", "s", &sig.to_be_bytes(), ip, &[], now);
            assert!(r.len() <= 4, "{} records at step {step}", r.len());
            assert!(r.order.len() <= 8);
            // Every live record can still be reached by eviction.
            for (key, sightings) in &r.table {
                assert!(r.order.contains(&(*key, sightings.since)), "orphaned record at step {step}");
            }
        }
    }
}
