//! An event's `data` read from its JSON, keeping only what a set of field
//! paths can reach: what routing needs of an event whose JSON was written
//! without a DOM (`mapping::Mapper::encode`). The members no path reaches
//! are skipped as the parser passes them, without being built; what is
//! kept reads, through [`FieldPath::any`], exactly as the whole data would.

use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::path::{FieldPath, Segment};

/// The `data.…` paths of a route tree, as a tree of member names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DataPaths {
    /// The paths under `data`.
    root: Node,
    /// The same as seen from the event: its `data` member, those paths.
    event: Node,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Node {
    /// A path ends here: the whole value is kept.
    all: bool,
    members: Vec<(Box<str>, Node)>,
}

impl Node {
    fn add(&mut self, segments: &[Segment]) {
        let Some((first, rest)) = segments.split_first() else {
            self.all = true;
            return;
        };
        let i = match self.members.iter().position(|(k, _)| **k == *first.key()) {
            Some(i) => i,
            None => {
                self.members.push((first.key().into(), Node::default()));
                self.members.len() - 1
            }
        };
        self.members[i].1.add(rest);
    }

    fn member(&self, key: &str) -> Option<&Node> {
        self.members
            .iter()
            .find_map(|(k, n)| (**k == *key).then_some(n))
    }

    /// Members a non-numeric path step names (the ones that also apply to
    /// every element of an array).
    fn has_named(&self) -> bool {
        self.members
            .iter()
            .any(|(k, _)| k.parse::<usize>().is_err())
    }
}

impl DataPaths {
    /// The `data` paths among `paths` (attributes and extensions are read
    /// from the event itself).
    pub fn new<'a>(paths: impl IntoIterator<Item = &'a FieldPath>) -> Self {
        let mut root = Node::default();
        for path in paths {
            if let FieldPath::Data(segments) = path {
                root.add(segments);
            }
        }
        let event = Node {
            all: false,
            members: vec![("data".into(), root.clone())],
        };
        Self { root, event }
    }

    /// Whether no path reads `data` (then nothing need be read).
    pub fn is_empty(&self) -> bool {
        !self.root.all && self.root.members.is_empty()
    }

    /// The `data` member of a structured-mode event's JSON, with only what
    /// the paths reach (`Null` when it has none).
    pub fn data_of(&self, event_json: &[u8]) -> Result<Value, serde_json::Error> {
        let mut de = serde_json::Deserializer::from_slice(event_json);
        let event = Wants::one(&self.event).deserialize(&mut de)?;
        de.end()?;
        Ok(match event {
            Value::Object(mut members) => members.remove("data").unwrap_or(Value::Null),
            _ => Value::Null,
        })
    }
}

/// What the paths want of one value: one or more nodes, each with whether
/// its numeric members apply here (they do not to every element of an
/// array, which a named step reaches).
#[derive(Clone, Copy)]
struct Want<'k> {
    node: &'k Node,
    numeric: bool,
}

struct Wants<'k>(Vec<Want<'k>>);

impl<'k> Wants<'k> {
    fn one(node: &'k Node) -> Self {
        Self(vec![Want {
            node,
            numeric: true,
        }])
    }

    fn all(&self) -> bool {
        self.0.iter().any(|w| w.node.all)
    }

    /// What the paths want of member `key` of an object here.
    fn member(&self, key: &str) -> Wants<'k> {
        let numeric = key.parse::<usize>().is_ok();
        Wants(
            self.0
                .iter()
                .filter(|w| w.numeric || !numeric)
                .filter_map(|w| w.node.member(key))
                .map(|node| Want {
                    node,
                    numeric: true,
                })
                .collect(),
        )
    }

    /// What the paths want of element `i` of an array here: every named
    /// step again, and the step that indexes it.
    fn element(&self, i: usize) -> Wants<'k> {
        let mut wants = Vec::new();
        for w in &self.0 {
            if w.node.has_named() {
                wants.push(Want {
                    node: w.node,
                    numeric: false,
                });
            }
            if w.numeric
                && let Some(node) = w.node.member(&i.to_string())
            {
                wants.push(Want {
                    node,
                    numeric: true,
                });
            }
        }
        Wants(wants)
    }
}

