//! Message authentication in the gateway, on `postern::msgauth`.
//!
//! On `--smtp` every message is held in memory until the end of DATA, verified (SPF for
//! HELO and MAIL FROM, DKIM, ARC, DMARC), and then:
//! - DMARC disposition reject: `550 5.7.1` naming the policy domain, nothing delivered;
//! - quarantine: delivered into each recipient's Junk folder (Maildir++ `.Junk/`);
//! - otherwise delivered to the inbox;
//!
//! always with `Authentication-Results:` right after the gateway's `Received:`.
//! On submission (`--submission`, `--smtps`), mail from an authenticated user is DKIM-signed
//! with `--dkim-key` / `--dkim-selector` (domain `--dkim-domain`, default the first
//! `--domain`).
//!
//! DNS comes from `--dns-zone FILE` (a zone-like text file) or, without it, from the first
//! `nameserver` in /etc/resolv.conf over UDP (one packet per query, no TCP fallback: a
//! truncated answer counts as a temporary failure). The library never does I/O: the loop
//! here answers the queries each check asks for.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use postern::msgauth::{
    CheckInput, Disposition, DnsAnswer, DnsQuery, Progress, Record, RecordType, ReplayConfig, ReplayDetector,
    ReplaySignal, Signer, SpoofSignal, Verdict, Verifier, coverage_signals, spoof_signals,
};
use postern::smtp::{EnhancedStatus, Reply};

use crate::log::Log;
use crate::maildir::{Maildir, Unique};

/// `--msgauth`, `--dns-zone`, `--dns-server`, `--dkim-key`, `--dkim-selector`, `--dkim-domain`.
#[derive(Clone, Debug)]
pub(crate) struct Options {
    /// Verify mail on `--smtp` (`--msgauth on|off`, default on).
    pub(crate) enabled: bool,
    pub(crate) dns_zone: Option<PathBuf>,
    pub(crate) dns_server: Option<SocketAddr>,
    pub(crate) dkim_key: Option<PathBuf>,
    pub(crate) dkim_selector: Option<String>,
    pub(crate) dkim_domain: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            enabled: true,
            dns_zone: None,
            dns_server: None,
            dkim_key: None,
            dkim_selector: None,
            dkim_domain: None,
        }
    }
}

/// The flags this module owns, for `cli.rs`.
pub(crate) const FLAGS: &[&str] =
    &["--msgauth", "--dns-zone", "--dns-server", "--dkim-key", "--dkim-selector", "--dkim-domain"];

/// The help text for these flags.
pub(crate) const USAGE: &str = "

