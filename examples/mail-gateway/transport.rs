//! One connection's byte stream: plaintext, or TLS over the socket.
//!
//! A [`Transport`] hides the difference from the protocol loops in `smtp.rs` and
//! `pop3.rs`: [`read`](Transport::read) gives the session plaintext, and
//! [`write`](Transport::write) takes what the session's `poll_transmit` produced. Inside
//! TLS, the bytes go through a [`postern::tls::TlsChannel`], postern's sans-IO rustls
//! channel; the socket I/O, the clock and the deadlines are here.
//!
//! ```text
//!  socket ─► read ─► [TlsChannel::receive] ─► plaintext ─► session.receive
//!  socket ◄─ write ◄─ [TlsChannel::send + poll_transmit] ◄── session.poll_transmit
//! ```
//!
//! [`start_tls`](Transport::start_tls) switches a plaintext connection to TLS: for
//! STARTTLS/STLS after the `220`/`+OK` has been written out, and for implicit TLS right
//! after accept. It runs the whole handshake before returning (with a deadline), so no
//! plaintext reaches a session before the handshake is complete; application data that
//! arrived with the client's last handshake flight is kept for the next `read`.

use std::fmt;
use std::io::{self, Read as _, Write as _};
use std::net::{Shutdown as Direction, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern::TlsInfo;
use postern::tls::{ChannelError, TlsChannel};
use rustls::ServerConfig;

/// Bytes read from the socket at a time.
const READ_BUFFER: usize = 16 * 1024;
/// Plaintext handed to the TLS channel at a time: rustls buffers at most 64 KiB of
/// ciphertext until it is taken out, so the output is drained after each piece.
const TLS_WRITE_PIECE: usize = 16 * 1024;
/// How long a handshake may wait for the peer at most between two checks of `stop`.
const HANDSHAKE_TICK: Duration = Duration::from_secs(1);

/// What a [`Transport::read`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Input {
    /// Plaintext was appended (possibly none: a TLS record without application data).
    Data,
    /// The peer closed the connection (or sent TLS `close_notify`).
    Eof,
    /// Nothing arrived before the timeout.
    Timeout,
}

/// Why a TLS handshake did not complete.
#[derive(Debug)]
pub(crate) enum HandshakeError {
    /// The TLS protocol failed (no common version or suite, a bad or missing client
    /// certificate, plaintext where a ClientHello should be, ...). An alert was sent.
    Tls(ChannelError),
    /// The peer closed the connection.
    Closed,
    /// The deadline passed.
    Timeout,
    /// The server is shutting down.
    Stopped,
    /// A socket error.
    Io(io::Error),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tls(e) => write!(f, "{e}"),
            Self::Closed => f.write_str("the client closed the connection"),
            Self::Timeout => f.write_str("timed out"),
            Self::Stopped => f.write_str("server shutting down"),
            Self::Io(e) => write!(f, "socket error: {e}"),
        }
    }
}

/// A connection: the socket, and the TLS channel once TLS has started.
pub(crate) struct Transport {
    stream: TcpStream,
    tls: Option<TlsChannel>,
    /// Plaintext that arrived with the handshake's last flight, for the next `read`.
    pending: Vec<u8>,
    /// The peer sent `close_notify`: the next `read` without pending data is the end.
    peer_closed: bool,
    /// The TLS channel failed: no `close_notify` at the end.
    failed: bool,
    buf: Box<[u8]>,
    /// Ciphertext on its way out.
    wire: Vec<u8>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport").field("tls", &self.tls.is_some()).finish_non_exhaustive()
    }
}

impl Transport {
    /// A plaintext connection.
    pub(crate) fn new(stream: TcpStream) -> Self {
        Self {
            stream,
            tls: None,
            pending: Vec::new(),
            peer_closed: false,
            failed: false,
            buf: vec![0_u8; READ_BUFFER].into_boxed_slice(),
            wire: Vec::new(),
        }
    }

