//! Route semantics as table tests over inline YAML: each case is a route
//! tree, an event (the `data` of a raw-mapped record) and the receivers it
//! must reach, in order of first delivery.

use crate::config::{parse, validate};

/// Builds a config around `route_yaml` with receivers a…e, slack, dump,
/// critical-events-queue, maps `data` with the raw profile and routes it.
fn route(route_yaml: &str, data: &str) -> Vec<String> {
    let receivers = [
        "a",
        "b",
        "c",
        "d",
        "e",
        "dump",
        "slack",
        "critical-events-queue",
    ];
    let mut yaml = String::from(
        "source: {stdin: {}}\nmapping: {profile: raw, type: test.event, source: test}\n",
    );
    yaml.push_str(route_yaml);
    yaml.push_str("\nreceivers:\n");
    for r in receivers {
        yaml.push_str(&format!("  - {{name: {r}, stdout: {{}}}}\n"));
    }
    let config = parse(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let (compiled, _) = validate(&config).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let event = compiled
        .mapper
        .map(data.as_bytes())
        .expect("test event maps");
    let mut out = Vec::new();
    compiled.routes.route(&event, &mut out);
    out.into_iter()
        .map(|i| compiled.receivers[i].name.clone())
        .collect()
}

/// The main example of kubernetes-event-exporter's README, with event fields
/// addressed under `data.`.
const KEE_MAIN: &str = r#"
route:
  # Main route
  routes:
    # This route allows dumping all events because it has no fields to match and no drop rules.
    - match:
        - receiver: dump
    # This starts another route, drops all the events in *test* namespaces and Normal events
    # for capturing critical events
    - drop:
        - data.namespace: "*test*"
        - data.type: "Normal"
      match:
        - receiver: "critical-events-queue"
    # This a final route for user messages
    - match:
        - data.kind: "Pod|Deployment|ReplicaSet"
          data.labels:
            version: "dev"
          receiver: "slack"
"#;

/// The stdout example of kubernetes-event-exporter's README.
const KEE_STDOUT: &str = r#"
route:
  routes:
    - match:
        - receiver: "dump"
"#;

#[test]
fn kubernetes_event_exporter_readme_examples() {
    let cases: &[(&str, &str, &[&str])] = &[
        // Normal event in a test namespace: not critical, but a dev Pod reaches slack.
        (
            KEE_MAIN,
            r#"{"namespace":"my-test-ns","type":"Normal","kind":"Pod","labels":{"version":"dev"}}"#,
            &["dump", "slack"],
        ),
        // Warning in prod: dump + critical queue; kind matches but label does not.
        (
            KEE_MAIN,
            r#"{"namespace":"prod","type":"Warning","kind":"Pod","labels":{"version":"v1"}}"#,
            &["dump", "critical-events-queue"],
        ),
        // Warning in prod for a dev Deployment: all three.
        (
            KEE_MAIN,
            r#"{"namespace":"prod","type":"Warning","kind":"Deployment","labels":{"version":"dev"}}"#,
            &["dump", "critical-events-queue", "slack"],
        ),
        // Normal event outside test namespaces: dropped from the critical route only.
        (
            KEE_MAIN,
            r#"{"namespace":"prod","type":"Normal","kind":"Node","labels":{}}"#,
            &["dump"],
        ),
        // A test namespace drops even Warnings from the critical route.
        (
            KEE_MAIN,
            r#"{"namespace":"test","type":"Warning","kind":"StatefulSet"}"#,
            &["dump"],
        ),
        // "Pod|Deployment|ReplicaSet" is an alternation, not a substring.
        (
            KEE_MAIN,
            r#"{"namespace":"prod","type":"Normal","kind":"PodDisruptionBudget","labels":{"version":"dev"}}"#,
            &["dump"],
        ),
        (KEE_STDOUT, r#"{"anything":1}"#, &["dump"]),
    ];
    for (tree, data, want) in cases {
        assert_eq!(route(tree, data), *want, "event {data}");
    }
}

#[test]
fn semantics_table() {
    let cases: &[(&str, &str, &str, &[&str])] = &[
        ("empty tree routes nowhere", "route: {}", r#"{"x":1}"#, &[]),
        (
            "empty rule matches everything",
            "route: {match: [{receiver: a}]}",
            r#"{}"#,
            &["a"],
        ),
        (
            "drop at the root stops everything",
            "route: {drop: [{data.x: 1}], match: [{receiver: a}], routes: [{match: [{receiver: b}]}]}",
            r#"{"x":1}"#,
            &[],
        ),
        (
            "any drop rule drops",
            "route: {drop: [{data.x: 2}, {data.y: z}], match: [{receiver: a}]}",
            r#"{"x":1,"y":"z"}"#,
            &[],
        ),
        (
            "a drop rule needs all its conditions",
            "route: {drop: [{data.x: 1, data.y: nope}], match: [{receiver: a}]}",
            r#"{"x":1,"y":"z"}"#,
            &["a"],
        ),
        (
            "children run only when every match rule matched",
            "route: {match: [{data.x: 1, receiver: a}, {data.y: 2}], routes: [{match: [{receiver: b}]}]}",
            r#"{"x":1,"y":3}"#,
            &["a"],
        ),
        (
            "match rules without a receiver gate the children",
            "route: {match: [{data.x: 1}], routes: [{match: [{receiver: b}]}]}",
            r#"{"x":1}"#,
            &["b"],
        ),
        (
            "each matching rule sends, even when another fails",
            "route: {match: [{data.x: 2, receiver: a}, {data.x: 1, receiver: b}], routes: [{match: [{receiver: c}]}]}",
            r#"{"x":1}"#,
            &["b"],
        ),
        (
            "a receiver is reached at most once, in order of first delivery",
            "route: {routes: [{match: [{receiver: b}]}, {match: [{receiver: a}, {receiver: b}]}, {match: [{receiver: a}]}]}",
            r#"{}"#,
            &["b", "a"],
        ),
        (
            "children run in order and independently",
            "route: {routes: [{drop: [{data.x: 1}], match: [{receiver: a}]}, {match: [{receiver: b}]}]}",
            r#"{"x":1}"#,
            &["b"],
        ),
        (
            "nested maps are path shorthand",
            "route: {match: [{data: {healthEvent: {nodeName: gpu-1}}, receiver: a}]}",
            r#"{"healthEvent":{"nodeName":"gpu-1"}}"#,
            &["a"],
        ),
        (
            "through arrays any element may match",
            "route: {match: [{data.errorCode: XID_79, receiver: a}, {data.entities.type: GPU, receiver: b}]}",
            r#"{"errorCode":["XID_48","XID_79"],"entities":[{"type":"NIC"},{"type":"GPU"}]}"#,
            &["a", "b"],
        ),
        (
            "an array index selects one element",
            "route: {match: [{data.entities.0.type: GPU, receiver: a}]}",
            r#"{"entities":[{"type":"NIC"},{"type":"GPU"}]}"#,
            &[],
        ),
        (
            "a missing field never matches, not even *",
            "route: {match: [{data.nope: '*', receiver: a}]}",
            r#"{"x":1}"#,
            &[],
        ),
        (
            "null never matches",
            "route: {match: [{data.x: '*', receiver: a}]}",
            r#"{"x":null}"#,
            &[],
        ),
        (
            "booleans compare with JSON rendering",
            "route: {match: [{data.fatal: true, receiver: a}, {data.fatal: 'true', receiver: b}, {data.fatal: false, receiver: c}]}",
            r#"{"fatal":true}"#,
            &["a", "b"],
        ),
        (
            "numbers compare with JSON rendering",
            "route: {match: [{data.code: 24, receiver: a}, {data.code: '2*', receiver: b}, {data.code: 2, receiver: c}]}",
            r#"{"code":24}"#,
            &["a", "b"],
        ),
        (
            "a string field does not equal a differently spelled number",
            "route: {match: [{data.code: 24, receiver: a}]}",
            r#"{"code":"024"}"#,
            &[],
        ),
        (
            "globs match the whole value",
            "route: {match: [{data.ns: '*test*', receiver: a}, {data.ns: 'test', receiver: b}]}",
            r#"{"ns":"my-test-ns"}"#,
            &["a"],
        ),
        (
            "regular expressions are anchored",
            "route: {match: [{data.msg: '~XID \\d+', receiver: a}, {data.msg: '~\\d+', receiver: b}]}",
            r#"{"msg":"XID 79"}"#,
            &["a"],
        ),
        (
            "attributes by name",
            "route: {match: [{type: test.event, source: test, receiver: a}, {id: abc, receiver: b}]}",
            r#"{"_id":{"$oid":"abc"}}"#,
            &["a", "b"],
        ),
        (
            "expr is ANDed with the path conditions",
            r#"route: {match: [{data.x: 1, expr: "event.data.y == 'z'", receiver: a}, {data.x: 2, expr: "true", receiver: b}, {expr: "event.data.y == 'q'", receiver: c}]}"#,
            r#"{"x":1,"y":"z"}"#,
            &["a"],
        ),
        (
            "expr in a drop rule drops",
            r#"route: {drop: [{expr: "event.data.x > 0"}], match: [{receiver: a}]}"#,
            r#"{"x":1}"#,
            &[],
        ),
        (
            "expr sees attributes",
            r#"route: {match: [{expr: "event.type == 'test.event' && event.source.startsWith('te')", receiver: a}]}"#,
            r#"{}"#,
            &["a"],
        ),
        (
            "an expr that fails lets the event on: a drop rule does not drop",
            r#"route: {drop: [{expr: "event.data.nope == 1"}], match: [{receiver: a}]}"#,
            r#"{"x":1}"#,
            &["a"],
        ),
        (
            "an expr that fails lets the event on: a match rule matches",
            r#"route: {match: [{expr: "event.data.nope == 1", receiver: a}], routes: [{match: [{receiver: b}]}]}"#,
            r#"{"x":1}"#,
            &["a", "b"],
        ),
        (
            "deep trees",
            "route: {routes: [{match: [{data.a: 1}], routes: [{match: [{data.b: 2}], routes: [{match: [{receiver: e}]}]}]}]}",
            r#"{"a":1,"b":2}"#,
            &["e"],
        ),
    ];
    for (name, tree, data, want) in cases {
        assert_eq!(route(tree, data), *want, "{name}");
    }
}

/// The tree counts each failed evaluation, per rule, across reloads.
#[test]
fn expr_errors_are_counted() {
    let yaml = r#"
source: {stdin: {}}
mapping: {profile: raw, type: t, source: s}
route:
  drop: [{expr: "event.data.nope == 1"}]
  match: [{expr: "event.data.x == 1", receiver: a}]
receivers: [{name: a, stdout: {}}]
"#;
    let (compiled, _) = validate(&parse(yaml).unwrap()).unwrap();
    assert!(compiled.routes.has_exprs());
    let mut out = Vec::new();
    for _ in 0..3 {
        let event = compiled.mapper.map(br#"{"x":1}"#).unwrap();
        compiled.routes.route(&event, &mut out);
        assert_eq!(out, [0]);
    }
    assert_eq!(compiled.routes.expr_errors(), 3);
    let (mut again, _) = validate(&parse(yaml).unwrap()).unwrap();
    again.routes.inherit_counts(&compiled.routes);
    assert_eq!(again.routes.expr_errors(), 3, "a reload keeps counting");
}

/// A tree without `expr` never builds a CEL view.
#[test]
fn plain_trees_have_no_exprs() {
    let yaml = "source: {stdin: {}}\nmapping: {profile: raw, type: t, source: s}\nroute: {match: [{data.x: 1, receiver: a}]}\nreceivers: [{name: a, stdout: {}}]\n";
    let (compiled, _) = validate(&parse(yaml).unwrap()).unwrap();
    assert!(!compiled.routes.has_exprs());
}

/// What routing reads of `data`: every condition's path, and the members of
/// `data.healthEvent` NVSentinel's CEL view reads; nothing can be known of
/// an expression over the whole CloudEvent.
#[test]
fn data_paths_are_the_conditions_and_nvsentinels_cel_members() {
    const RAW: &str = "{profile: raw, type: t, source: s}";
    let tree = |mapping: &str, route: &str| {
        let yaml = format!(
            "metadata: {{cluster: c}}\nsource: {{stdin: {{}}}}\nmapping: {mapping}\n{route}\nreceivers:\n  - {{name: a, stdout: {{}}}}\n"
        );
        let config = parse(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let (compiled, _) = validate(&config).unwrap_or_else(|e| panic!("{e}"));
        compiled.routes.data_paths()
    };
    let paths = |list: &[&str]| {
        let parsed: Vec<_> = list
            .iter()
            .map(|p| crate::event::FieldPath::parse(p).unwrap())
            .collect();
        Some(crate::event::DataPaths::new(&parsed))
    };
    assert_eq!(
        tree(
            "{profile: nvsentinel}",
            r#"route: {drop: [{expr: "event.isFatal && 'X' in event.errorCode"}], match: [{receiver: a, subject: n1, data.metadata.cluster: c}]}"#
        ),
        paths(&[
            "data.healthEvent.errorCode",
            "data.healthEvent.isFatal",
            "data.metadata.cluster"
        ])
    );
    assert_eq!(
        tree(
            RAW,
            r#"route: {match: [{receiver: a, expr: "event.data.x == 1"}]}"#
        ),
        None
    );
    assert_eq!(
        tree(RAW, "route: {match: [{receiver: a, type: t}]}"),
        paths(&[]),
        "attributes alone read no data"
    );
}
