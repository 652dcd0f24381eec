//! SCRAM-SHA-256 and SCRAM-SHA-256-PLUS, server side (RFC 5802, RFC 7677, RFC 9266).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::secret::{hmac_32, sha256};
use super::{Failure, ScramSecret};

/// The channel-binding flag of a GS2 header.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum CbFlag {
    /// `n`: the client does not support channel binding.
    No,
    /// `y`: the client supports it but thinks the server does not.
    Yes,
    /// `p=<type>`: the client uses this binding type.
    Binding(String),
}

/// A parsed client-first-message.
#[derive(Debug)]
pub(super) struct ClientFirst {
    pub(super) flag: CbFlag,
    /// The GS2 header as sent, trailing comma included (it is bound in `c=`).
    pub(super) gs2_header: Vec<u8>,
    pub(super) authzid: Option<String>,
    pub(super) username: String,
    pub(super) nonce: String,
    /// client-first-message-bare, for the AuthMessage.
    pub(super) bare: Vec<u8>,
}

/// Decodes a `saslname` (`=2C` is `,`, `=3D` is `=`); `None` if malformed or empty.
fn saslname(s: &str) -> Option<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find(['=', ',']) {
        out.push_str(rest.get(..i)?);
        let tail = rest.get(i..)?;
        if let Some(t) = tail.strip_prefix("=2C") {
            out.push(',');
            rest = t;
        } else if let Some(t) = tail.strip_prefix("=3D") {
            out.push('=');
            rest = t;
        } else {
            return None;
        }
    }
    out.push_str(rest);
    (!out.is_empty()).then_some(out)
}

/// A nonce: printable ASCII other than `,`.
fn valid_nonce(n: &str) -> bool {
    !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

pub(super) fn parse_client_first(data: &[u8]) -> Result<ClientFirst, Failure> {
    let text = std::str::from_utf8(data).map_err(|_| Failure::Malformed)?;
    let mut parts = text.splitn(3, ',');
    let (Some(flag), Some(authzid), Some(bare)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Failure::Malformed);
    };
    let flag = match flag {
        "n" => CbFlag::No,
        "y" => CbFlag::Yes,
        f => match f.strip_prefix("p=") {
            Some(t)
                if !t.is_empty()
                    && t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') =>
            {
                CbFlag::Binding(t.to_owned())
            }
            _ => return Err(Failure::Malformed),
        },
    };
    let authzid = match authzid {
        "" => None,
        a => Some(a.strip_prefix("a=").and_then(saslname).ok_or(Failure::Malformed)?),
    };
    let gs2_len = text.len() - bare.len();
    let gs2_header = data.get(..gs2_len).ok_or(Failure::Malformed)?.to_vec();
    // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
    let mut attrs = bare.split(',');
    let user = attrs.next().ok_or(Failure::Malformed)?;
    // A mandatory extension (m=) this server does not know: fail (RFC 5802 §5.1).
    let username = user.strip_prefix("n=").and_then(saslname).ok_or(Failure::Malformed)?;
    let nonce = attrs.next().and_then(|r| r.strip_prefix("r=")).ok_or(Failure::Malformed)?;
    if !valid_nonce(nonce) {
        return Err(Failure::Malformed);
    }
    // Optional extensions: `x=value`, ignored.
    if attrs.any(|a| a.len() < 2 || a.as_bytes().get(1) != Some(&b'=')) {
        return Err(Failure::Malformed);
    }
    Ok(ClientFirst {
        flag,
        gs2_header,
        authzid,
        username,
        nonce: nonce.to_owned(),
        bare: bare.as_bytes().to_vec(),
    })
}

/// The server's state between server-first and client-final.
pub(super) struct ServerFirst {
    pub(super) secret: ScramSecret,
    /// `false` for an unknown user (the secret is a dummy): the proof never verifies.
    pub(super) known: bool,
    pub(super) username: String,
    pub(super) authzid: Option<String>,
    /// What `c=` must decode to: the GS2 header, plus the binding data for `-PLUS`.
    pub(super) expected_cbind: Zeroizing<Vec<u8>>,
    pub(super) nonce: String,
    pub(super) client_first_bare: Vec<u8>,
    pub(super) server_first: String,
}

impl ServerFirst {
    pub(super) fn message(nonce: &str, secret: &ScramSecret) -> String {
        format!("r={nonce},s={},i={}", STANDARD.encode(&secret.salt), secret.iterations)
    }

