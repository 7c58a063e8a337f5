//! The bits of MongoDB Extended JSON (v2, relaxed and canonical) the mapping
//! needs: `{"$oid": …}` ids and `{"$date": …}` times.

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The text of an `_id`/`id` value: the hex of an ObjectId, a string, a
/// number, or else the compact JSON.
pub fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(m) => match m.get("$oid") {
            Some(Value::String(s)) => Some(s.clone()),
            _ => Some(v.to_string()),
        },
        other => Some(other.to_string()),
    }
}

/// A `$date` (relaxed: RFC 3339 string; canonical: `{"$numberLong": ms}`) or
/// a plain RFC 3339 string.
pub fn date(v: &Value) -> Option<DateTime<Utc>> {
    let date = match v {
        Value::String(s) => crate::event::parse_rfc3339(s),
        Value::Object(m) => match m.get("$date")? {
            Value::String(s) => crate::event::parse_rfc3339(s),
            Value::Number(n) => DateTime::from_timestamp_millis(n.as_i64()?),
            Value::Object(inner) => {
                let ms = inner.get("$numberLong")?.as_str()?.parse().ok()?;
                DateTime::from_timestamp_millis(ms)
            }
            _ => None,
        },
        _ => None,
    };
    date.filter(crate::event::rfc3339_writes)
}

pub use crate::event::rfc3339_nano;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_and_dates() {
        assert_eq!(
            id_text(&json!({"$oid": "0f21ddb66cad4a268d116ece"})).unwrap(),
            "0f21ddb66cad4a268d116ece"
        );
        assert_eq!(id_text(&json!(42)).unwrap(), "42");
        assert_eq!(id_text(&Value::Null), None);
        let d = date(&json!({"$date": "2026-10-01T00:00:00.655Z"})).unwrap();
        assert_eq!(rfc3339_nano(&d), "2026-10-01T00:00:00.655Z");
        let d = date(&json!({"$date": {"$numberLong": "1790812800000"}})).unwrap();
        assert_eq!(rfc3339_nano(&d), "2026-10-01T00:00:00Z");
        let d = DateTime::from_timestamp(1790812800, 650_934_000).unwrap();
        assert_eq!(rfc3339_nano(&d), "2026-10-01T00:00:00.650934Z");
    }
}
