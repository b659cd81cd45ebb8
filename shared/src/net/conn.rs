//! One accepted TCP connection as a service sees it: reads bounded by the idle timeout,
//! writes bounded by the write timeout, bytes counted, and a graceful close — on a
//! readiness-driven socket, or on a blocking one for the threaded design (book ch. 12),
//! where the kernel's own receive and send timeouts bound the waits.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};

use super::alarm::Alarm;
use crate::clock::Clock;
use crate::fault::hooks::{AfterWrite, Close, ReplyStream};
use crate::fault::Faults;
use crate::metrics::{ErrorKind, Meter};
use crate::net::TcpConcurrency;
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
    /// The connection reached `max_connection_time` while the threaded design's blocking
    /// read waited (the other designs cut it from outside).
    #[error("reached max_connection_time ({0:?})")]
    MaxTime(Duration),
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
            ConnError::MaxTime(_) => ErrorKind::MaxDuration,
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

/// The socket of a connection, as its design serves it.
pub(crate) enum Socket {
    /// Readiness-driven: every wait is a task's, woken by the runtime.
    Ready(TcpStream),
    /// Blocking (the threaded design): every wait is the connection thread's, in the
    /// kernel, bounded by `SO_RCVTIMEO` and `SO_SNDTIMEO`.
    Blocking(std::net::TcpStream),
}

impl Socket {
    /// The socket `design` serves an accepted stream on: for `threaded`, a blocking one
    /// whose receive timeout is the idle timeout and send timeout the write timeout, so
    /// that a read or write never needs the runtime.
    pub(crate) fn for_design(
        stream: TcpStream,
        design: TcpConcurrency,
        options: &TcpOptions,
    ) -> io::Result<Socket> {
        if design != TcpConcurrency::Threaded {
            return Ok(Socket::Ready(stream));
        }
        let stream = stream.into_std()?;
        stream.set_nonblocking(false)?;
        // The kernel takes no zero timeout (it would mean none at all).
        stream.set_read_timeout(Some(options.idle_timeout.max(SHORTEST_WAIT)))?;
        stream.set_write_timeout(Some(options.write_timeout.max(SHORTEST_WAIT)))?;
        Ok(Socket::Blocking(stream))
    }

    /// The socket for options `tokio` and `std` have no call for (`SO_LINGER`).
    fn sock(&self) -> socket2::SockRef<'_> {
        match self {
            Socket::Ready(stream) => socket2::SockRef::from(stream),
            Socket::Blocking(stream) => socket2::SockRef::from(stream),
        }
    }
}

/// The shortest kernel timeout set on a blocking socket.
const SHORTEST_WAIT: Duration = Duration::from_millis(1);

/// An accepted TCP connection.
pub struct Conn {
    /// The socket.
    socket: Socket,
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
    /// When input last arrived (at first, the accept): the idle timeout runs from here.
    last_input: Instant,
    /// The idle timer, made at the first read that waits and moved only when it fires
    /// before the idle timeout has really passed (readiness-driven socket).
    idle: Option<Alarm>,
    /// The receive timeout set on a blocking socket.
    read_timeout: Duration,
}