/// A member name, kept only when some path wants that member.
struct Wanted<'a, 'k>(&'a Wants<'k>);

impl<'de> DeserializeSeed<'de> for Wanted<'_, '_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<String>, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Wanted<'_, '_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Option<String>, E> {
        let numeric = v.parse::<usize>().is_ok();
        let wanted = self
            .0
            .0
            .iter()
            .any(|w| (w.numeric || !numeric) && w.node.member(v).is_some());
        Ok(wanted.then(|| v.to_owned()))
    }
}

impl<'de> DeserializeSeed<'de> for Wants<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.0.is_empty() {
            <IgnoredAny as serde::Deserialize>::deserialize(d)?;
            return Ok(Value::Null);
        }
        if self.all() {
            return serde::Deserialize::deserialize(d);
        }
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Wants<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(Wanted(&self))? {
            match key {
                Some(key) => {
                    let value = map.next_value_seed(self.member(&key))?;
                    out.insert(key, value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        // Every element keeps its place (`null` where nothing is wanted), so
        // indexes read as in the whole array.
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self.element(out.len()))? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::event::{Event, EventBuilder, EventBuilderV10};

    fn event(data: Value) -> Event {
        EventBuilderV10::new()
            .id("1")
            .ty("t")
            .source("s")
            .data("application/json", data)
            .build()
            .unwrap()
    }

    /// Every path reads the same from the pruned data as from the whole:
    /// objects, arrays visited element by element, numeric steps that index
    /// an array or name a member, missing members, nested arrays.
    #[test]
    fn pruned_data_reads_as_the_whole_on_every_path() {
        let data = json!({
            "healthEvent": {
                "isFatal": true,
                "componentClass": "GPU",
                "message": "skipped",
                "entitiesImpacted": [
                    {"entityType": "GPU", "entityValue": "GPU-1"},
                    {"entityType": "PCI", "entityValue": "0000:01"}
                ],
                "errorCode": ["XID_79", "XID_48"],
                "grid": [[1, 2], [3, {"k": "deep"}]],
                "0": "a member named 0"
            },
            "metadata": {"cluster": "c"}
        });
        let whole = event(data.clone());
        let mut json = Vec::new();
        crate::event::write_json(&whole, &mut json);
        let paths: Vec<FieldPath> = [
            "data.healthEvent.isFatal",
            "data.healthEvent.componentClass",
            "data.healthEvent.entitiesImpacted.entityType",
            "data.healthEvent.entitiesImpacted.1.entityValue",
            "data.healthEvent.errorCode.0",
            "data.healthEvent.grid.k",
            "data.healthEvent.grid.1.0",
            "data.healthEvent.0",
            "data.healthEvent.missing",
            "data.metadata",
            "type",
        ]
        .iter()
        .map(|p| FieldPath::parse(p).unwrap())
        .collect();
        let pruned_data = DataPaths::new(&paths).data_of(&json).unwrap();
        assert!(
            pruned_data["healthEvent"].get("message").is_none(),
            "not reached, not kept"
        );
        let pruned = event(pruned_data);
        for path in &paths {
            let all = |e: &Event| {
                let mut seen = Vec::new();
                path.any(e, &mut |v| {
                    seen.push(v.to_owned());
                    false
                });
                seen
            };
            assert_eq!(all(&pruned), all(&whole), "{path}");
        }
    }

    #[test]
    fn no_data_path_reads_nothing_and_data_keeps_it_all() {
        let none = DataPaths::new(&[FieldPath::parse("subject").unwrap()]);
        assert!(none.is_empty());
        let data = json!({"a": [1, {"b": null}], "c": "d"});
        let mut json = Vec::new();
        crate::event::write_json(&event(data.clone()), &mut json);
        let all = DataPaths::new(&[FieldPath::parse("data").unwrap()]);
        assert!(!all.is_empty());
        assert_eq!(all.data_of(&json).unwrap(), data);
        assert!(all.data_of(b"{\"data\": [1,").is_err());
    }
}
