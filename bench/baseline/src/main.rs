//! `bare-inetd`: the benchmark's independent baseline (bench/run; docs/benchmarks.md).
//!
//! The simplest correct tokio servers for ECHO (RFC 862), DAYTIME (RFC 867) and TIME
//! (RFC 868), over TCP and UDP: a `read`/`write_all` loop per connection, one
//! `recv_from`/`send_to` loop per UDP socket, and for DAYTIME and TIME one write and a
//! close. No limits, no timeouts, no metrics, no tracing, nothing shared with the
//! runtime crate: what the runtime costs on top of tokio itself is measured against this.
//!
//! Usage: `bare-inetd SERVICE=ADDRESS...`, e.g. `bare-inetd echo=127.0.0.1:7007`;
//! each address is served over TCP and UDP. It runs until killed.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};

/// Seconds from the TIME epoch (1900-01-01) to the Unix epoch: RFC 868.
const TIME_EPOCH_OFFSET: u64 = 2_208_988_800;

#[derive(Clone, Copy)]
enum Kind {
    Echo,
    Daytime,
    Time,
}

fn main() {
    let mut services = Vec::new();
    for arg in std::env::args().skip(1) {
        let parsed = arg.split_once('=').and_then(|(name, addr)| {
            let kind = match name {
                "echo" => Kind::Echo,
                "daytime" => Kind::Daytime,
                "time" => Kind::Time,
                _ => return None,
            };
            addr.parse::<SocketAddr>().ok().map(|addr| (kind, addr))
        });
        match parsed {
            Some(service) => services.push(service),
            None => {
                eprintln!(
                    "bare-inetd: expected SERVICE=ADDRESS (echo, daytime or time), got `{arg}`"
                );
                std::process::exit(2);
            }
        }
    }
    if services.is_empty() {
        eprintln!("usage: bare-inetd SERVICE=ADDRESS...");
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    runtime.block_on(async move {
        for (kind, addr) in services {
            let listener = TcpListener::bind(addr).await.expect("bind TCP");
            let socket = UdpSocket::bind(addr).await.expect("bind UDP");
            tokio::spawn(serve_tcp(kind, listener));
            tokio::spawn(serve_udp(kind, socket));
        }
        std::future::pending::<()>().await
    });
}

async fn serve_tcp(kind: Kind, listener: TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        tokio::spawn(async move {
            match kind {
                Kind::Echo => {
                    let mut buf = vec![0u8; 16 * 1024];
                    loop {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if stream.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                }
                Kind::Daytime | Kind::Time => {
                    let _ = stream.write_all(&answer(kind)).await;
                }
            }
        });
    }
}

async fn serve_udp(kind: Kind, socket: UdpSocket) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let Ok((n, from)) = socket.recv_from(&mut buf).await else {
            continue;
        };
        let _ = match kind {
            Kind::Echo => socket.send_to(&buf[..n], from).await,
            _ => socket.send_to(&answer(kind), from).await,
        };
    }
}

/// The DAYTIME or TIME answer for now.
fn answer(kind: Kind) -> Vec<u8> {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match kind {
        Kind::Time => (((unix + TIME_EPOCH_OFFSET) & 0xffff_ffff) as u32)
            .to_be_bytes()
            .to_vec(),
        _ => daytime(unix).into_bytes(),
    }
}

/// RFC 867 leaves the format open; this is `YYYY-MM-DD hh:mm:ss UTC`, from the days
/// since the epoch by the civil-from-days algorithm (proleptic Gregorian calendar).
fn daytime(unix: u64) -> String {
    let (days, secs) = ((unix / 86_400) as i64, unix % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC\r\n",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daytime_is_the_civil_date() {
        assert_eq!(daytime(0), "1970-01-01 00:00:00 UTC\r\n");
        // 2000-02-29 12:34:56 UTC, a leap day of a century year.
        assert_eq!(daytime(951_827_696), "2000-02-29 12:34:56 UTC\r\n");
        assert_eq!(daytime(1_796_342_400), "2026-12-04 00:00:00 UTC\r\n");
    }
}