impl Conn {
    /// Wraps a socket accepted at `accepted`.
    pub(crate) fn new(
        socket: Socket,
        peer: SocketAddr,
        settings: ConnSettings,
        accepted: std::time::Instant,
    ) -> Self {
        Conn {
            accepted,
            last_input: accepted.into(),
            idle: None,
            read_timeout: settings.options.idle_timeout.max(SHORTEST_WAIT),
            reset_after: settings.faults.reset_after(),
            socket,
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

    /// Reads what has arrived into `buf`, waiting at most `idle_timeout` since the last
    /// input; `Ok(0)` is the client's end of stream.
    ///
    /// `buf` is sized to `buffer_size` only when data is ready, so a connection that sits
    /// idle holds no buffer (the RSS-per-idle-connection target). After that, the read is
    /// tokio's own, which clears the socket's readiness after a short read, so that a
    /// ping-pong connection pays one `recvfrom` per message and no failing one
    /// (docs/architecture.md, "A connection's path"). The idle timeout is one timer per
    /// connection with a lazy deadline: input only notes when it came, and the timer is
    /// moved when it fires early, so a busy connection touches the timer wheel about once
    /// per `idle_timeout` instead of on every wait.
    pub async fn read(&mut self, buf: &mut Vec<u8>) -> Result<usize, ConnError> {
        let n = match self.socket {
            Socket::Ready(_) => self.read_ready(buf).await?,
            Socket::Blocking(_) => self.read_blocking(buf)?,
        };
        self.last_input = Instant::now();
        self.count_received(n);
        Ok(n)
    }

    async fn read_ready(&mut self, buf: &mut Vec<u8>) -> Result<usize, ConnError> {
        let idle = self.settings.options.idle_timeout;
        if buf.is_empty() {
            self.wait_for_input(idle).await?;
            buf.resize(self.settings.options.buffer_size, 0);
        }
        let Socket::Ready(stream) = &mut self.socket else {
            return Err(ConnError::Read(io::ErrorKind::Unsupported.into()));
        };
        let timer = self
            .idle
            .get_or_insert_with(|| Alarm::at(self.last_input + idle));
        loop {
            tokio::select! {
                biased;
                read = stream.read(buf) => return read.map_err(ConnError::Read),
                () = &mut *timer => {
                    let due = self.last_input + idle;
                    if Instant::now() >= due {
                        return Err(ConnError::IdleTimeout(idle));
                    }
                    timer.reset(due);
                }
            }
        }
    }

    /// The threaded design's read: the thread blocks in the kernel for at most the idle
    /// timeout, or what is left of `max_connection_time` if that is less (the runtime's
    /// bound on the whole connection cannot interrupt a blocked thread).
    fn read_blocking(&mut self, buf: &mut Vec<u8>) -> Result<usize, ConnError> {
        let options = &self.settings.options;
        if buf.is_empty() {
            buf.resize(options.buffer_size, 0);
        }
        let Socket::Blocking(stream) = &mut self.socket else {
            return Err(ConnError::Read(io::ErrorKind::Unsupported.into()));
        };
        let left = (self.accepted + options.max_connection_time)
            .saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(ConnError::MaxTime(options.max_connection_time));
        }
        // One setsockopt only when the timeout must shrink: near the end of the
        // connection's life, not per message.
        if left < self.read_timeout {
            stream
                .set_read_timeout(Some(left.max(SHORTEST_WAIT)))
                .map_err(ConnError::Read)?;
            self.read_timeout = left;
        }
        loop {
            match io::Read::read(stream, buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if is_timeout(&e) => {
                    return Err(if self.read_timeout < options.idle_timeout {
                        ConnError::MaxTime(options.max_connection_time)
                    } else {
                        ConnError::IdleTimeout(options.idle_timeout)
                    });
                }
                Err(e) => return Err(ConnError::Read(e)),
            }
        }
    }

    /// Waits, at most `idle`, until input is waiting or the client closed. Readiness can
    /// be spurious (a fresh socket is reported readable with nothing to read): one byte is
    /// peeked first, so that only a connection with input waiting (or at EOF) gets a
    /// buffer. `try_io` clears the readiness on `WouldBlock`, so this cannot spin.
    async fn wait_for_input(&mut self, idle: Duration) -> Result<(), ConnError> {
        let deadline = self.last_input + idle;
        let Socket::Ready(stream) = &self.socket else {
            return Ok(());
        };
        loop {
            timeout_at(deadline, stream.readable())
                .await
                .map_err(|_| ConnError::IdleTimeout(idle))?
                .map_err(ConnError::Read)?;
            let mut probe = [std::mem::MaybeUninit::<u8>::uninit()];
            let sock = socket2::SockRef::from(stream);
            match stream.try_io(tokio::io::Interest::READABLE, || sock.peek(&mut probe)) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(ConnError::Read(e)),
            }
        }
    }

    /// Writes all of `data`; whenever the socket is full, it must accept more within
    /// `write_timeout`, so a client that stops reading is cut off instead of holding the
    /// server (book §8.29, server deadlock). Like [`Conn::read`], the timer is armed only
    /// when the write would block.
    pub async fn write_all(&mut self, data: &[u8]) -> Result<(), ConnError> {
        if self.settings.faults.any() || self.reset_after.is_some() {
            // Boxed: the fault hooks' state (about 210 bytes) would otherwise sit in every
            // session's future, resident while it idles, faults or not; the allocation
            // is paid only while a fault is set.
            return Box::pin(self.write_with_faults(data)).await;
        }
        self.write_plain(data).await
    }

