//! The rewrite of `bench-rewrite`, free of the plugin interface (it needs
//! only `serde_json` with `preserve_order`, as the host has it).

use serde_json::Value;

/// The data after the rewrite, or `None` to leave the event as it is (the
/// data is not a JSON object):
///
/// 1. `healthEvent` is removed from the object (`shift_remove`: the other
///    keys keep their order); if it is an object whose `nodeName` is a
///    string, that string is lower-cased (`str::to_lowercase`); it is then
///    inserted as `health` (at the end, or in place of an existing
///    `health`);
/// 2. `"exporter": "switchyard"` is inserted (at the end, or in place of an
///    existing `exporter`);
/// 3. the object is serialised compactly (`serde_json::to_vec`).
pub fn rewrite(data: &[u8]) -> Option<Vec<u8>> {
    let Ok(Value::Object(mut map)) = serde_json::from_slice::<Value>(data) else {
        return None;
    };
    if let Some(mut health) = map.shift_remove("healthEvent") {
        if let Some(Value::String(node)) = health.get_mut("nodeName") {
            *node = node.to_lowercase();
        }
        map.insert("health".to_owned(), health);
    }
    map.insert(
        "exporter".to_owned(),
        Value::String("switchyard".to_owned()),
    );
    serde_json::to_vec(&Value::Object(map)).ok()
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    fn run(input: &str) -> Option<String> {
        rewrite(input.as_bytes()).map(|out| String::from_utf8(out).unwrap())
    }

    #[test]
    fn renames_lowercases_and_adds() {
        assert_eq!(
            run(r#"{"metadata":{"cluster":"c"},"healthEvent":{"nodeName":"GPU-Node-ÄB","isFatal":true},"z":1}"#)
                .unwrap(),
            r#"{"metadata":{"cluster":"c"},"z":1,"health":{"nodeName":"gpu-node-äb","isFatal":true},"exporter":"switchyard"}"#
        );
    }

    #[test]
    fn existing_keys_are_replaced_in_place() {
        assert_eq!(
            run(r#"{"exporter":"x","health":1,"healthEvent":{"nodeName":5},"a":2}"#).unwrap(),
            r#"{"exporter":"switchyard","health":{"nodeName":5},"a":2}"#
        );
        // Without healthEvent, health is left alone.
        assert_eq!(
            run(r#"{"health":{"nodeName":"A"}}"#).unwrap(),
            r#"{"health":{"nodeName":"A"},"exporter":"switchyard"}"#
        );
        assert_eq!(run("{}").unwrap(), r#"{"exporter":"switchyard"}"#);
    }

    #[test]
    fn anything_but_an_object_is_left_alone() {
        assert_eq!(run("[1]"), None);
        assert_eq!(run("{"), None);
        assert_eq!(run("plain text"), None);
    }
}
