//! ECHO, RFC 862, port 7.
//!
//! Request and answer: over TCP, every byte received is sent back until the client closes
//! ("This continues until the calling user terminates the connection"); over UDP, each
//! datagram's data is sent back to its source, byte-exact up to [`crate::MAX_DATAGRAM`].

/// RFC 862: "TCP Based Echo Service … on TCP port 7", and the same for UDP.
pub const PORT: u16 = 7;

/// RFC 862: the answer to a request is its own data, appended to `answer` (which the
/// caller reuses, so that the hot path does not allocate).
pub fn answer(request: &[u8], answer: &mut Vec<u8>) {
    answer.extend_from_slice(request);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_byte_exact_including_empty_and_largest() {
        for len in [0usize, 1, 2048, 4096, 65_507, crate::MAX_DATAGRAM] {
            let request: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let mut out = Vec::new();
            answer(&request, &mut out);
            assert_eq!(out, request, "length {len}");
        }
    }
}
