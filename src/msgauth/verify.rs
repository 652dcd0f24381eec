//! The sans-IO verifier: SPF (HELO and MAIL FROM), DKIM, ARC and DMARC for one message, with
//! DNS answered by the application in rounds.

use std::collections::{BTreeSet, HashSet};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{SystemTime, UNIX_EPOCH};

use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::dkim::DkimError;
use mail_auth::dmarc::Dmarc;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::Hosts;
use mail_auth::hickory_resolver::config::{ResolveHosts, ResolverConfig, ResolverOpts};
use mail_auth::hickory_resolver::lookup::Lookup;
use mail_auth::hickory_resolver::proto::op::{Query, ResponseCode};
use mail_auth::hickory_resolver::proto::rr::{Name, RecordType as HickoryType};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::spf::{Macro, Spf};
use mail_auth::{
    AuthenticatedMessage, DkimOutput, DmarcOutput, DnsError, DnssecStatus, Error as MaError, MX,
    MessageAuthenticator, Parameters, RecordSet, SpfOutput, Txt,
};

use super::MsgAuthError;
use super::dns::{
    AnswerCache, DnsAnswer, DnsLimits, DnsQuery, Record, RecordType, fqdn, key_bytes, name_from_key,
};
use super::results::{
    ArcVerdict, AuthResult, Disposition, DkimVerdict, DmarcVerdict, Policy, SpfVerdict, Verdict,
};

/// Long-lived verifier configuration: the `authserv-id` that names this host in
/// Authentication-Results, and the DNS bounds. Cheap to share; [`Verifier::start`] begins a
/// check for one message.
#[derive(Clone)]
pub struct Verifier {
    authserv_id: Arc<str>,
    limits: DnsLimits,
    auth: Arc<MessageAuthenticator>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("authserv_id", &self.authserv_id)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier that names itself `authserv_id` (usually the host name) in
    /// Authentication-Results.
    ///
    /// Building one sets up mail-auth's (offline) resolver, which costs far more than a
    /// check: build it once and share it (it is `Clone` and `Send + Sync`).
    ///
    /// # Errors
    /// [`MsgAuthError::InvalidAuthservId`] if `authserv_id` is empty or not a plain token.
    pub fn new(authserv_id: &str) -> Result<Self, MsgAuthError> {
        if authserv_id.is_empty()
            || authserv_id.len() > 253
            || !authserv_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        {
            return Err(MsgAuthError::InvalidAuthservId);
        }
        // No name servers and no hosts file: a cache miss inside mail-auth fails at once
        // (a temporary error for this round), without any I/O or runtime.
        let config = ResolverConfig::from_parts(None, vec![], vec![]);
        let mut opts = ResolverOpts::default();
        opts.use_hosts_file = ResolveHosts::Never;
        opts.attempts = 0;
        let auth =
            MessageAuthenticator::new(config, opts).map_err(|e| MsgAuthError::Resolver(e.to_string()))?;
        Ok(Verifier {
            authserv_id: Arc::from(authserv_id),
            limits: DnsLimits::default(),
            auth: Arc::new(auth),
        })
    }

