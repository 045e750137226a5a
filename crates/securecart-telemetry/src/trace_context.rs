//! The W3C trace context (`traceparent`), so that one request can be followed from the edge
//! through every service it reaches; and the same trace as AWS's `X-Amzn-Trace-Id`, which
//! an application load balancer adds and AWS X-Ray reads.
//!
//! Of `traceparent`, version `00` is handled: a 16-byte trace id, an 8-byte parent id and
//! the flags. An invalid header is ignored and a new trace is started, as the
//! recommendation asks.
//!
//! An `X-Amzn-Trace-Id` trace id (`Root=1-5759e988-bd862e3fe1be46a994272793`) is the same
//! 16 bytes written in two parts: the first 4 are the trace's start in Unix seconds, the
//! other 12 random. A trace this module starts has ids of that form, so that its `Root` is
//! a valid X-Ray trace id and a `traceparent` trace id at once (as OpenTelemetry's X-Ray
//! id generator makes them).

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
    /// A new trace, sampled: its id is the time now in Unix seconds (4 bytes) and 12
    /// random bytes (see the module's documentation).
    pub fn new_root() -> Self {
        let mut rng = rand::rng();
        Self {
            trace_id: (u128::from(unix_seconds()) << 96) | rng.random_range(1..1u128 << 96),
            span_id: rng.random_range(1..=u64::MAX),
            flags: 1,
        }
    }

    /// The trace an `X-Amzn-Trace-Id` header value names, if its `Root` field is a valid
    /// version-1 trace id (`Root=1-` then 8 and 24 hex digits, not all zero): its `Parent`
    /// (16 hex digits) is the span this context names, and `Sampled=0` clears the sampled
    /// flag (`1`, `?` or none leaves it set). Without a `Parent` the span id is 1: the
    /// context stands for the client's side, whose own span is not known.
    pub fn parse_amzn(header: &str) -> Option<Self> {
        let hex = |digits: &str, len: usize| {
            digits.len() == len && digits.bytes().all(|byte| byte.is_ascii_hexdigit())
        };
        let mut trace_id = None;
        let mut span_id = 1;
        let mut flags = 1;
        for field in header.split(';') {
            let Some((key, value)) = field.split_once('=') else {
                continue;
            };
            let value = value.trim();
            match key.trim() {
                // The first `Root` names the trace.
                "Root" if trace_id.is_none() => {
                    let (time, random) = value.strip_prefix("1-")?.split_once('-')?;
                    if !hex(time, 8) || !hex(random, 24) {
                        return None;
                    }
                    let time = u128::from_str_radix(time, 16).ok()?;
                    let random = u128::from_str_radix(random, 16).ok()?;
                    trace_id = Some(time << 96 | random).filter(|&id| id != 0);
                }
                "Parent" if hex(value, 16) => {
                    span_id = u64::from_str_radix(value, 16)
                        .ok()
                        .filter(|&id| id != 0)
                        .unwrap_or(1);
                }
                "Sampled" => flags = u8::from(value != "0"),
                _ => {}
            }
        }
        Some(Self {
            trace_id: trace_id?,
            span_id,
            flags,
        })
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
    /// (a proxy writes one per request): each byte's two digits from a table.
    pub fn header_bytes(&self) -> [u8; 55] {
        let mut out = [b'-'; 55];
        out[0] = b'0';
        out[1] = b'0';
        hex(&mut out[3..35], &self.trace_id.to_be_bytes());
        hex(&mut out[36..52], &self.span_id.to_be_bytes());
        hex(&mut out[53..55], &[self.flags]);
        out
    }

    /// The `X-Amzn-Trace-Id` field naming the trace: `Root=1-` then its id's first 8 and
    /// last 24 hex digits, with a dash between.
    pub fn amzn_root(&self) -> [u8; 40] {
        Self::amzn_root_of(&self.header_bytes())
    }

    /// [`TraceContext::amzn_root`] from the trace's `traceparent` value, already written.
    pub fn amzn_root_of(traceparent: &[u8; 55]) -> [u8; 40] {
        let mut out = [b'-'; 40];
        out[..7].copy_from_slice(b"Root=1-");
        // The trace id is the `traceparent` value's digits 3 to 35.
        out[7..15].copy_from_slice(&traceparent[3..11]);
        out[16..40].copy_from_slice(&traceparent[11..35]);
        out
    }

    /// The trace id as 32 lowercase hex digits, as logs show it.
    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }
}

/// The time now in Unix seconds, as X-Ray's ids hold it (4 bytes, until 2106).
pub fn unix_seconds() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as u32)
}

/// Writes `bytes` as lowercase hex digits into `out`, twice as long.
fn hex(out: &mut [u8], bytes: &[u8]) {
    /// Each byte's two digits.
    const DIGITS: [[u8; 2]; 256] = {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut table = [[0; 2]; 256];
        let mut byte = 0;
        while byte < 256 {
            table[byte] = [HEX[byte >> 4], HEX[byte & 0xf]];
            byte += 1;
        }
        table
    };
    for (pair, &byte) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&DIGITS[usize::from(byte)]);
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
    fn an_amzn_trace_id_names_the_same_trace() {
        let parsed = TraceContext::parse_amzn(
            "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1",
        )
        .expect("valid");
        assert_eq!(
            parsed,
            TraceContext {
                trace_id: 0x5759e988bd862e3fe1be46a994272793,
                span_id: 0x53995c3f42cd8ad8,
                flags: 1,
            }
        );
        assert_eq!(
            std::str::from_utf8(&parsed.amzn_root()).expect("ascii"),
            "Root=1-5759e988-bd862e3fe1be46a994272793"
        );
        // ALB's own: a Self field, a custom one, no parent; spaces around fields.
        let alb = TraceContext::parse_amzn(
            "Self=1-67891234-12456789abcdef012345678; Root=1-67891233-abcdef012345678912345678 ;CalledFrom=app",
        )
        .expect("valid");
        assert_eq!(
            (alb.trace_id, alb.span_id, alb.flags),
            (0x67891233abcdef012345678912345678, 1, 1)
        );
        assert_eq!(
            TraceContext::parse_amzn("Root=1-67891233-abcdef012345678912345678;Sampled=0")
                .map(|context| context.flags),
            Some(0)
        );
        // The first Root names the trace; a second one is another field.
        assert_eq!(
            TraceContext::parse_amzn(
                "Root=1-67891233-abcdef012345678912345678;Root=1-5759e988-bd862e3fe1be46a994272793"
            )
            .map(|context| context.trace_id),
            Some(0x67891233abcdef012345678912345678)
        );
        for invalid in [
            "",
            "Self=1-67891234-12456789abcdef012345678",
            "Root=2-67891233-abcdef012345678912345678",
            "Root=1-6789123-abcdef012345678912345678",
            "Root=1-67891233-abcdef01234567891234567",
            "Root=1-67891233-abcdef01234567891234567g",
            "Root=1-00000000-000000000000000000000000",
            "Root=1-67891233abcdef012345678912345678",
            "Root=1-+7891233-abcdef012345678912345678",
        ] {
            assert_eq!(TraceContext::parse_amzn(invalid), None, "{invalid}");
        }
    }

    #[test]
    fn a_new_trace_starts_with_the_time() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let started = (TraceContext::new_root().trace_id >> 96) as u64;
        assert!(started.abs_diff(now) <= 1, "{started} against {now}");
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
