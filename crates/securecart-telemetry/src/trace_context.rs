//! The W3C trace context (`traceparent`), so that one request can be followed from the edge
//! through every service it reaches.
//!
//! Only the `traceparent` header is handled: version `00`, a 16-byte trace id, an 8-byte
//! parent id and the flags. An invalid header is ignored and a new trace is started, as the
//! recommendation asks.

use std::fmt;

use rand::Rng;

/// The header's name.
pub const TRACEPARENT: &str = "traceparent";

/// One hop of a trace: the trace it belongs to and this hop's span id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceContext {
    /// The trace's id, shared by every hop.
    pub trace_id: u128,
    /// This hop's span id.
    pub span_id: u64,
    /// The trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceContext {
    /// A new trace, sampled.
    pub fn new_root() -> Self {
        let mut rng = rand::rng();
        Self {
            trace_id: rng.random_range(1..=u128::MAX),
            span_id: rng.random_range(1..=u64::MAX),
            flags: 1,
        }
    }

    /// Parses a `traceparent` header value; `None` when it is not a valid version-00 value.
    pub fn parse(header: &str) -> Option<Self> {
        let header = header.trim();
        let mut parts = header.split('-');
        let version = parts.next()?;
        let trace_id = parts.next()?;
        let span_id = parts.next()?;
        let flags = parts.next()?;
        let is_hex = |text: &str, len: usize| {
            text.len() == len
                && text
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        // Version ff is forbidden; a higher version may carry more fields, which we ignore.
        if !is_hex(version, 2) || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        if !is_hex(trace_id, 32) || !is_hex(span_id, 16) || !is_hex(flags, 2) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace_id, 16).ok()?;
        let span_id = u64::from_str_radix(span_id, 16).ok()?;
        if trace_id == 0 || span_id == 0 {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            flags: u8::from_str_radix(flags, 16).ok()?,
        })
    }

    /// The context for the next hop: the same trace, a new span id.
    pub fn child(&self) -> Self {
        Self {
            trace_id: self.trace_id,
            span_id: rand::rng().random_range(1..=u64::MAX),
            flags: self.flags,
        }
    }

    /// The `traceparent` header value as bytes, written without the formatting machinery
    /// (a proxy writes one per request).
    pub fn header_bytes(&self) -> [u8; 55] {
        fn hex(out: &mut [u8], value: u128) {
            const DIGITS: &[u8; 16] = b"0123456789abcdef";
            let mut value = value;
            for byte in out.iter_mut().rev() {
                *byte = DIGITS[(value & 0xf) as usize];
                value >>= 4;
            }
        }
        let mut out = [b'-'; 55];
        out[0] = b'0';
        out[1] = b'0';
        hex(&mut out[3..35], self.trace_id);
        hex(&mut out[36..52], u128::from(self.span_id));
        hex(&mut out[53..55], u128::from(self.flags));
        out
    }

    /// The trace id as 32 lowercase hex digits, as logs show it.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

impl fmt::Display for TraceContext {
    /// The `traceparent` header value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id, self.span_id, self.flags
        )
    }
}

#[cfg(test)]
mod tests {
    use super::TraceContext;

    #[test]
    fn the_fast_header_matches_the_formatted_one() {
        for context in [
            TraceContext::new_root(),
            TraceContext::new_root().child(),
            TraceContext::parse("00-0af7651916cd43dd8448eb211c80319c-00f067aa0ba902b7-01")
                .expect("valid"),
        ] {
            assert_eq!(
                std::str::from_utf8(&context.header_bytes()).expect("ascii"),
                context.to_string()
            );
        }
    }

    #[test]
    fn traceparent_parsing_follows_the_recommendation() {
        let cases: &[(&str, bool)] = &[
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                true,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
                true,
            ),
            // Uppercase hex is invalid.
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                false,
            ),
            // All-zero ids are invalid.
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                false,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                false,
            ),
            // Version ff is forbidden; version 00 has exactly four fields.
            (
                "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                false,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                false,
            ),
            // A future version may add fields.
            (
                "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                true,
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
                false,
            ),
            ("garbage", false),
            ("", false),
        ];
        for (header, valid) in cases {
            assert_eq!(TraceContext::parse(header).is_some(), *valid, "{header}");
        }
    }

    #[test]
    fn a_child_keeps_the_trace_and_round_trips() {
        let parent = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
            .expect("valid");
        let child = parent.child();
        assert_eq!(child.trace_id, parent.trace_id);
        assert_eq!(TraceContext::parse(&child.to_string()), Some(child));
        assert_eq!(child.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
    }
}
