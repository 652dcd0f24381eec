//! The application's message store, as the POP3 session sees it.

use std::io;

use super::session::{Error, Session};
use super::types::{Event, Reply, ResponseCode};

/// A maildrop the application implements over its own store (files, a database, ...).
///
/// The session itself never calls it: [`serve_maildrop`] answers the session's
/// [`Event::Retrieve`] and [`Event::Update`] through it for applications with a blocking
/// store; an async application answers those events itself the same way.
pub trait Maildrop {
    /// Reads up to `buf.len()` bytes of message `index` (as listed at login), starting at
    /// `offset`. `Ok(0)` means the end of the message.
    fn read(&mut self, index: usize, offset: u64, buf: &mut [u8]) -> io::Result<usize>;

    /// Removes the messages at these indexes: the UPDATE state (RFC 1939 §6). Called only
    /// after QUIT in the TRANSACTION state.
    fn commit(&mut self, deleted: &[usize]) -> io::Result<()>;
}

/// What [`serve_maildrop`] did with an event.
#[derive(Debug)]
#[non_exhaustive]
pub enum Served {
    /// Not a maildrop event: the caller handles it.
    Other(Event),
    /// RETR or TOP was answered: `octets` bytes of the stored message were sent (for RETR,
    /// the whole message: a good moment to mark it seen).
    Sent {
        /// The message's index in the listing.
        index: usize,
        /// `Some(n)` for TOP.
        top_lines: Option<u32>,
        /// Octets read from the store and sent.
        octets: u64,
    },
    /// Reading the message failed: the client got `-ERR [SYS/TEMP]`, or, if part of the
    /// message had already been sent, the session closed.
    ReadFailed {
        /// The message's index.
        index: usize,
        /// Why.
        error: io::Error,
    },
    /// UPDATE: the marked messages were removed and the client got `+OK`.
    Updated {
        /// How many were removed.
        deleted: usize,
    },
    /// UPDATE failed: the client got `-ERR [SYS/TEMP]` and the session closed.
    UpdateFailed(io::Error),
}

/// Why [`serve_maildrop`] stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// Writing to the connection failed.
    #[error("writing to the connection: {0}")]
    Write(#[source] io::Error),
    /// The session refused the call (an application bug).
    #[error(transparent)]
    Session(#[from] Error),
}

/// Answers `event` with `maildrop` if it is an [`Event::Retrieve`] or [`Event::Update`],
/// writing the session's output to `sink` as it goes; gives any other event back.
///
/// A retrieval reads the message in 64 KiB pieces and writes each piece, dot-stuffed, to
/// `sink` before reading the next, so neither the session nor this function ever holds a
/// whole message.
///
/// ```
/// use std::io;
/// use std::sync::Arc;
/// use std::time::Instant;
/// use postern::pop3::{serve_maildrop, Config, Event, Maildrop, MessageInfo, Served, Session};
///
/// struct Memory(Vec<Vec<u8>>, Vec<usize>);
/// impl Maildrop for Memory {
///     fn read(&mut self, i: usize, off: u64, buf: &mut [u8]) -> io::Result<usize> {
///         let msg = self.0.get(i).ok_or(io::ErrorKind::NotFound)?;
///         let rest = msg.get(off as usize..).unwrap_or_default();
///         let n = rest.len().min(buf.len());
///         buf[..n].copy_from_slice(&rest[..n]);
///         Ok(n)
///     }
///     fn commit(&mut self, deleted: &[usize]) -> io::Result<()> {
///         self.1.extend_from_slice(deleted);
///         Ok(())
///     }
/// }
///
/// let now = Instant::now();
/// let mut config = Config::new("pop.example.test");
/// config.allow_plaintext_auth = true;
/// let mut s = Session::new(Arc::new(config), [1; 16], now);
/// let mut store = Memory(vec![b"Subject: x\r\n\r\nbody\r\n".to_vec()], vec![]);
/// let mut socket = Vec::new(); // stands in for the connection
/// s.receive(b"USER a\r\nPASS b\r\nRETR 1\r\nDELE 1\r\nQUIT\r\n", now);
/// while let Some(event) = s.poll_event() {
///     match serve_maildrop(&mut s, event, &mut store, &mut socket).unwrap() {
///         Served::Other(Event::Login { user, .. }) => {
///             s.accept_login(user, vec![MessageInfo::new(20, "1").unwrap()]).unwrap()
///         }
///         Served::Sent { octets, .. } => assert_eq!(octets, 20),
///         _ => {}
///     }
/// }
/// assert_eq!(store.1, vec![0]);
/// assert!(socket.ends_with(b"body\r\n.\r\n+OK message 1 deleted\r\n+OK Bye, 1 message deleted\r\n"));
/// ```
pub fn serve_maildrop<M, W>(
    session: &mut Session,
    event: Event,
    maildrop: &mut M,
    sink: &mut W,
) -> Result<Served, ServeError>
where
    M: Maildrop + ?Sized,
    W: io::Write + ?Sized,
{
    let mut out = Vec::new();
    let mut flush = |session: &mut Session, out: &mut Vec<u8>| -> Result<(), ServeError> {
        session.poll_transmit(out);
        sink.write_all(out).map_err(ServeError::Write)?;
        out.clear();
        Ok(())
    };
    match event {
        Event::Retrieve { index, top_lines } => {
            let mut buf = vec![0u8; 64 * 1024];
            let mut octets = 0u64;
            loop {
                let n = match maildrop.read(index, octets, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(error) => {
                        session.reject(Reply::err(Some(ResponseCode::SysTemp), "cannot read message"))?;
                        flush(session, &mut out)?;
                        return Ok(Served::ReadFailed { index, error });
                    }
                };
                octets += n as u64;
                let more = session.message_data(buf.get(..n).unwrap_or_default())?;
                flush(session, &mut out)?;
                if !more {
                    break;
                }
            }
            session.message_end()?;
            flush(session, &mut out)?;
            Ok(Served::Sent { index, top_lines, octets })
        }
        Event::Update { deleted } => {
            let served = match maildrop.commit(&deleted) {
                Ok(()) => {
                    session.accept()?;
                    Served::Updated { deleted: deleted.len() }
                }
                Err(e) => {
                    session.reject(Reply::err(
                        Some(ResponseCode::SysTemp),
                        "some deleted messages not removed",
                    ))?;
                    Served::UpdateFailed(e)
                }
            };
            flush(session, &mut out)?;
            Ok(served)
        }
        other => Ok(Served::Other(other)),
    }
}