    /// Replaces the DNS bounds.
    #[must_use]
    pub fn with_limits(mut self, limits: DnsLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The `authserv-id`.
    #[must_use]
    pub fn authserv_id(&self) -> &str {
        &self.authserv_id
    }

    /// Starts checking one message.
    #[must_use]
    pub fn start(&self, input: CheckInput) -> Check {
        Check {
            verifier: self.clone(),
            input,
            answers: Answers::default(),
            asked: BTreeSet::new(),
            rounds: 0,
            done: None,
        }
    }
}

/// What the check is about: the SMTP facts and the message.
#[derive(Debug, Clone)]
pub struct CheckInput {
    /// The SMTP client's address.
    pub client_ip: IpAddr,
    /// The HELO/EHLO name the client gave.
    pub helo: String,
    /// The MAIL FROM address without angle brackets; empty for the null sender.
    pub mail_from: String,
    /// The whole message as received (header and body, CRLF line ends).
    pub message: Vec<u8>,
    /// Wall-clock time of the check: DKIM `x=` expiry is judged against it.
    pub now: SystemTime,
    /// The DMARC sampling roll in `0..100` (RFC 7489 §6.6.4 `pct=`): a failing message is
    /// subject to the policy when `roll < pct`. Pass a uniform random value; tests pass
    /// fixed ones. Values above 99 count as 99.
    pub dmarc_roll: u8,
}

impl CheckInput {
    /// An input with `dmarc_roll` 0 (a failing message is always sampled).
    #[must_use]
    pub fn new(client_ip: IpAddr, helo: &str, mail_from: &str, message: Vec<u8>, now: SystemTime) -> Self {
        CheckInput {
            client_ip,
            helo: helo.to_owned(),
            mail_from: mail_from.to_owned(),
            message,
            now,
            dmarc_roll: 0,
        }
    }

    /// Sets the DMARC sampling roll.
    #[must_use]
    pub fn with_dmarc_roll(mut self, roll: u8) -> Self {
        self.dmarc_roll = roll.min(99);
        self
    }
}

/// What [`Check::poll`] says.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Progress {
    /// These queries are needed: answer each with [`Check::answer`], then poll again.
    NeedDns(Vec<DnsQuery>),
    /// The check is complete.
    Done(Arc<Verdict>),
}

/// A check of one message in progress. See the module docs for the loop.
pub struct Check {
    verifier: Verifier,
    input: CheckInput,
    answers: Answers,
    asked: BTreeSet<DnsQuery>,
    rounds: u32,
    done: Option<Arc<Verdict>>,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check")
            .field("client_ip", &self.input.client_ip)
            .field("rounds", &self.rounds)
            .field("answers", &self.answers.len())
            .field("done", &self.done.is_some())
            .finish_non_exhaustive()
    }
}

impl Check {
    /// Runs the checks with the answers given so far. Returns the queries still needed, or
    /// the verdict once nothing more is needed (or the round/query bounds are reached: open
    /// queries then count as temporary DNS errors).
    pub fn poll(&mut self) -> Progress {
        if let Some(verdict) = &self.done {
            return Progress::Done(Arc::clone(verdict));
        }
        let (verdict, misses) = self.evaluate();
        let limits = self.verifier.limits;
        let new: Vec<DnsQuery> =
            misses.into_iter().filter(|q| !self.answers.contains_key(q) && !self.asked.contains(q)).collect();
        if !new.is_empty() && self.rounds < limits.max_rounds && self.asked.len() < limits.max_queries {
            let room = limits.max_queries - self.asked.len();
            let new: Vec<DnsQuery> = new.into_iter().take(room).collect();
            self.asked.extend(new.iter().cloned());
            self.rounds += 1;
            return Progress::NeedDns(new);
        }
        let verdict = Arc::new(verdict);
        self.done = Some(Arc::clone(&verdict));
        Progress::Done(verdict)
    }

    /// Feeds the answer to `query`.
    ///
    /// # Errors
    /// [`MsgAuthError::UnexpectedAnswer`] if the query was not asked; [`MsgAuthError::AnswerTooLarge`]
    /// if the answer exceeds [`DnsLimits`] (it is then recorded as a SERVFAIL).
    pub fn answer(&mut self, query: &DnsQuery, answer: DnsAnswer) -> Result<(), MsgAuthError> {
        if !self.asked.contains(query) && !self.answers.contains_key(query) {
            return Err(MsgAuthError::UnexpectedAnswer(query.to_string()));
        }
        self.store(query.clone(), answer)
    }