    /// Checks client-final; `Ok(server-final)` (the `v=` message) if the proof is right.
    pub(super) fn verify(&self, data: &[u8]) -> Result<Vec<u8>, Failure> {
        let text = std::str::from_utf8(data).map_err(|_| Failure::Malformed)?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or(Failure::Malformed)?;
        let mut attrs = without_proof.split(',');
        let cbind = attrs.next().and_then(|c| c.strip_prefix("c=")).ok_or(Failure::Malformed)?;
        let nonce = attrs.next().and_then(|r| r.strip_prefix("r=")).ok_or(Failure::Malformed)?;
        if attrs.any(|a| a.len() < 2 || a.as_bytes().get(1) != Some(&b'=')) {
            return Err(Failure::Malformed);
        }
        let cbind = Zeroizing::new(STANDARD.decode(cbind).map_err(|_| Failure::Malformed)?);
        let proof = Zeroizing::new(STANDARD.decode(proof).map_err(|_| Failure::Malformed)?);
        let proof: &[u8; 32] = proof.as_slice().try_into().map_err(|_| Failure::Malformed)?;
        if !bool::from(cbind.as_slice().ct_eq(self.expected_cbind.as_slice())) {
            return Err(Failure::ChannelBinding);
        }
        if nonce != self.nonce {
            return Err(Failure::Malformed);
        }
        let mut auth_message =
            Vec::with_capacity(self.client_first_bare.len() + self.server_first.len() + text.len() + 2);
        auth_message.extend_from_slice(&self.client_first_bare);
        auth_message.push(b',');
        auth_message.extend_from_slice(self.server_first.as_bytes());
        auth_message.push(b',');
        auth_message.extend_from_slice(without_proof.as_bytes());
        let stored = hmac::Key::new(hmac::HMAC_SHA256, self.secret.stored_key.as_ref());
        let signature = hmac_32(&stored, &auth_message);
        let mut client_key = Zeroizing::new([0_u8; 32]);
        for ((k, p), s) in client_key.iter_mut().zip(proof).zip(signature.iter()) {
            *k = p ^ s;
        }
        let ok = sha256(client_key.as_ref()).ct_eq(self.secret.stored_key.as_ref());
        if !(bool::from(ok) && self.known) {
            return Err(Failure::Credentials);
        }
        let server = hmac::Key::new(hmac::HMAC_SHA256, self.secret.server_key.as_ref());
        let v = hmac_32(&server, &auth_message);
        Ok(format!("v={}", STANDARD.encode(v.as_ref())).into_bytes())
    }
}

/// A stable per-user fake secret for unknown users: the same salt on every attempt, so
/// the salt does not reveal that the user does not exist.
pub(super) fn dummy_secret(key: &[u8; 32], username: &str, iterations: u32) -> ScramSecret {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    let derive = |label: &[u8]| {
        let mut ctx = hmac::Context::with_key(&k);
        ctx.update(label);
        ctx.update(username.as_bytes());
        let mut out = Zeroizing::new([0_u8; 32]);
        out.copy_from_slice(ctx.sign().as_ref());
        out
    };
    let salt = derive(b"scram salt\0");
    ScramSecret {
        iterations: std::num::NonZeroU32::new(iterations.max(1)).unwrap_or(std::num::NonZeroU32::MIN),
        salt: salt.get(..super::SALT_LEN).unwrap_or_default().to_vec(),
        stored_key: derive(b"scram stored\0"),
        server_key: derive(b"scram server\0"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_first_parsing() {
        let c = parse_client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap();
        assert_eq!(
            (c.flag, c.username.as_str(), c.nonce.as_str()),
            (CbFlag::No, "user", "rOprNGfwEbeRWgbNEkqO")
        );
        assert_eq!(c.gs2_header, b"n,,");
        let c = parse_client_first(b"p=tls-exporter,a=ad=3Dmin,n=us=2Cer,r=abc,x=1").unwrap();
        assert_eq!(c.flag, CbFlag::Binding("tls-exporter".into()));
        assert_eq!((c.authzid.as_deref(), c.username.as_str()), (Some("ad=min"), "us,er"));
        assert_eq!(c.gs2_header, b"p=tls-exporter,a=ad=3Dmin,");
        for bad in [
            &b""[..],
            b"n",
            b"n,,",
            b"x,,n=u,r=a",
            b"n,,m=x,n=u,r=a",
            b"n,,n=,r=a",
            b"n,,n=u=,r=a",
            b"n,,n=u",
            b"n,,n=u,r=",
            b"n,,n=u,r=a,b",
            b"n,b=x,n=u,r=a",
            b"p=,,n=u,r=a",
            b"\xff,,n=u,r=a",
        ] {
            assert!(parse_client_first(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
