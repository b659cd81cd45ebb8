//! The server designs of Comer & Stevens, chapters 8–13, as a setting: how a service
//! handles many clients. Every design runs through the same listener, limits, timeouts,
//! metrics, traces and drain; only the way a connection or datagram is scheduled differs,
//! and that is decided in one place ([`crate::listener`]).

use std::fmt;

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
}
