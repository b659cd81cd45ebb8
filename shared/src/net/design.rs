//! The server designs of Comer & Stevens, chapters 8–13, as a setting: how a service
//! handles many clients. Every design runs through the same listener, limits, timeouts,
//! metrics, traces and drain; only the way work is scheduled differs, and this file is the
//! one place that decides it: which runtime the process runs on ([`runtime`]), how an
//! admitted TCP connection is run ([`schedule`]) and how a datagram is answered
//! ([`UdpConcurrency`], matched in the UDP loop, which needs its buffers for it).
//! docs/architecture.md, "Server designs".

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

use tokio_util::task::TaskTracker;

use crate::shutdown::Shutdown;

/// How TCP connections are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpConcurrency {
    /// One client at a time: the accept loop serves each connection to its end before
    /// accepting the next (§8.13–8.18; the ch. 10 DAYTIME server). A stuck client holds
    /// everyone else until its timeout.
    Iterative,
    /// A task per connection on the multi-threaded runtime (the ch. 11 concurrent ECHO
    /// server, with tokio tasks in place of fork).
    Concurrent,
    /// An OS thread per connection (ch. 12), blocking on the connection's work; bounded
    /// by `max_connections`.
    Threaded,
    /// One thread, readiness-driven (the ch. 13 select() server): a task per connection on
    /// a single-threaded runtime.
    SingleThread,
}

/// How UDP datagrams are served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UdpConcurrency {
    /// Answer each datagram before reading the next (the ch. 9 TIME server).
    Iterative,
    /// A task per datagram, at most `max_connections` at once; reading pauses when that
    /// many are in flight.
    Concurrent,
}

impl TcpConcurrency {
    /// Parses a `tcp_concurrency` value.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "iterative" => Ok(TcpConcurrency::Iterative),
            "concurrent" => Ok(TcpConcurrency::Concurrent),
            "threaded" => Ok(TcpConcurrency::Threaded),
            "single-thread" => Ok(TcpConcurrency::SingleThread),
            _ => Err("expected `iterative`, `concurrent`, `threaded` or `single-thread`".into()),
        }
    }
}

impl UdpConcurrency {
    /// Parses a `udp_concurrency` value.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "iterative" => Ok(UdpConcurrency::Iterative),
            "concurrent" => Ok(UdpConcurrency::Concurrent),
            _ => Err("expected `iterative` or `concurrent`".into()),
        }
    }
}

impl fmt::Display for TcpConcurrency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TcpConcurrency::Iterative => "iterative",
            TcpConcurrency::Concurrent => "concurrent",
            TcpConcurrency::Threaded => "threaded",
            TcpConcurrency::SingleThread => "single-thread",
        })
    }
}

impl fmt::Display for UdpConcurrency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UdpConcurrency::Iterative => "iterative",
            UdpConcurrency::Concurrent => "concurrent",
        })
    }
}

/// The tokio runtime a design runs on. Book ch. 13: the single-thread design runs
/// everything, admin port and timers included, on the one thread that calls this.
pub fn runtime(tcp: TcpConcurrency) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match tcp {
        TcpConcurrency::SingleThread => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    builder.enable_all().build()
}

/// Runs one admitted connection the way `design` says; returns an error only when the
/// threaded design cannot start a thread (the connection is then closed with it).
pub(crate) async fn schedule(
    design: TcpConcurrency,
    connection: impl Future<Output = ()> + Send + 'static,
    tracker: &TaskTracker,
) -> std::io::Result<()> {
    match design {
        // Book §8.13: serve this client to its end before accepting another. The
        // connection's own timeouts bound how long a stuck client holds the others.
        TcpConcurrency::Iterative => tracker.track_future(connection).await,
        // Book ch. 11 and 13: a task per connection, on many threads or on one.
        TcpConcurrency::Concurrent | TcpConcurrency::SingleThread => {
            tracker.spawn(connection);
        }
        // Book ch. 12: an OS thread per connection, blocking in the kernel on its socket
        // (`Socket::Blocking`); the runtime only drives a fault's sleeps.
        TcpConcurrency::Threaded => {
            let runtime = tokio::runtime::Handle::current();
            let token = tracker.token();
            std::thread::Builder::new()
                .name("connection".into())
                .stack_size(256 * 1024)
                .spawn(move || {
                    runtime.block_on(connection);
                    drop(token);
                })?;
        }
    }
    Ok(())
}

/// The sockets of the threaded design's sessions, so that the request to finish reaches
/// a thread blocked in a read, which no runtime can wake: at the request, their read
/// sides are shut, the blocked read returns end of stream, and each session finishes as
/// it would at the client's close (everything read has been answered).
#[derive(Debug, Clone, Default)]
pub(crate) struct BlockedSessions {
    inner: Arc<Mutex<Sessions>>,
}

#[derive(Debug, Default)]
struct Sessions {
    next: u64,
    /// A duplicate of each session's socket.
    open: HashMap<u64, TcpStream>,
    /// Set at the request: sessions registered later are shut at once.
    finishing: bool,
}

/// A session's place in [`BlockedSessions`], left when dropped.
pub(crate) struct Registration {
    sessions: BlockedSessions,
    id: u64,
}

impl BlockedSessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, Sessions> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a session's socket (a duplicate of it).
    pub(crate) fn register(&self, socket: &TcpStream) -> std::io::Result<Registration> {
        let duplicate = socket.try_clone()?;
        let mut sessions = self.lock();
        if sessions.finishing {
            let _ = duplicate.shutdown(std::net::Shutdown::Read);
        }
        let id = sessions.next;
        sessions.next += 1;
        sessions.open.insert(id, duplicate);
        Ok(Registration {
            sessions: self.clone(),
            id,
        })
    }

    /// Waits for the request to finish, then shuts the read side of every session.
    pub(crate) async fn finish_on(self, shutdown: Shutdown) {
        shutdown.requested().await;
        let mut sessions = self.lock();
        sessions.finishing = true;
        for socket in sessions.open.values() {
            let _ = socket.shutdown(std::net::Shutdown::Read);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.sessions.lock().open.remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_design_parses_and_prints_back() {
        for text in ["iterative", "concurrent", "threaded", "single-thread"] {
            assert_eq!(TcpConcurrency::parse(text).unwrap().to_string(), text);
        }
        for text in ["iterative", "concurrent"] {
            assert_eq!(UdpConcurrency::parse(text).unwrap().to_string(), text);
        }
        assert!(TcpConcurrency::parse("forking")
            .unwrap_err()
            .contains("threaded"));
        assert!(UdpConcurrency::parse("threaded").is_err());
    }

    #[tokio::test]
    async fn the_request_to_finish_ends_a_blocked_read() {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut session, _) = listener.accept().unwrap();
        let sessions = BlockedSessions::default();
        let registration = sessions.register(&session).unwrap();
        let shutdown = Shutdown::new();
        let watcher = tokio::spawn(sessions.clone().finish_on(shutdown.clone()));
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 16];
            session.read(&mut buf)
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !reader.is_finished(),
            "the read blocks while the client is silent"
        );
        shutdown.request(tokio::time::Instant::now() + std::time::Duration::from_secs(1));
        watcher.await.unwrap();
        assert_eq!(reader.join().unwrap().unwrap(), 0, "end of stream");
        drop(registration);
        assert!(sessions.lock().open.is_empty());
    }
}
