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

/// Answers `event` with `maildrop` if it is a [`Event::Retrieve`] or [`Event::Update`];
/// gives any other event back to the caller.
///
/// A retrieval streams the message in 64 KiB pieces (never holding it whole). A read error
/// before any data answers `-ERR [SYS/TEMP]`; after data was sent the session is closed, as
/// nothing else is honest. An UPDATE that fails answers `-ERR [SYS/TEMP]`.
///
/// ```
/// use std::io;
/// use std::sync::Arc;
/// use std::time::Instant;
/// use postern::pop3::{serve_maildrop, Config, Maildrop, MessageInfo, Session};
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
/// s.receive(b"USER a\r\nPASS b\r\nRETR 1\r\nDELE 1\r\nQUIT\r\n", now);
/// while let Some(event) = s.poll_event() {
///     match serve_maildrop(&mut s, event, &mut store).unwrap() {
///         Some(postern::pop3::Event::Login { user, .. }) => {
///             s.accept_login(user, vec![MessageInfo::new(21, "1").unwrap()]).unwrap()
///         }
///         _ => {}
///     }
/// }
/// assert_eq!(store.1, vec![0]);
/// ```
pub fn serve_maildrop<M: Maildrop + ?Sized>(
    session: &mut Session,
    event: Event,
    maildrop: &mut M,
) -> Result<Option<Event>, Error> {
    match event {
        Event::Retrieve { index, .. } => {
            let mut buf = vec![0u8; 64 * 1024];
            let mut offset = 0u64;
            loop {
                match maildrop.read(index, offset, &mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        offset += n as u64;
                        if !session.message_data(buf.get(..n).unwrap_or_default())? {
                            break;
                        }
                    }
                    Err(_) => {
                        return session
                            .reject(Reply::err(Some(ResponseCode::SysTemp), "cannot read message"))
                            .map(|()| None);
                    }
                }
            }
            session.message_end()?;
            Ok(None)
        }
        Event::Update { deleted } => {
            match maildrop.commit(&deleted) {
                Ok(()) => session.accept()?,
                Err(_) => session
                    .reject(Reply::err(Some(ResponseCode::SysTemp), "some deleted messages not removed"))?,
            }
            Ok(None)
        }
        other => Ok(Some(other)),
    }
}
