//! The downstream call protocol: what a server sends the downstream
//! responder for a `call` frame, and what comes back.
//!
//! A request is [`CALL_LEN`] bytes, little-endian: the delay in
//! microseconds (u32) and a tag (u32). The reply is the same bytes, written
//! once the delay has passed since the request was read, so a caller checks
//! that it got its own answer. A caller has one request outstanding per
//! connection: it writes, reads the reply, then may write the next.

/// Size of a request and of its reply.
pub const CALL_LEN: usize = 8;

/// The longest delay a responder accepts, microseconds (the server's
/// default cap on io waits and calls, [`crate::Limits`]).
pub const MAX_CALL_DELAY_US: u32 = 100_000;

/// The request for a call that answers after `delay_us`, tagged `tag`.
pub fn request(delay_us: u32, tag: u32) -> [u8; CALL_LEN] {
    let mut out = [0u8; CALL_LEN];
    out[..4].copy_from_slice(&delay_us.to_le_bytes());
    out[4..].copy_from_slice(&tag.to_le_bytes());
    out
}

/// A request's delay (microseconds) and tag.
pub fn parse(buf: &[u8; CALL_LEN]) -> (u32, u32) {
    let word = |b: &[u8]| u32::from_le_bytes(b.try_into().expect("4 bytes"));
    (word(&buf[..4]), word(&buf[4..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_reads_back() {
        let r = request(1_000, 0xDEAD_BEEF);
        assert_eq!(r[..4], 1_000u32.to_le_bytes());
        assert_eq!(parse(&r), (1_000, 0xDEAD_BEEF));
    }
}
