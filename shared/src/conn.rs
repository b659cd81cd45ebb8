//! One accepted TCP connection as a service sees it: reads bounded by the idle timeout,
//! writes bounded by the write timeout, bytes counted, and a graceful close.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};

use crate::clock::Clock;
use crate::fault::Faults;
use crate::metrics::{ErrorKind, Meter};

/// Why serving a connection stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    /// Nothing arrived for `idle_timeout`.
    #[error("idle: nothing received for {0:?}")]
    IdleTimeout(Duration),
    /// A write made no progress for `write_timeout`: the client is not reading.
    #[error("write made no progress for {0:?}; the client is not reading")]
    WriteTimeout(Duration),
    /// Reading failed.
    #[error("read: {0}")]
    Read(io::Error),
    /// Writing failed.
    #[error("write: {0}")]
    Write(io::Error),
    /// The `tcp_reset` fault reset the connection.
    #[error("reset by the tcp_reset fault")]
    FaultReset,
}

impl ConnError {
    /// The `kind` label this error is counted under.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ConnError::IdleTimeout(_) => ErrorKind::IdleTimeout,
            ConnError::WriteTimeout(_) => ErrorKind::WriteTimeout,
            ConnError::Read(_) => ErrorKind::Read,
            ConnError::Write(_) => ErrorKind::Write,
            ConnError::FaultReset => ErrorKind::Reset,
        }
    }
}

/// The limits and instruments every connection of a listener shares.
#[derive(Clone)]
pub struct ConnSettings {
    /// Where bytes and errors are counted.
    pub meter: Meter,
    /// The injected clock.
    pub clock: Arc<dyn Clock>,
    /// Longest wait for input.
    pub idle_timeout: Duration,
    /// Longest wait for a write to make progress.
    pub write_timeout: Duration,
    /// Longest half-closed drain in [`Conn::finish`].
    pub close_linger: Duration,
    /// Read buffer size, allocated only once data arrives.
    pub buffer_size: usize,
    /// Injected faults (training); nothing happens while none is set.
    pub faults: Faults,
}

/// An accepted TCP connection.
pub struct Conn {
    /// The socket.
    stream: TcpStream,
    /// The client's address (for logs and spans only, never a metric label).
    peer: SocketAddr,
    /// Shared limits and instruments.
    settings: ConnSettings,
    /// Payload bytes received, for the connection's span and log line.
    received: u64,
    /// Payload bytes sent.
    sent: u64,
    /// `tcp_reset`: reset once this many bytes are sent (decided at accept).
    reset_after: Option<u64>,
    /// `truncate` cut the replies: the write side is closed and later writes are dropped.
    truncated: bool,
}