    fn store(&mut self, query: DnsQuery, answer: DnsAnswer) -> Result<(), MsgAuthError> {
        let limits = self.verifier.limits;
        if let DnsAnswer::Records(records) = &answer {
            let too_long = |s: &str| s.len() > limits.max_record_len;
            let oversized = records.len() > limits.max_records
                || records.iter().any(|r| match r {
                    Record::Txt(s) | Record::Ptr(s) => too_long(s),
                    Record::Mx { exchange, .. } => too_long(exchange),
                    Record::A(_) | Record::Aaaa(_) => false,
                });
            if oversized {
                let err = MsgAuthError::AnswerTooLarge(query.to_string());
                self.answers.insert(query, DnsAnswer::ServFail);
                return Err(err);
            }
        }
        self.answers.insert(query, answer);
        Ok(())
    }

    /// Supplies an answer before it is asked, e.g. from the application's DNS cache: a
    /// check whose answers are all preloaded completes on its first [`Check::poll`], with a
    /// single evaluation. At most [`DnsLimits::max_queries`] answers can be preloaded.
    ///
    /// # Errors
    /// [`MsgAuthError::TooManyAnswers`] past `max_queries`; [`MsgAuthError::AnswerTooLarge`]
    /// as for [`Check::answer`].
    pub fn preload(&mut self, query: DnsQuery, answer: DnsAnswer) -> Result<(), MsgAuthError> {
        if !self.answers.contains_key(&query) && self.answers.len() >= self.verifier.limits.max_queries {
            return Err(MsgAuthError::TooManyAnswers);
        }
        self.store(query, answer)
    }

    /// Drives the whole loop with `resolve` answering every query. Convenient for tests and
    /// for applications with a synchronous resolver or a zone in memory.
    pub fn run_with(mut self, mut resolve: impl FnMut(&DnsQuery) -> DnsAnswer) -> Verdict {
        loop {
            match self.poll() {
                Progress::Done(verdict) => return Arc::unwrap_or_clone(verdict),
                Progress::NeedDns(queries) => {
                    for q in queries {
                        let answer = resolve(&q);
                        // Oversized answers are recorded as SERVFAIL; nothing else to do.
                        let _ = self.answer(&q, answer);
                    }
                }
            }
        }
    }

    /// Number of query/answer rounds so far.
    #[must_use]
    pub fn rounds(&self) -> u32 {
        self.rounds
    }

    fn evaluate(&self) -> (Verdict, Vec<DnsQuery>) {
        let mut world = World::build(&self.answers, self.input.client_ip, &HashSet::new());
        // Negative A/AAAA answers go through hickory's static hosts: a resolver clone with
        // them set, only when there are any.
        let with_hosts;
        let auth: &MessageAuthenticator = if world.hosts_used {
            let mut clone = (*self.verifier.auth).clone();
            clone.0.set_hosts(Arc::new(std::mem::take(&mut world.hosts)));
            with_hosts = clone;
            &with_hosts
        } else {
            &self.verifier.auth
        };
        let input = &self.input;
        let host = &*self.verifier.authserv_id;
        let helo = input.helo.as_str();
        let ip = input.client_ip;

        let mut spf_helo = world.spf(auth, SpfParameters::verify_ehlo(ip, helo, host));
        let mut spf_mail = world.spf(auth, SpfParameters::verify_mail_from(ip, helo, host, &input.mail_from));
        // Explanations (exp=) are TXT records of any text; they are only read as such on a
        // second pass so that a plain TXT record never shadows a missing SPF policy.
        for (out, params) in [
            (&mut spf_helo, SpfParameters::verify_ehlo(ip, helo, host)),
            (&mut spf_mail, SpfParameters::verify_mail_from(ip, helo, host, &input.mail_from)),
        ] {
            if out.result() == mail_auth::SpfResult::Fail && out.explanation().is_none() {
                let macros = world.macro_candidates(&self.answers);
                if !macros.is_empty() {
                    let second = World::build(&self.answers, ip, &macros);
                    let again = second.spf(auth, params);
                    if again.result() == mail_auth::SpfResult::Fail && again.explanation().is_some() {
                        *out = again;
                    }
                }
            }
        }

        let mail_from_domain = match input.mail_from.rsplit_once('@') {
            Some((_, d)) => d.to_ascii_lowercase(),
            None => helo.to_ascii_lowercase(),
        };
        let now_secs = input.now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());

