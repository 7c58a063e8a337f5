//! W3C Trace Context as events carry it: the `traceparent` text
//! (`00-<trace id>-<span id>-<flags>`) and the CloudEvents distributed
//! tracing extension (`traceparent`, `tracestate` attributes), which holds
//! the context the event was created in. Knows nothing of OpenTelemetry.

use std::fmt;

use cloudevents::event::ExtensionValue;

use super::Event;

/// The extension attribute with the creation context.
pub const TRACEPARENT: &str = "traceparent";
/// The vendor-specific trace state beside it (optional).
pub const TRACESTATE: &str = "tracestate";

/// One span's place in a trace: what a `traceparent` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// Trace flags; bit 0 is "sampled".
    pub flags: u8,
}

impl TraceParent {
    /// Parses a version-00 `traceparent` (and, as the W3C spec asks, the
    /// first four fields of a later version). `None` if it is not one, or
    /// its trace or span id is all zeros.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        let mut parts = text.splitn(5, '-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let rest = parts.next();
        let version = hex::<1>(version)?[0];
        if version == 0xff || (version == 0 && rest.is_some()) {
            return None;
        }
        let tp = Self {
            trace_id: hex(trace)?,
            span_id: hex(span)?,
            flags: hex::<1>(flags)?[0],
        };
        tp.is_valid().then_some(tp)
    }

    /// A span id in `trace_id` (both hex, as NVSentinel stores them), sampled.
    pub fn from_ids(trace_id: &str, span_id: &str) -> Option<Self> {
        let tp = Self {
            trace_id: hex(trace_id)?,
            span_id: hex(span_id)?,
            flags: 1,
        };
        tp.is_valid().then_some(tp)
    }

    pub fn is_valid(&self) -> bool {
        self.trace_id != [0; 16] && self.span_id != [0; 8]
    }

    pub fn sampled(&self) -> bool {
        self.flags & 1 == 1
    }

    /// The creation context an event carries (its `traceparent` extension),
    /// if it is a valid one.
    pub fn of_event(event: &Event) -> Option<Self> {
        match event.extension(TRACEPARENT)? {
            ExtensionValue::String(s) => Self::parse(s),
            _ => None,
        }
    }
}

/// The `tracestate` extension of an event, if it is text.
pub fn tracestate(event: &Event) -> Option<&str> {
    match event.extension(TRACESTATE)? {
        ExtensionValue::String(s) => Some(s),
        _ => None,
    }
}

/// Sets the distributed tracing extension (`tracestate` only when given).
pub fn set_extension(event: &mut Event, parent: &TraceParent, state: Option<&str>) {
    event.set_extension(TRACEPARENT, parent.to_string());
    if let Some(state) = state.filter(|s| !s.is_empty()) {
        event.set_extension(TRACESTATE, state.to_owned());
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("00-")?;
        for b in self.trace_id {
            write!(f, "{b:02x}")?;
        }
        f.write_str("-")?;
        for b in self.span_id {
            write!(f, "{b:02x}")?;
        }
        write!(f, "-{:02x}", self.flags)
    }
}

/// Exactly `N` bytes of lower- or upper-case hex.
fn hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        let high = (pair[0] as char).to_digit(16)?;
        let low = (pair[1] as char).to_digit(16)?;
        out[i] = (high * 16 + low) as u8;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventBuilder, EventBuilderV10};

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_version_00() {
        let tp = TraceParent::parse(TP).unwrap();
        assert_eq!(tp.trace_id[0], 0x4b);
        assert_eq!(tp.span_id[7], 0xb7);
        assert!(tp.sampled());
        assert_eq!(tp.to_string(), TP);
        assert_eq!(
            TraceParent::parse(&TP.to_uppercase()).unwrap().to_string(),
            TP
        );
    }

    #[test]
    fn refuses_what_is_not_a_traceparent() {
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
        // A later version may add fields after the flags.
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what";
        assert!(TraceParent::parse(later).is_some());
    }

    #[test]
    fn from_nvsentinel_ids() {
        let tp =
            TraceParent::from_ids("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7").unwrap();
        assert_eq!(tp.to_string(), TP);
        assert_eq!(
            TraceParent::from_ids("00000000000000000000000000000000", "00f067aa0ba902b7"),
            None
        );
        assert_eq!(
            TraceParent::from_ids("4bf92f3577b34da6a3ce929d0e0e4736", ""),
            None
        );
    }

    #[test]
    fn the_extension_round_trips() {
        let mut event = EventBuilderV10::new()
            .id("1")
            .ty("t")
            .source("s")
            .build()
            .unwrap();
        assert_eq!(TraceParent::of_event(&event), None);
        let tp = TraceParent::parse(TP).unwrap();
        set_extension(&mut event, &tp, Some("congo=t61rcWkgMzE"));
        assert_eq!(TraceParent::of_event(&event), Some(tp));
        assert_eq!(tracestate(&event), Some("congo=t61rcWkgMzE"));
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["traceparent"], TP);
    }
}
