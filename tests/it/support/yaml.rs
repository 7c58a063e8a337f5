//! Config templates: YAML written as it is (single braces for flow maps),
//! with `$name` placeholders filled in by [`yaml`]. A placeholder without a
//! value, or a value no placeholder uses, is a mistake in the test and
//! panics. `${…}` is left alone: that is the config's own environment
//! expansion.

use std::fmt::Display;

/// `template` with every `$name` replaced by the value given for `name`.
pub fn yaml(template: &str, values: &[(&str, &dyn Display)]) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut used = vec![false; values.len()];
    let mut rest = template;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let len = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(after.len());
        if len == 0 {
            // `${VAR}` (the config's own) or a lone `$`.
            out.push('$');
            rest = after;
            continue;
        }
        let name = &after[..len];
        let Some(i) = values.iter().position(|(n, _)| *n == name) else {
            panic!("template placeholder ${name} has no value:\n{template}");
        };
        used[i] = true;
        out.push_str(&values[i].1.to_string());
        rest = &after[len..];
    }
    out.push_str(rest);
    if let Some(i) = used.iter().position(|u| !u) {
        panic!(
            "value {:?} is used by no placeholder of the template:\n{template}",
            values[i].0
        );
    }
    out
}

#[test]
fn placeholders_are_filled_and_the_configs_own_expansion_kept() {
    let path = "/tmp/x";
    let got = yaml(
        "source: {file: {path: $path}}\nmetadata: {cluster: ${CLUSTER}, n: $n_2}\ncost: $",
        &[("path", &path), ("n_2", &2)],
    );
    assert_eq!(
        got,
        "source: {file: {path: /tmp/x}}\nmetadata: {cluster: ${CLUSTER}, n: 2}\ncost: $"
    );
}

#[test]
#[should_panic(expected = "has no value")]
fn a_placeholder_without_a_value_panics() {
    yaml("a: $missing", &[]);
}

#[test]
#[should_panic(expected = "used by no placeholder")]
fn a_value_without_a_placeholder_panics() {
    yaml("a: 1", &[("unused", &1)]);
}