        let parsed = AuthenticatedMessage::parse(&input.message);
        let (dkim, arc, dmarc) = match &parsed {
            None => (Vec::new(), ArcVerdict { result: AuthResult::None, chain_length: 0 }, None),
            Some(message) => {
                let raw = block_on(auth.verify_dkim(world.params(message))).unwrap_or_default();
                // Judge x= against the caller's clock, not the system clock mail-auth reads.
                let adjusted: Vec<DkimOutput<'_>> = raw
                    .into_iter()
                    .map(|o| {
                        let expired = o
                            .signature()
                            .filter(|sig| {
                                sig.x != 0
                                    && sig.x <= now_secs
                                    && matches!(o.result(), mail_auth::DkimResult::Pass)
                            })
                            .and_then(|sig| {
                                message.dkim_headers.iter().map(|h| &h.header).find(|s| std::ptr::eq(*s, sig))
                            });
                        match expired {
                            Some(sig) => DkimOutput::neutral(MaError::Dkim(DkimError::SignatureExpired))
                                .with_signature(sig),
                            None => o,
                        }
                    })
                    .collect();
                let dkim: Vec<DkimVerdict> =
                    adjusted.iter().map(|o| DkimVerdict::from_output(o, now_secs)).collect();
                let arc = block_on(auth.verify_arc(world.params(message)))
                    .map(|o| ArcVerdict {
                        result: AuthResult::from_dkim(o.result()),
                        chain_length: o.sets().len(),
                    })
                    .unwrap_or(ArcVerdict { result: AuthResult::TempError, chain_length: 0 });
                let dmarc_out = block_on(auth.verify_dmarc(world.params(DmarcParameters::new(
                    message,
                    &adjusted,
                    &mail_from_domain,
                    &spf_mail,
                ))));
                let dmarc = dmarc_out.map(|o| self.dmarc_verdict(&o));
                (dkim, arc, dmarc)
            }
        };
        let dmarc = dmarc.unwrap_or_else(|| DmarcVerdict::none(String::new()));