MESSAGE AUTHENTICATION (SPF, DKIM, DMARC, ARC):
    --msgauth on|off           verify every message on --smtp at the end of DATA and add
                               Authentication-Results; DMARC reject: 550 5.7.1, quarantine:
                               the recipient's Junk folder (DIR/<name>/.Junk/) [default: on]
    --dns-zone FILE            answer DNS from FILE (lines `name TYPE value` with TYPE one
                               of TXT, A, AAAA, MX, PTR; `#` comments) instead of the network
    --dns-server IP:PORT       the resolver for real lookups [default: the first nameserver
                               in /etc/resolv.conf]
    --dkim-key PEM             DKIM-sign mail submitted by authenticated users with this key
                               (RSA or Ed25519, PKCS#8 or PKCS#1 PEM)
    --dkim-selector S          the selector for --dkim-key (required with it)
    --dkim-domain D            the signing domain [default: the first --domain]
";

impl Options {
    /// Takes one of [`FLAGS`].
    pub(crate) fn set(&mut self, name: &str, value: String) -> Result<(), String> {
        match name {
            "--msgauth" => {
                self.enabled = match value.as_str() {
                    "on" => true,
                    "off" => false,
                    other => return Err(format!("--msgauth {other:?}: want on or off")),
                }
            }
            "--dns-zone" => self.dns_zone = Some(PathBuf::from(value)),
            "--dns-server" => {
                self.dns_server =
                    Some(value.parse().map_err(|e| format!("--dns-server {value}: {e} (want IP:PORT)"))?)
            }
            "--dkim-key" => self.dkim_key = Some(PathBuf::from(value)),
            "--dkim-selector" => self.dkim_selector = Some(value),
            "--dkim-domain" => self.dkim_domain = Some(value.trim_end_matches('.').to_ascii_lowercase()),
            other => return Err(format!("unknown argument {other:?}")),
        }
        Ok(())
    }
}

/// A zone in memory, from `--dns-zone`.
#[derive(Debug, Default)]
pub(crate) struct Zone {
    records: HashMap<(String, RecordType), Vec<Record>>,
}

impl Zone {
    /// Parses the zone file text; errors name the line.
    pub(crate) fn parse(text: &str) -> Result<Zone, String> {
        let mut zone = Zone::default();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |why: &str| format!("line {}: {why}: {raw:?}", i + 1);
            let mut parts = line.splitn(3, char::is_whitespace);
            let (Some(name), Some(rtype), Some(value)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(err("want `name TYPE value`"));
            };
            let value = value.trim();
            let (name, rtype, record) = match rtype.to_ascii_uppercase().as_str() {
                "TXT" => (name.to_owned(), RecordType::Txt, Record::Txt(txt_value(value))),
                "A" => {
                    (name.to_owned(), RecordType::A, Record::A(value.parse().map_err(|_| err("bad IPv4"))?))
                }
                "AAAA" => (
                    name.to_owned(),
                    RecordType::Aaaa,
                    Record::Aaaa(value.parse().map_err(|_| err("bad IPv6"))?),
                ),
                "MX" => {
                    let (pref, host) =
                        value.split_once(char::is_whitespace).ok_or_else(|| err("want `MX pref host`"))?;
                    let preference = pref.parse().map_err(|_| err("bad MX preference"))?;
                    (
                        name.to_owned(),
                        RecordType::Mx,
                        Record::Mx { preference, exchange: host.trim().to_owned() },
                    )
                }
                "PTR" => {
                    // The owner may be written as the address itself.
                    let owner = match name.parse::<IpAddr>() {
                        Ok(ip) => DnsQuery::ptr(ip).name,
                        Err(_) => name.to_owned(),
                    };
                    (owner, RecordType::Ptr, Record::Ptr(value.to_owned()))
                }
                _ => return Err(err("unknown type (want TXT, A, AAAA, MX or PTR)")),
            };
            let key = (DnsQuery::new(&name, rtype).name, rtype);
            zone.records.entry(key).or_default().push(record);
        }
        Ok(zone)
    }

    fn resolve(&self, q: &DnsQuery) -> DnsAnswer {
        if let Some(records) = self.records.get(&(q.name.clone(), q.rtype)) {
            return DnsAnswer::Records(records.clone());
        }
        if self.records.keys().any(|(n, _)| *n == q.name) {
            DnsAnswer::Records(Vec::new())
        } else {
            DnsAnswer::NxDomain
        }
    }
}

/// A TXT value: one or more `"quoted"` strings concatenated, or the bare text.
fn txt_value(v: &str) -> String {
    if !v.starts_with('"') {
        return v.to_owned();
    }
    let mut out = String::new();
    let mut in_quotes = false;
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        match (c, in_quotes) {
            ('"', _) => in_quotes = !in_quotes,
            ('\\', true) => out.extend(chars.next()),
            (c, true) => out.push(c),
            _ => {}
        }
    }
    out
}

/// Where answers come from.
#[derive(Debug)]
enum Dns {
    Zone(Zone),
    Udp(Option<SocketAddr>),
}

impl Dns {
    fn resolve(&self, q: &DnsQuery) -> DnsAnswer {
        match self {
            Dns::Zone(zone) => zone.resolve(q),
            Dns::Udp(Some(server)) => udp_query(*server, q).unwrap_or(DnsAnswer::ServFail),
            Dns::Udp(None) => DnsAnswer::ServFail,
        }
    }
}

