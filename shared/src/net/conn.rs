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
use crate::fault::hooks::{AfterWrite, Close, ReplyStream};
use crate::fault::Faults;
use crate::metrics::{ErrorKind, Meter};
use crate::options::TcpOptions;
use crate::shutdown::Shutdown;

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

/// The limits and instruments every connection of a service shares.
#[derive(Clone)]
pub(crate) struct ConnSettings {
    /// Where bytes and errors are counted.
    pub(super) meter: Meter,
    /// The injected clock.
    clock: Arc<dyn Clock>,
    /// Timeouts, buffer size and the design.
    pub(super) options: TcpOptions,
    /// Injected faults (training); nothing happens while none is set.
    pub(super) faults: Faults,
    /// Tells long sessions to finish before the shutdown deadline.
    pub(super) shutdown: Shutdown,
}

impl ConnSettings {
    pub(crate) fn new(
        meter: Meter,
        clock: Arc<dyn Clock>,
        options: TcpOptions,
        faults: Faults,
        shutdown: Shutdown,
    ) -> Self {
        ConnSettings {
            meter,
            clock,
            options,
            faults,
            shutdown,
        }
    }
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
    /// When the connection was accepted: the answer latency runs from here.
    accepted: std::time::Instant,
}

impl Conn {
    /// Wraps a stream accepted at `accepted`.
    pub(crate) fn new(
        stream: TcpStream,
        peer: SocketAddr,
        settings: ConnSettings,
        accepted: std::time::Instant,
    ) -> Self {
        Conn {
            accepted,
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
        let idle = self.settings.options.idle_timeout;
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
                    Ok(_) => buf.resize(self.settings.options.buffer_size, 0),
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
        let limit = self.settings.options.write_timeout;
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

    /// [`Conn::write_all`] through the fault hooks, which decide what is written; this
    /// only carries out a reset or a cut.
    async fn write_with_faults(&mut self, data: &[u8]) -> Result<(), ConnError> {
        if self.truncated {
            return Ok(());
        }
        let (faults, reset_after) = (self.settings.faults.clone(), self.reset_after);
        match faults.tcp_write(self, reset_after, data).await? {
            AfterWrite::Open => Ok(()),
            AfterWrite::Reset => {
                // SO_LINGER 0: closing sends a reset, which is what the client must see.
                let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
                Err(ConnError::FaultReset)
            }
            AfterWrite::Cut => {
                // The client sees the short reply end in a FIN; what it sends after is
                // read and dropped, so it gets no reset either.
                self.truncated = true;
                let _ = self.stream.shutdown().await;
                Ok(())
            }
        }
    }

    /// Closes gracefully: half-close (FIN) so the answer is delivered, then discard input
    /// until the client closes or `close_linger` passes. Closing with unread input would
    /// send a reset that can destroy the answer in the client's buffer (book §10.7;
    /// docs/architecture.md, "A connection's path"). During shutdown the linger also ends
    /// before the shutdown deadline, so a finished session is never counted as cut.
    pub async fn finish(mut self) -> Result<(), ConnError> {
        if self.settings.faults.any() || self.reset_after.is_some() {
            match self.settings.faults.tcp_close(self.reset_after, self.sent) {
                Close::Reset => {
                    let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
                    return Err(ConnError::FaultReset);
                }
                Close::After(wait) => tokio::time::sleep(wait).await,
            }
        }
        if !self.truncated {
            self.stream.shutdown().await.map_err(ConnError::Write)?;
        }
        let mut deadline = Instant::now() + self.settings.options.close_linger;
        if let Some(end) = self.settings.shutdown.linger_end() {
            deadline = deadline.min(end);
        }
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
    /// answer-on-connect service (DAYTIME, TIME). The answer latency is taken when the
    /// kernel has the whole answer, before the linger, whatever the client does next.
    pub async fn answer_and_close(mut self, answer: &[u8]) -> Result<(), ConnError> {
        self.write_all(answer).await?;
        self.settings.meter.answered(self.accepted.elapsed());
        self.finish().await
    }

    fn count_received(&mut self, n: usize) {
        self.received += n as u64;
        self.settings.meter.received(n);
    }
}

impl ReplyStream for Conn {
    type Error = ConnError;

    fn sent(&self) -> u64 {
        self.sent
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), ConnError> {
        self.write_plain(data).await
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        let span = tracing::Span::current();
        span.record("inetsvc.bytes_received", self.received);
        span.record("inetsvc.bytes_sent", self.sent);
    }
}