        let verdict = Verdict {
            authserv_id: self.verifier.authserv_id.to_string(),
            spf_helo: SpfVerdict::from_output(&spf_helo, helo.to_ascii_lowercase()),
            spf_mail_from: SpfVerdict::from_output(
                &spf_mail,
                if input.mail_from.is_empty() {
                    format!("postmaster@{}", helo.to_ascii_lowercase())
                } else {
                    input.mail_from.clone()
                },
            ),
            dkim,
            arc,
            dmarc,
            client_ip: input.client_ip,
            message_parsed: parsed.is_some(),
        };
        (verdict, world.misses(input.client_ip))
    }

    fn dmarc_verdict(&self, out: &DmarcOutput) -> DmarcVerdict {
        use mail_auth::DmarcResult as R;
        let from_domain = out.domain().to_owned();
        let spf_aligned = *out.spf_result() == R::Pass;
        let dkim_aligned = *out.dkim_result() == R::Pass;
        let is_temp = |r: &R| matches!(r, R::TempError(_));
        let is_perm = |r: &R| matches!(r, R::PermError(_));
        let Some(record) = out.dmarc_record() else {
            let result = if is_temp(out.spf_result()) || is_temp(out.dkim_result()) {
                AuthResult::TempError
            } else if is_perm(out.spf_result()) || is_perm(out.dkim_result()) {
                AuthResult::PermError
            } else {
                AuthResult::None
            };
            return DmarcVerdict { result, ..DmarcVerdict::none(from_domain) };
        };
        let policy = Policy::from_mail_auth(out.policy());
        let (policy_domain, pct) = self.policy_record(&from_domain, record);
        let result = if spf_aligned || dkim_aligned { AuthResult::Pass } else { AuthResult::Fail };
        let disposition = match (result, policy) {
            (AuthResult::Fail, Policy::Reject) if self.input.dmarc_roll.min(99) < pct => Disposition::Reject,
            // Not sampled: the next less strict policy (RFC 7489 §6.6.4).
            (AuthResult::Fail, Policy::Reject) => Disposition::Quarantine,
            (AuthResult::Fail, Policy::Quarantine) if self.input.dmarc_roll.min(99) < pct => {
                Disposition::Quarantine
            }
            _ => Disposition::Accept,
        };
        DmarcVerdict {
            result,
            from_domain,
            policy_domain,
            policy,
            spf_aligned,
            dkim_aligned,
            pct,
            disposition,
        }
    }

    /// The domain whose `_dmarc` record was applied, and its `pct=` (100 when absent).
    fn policy_record(&self, from_domain: &str, applied: &Dmarc) -> (Option<String>, u8) {
        let mut name = from_domain.trim_end_matches('.');
        loop {
            if let Some(DnsAnswer::Records(records)) = self.answers.dmarc_txt(name) {
                for r in records {
                    if let Record::Txt(text) = r
                        && let Ok(parsed) = Dmarc::parse(text.as_bytes())
                        && parsed == *applied
                    {
                        return (Some(name.to_owned()), dmarc_pct(text));
                    }
                }
            }
            match name.split_once('.') {
                Some((_, rest)) if !rest.is_empty() => name = rest,
                _ => return (None, 100),
            }
        }
    }
}

/// The `pct=` tag of a DMARC record (RFC 7489 §6.3): 0–100, 100 when absent or invalid.
///
/// ```
/// use postern::msgauth::dmarc_pct;
/// assert_eq!(dmarc_pct("v=DMARC1; p=reject; pct=20"), 20);
/// assert_eq!(dmarc_pct("v=DMARC1; p=reject"), 100);
/// assert_eq!(dmarc_pct("v=DMARC1; p=reject; pct=250"), 100);
/// ```
#[must_use]
pub fn dmarc_pct(record: &str) -> u8 {
    for tag in record.split(';') {
        if let Some((name, value)) = tag.split_once('=')
            && name.trim().eq_ignore_ascii_case("pct")
        {
            return match value.trim().parse::<u8>() {
                Ok(v) if v <= 100 => v,
                _ => 100,
            };
        }
    }
    100
}