/// One query over UDP with hickory-proto's message codec (in the tree through mail-auth).
fn udp_query(server: SocketAddr, q: &DnsQuery) -> io::Result<DnsAnswer> {
    use mail_auth::hickory_resolver::proto::op::{Message, Query, ResponseCode};
    use mail_auth::hickory_resolver::proto::rr::{Name, RData, RecordType as T};
    let other = |e: &dyn std::fmt::Display| io::Error::other(e.to_string());
    let rtype = match q.rtype {
        RecordType::Txt => T::TXT,
        RecordType::A => T::A,
        RecordType::Aaaa => T::AAAA,
        RecordType::Mx => T::MX,
        _ => T::PTR,
    };
    let name = Name::from_ascii(&q.name).map_err(|e| other(&e))?;
    let mut msg = Message::query();
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(name, rtype));
    let id = msg.metadata.id;
    let wire = msg.to_vec().map_err(|e| other(&e))?;
    let bind: SocketAddr =
        if server.is_ipv4() { (Ipv4Addr::UNSPECIFIED, 0).into() } else { (Ipv6Addr::UNSPECIFIED, 0).into() };
    let socket = UdpSocket::bind(bind)?;
    socket.set_read_timeout(Some(Duration::from_secs(2)))?;
    socket.connect(server)?;
    let mut buf = vec![0u8; 4096];
    for _ in 0..2 {
        socket.send(&wire)?;
        let Ok(n) = socket.recv(&mut buf) else { continue };
        let Ok(reply) = Message::from_vec(buf.get(..n).unwrap_or_default()) else { continue };
        if reply.metadata.id != id {
            continue;
        }
        if reply.metadata.truncation {
            return Ok(DnsAnswer::ServFail);
        }
        return Ok(match reply.metadata.response_code {
            ResponseCode::NXDomain => DnsAnswer::NxDomain,
            ResponseCode::NoError => DnsAnswer::Records(
                reply
                    .answers
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::TXT(t) => {
                            Some(Record::Txt(t.txt_data.iter().map(|s| String::from_utf8_lossy(s)).collect()))
                        }
                        RData::A(a) => Some(Record::A(a.0)),
                        RData::AAAA(a) => Some(Record::Aaaa(a.0)),
                        RData::MX(mx) => {
                            Some(Record::Mx { preference: mx.preference, exchange: mx.exchange.to_ascii() })
                        }
                        RData::PTR(p) => Some(Record::Ptr(p.0.to_ascii())),
                        _ => None,
                    })
                    .collect(),
            ),
            _ => DnsAnswer::ServFail,
        });
    }
    Ok(DnsAnswer::ServFail)
}

fn resolv_conf_server() -> Option<SocketAddr> {
    let text = fs::read_to_string("/etc/resolv.conf").ok()?;
    text.lines().find_map(|l| {
        let ip: IpAddr = l.trim().strip_prefix("nameserver")?.trim().parse().ok()?;
        Some(SocketAddr::new(ip, 53))
    })
}

/// The gateway's message-authentication state, shared by all connections.
#[derive(Debug)]
pub(crate) struct MsgAuth {
    enabled: bool,
    verifier: Verifier,
    dns: Dns,
    signer: Option<Signer>,
    /// The accepted domains: "internal" for display-name spoofing, and protected from
    /// look-alikes.
    domains: Vec<String>,
    /// DKIM signatures seen lately, to spot one replayed from many sources (bounded).
    replay: std::sync::Mutex<ReplayDetector>,
}