    /// Reads what arrives within `timeout` and appends the plaintext to `plaintext`.
    ///
    /// A TLS error is returned as an `io::Error` (after the alert has been sent).
    pub(crate) fn read(&mut self, plaintext: &mut Vec<u8>, timeout: Duration) -> io::Result<Input> {
        if !self.pending.is_empty() {
            plaintext.append(&mut self.pending);
            return Ok(Input::Data);
        }
        if self.peer_closed {
            return Ok(Input::Eof);
        }
        self.stream.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let n = match self.stream.read(&mut self.buf) {
            Ok(0) => return Ok(Input::Eof),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Ok(Input::Timeout);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(Input::Data),
            Err(e) => return Err(e),
        };
        let input = self.buf.get(..n).unwrap_or_default();
        let Some(tls) = self.tls.as_mut() else {
            plaintext.extend_from_slice(input);
            return Ok(Input::Data);
        };
        let before = plaintext.len();
        let received = tls.receive(input, plaintext);
        // Alerts, key updates and session tickets go out at once.
        tls.poll_transmit(&mut self.wire);
        let closed = received.is_ok() && tls.peer_closed();
        self.write_wire()?;
        if let Err(e) = received {
            self.failed = true;
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        if closed {
            self.peer_closed = true;
            // Plaintext that came before the close_notify is still the client's.
            return Ok(if plaintext.len() > before { Input::Data } else { Input::Eof });
        }
        Ok(Input::Data)
    }

    /// Writes `plaintext` (a session's output), encrypted once TLS has started.
    pub(crate) fn write(&mut self, plaintext: &[u8]) -> io::Result<()> {
        let Some(tls) = self.tls.as_mut() else {
            return self.stream.write_all(plaintext);
        };
        for piece in plaintext.chunks(TLS_WRITE_PIECE) {
            if let Err(e) = tls.send(piece) {
                self.failed = true;
                return Err(io::Error::other(e));
            }
            tls.poll_transmit(&mut self.wire);
        }
        self.write_wire()
    }

    fn write_wire(&mut self) -> io::Result<()> {
        if self.wire.is_empty() {
            return Ok(());
        }
        let written = self.stream.write_all(&self.wire);
        self.wire.clear();
        written
    }

    /// Switches to TLS as the server and runs the handshake until it completes, the
    /// client gives up or fails, `deadline` passes, or `stop()` says the server is
    /// shutting down (checked every second). Returns what was negotiated, for the
    /// session's `tls_established` or `new_implicit_tls`.
    ///
    /// For STARTTLS/STLS, call it after the `220`/`+OK` has been written out.
    pub(crate) fn start_tls(
        &mut self,
        config: Arc<ServerConfig>,
        deadline: Instant,
        stop: &dyn Fn() -> bool,
    ) -> Result<TlsInfo, HandshakeError> {
        debug_assert!(self.tls.is_none() && self.pending.is_empty());
        let mut tls = TlsChannel::server(config).map_err(HandshakeError::Tls)?;
        loop {
            tls.poll_transmit(&mut self.wire);
            self.write_wire().map_err(HandshakeError::Io)?;
            if let Some(info) = tls.poll_established() {
                self.tls = Some(tls);
                return Ok(info);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(HandshakeError::Timeout);
            }
            if stop() {
                return Err(HandshakeError::Stopped);
            }
            let wait = deadline.saturating_duration_since(now).min(HANDSHAKE_TICK);
            self.stream
                .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
                .map_err(HandshakeError::Io)?;
            let n = match self.stream.read(&mut self.buf) {
                Ok(0) => return Err(HandshakeError::Closed),
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(HandshakeError::Io(e)),
            };
            // Plaintext can only come after the handshake has completed (the channel
            // enforces it): keep it for the first `read` after this.
            if let Err(e) = tls.receive(self.buf.get(..n).unwrap_or_default(), &mut self.pending) {
                // The alert, if the peer is still there to read it.
                tls.poll_transmit(&mut self.wire);
                let _ = self.write_wire();
                self.failed = true;
                return Err(HandshakeError::Tls(e));
            }
        }
    }

    /// The RFC 9266 `tls-exporter` channel binding of the TLS connection, for
    /// SCRAM-SHA-256-PLUS; `None` in plaintext.
    pub(crate) fn tls_exporter(&self) -> Option<[u8; 32]> {
        self.tls.as_ref().and_then(TlsChannel::tls_exporter)
    }

    /// Ends the connection politely: TLS `close_notify` (unless TLS failed), our side of
    /// TCP closed first, then what the client still sends is read and dropped for a
    /// moment. Closing a socket with unread input makes the kernel send a reset, which
    /// can destroy the last reply before the client has read it.
    pub(crate) fn close(mut self) {
        if let Some(tls) = self.tls.as_mut()
            && !self.failed
        {
            tls.close();
            tls.poll_transmit(&mut self.wire);
            let _ = self.write_wire();
        }
        linger_close(&self.stream);
    }

    /// Drops the connection without any closing ceremony (after a socket error).
    pub(crate) fn abort(self) {
        let _ = self.stream.shutdown(Direction::Both);
    }
}

/// Closes our side, then reads (and drops) what the client still sends, for at most half
/// a second and 64 KiB.
fn linger_close(stream: &TcpStream) {
    let _ = stream.shutdown(Direction::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut sink = [0_u8; 4096];
    let mut budget = 64 * 1024_usize;
    let mut reader = stream;
    while budget > 0 {
        match reader.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => budget = budget.saturating_sub(n),
        }
    }
}