/// Polls `fut` once with a no-op waker. mail-auth's verifiers complete on the first poll
/// when every answer comes from the caches (a miss fails at once: no name servers).
fn block_on<F: Future>(fut: F) -> Option<F::Output> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    match fut.as_mut().poll(&mut cx) {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// The answers of one check, in the order they came. A check holds at most
/// [`DnsLimits::max_queries`] asked plus as many preloaded answers: a vector searched
/// linearly costs less than hashing every query into a map (measured with callgrind, see
/// benches/README.md), and needs one allocation.
#[derive(Default)]
struct Answers(Vec<(DnsQuery, DnsAnswer)>);

impl Answers {
    fn get(&self, query: &DnsQuery) -> Option<&DnsAnswer> {
        self.0.iter().find(|(q, _)| q == query).map(|(_, a)| a)
    }

    fn contains_key(&self, query: &DnsQuery) -> bool {
        self.get(query).is_some()
    }

    fn insert(&mut self, query: DnsQuery, answer: DnsAnswer) {
        match self.0.iter_mut().find(|(q, _)| *q == query) {
            Some(slot) => slot.1 = answer,
            None => self.0.push((query, answer)),
        }
    }

    fn len(&self) -> usize {
        self.0.len()
    }

    /// The answer to `DnsQuery::new(&format!("_dmarc.{name}"), RecordType::Txt)` for a
    /// `name` without a trailing dot, found without building that query.
    fn dmarc_txt(&self, name: &str) -> Option<&DnsAnswer> {
        let matches = |q: &DnsQuery| {
            let Some(rest) = q.name.strip_prefix("_dmarc.") else { return false };
            let rest = if name.is_empty() { Some(rest) } else { rest.strip_suffix('.') };
            rest.is_some_and(|r| {
                r.len() == name.len() && r.bytes().zip(name.bytes()).all(|(a, b)| a == b.to_ascii_lowercase())
            })
        };
        self.0.iter().find(|(q, _)| q.rtype == RecordType::Txt && matches(q)).map(|(_, a)| a)
    }

    fn iter(&self) -> impl Iterator<Item = (&DnsQuery, &DnsAnswer)> {
        self.0.iter().map(|(q, a)| (q, a))
    }
}

/// The application's answers as mail-auth caches, plus a hosts table for negative A/AAAA
/// answers (mail-auth's `exists` treats any cached A/AAAA entry as existence, so empty
/// answers go through hickory's static hosts instead, which answers without I/O).
struct World {
    txt: AnswerCache<Txt>,
    mx: AnswerCache<RecordSet<MX>>,
    v4: AnswerCache<RecordSet<Ipv4Addr>>,
    v6: AnswerCache<RecordSet<Ipv6Addr>>,
    ptr: AnswerCache<RecordSet<Box<str>>>,
    hosts: Hosts,
    hosts_used: bool,
}

type Params<'x, P> = Parameters<
    'x,
    P,
    AnswerCache<Txt>,
    AnswerCache<RecordSet<MX>>,
    AnswerCache<RecordSet<Ipv4Addr>>,
    AnswerCache<RecordSet<Ipv6Addr>>,
    AnswerCache<RecordSet<Box<str>>>,
>;

fn record_set<T>(items: Vec<T>) -> RecordSet<T> {
    RecordSet { rrset: Arc::from(items), dnssec_status: DnssecStatus::Indeterminate }
}

fn not_found(nx: bool) -> MaError {
    MaError::Dns(DnsError::RecordNotFound(if nx { ResponseCode::NXDomain } else { ResponseCode::NoError }))
}

impl World {
    fn build(answers: &Answers, client_ip: IpAddr, macros: &HashSet<String>) -> World {
        let mut w = World {
            txt: AnswerCache::new(),
            mx: AnswerCache::new(),
            v4: AnswerCache::new(),
            v6: AnswerCache::new(),
            ptr: AnswerCache::new(),
            hosts: Hosts::default(),
            hosts_used: false,
        };
        for (q, answer) in answers.iter() {
            let name = q.name.as_str();
            match q.rtype {
                RecordType::Txt => {
                    if let Some(value) = classify_txt(name, answer, macros.contains(name)) {
                        w.txt.put(name, value);
                    }
                }
                RecordType::Mx => match answer {
                    DnsAnswer::Records(records) => {
                        let mut groups: Vec<(u16, Vec<Box<str>>)> = Vec::new();
                        for r in records {
                            if let Record::Mx { preference, exchange } = r {
                                let exchange: Box<str> = exchange.to_ascii_lowercase().into();
                                match groups.iter_mut().find(|g| g.0 == *preference) {
                                    Some(g) => g.1.push(exchange),
                                    None => groups.push((*preference, vec![exchange])),
                                }
                            }
                        }
                        groups.sort_unstable_by_key(|g| g.0);
                        let set = groups
                            .into_iter()
                            .map(|(preference, ex)| MX { preference, exchanges: ex.into_boxed_slice() })
                            .collect();
                        w.mx.put(name, record_set(set));
                    }
                    DnsAnswer::NxDomain => w.mx.put(name, record_set(Vec::new())),
                    DnsAnswer::ServFail => {}
                },
                RecordType::A | RecordType::Aaaa => {
                    let v4 = q.rtype == RecordType::A;
                    match answer {
                        DnsAnswer::Records(records) => {
                            let a: Vec<Ipv4Addr> = records
                                .iter()
                                .filter_map(|r| if let Record::A(a) = r { Some(*a) } else { None })
                                .collect();
                            let aaaa: Vec<Ipv6Addr> = records
                                .iter()
                                .filter_map(|r| if let Record::Aaaa(a) = r { Some(*a) } else { None })
                                .collect();
                            if v4 && !a.is_empty() {
                                w.v4.put(name, record_set(a));
                            } else if !v4 && !aaaa.is_empty() {
                                w.v6.put(name, record_set(aaaa));
                            } else {
                                w.empty_host(name, v4);
                            }
                        }
                        DnsAnswer::NxDomain => w.empty_host(name, v4),
                        DnsAnswer::ServFail => {}
                    }
                }
                RecordType::Ptr => {
                    if q.ptr_addr() != Some(client_ip) {
                        continue;
                    }
                    match answer {
                        DnsAnswer::Records(records) => {
                            let names: Vec<Box<str>> = records
                                .iter()
                                .filter_map(|r| {
                                    if let Record::Ptr(p) = r {
                                        Some(p.to_ascii_lowercase().into())
                                    } else {
                                        None
                                    }
                                })
                                .collect();
                            w.ptr.put(&client_ip, record_set(names));
                        }
                        DnsAnswer::NxDomain => w.ptr.put(&client_ip, record_set(Vec::new())),
                        DnsAnswer::ServFail => {}
                    }
                }
            }
        }
        w
    }

    fn empty_host(&mut self, name: &str, v4: bool) {
        if let Ok(hname) = Name::from_str_relaxed(name) {
            let rtype = if v4 { HickoryType::A } else { HickoryType::AAAA };
            let lookup = Lookup::new_with_max_ttl(Query::query(hname.clone(), rtype), []);
            self.hosts.insert(hname, rtype, lookup);
            self.hosts_used = true;
        }
    }

    fn params<P>(&self, p: P) -> Params<'_, P> {
        Parameters::new(p)
            .with_txt_cache(&self.txt)
            .with_mx_cache(&self.mx)
            .with_ipv4_cache(&self.v4)
            .with_ipv6_cache(&self.v6)
            .with_ptr_cache(&self.ptr)
    }

    fn spf(&self, auth: &MessageAuthenticator, p: SpfParameters<'_>) -> SpfOutput {
        block_on(auth.verify_spf(self.params(p)))
            .unwrap_or_else(|| SpfOutput::default().with_result(mail_auth::SpfResult::TempError))
    }

    /// TXT names answered with text that is not an SPF policy but reads as an explanation.
    fn macro_candidates(&self, answers: &Answers) -> HashSet<String> {
        answers
            .iter()
            .filter(|(q, _)| q.rtype == RecordType::Txt && special_txt(&q.name).is_none())
            .filter_map(|(q, a)| match a {
                DnsAnswer::Records(records) => {
                    let texts =
                        records.iter().filter_map(|r| if let Record::Txt(t) = r { Some(t) } else { None });
                    let mut any_macro = false;
                    for t in texts {
                        if Spf::parse(t.as_bytes()).is_ok() {
                            return None;
                        }
                        any_macro |= Macro::parse(t.as_bytes()).is_ok();
                    }
                    any_macro.then(|| q.name.clone())
                }
                _ => None,
            })
            .collect()
    }

    fn misses(&self, client_ip: IpAddr) -> Vec<DnsQuery> {
        let mut out = BTreeSet::new();
        for (cache_misses, rtype) in [
            (self.txt.take_misses(), RecordType::Txt),
            (self.mx.take_misses(), RecordType::Mx),
            (self.v4.take_misses(), RecordType::A),
            (self.v6.take_misses(), RecordType::Aaaa),
        ] {
            for key in cache_misses {
                if let Some(name) = name_from_key(&key) {
                    out.insert(DnsQuery { name: fqdn(&name), rtype });
                }
            }
        }
        let ptr_key = key_bytes(&client_ip);
        if self.ptr.take_misses().contains(&ptr_key) {
            out.insert(DnsQuery::ptr(client_ip));
        }
        out.into_iter().collect()
    }
}