impl Conn {
    /// Wraps an accepted stream.
    pub fn new(stream: TcpStream, peer: SocketAddr, settings: ConnSettings) -> Self {
        Conn {
            reset_after: settings.faults.reset_after(),
            stream,
            peer,
            settings,
            received: 0,
            sent: 0,
            truncated: false,
        }
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// The current time from the injected clock.
    pub fn now(&self) -> SystemTime {
        self.settings.clock.now()
    }

    /// Payload bytes received and sent so far.
    pub fn bytes(&self) -> (u64, u64) {
        (self.received, self.sent)
    }

    /// Reads what has arrived into `buf`, waiting at most `idle_timeout`; `Ok(0)` is the
    /// client's end of stream.
    ///
    /// `buf` is sized to `buffer_size` only when data is ready, so a connection that sits
    /// idle holds no buffer (the RSS-per-idle-connection target). Data already waiting is
    /// read at once: the idle timer is armed only when the read would block, which keeps
    /// a timer insertion off the hot path of a busy connection.
    pub async fn read(&mut self, buf: &mut Vec<u8>) -> Result<usize, ConnError> {
        let idle = self.settings.idle_timeout;
        loop {
            if !buf.is_empty() {
                match self.stream.try_read(buf) {
                    Ok(n) => {
                        self.count_received(n);
                        return Ok(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(ConnError::Read(e)),
                }
            }
            timeout(idle, self.stream.readable())
                .await
                .map_err(|_| ConnError::IdleTimeout(idle))?
                .map_err(ConnError::Read)?;
            if buf.is_empty() {
                // Readiness can be spurious (a fresh socket is reported readable with
                // nothing to read): peek one byte first, so that only a connection with
                // input waiting (or at EOF) gets a buffer. try_io clears the readiness
                // on WouldBlock, so this cannot spin.
                let mut probe = [std::mem::MaybeUninit::<u8>::uninit()];
                let sock = socket2::SockRef::from(&self.stream);
                match self
                    .stream
                    .try_io(tokio::io::Interest::READABLE, || sock.peek(&mut probe))
                {
                    Ok(_) => buf.resize(self.settings.buffer_size, 0),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(ConnError::Read(e)),
                }
            }
        }
    }

    /// Writes all of `data`; whenever the socket is full, it must accept more within
    /// `write_timeout`, so a client that stops reading is cut off instead of holding the
    /// server (book §8.29, server deadlock). Like [`Conn::read`], the timer is armed only
    /// when the write would block.
    pub async fn write_all(&mut self, data: &[u8]) -> Result<(), ConnError> {
        if self.settings.faults.any() || self.reset_after.is_some() {
            return self.write_with_faults(data).await;
        }
        self.write_plain(data).await
    }

    async fn write_plain(&mut self, mut data: &[u8]) -> Result<(), ConnError> {
        let limit = self.settings.write_timeout;
        while !data.is_empty() {
            match self.stream.try_write(data) {
                Ok(0) => return Err(ConnError::Write(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.sent += n as u64;
                    self.settings.meter.sent(n);
                    data = &data[n..];
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(ConnError::Write(e)),
            }
            timeout(limit, self.stream.writable())
                .await
                .map_err(|_| ConnError::WriteTimeout(limit))?
                .map_err(ConnError::Write)?;
        }
        Ok(())
    }

    /// [`Conn::write_all`] with the injected faults applied, in the order a reply meets
    /// them: latency, truncation, corruption, reset, bandwidth.
    async fn write_with_faults(&mut self, data: &[u8]) -> Result<(), ConnError> {
        let faults = self.settings.faults.clone();
        if self.truncated {
            return Ok(());
        }
        if let Some(wait) = faults.latency() {
            tokio::time::sleep(wait).await;
        }
        let mut reply = data.to_vec();
        let cut = faults
            .truncate()
            .is_some_and(|max| cut_at(&mut reply, self.sent, max));
        faults.corrupt(&mut reply);
        let reset = self
            .reset_after
            .is_some_and(|after| cut_at(&mut reply, self.sent, after));
        match faults.bandwidth() {
            Some(rate) => {
                // Chunks of a tenth of a second's worth keep the rate smooth.
                let chunk = (rate / 10).clamp(1, 64 * 1024) as usize;
                for part in reply.chunks(chunk) {
                    self.write_plain(part).await?;
                    tokio::time::sleep(Duration::from_secs_f64(part.len() as f64 / rate as f64))
                        .await;
                }
            }
            None => self.write_plain(&reply).await?,
        }
        if reset {
            // SO_LINGER 0: closing sends a reset, which is what the client must see.
            let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
            return Err(ConnError::FaultReset);
        }
        if cut {
            // The client sees the short reply end in a FIN; what it sends after is
            // read and dropped, so it gets no reset either.
            self.truncated = true;
            let _ = self.stream.shutdown().await;
        }
        Ok(())
    }

    /// Closes gracefully: half-close (FIN) so the answer is delivered, then discard input
    /// until the client closes or `close_linger` passes. Closing with unread input would
    /// send a reset that can destroy the answer in the client's buffer (DESIGN.md,
    /// "Protocol facts"; book §10.7).
    pub async fn finish(mut self) -> Result<(), ConnError> {
        if self.reset_after == Some(self.sent) && self.sent == 0 {
            // `tcp_reset` with after_bytes=0 on a connection that has sent nothing.
            let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
            return Err(ConnError::FaultReset);
        }
        if let Some(wait) = self.settings.faults.slow_close() {
            tokio::time::sleep(wait).await;
        }
        if !self.truncated {
            self.stream.shutdown().await.map_err(ConnError::Write)?;
        }
        let deadline = Instant::now() + self.settings.close_linger;
        let mut sink = [0u8; 1024];
        loop {
            match timeout_at(deadline, self.stream.read(&mut sink)).await {
                Ok(Ok(0)) | Err(_) => return Ok(()),
                Ok(Ok(n)) => self.count_received(n),
                // The client reset after our FIN: it has what it wanted, nothing to report.
                Ok(Err(_)) => return Ok(()),
            }
        }
    }

    /// Sends one whole answer and closes gracefully: the shape of every
    /// answer-on-connect service (DAYTIME, TIME).
    pub async fn answer_and_close(mut self, answer: &[u8]) -> Result<(), ConnError> {
        self.write_all(answer).await?;
        self.finish().await
    }

    fn count_received(&mut self, n: usize) {
        self.received += n as u64;
        self.settings.meter.received(n);
    }
}

/// Cuts `reply` so that at most `limit` bytes will have been sent on a connection that
/// has sent `sent`; true when the limit is reached (truncate and tcp_reset both stop
/// there).
fn cut_at(reply: &mut Vec<u8>, sent: u64, limit: u64) -> bool {
    let room = limit.saturating_sub(sent);
    if reply.len() as u64 >= room {
        reply.truncate(room as usize);
        true
    } else {
        false
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let span = tracing::Span::current();
        span.record("inetsvc.bytes_received", self.received);
        span.record("inetsvc.bytes_sent", self.sent);
    }
}