impl MsgAuth {
    /// Builds it from the options; errors are for the command line.
    pub(crate) fn new(options: &Options, hostname: &str, domains: &[String]) -> Result<MsgAuth, String> {
        let verifier = Verifier::new(hostname).map_err(|e| format!("--hostname {hostname:?}: {e}"))?;
        let dns = match &options.dns_zone {
            Some(path) => {
                let text =
                    fs::read_to_string(path).map_err(|e| format!("--dns-zone {}: {e}", path.display()))?;
                Dns::Zone(Zone::parse(&text).map_err(|e| format!("--dns-zone {}: {e}", path.display()))?)
            }
            None => Dns::Udp(options.dns_server.or_else(resolv_conf_server)),
        };
        let signer = match (&options.dkim_key, &options.dkim_selector) {
            (Some(key), Some(selector)) => {
                let pem =
                    fs::read_to_string(key).map_err(|e| format!("--dkim-key {}: {e}", key.display()))?;
                let domain = options
                    .dkim_domain
                    .clone()
                    .or_else(|| domains.first().cloned())
                    .ok_or("--dkim-key needs --dkim-domain or --domain")?;
                Some(
                    Signer::from_pem(&pem, &domain, selector)
                        .map_err(|e| format!("--dkim-key {}: {e}", key.display()))?,
                )
            }
            (None, None) => None,
            _ => return Err("--dkim-key and --dkim-selector go together".into()),
        };
        Ok(MsgAuth {
            enabled: options.enabled,
            verifier,
            dns,
            signer,
            domains: domains.to_vec(),
            replay: std::sync::Mutex::new(ReplayDetector::new(ReplayConfig::default())),
        })
    }

    /// Announces the setup in the log.
    pub(crate) fn describe(&self) -> String {
        let dns = match &self.dns {
            Dns::Zone(z) => format!("zone file ({} names)", z.records.len()),
            Dns::Udp(Some(s)) => format!("UDP resolver {s}"),
            Dns::Udp(None) => "no resolver (every lookup fails)".into(),
        };
        let signing = match &self.signer {
            Some(s) => format!("DKIM signing as d={} s={} ({:?})", s.domain(), s.selector(), s.algorithm()),
            None => "no DKIM signing".into(),
        };
        format!("message authentication {}, DNS: {dns}, {signing}", if self.enabled { "on" } else { "off" })
    }

    /// Whether a message on this port is held for [`MsgAuth::finish`]: verification on the
    /// MX port, signing on submission by an authenticated user.
    pub(crate) fn holds(&self, submission: bool, authenticated: bool) -> bool {
        if submission { authenticated && self.signer.is_some() } else { self.enabled }
    }

    fn verify(&self, peer: IpAddr, helo: &str, mail_from: &str, message: &[u8]) -> Verdict {
        // The DMARC pct= roll: uniform in 0..100 (ring's system random source).
        let roll = dmarc_roll();
        let input =
            CheckInput::new(peer, helo, mail_from, message.to_vec(), SystemTime::now()).with_dmarc_roll(roll);
        let mut check = self.verifier.start(input);
        loop {
            match check.poll() {
                Progress::Done(verdict) => return std::sync::Arc::unwrap_or_clone(verdict),
                Progress::NeedDns(queries) => {
                    for q in queries {
                        let answer = self.dns.resolve(&q);
                        // Oversized answers are recorded as SERVFAIL by the library.
                        let _ = check.answer(&q, answer);
                    }
                }
                _ => return fallback(&self.verifier, peer),
            }
        }
    }
}

/// Never reached (Progress is non_exhaustive): a verdict of nothing.
fn fallback(verifier: &Verifier, peer: IpAddr) -> Verdict {
    verifier
        .start(CheckInput::new(peer, "", "", Vec::new(), SystemTime::now()))
        .run_with(|_| DnsAnswer::ServFail)
}

/// A message held in memory until the end of DATA.
#[derive(Debug)]
pub(crate) struct Held {
    unique: Unique,
    received: String,
    mail_from: String,
    message: Vec<u8>,
}

impl Held {
    pub(crate) fn new(unique: Unique, received: String, mail_from: String) -> Held {
        Held { unique, received, mail_from, message: Vec::new() }
    }