    async fn write_plain(&mut self, mut data: &[u8]) -> Result<(), ConnError> {
        let limit = self.settings.options.write_timeout;
        while !data.is_empty() {
            let written = match &mut self.socket {
                Socket::Ready(stream) => match stream.try_write(data) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        timeout(limit, stream.writable())
                            .await
                            .map_err(|_| ConnError::WriteTimeout(limit))?
                            .map_err(ConnError::Write)?;
                        continue;
                    }
                    written => written,
                },
                // Blocks for at most SO_SNDTIMEO without progress.
                Socket::Blocking(stream) => match io::Write::write(stream, data) {
                    Err(e) if is_timeout(&e) => return Err(ConnError::WriteTimeout(limit)),
                    written => written,
                },
            };
            match written {
                Ok(0) => return Err(ConnError::Write(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.sent += n as u64;
                    self.settings.meter.sent(n);
                    data = &data[n..];
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ConnError::Write(e)),
            }
        }
        Ok(())
    }

    /// Reads and counts, without waiting, whatever input is queued.
    fn drain_queued(&mut self, sink: &mut [u8]) {
        loop {
            let read = match &mut self.socket {
                Socket::Ready(stream) => stream.try_read(sink),
                Socket::Blocking(stream) => match stream.set_nonblocking(true) {
                    Ok(()) => io::Read::read(stream, sink),
                    Err(e) => Err(e),
                },
            };
            match read {
                Ok(n) if n > 0 => self.count_received(n),
                _ => return,
            }
        }
    }

    /// Half-closes: the client reads end of stream after what was sent.
    async fn shutdown_write(&mut self) -> io::Result<()> {
        match &mut self.socket {
            Socket::Ready(stream) => stream.shutdown().await,
            Socket::Blocking(stream) => stream.shutdown(std::net::Shutdown::Write),
        }
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
                let _ = self.socket.sock().set_linger(Some(Duration::ZERO));
                Err(ConnError::FaultReset)
            }
            AfterWrite::Cut => {
                // The client sees the short reply end in a FIN; what it sends after is
                // read and dropped, so it gets no reset either.
                self.truncated = true;
                let _ = self.shutdown_write().await;
                Ok(())
            }
        }
    }

    /// Closes gracefully: half-close (FIN) so the answer is delivered, then discard input
    /// until the client closes or `close_linger` passes. Closing with unread input would
    /// send a reset that can destroy the answer in the client's buffer (book §10.7;
    /// docs/architecture.md, "A connection's path"). During shutdown the linger also ends
    /// before the shutdown deadline, so a finished session is never counted as cut.
    ///
    /// By reference, not by value: a by-value `async fn` would hold a second copy of the
    /// connection in every session's future (allocated per connection, resident while it
    /// sits idle). Nothing is to be sent after it.
    pub async fn finish(&mut self) -> Result<(), ConnError> {
        if self.settings.faults.any() || self.reset_after.is_some() {
            match self.settings.faults.tcp_close(self.reset_after, self.sent) {
                Close::Reset => {
                    let _ = self.socket.sock().set_linger(Some(Duration::ZERO));
                    return Err(ConnError::FaultReset);
                }
                Close::After(wait) => tokio::time::sleep(wait).await,
            }
        }
        if !self.truncated {
            self.shutdown_write().await.map_err(ConnError::Write)?;
        }
        // What a client sends after the answer is only counted and dropped.
        let mut sink = [0u8; 256];
        if self.settings.options.close_linger.is_zero() {
            // No linger: drop what has already arrived (closing with unread input would
            // send a reset) and close at once, without waiting for the client's FIN.
            self.drain_queued(&mut sink);
            return Ok(());
        }
        let mut deadline = Instant::now() + self.settings.options.close_linger;
        if let Some(end) = self.settings.shutdown.linger_end() {
            deadline = deadline.min(end);
        }
        loop {
            let read = match &mut self.socket {
                Socket::Ready(stream) => match timeout_at(deadline, stream.read(&mut sink)).await {
                    Ok(read) => read,
                    Err(_) => return Ok(()),
                },
                Socket::Blocking(stream) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
                        return Ok(());
                    }
                    io::Read::read(stream, &mut sink)
                }
            };
            match read {
                Ok(0) => return Ok(()),
                Ok(n) => self.count_received(n),
                // The client reset after our FIN (it has what it wanted, nothing to
                // report), or the linger ran out.
                Err(_) => return Ok(()),
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

/// Whether a blocking socket's error is its timeout running out (`EAGAIN`).
fn is_timeout(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
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
