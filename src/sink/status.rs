//! The one policy for HTTP answers, shared by every HTTP-speaking receiver:
//! 2xx delivered; 408, 429 and 5xx retried (honouring `Retry-After`); any
//! other status — other 4xx, and 3xx, since redirects are not followed —
//! rejected at once.

use std::time::{Duration, SystemTime};

use super::Delivery;

/// Classifies a response status. `retry_after` is the raw `Retry-After`
/// header, if any (seconds or an HTTP date).
pub fn classify(status: u16, retry_after: Option<&str>) -> Delivery {
    match status {
        200..=299 => Delivery::Delivered,
        408 | 429 | 500..=599 => Delivery::Retry {
            reason: format!("HTTP {status}"),
            after: retry_after.and_then(parse_retry_after),
        },
        _ => Delivery::Reject(format!("HTTP {status}")),
    }
}

/// `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2026 07:28:00 GMT`.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert_eq!(classify(200, None), Delivery::Delivered);
        assert_eq!(classify(202, None), Delivery::Delivered);
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(matches!(classify(s, None), Delivery::Retry { .. }), "{s}");
        }
        for s in [301, 302, 307, 400, 401, 403, 404, 409, 413, 422] {
            assert_eq!(
                classify(s, None),
                Delivery::Reject(format!("HTTP {s}")),
                "{s}"
            );
        }
        assert_eq!(
            classify(429, Some("7")),
            Delivery::Retry {
                reason: "HTTP 429".into(),
                after: Some(Duration::from_secs(7))
            }
        );
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(60));
        let d = parse_retry_after(&later).unwrap();
        assert!(
            d > Duration::from_secs(55) && d <= Duration::from_secs(60),
            "{d:?}"
        );
        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(60));
        assert_eq!(parse_retry_after(&past), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
    }
}