    /// The queue id.
    pub(crate) fn id(&self) -> &str {
        &self.unique.id
    }

    /// Appends message bytes (the session enforces the size limit).
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.message.extend_from_slice(bytes);
    }
}

/// What the end of DATA became.
pub(crate) struct Outcome {
    pub(crate) reply: Reply,
    pub(crate) delivered: bool,
}

/// Verifies (MX port) or signs (submission) the held message, then delivers or refuses it.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish(
    auth: &MsgAuth,
    maildir: &Maildir,
    log: Log,
    held: Held,
    mailboxes: &[String],
    peer: IpAddr,
    helo: &str,
    submission: bool,
) -> Outcome {
    let Held { unique, received, mail_from, message } = held;
    let mut prefix = received.into_bytes();
    let mut boxes: Vec<String> = mailboxes.to_vec();
    // What goes into the audit record of the delivered message: the verdict, or the signing.
    let mut summary = String::new();
    if submission {
        if let Some(signer) = &auth.signer {
            match signer.sign(&message) {
                Ok(header) => {
                    log.line(format_args!(
                        "message {}: DKIM-signed d={} s={}",
                        unique.id,
                        signer.domain(),
                        signer.selector()
                    ));
                    prefix.extend_from_slice(header.as_bytes());
                    summary = format!("dkim-signed d={} s={}", signer.domain(), signer.selector());
                }
                Err(e) => log.line(format_args!("message {}: not DKIM-signed: {e}", unique.id)),
            }
        }
    } else {
        let verdict = auth.verify(peer, helo, &mail_from, &message);
        let ar = verdict.authentication_results();
        summary = ar.replace(";\r\n\t", "; ").replace(['\r', '\n'], " ");
        log.line(format_args!("message {}: {summary}", unique.id));
        if verdict.dmarc.disposition == Disposition::Reject {
            let domain =
                verdict.dmarc.policy_domain.clone().unwrap_or_else(|| verdict.dmarc.from_domain.clone());
            log.line(format_args!("message {} rejected: DMARC policy of {domain}", unique.id));
            let text = format!("Message rejected: DMARC policy of {} (p=reject)", printable(&domain));
            crate::audit::rejected(log.id(), "dmarc", &format!("550 5.7.1 {text}; {summary}"));
            return Outcome { reply: Reply::new(550, EnhancedStatus::new(5, 7, 1), text), delivered: false };
        }
        let rcpts: Vec<&str> = mailboxes.iter().map(String::as_str).collect();
        let (signals, strong) = signals(auth, &verdict, &message, &mail_from, peer, &rcpts);
        for signal in &signals {
            log.line(format_args!("message {}: signal {signal}", unique.id));
        }
        if !signals.is_empty() {
            summary = format!("{summary}; signals: {}", signals.join(", "));
        }
        if verdict.dmarc.disposition == Disposition::Quarantine {
            log.line(format_args!("message {}: quarantined (DMARC) into Junk", unique.id));
            boxes = mailboxes.iter().map(|m| junk_folder(maildir.root(), m)).collect();
        } else if strong {
            log.line(format_args!("message {}: quarantined (impersonation or replay) into Junk", unique.id));
            boxes = mailboxes.iter().map(|m| junk_folder(maildir.root(), m)).collect();
        }
        prefix.extend_from_slice(format!("Authentication-Results: {ar}\r\n").as_bytes());
    }
    let delivery = maildir.begin(&boxes, &unique, &prefix).and_then(|mut d| {
        d.write(&message);
        d.commit()
    });
    match delivery {
        Ok(paths) => {
            log.line(format_args!(
                "message {} delivered: {} octets to {} mailbox(es)",
                unique.id,
                message.len(),
                paths.len()
            ));
            crate::audit::message(log.id(), message.len() as u64, &unique.id, &summary);
            let text = format!("Ok: queued as {}", unique.id);
            Outcome { reply: Reply::new(250, EnhancedStatus::new(2, 0, 0), text), delivered: true }
        }
        Err(e) => {
            log.line(format_args!("message {} not delivered: {e}", unique.id));
            Outcome {
                reply: Reply::new(
                    451,
                    EnhancedStatus::new(4, 3, 0),
                    "Error: local error in processing, try again later",
                ),
                delivered: false,
            }
        }
    }
}

