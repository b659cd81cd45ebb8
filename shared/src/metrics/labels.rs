//! The label values of the metric families: one enum per label, each value spelled once.

/// A transport, the `transport` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Transport {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
        }
    }
}

/// What went wrong, the `kind` label of `inetsvc_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// `accept` failed (EMFILE, ENOMEM…); the listener backs off.
    Accept,
    /// Reading from a connection failed (reset, …).
    Read,
    /// Writing to a connection failed (reset, broken pipe, …).
    Write,
    /// Nothing received for `idle_timeout`.
    IdleTimeout,
    /// A write made no progress for `write_timeout`.
    WriteTimeout,
    /// The connection outlived `max_connection_time`.
    MaxDuration,
    /// Receiving a datagram failed.
    Receive,
    /// Sending a datagram failed.
    Send,
    /// The service reset a connection mid-stream (the `tcp_reset` fault).
    Reset,
}

impl ErrorKind {
    /// Every kind, so that handles are resolved once.
    pub const ALL: [ErrorKind; 9] = [
        ErrorKind::Accept,
        ErrorKind::Read,
        ErrorKind::Write,
        ErrorKind::IdleTimeout,
        ErrorKind::WriteTimeout,
        ErrorKind::MaxDuration,
        ErrorKind::Receive,
        ErrorKind::Send,
        ErrorKind::Reset,
    ];

    /// The one transport this kind can happen on: only its series are exported, so that
    /// no series exists that can never move.
    pub fn transport(self) -> Transport {
        match self {
            ErrorKind::Receive | ErrorKind::Send => Transport::Udp,
            _ => Transport::Tcp,
        }
    }

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Accept => "accept",
            ErrorKind::Read => "read",
            ErrorKind::Write => "write",
            ErrorKind::IdleTimeout => "idle_timeout",
            ErrorKind::WriteTimeout => "write_timeout",
            ErrorKind::MaxDuration => "max_duration",
            ErrorKind::Receive => "receive",
            ErrorKind::Send => "send",
            ErrorKind::Reset => "reset",
        }
    }
}

/// Why the admin server turned a connection or request away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminRefusal {
    /// A new connection found the cap full and no connection could be closed for it.
    Cap,
    /// The oldest connection was closed to make room for a new one.
    Evicted,
    /// Request headers not complete within `admin_header_timeout` (or idle that long).
    HeaderTimeout,
    /// A request, body included, took longer than `admin_request_timeout`.
    RequestTimeout,
    /// An `/admin/` request without the right bearer token.
    Unauthorized,
    /// A request for a `Host` the admin port does not answer (DNS rebinding guard).
    Host,
    /// A trainee's token on a route that is the trainer's (the faults).
    Forbidden,
}

impl AdminRefusal {
    /// Every reason, each created at zero.
    pub const ALL: [AdminRefusal; 7] = [
        AdminRefusal::Cap,
        AdminRefusal::Evicted,
        AdminRefusal::HeaderTimeout,
        AdminRefusal::RequestTimeout,
        AdminRefusal::Unauthorized,
        AdminRefusal::Host,
        AdminRefusal::Forbidden,
    ];

    /// The `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            AdminRefusal::Cap => "cap",
            AdminRefusal::Evicted => "evicted",
            AdminRefusal::HeaderTimeout => "header_timeout",
            AdminRefusal::RequestTimeout => "request_timeout",
            AdminRefusal::Unauthorized => "unauthorized",
            AdminRefusal::Host => "host",
            AdminRefusal::Forbidden => "forbidden",
        }
    }
}