/// `Some(kind)` for TXT names whose record type is known from the name.
fn special_txt(name: &str) -> Option<&'static str> {
    if name.starts_with("_dmarc.") || name.contains("._report._dmarc.") {
        Some("dmarc")
    } else if name.contains("._domainkey.") {
        Some("dkim")
    } else {
        None
    }
}

/// Parses the TXT answer for `name` into what mail-auth expects there.
fn classify_txt(name: &str, answer: &DnsAnswer, as_macro: bool) -> Option<Txt> {
    let records: &[Record] = match answer {
        DnsAnswer::Records(records) => records,
        DnsAnswer::NxDomain => return Some(Txt::Error(not_found(true))),
        DnsAnswer::ServFail => return Some(Txt::Error(MaError::Dns(DnsError::Resolver("SERVFAIL".into())))),
    };
    // The TXT records' texts, read in place (no list built per answer).
    fn texts(records: &[Record]) -> impl Iterator<Item = &[u8]> {
        records.iter().filter_map(|r| if let Record::Txt(t) = r { Some(t.as_bytes()) } else { None })
    }
    if texts(records).next().is_none() {
        return Some(Txt::Error(not_found(false)));
    }
    fn first<T: TxtRecordParser + Into<Txt>>(records: &[Record]) -> Txt {
        let mut result: mail_auth::Result<T> = Err(MaError::Dns(DnsError::InvalidRecordType));
        for r in texts(records) {
            result = T::parse(r);
            if result.is_ok() {
                break;
            }
        }
        result.into()
    }
    Some(match special_txt(name) {
        Some("dmarc") => first::<Dmarc>(records),
        Some(_) => first::<DomainKey>(records),
        None if as_macro => first::<Macro>(records),
        None => first::<Spf>(records),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn txt(text: &str) -> DnsAnswer {
        DnsAnswer::Records(vec![Record::Txt(text.to_owned())])
    }

    #[test]
    fn answers_keep_one_entry_per_query() {
        let mut answers = Answers::default();
        let q = DnsQuery::new("Example.ORG", RecordType::Txt);
        answers.insert(q.clone(), DnsAnswer::NxDomain);
        answers.insert(q.clone(), txt("v=spf1 -all"));
        answers.insert(DnsQuery::new("example.org", RecordType::A), DnsAnswer::ServFail);
        assert_eq!(answers.len(), 2);
        assert_eq!(answers.get(&q), Some(&txt("v=spf1 -all")));
        assert!(!answers.contains_key(&DnsQuery::new("example.org", RecordType::Mx)));
    }

    #[test]
    fn dmarc_txt_finds_what_the_built_query_would() {
        let mut answers = Answers::default();
        answers.insert(DnsQuery::new("_dmarc.Example.org", RecordType::Txt), txt("v=DMARC1; p=none"));
        answers.insert(DnsQuery::new("_dmarc.org", RecordType::A), DnsAnswer::NxDomain);
        answers.insert(DnsQuery::new("_dmarc.", RecordType::Txt), DnsAnswer::ServFail);
        for name in ["example.org", "EXAMPLE.org", "org", "", "xample.org", "mail.example.org"] {
            let built = DnsQuery::new(&format!("_dmarc.{name}"), RecordType::Txt);
            assert_eq!(answers.dmarc_txt(name), answers.get(&built), "{name:?}");
        }
        assert_eq!(answers.dmarc_txt("example.org"), Some(&txt("v=DMARC1; p=none")));
        assert_eq!(answers.dmarc_txt("org"), None);
    }
}
