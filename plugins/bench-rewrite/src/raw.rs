//! The same rewrite as [`crate::rewrite::rewrite`] without building a DOM:
//! the object's members are kept as raw JSON text and only `healthEvent`'s
//! members are looked into. For data serialised by serde_json (as the host
//! sends it) the output bytes are the same.

use std::borrow::Cow;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A member name, borrowed from the input unless it has escapes.
#[derive(Deserialize)]
struct Key<'a>(#[serde(borrow)] Cow<'a, str>);

/// An object's members in order: names and their raw JSON text. A repeated
/// name keeps its first place and its last value (as `IndexMap::insert`).
struct Members<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> Members<'a> {
    fn position(&self, name: &str) -> Option<usize> {
        self.0.iter().position(|(k, _)| k == name)
    }

    fn insert(&mut self, name: Cow<'a, str>, value: Cow<'a, str>) {
        match self.position(&name) {
            Some(i) => self.0[i].1 = value,
            None => self.0.push((name, value)),
        }
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.push(b'{');
        for (i, (name, value)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut *out, name.as_ref()).expect("a string serialises");
            out.push(b':');
            out.extend_from_slice(value.as_bytes());
        }
        out.push(b'}');
    }
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut members = Members(Vec::new());
                while let Some((Key(name), value)) = map.next_entry::<Key, &RawValue>()? {
                    members.insert(name, Cow::Borrowed(value.get()));
                }
                Ok(members)
            }
        }
        d.deserialize_map(V)
    }
}

/// [`crate::rewrite::rewrite`], member by member.
pub fn rewrite(data: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(data).ok()?;
    let mut top: Members = serde_json::from_str(text).ok()?;
    if let Some(i) = top.position("healthEvent") {
        let (_, raw) = top.0.remove(i);
        let health = match serde_json::from_str::<Members>(&raw) {
            Ok(mut inner) => {
                let node = inner.position("nodeName").and_then(|j| {
                    let node = serde_json::from_str::<String>(&inner.0[j].1).ok()?;
                    Some((j, node))
                });
                if let Some((j, node)) = node {
                    let lower =
                        serde_json::to_string(&node.to_lowercase()).expect("a string serialises");
                    inner.0[j].1 = Cow::Owned(lower);
                }
                let mut out = Vec::with_capacity(raw.len());
                inner.write(&mut out);
                Cow::Owned(String::from_utf8(out).expect("JSON text is UTF-8"))
            }
            Err(_) => raw,
        };
        top.insert(Cow::Borrowed("health"), health);
    }
    top.insert(Cow::Borrowed("exporter"), Cow::Borrowed("\"switchyard\""));
    let mut out = Vec::with_capacity(data.len() + 32);
    top.write(&mut out);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    /// Both rewrites give the same bytes for every golden event's data (as
    /// the host serialises it) and for the edge cases of the DOM version.
    #[test]
    fn same_bytes_as_the_dom_rewrite() {
        let golden = include_str!("../../../tests/testdata/nvsentinel/health-events.golden.jsonl");
        let mut inputs: Vec<String> = golden
            .lines()
            .map(|l| {
                let event: serde_json::Value = serde_json::from_str(l).unwrap();
                serde_json::to_string(&event["data"]).unwrap()
            })
            .collect();
        assert_eq!(inputs.len(), 1000);
        for edge in [
            r#"{"metadata":{"cluster":"c"},"healthEvent":{"nodeName":"GPU-Node-ÄB","isFatal":true},"z":1}"#,
            r#"{"exporter":"x","health":1,"healthEvent":{"nodeName":5},"a":2}"#,
            r#"{"health":{"nodeName":"A"}}"#,
            r#"{"healthEvent":[1,2],"a\"b":"é"}"#,
            r#"{"a":1,"a":2}"#,
            "{}",
            "[1]",
            "{",
            "plain text",
        ] {
            inputs.push(edge.to_owned());
        }
        for input in &inputs {
            let dom = crate::rewrite::rewrite(input.as_bytes()).map(String::from_utf8);
            let raw = rewrite(input.as_bytes()).map(String::from_utf8);
            assert_eq!(raw, dom, "{input}");
        }
    }
}