/// A uniform roll in 0..100 for DMARC `pct=` sampling (rejection sampling, so there is
/// no modulo bias; 0, "always apply", if the system random source fails).
fn dmarc_roll() -> u8 {
    let rng = ring::rand::SystemRandom::new();
    for _ in 0..16 {
        let mut byte = [0u8; 1];
        if ring::rand::SecureRandom::fill(&rng, &mut byte).is_err() {
            break;
        }
        if byte[0] < 200 {
            return byte[0] % 100;
        }
    }
    0
}

/// The message's replay and spoofing signals, each as one short text, and whether any
/// of them is strong enough to send the message to Junk: a display name or a look-alike
/// domain impersonating one of ours, or a DKIM signature replayed from many sources or to
/// many recipients. Weak signals (thin header coverage, misaligned Return-Path/Reply-To)
/// are only logged and audited.
fn signals(
    auth: &MsgAuth,
    verdict: &Verdict,
    message: &[u8],
    mail_from: &str,
    peer: IpAddr,
    rcpts: &[&str],
) -> (Vec<String>, bool) {
    let ours: Vec<&str> = auth.domains.iter().map(String::as_str).collect();
    let mut texts = Vec::new();
    let mut strong = false;
    for signal in spoof_signals(message, mail_from, &ours, &ours) {
        strong |= matches!(signal, SpoofSignal::DisplayNameSpoof { .. } | SpoofSignal::LookAlike { .. });
        texts.push(format!("{signal:?}"));
    }
    let now = std::time::Instant::now();
    let mut replay = auth.replay.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for dkim in &verdict.dkim {
        for signal in
            coverage_signals(dkim, message).into_iter().chain(replay.observe(dkim, peer, rcpts, now))
        {
            strong |=
                matches!(signal, ReplaySignal::ManySources { .. } | ReplaySignal::ManyRecipients { .. });
            texts.push(format!("{signal:?}"));
        }
    }
    (texts, strong)
}

/// The Maildir++ Junk folder of `mailbox`, relative to the root: `<mailbox>/.Junk`, with
/// the `maildirfolder` marker file Maildir++ readers expect.
fn junk_folder(root: &Path, mailbox: &str) -> String {
    let folder = format!("{mailbox}/.Junk");
    let dir = root.join(&folder);
    if fs::create_dir_all(&dir).is_ok() {
        let _ =
            fs::OpenOptions::new().write(true).create(true).truncate(false).open(dir.join("maildirfolder"));
    }
    folder
}

fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_graphic() { c } else { '?' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zone_file() {
        let z = Zone::parse(
            "# demo\nexample.org TXT \"v=spf1 \" \"-all\"\nexample.org MX 10 mx.example.org\n\
             mx.example.org A 127.0.0.2\n127.0.0.2 PTR mx.example.org\n",
        )
        .unwrap();
        assert_eq!(
            z.resolve(&DnsQuery::new("example.org", RecordType::Txt)),
            DnsAnswer::Records(vec![Record::Txt("v=spf1 -all".into())])
        );
        assert_eq!(z.resolve(&DnsQuery::new("example.org", RecordType::A)), DnsAnswer::Records(vec![]));
        assert_eq!(z.resolve(&DnsQuery::new("nope.example", RecordType::A)), DnsAnswer::NxDomain);
        assert!(
            matches!(z.resolve(&DnsQuery::ptr("127.0.0.2".parse().unwrap())), DnsAnswer::Records(r) if r.len() == 1)
        );
        assert!(Zone::parse("x CNAME y").unwrap_err().contains("line 1"));
    }
}
