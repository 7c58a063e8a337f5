//! Route throughput: the 1,000 sample NVSentinel events through a 20-rule
//! tree (drop and match rules with literals, globs, alternations, regexes,
//! array paths and nested routes). Also the mapping cost, for comparison,
//! and the cost of CEL `expr:` rules: NVSentinel's example filters, each as
//! the one drop rule of a tree (building `event`'s view once per event and
//! evaluating the expression), against the same tree with a path pattern.
//!
//! cargo bench --bench route

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use switchyard::config::{parse, validate};

const TREE: &str = r#"
metadata: {cluster: bench}
source: {stdin: {}}
route:
  drop:
    - data.healthEvent.agent: "test-*"                                   # 1
    - data.healthEvent.nodeName: "~canary-node-\\d+"                     # 2
  routes:
    - match: [ {receiver: all} ]                                         # 3
    - drop:
        - data.healthEvent.recommendedAction: NONE                      # 4
      match:
        - receiver: actionable                                          # 5
      routes:
        - match:
            - receiver: gpu                                             # 6
              data.healthEvent.componentClass: GPU
            - receiver: network                                         # 7
              data.healthEvent.componentClass: "NIC|NVSwitch"
            - receiver: xid                                             # 8
              data.healthEvent.errorCode: "~XID_(48|63|64|79|94|95)"
        - match:
            - data.healthEvent.isFatal: true                            # 9
          routes:
            - match:
                - receiver: fatal                                       # 10
                  data.healthEvent.entitiesImpacted.entityType: GPU
                - receiver: pager                                       # 11
                  subject: "gpu-node-0*"
                  data.healthEvent.recommendedAction: "RESTART_*|REPLACE_VM"
        - drop:
            - data.healthEvent.isHealthy: true                          # 12
          match:
            - receiver: unhealthy                                       # 13
              data.metadata.cluster: bench
    - match:
        - receiver: rack                                                # 14
          data.healthEvent.metadata.rack: "r0*"
        - receiver: zone                                                # 15
          data.healthEvent.metadata.zone: "us-west-2[ab]"
    - match:
        - receiver: agents                                              # 16
          data.healthEvent.agent: "gpu-health-monitor|syslog-health-monitor"
        - receiver: checks                                              # 17
          data.healthEvent.checkName: "*Error*"
    - match:
        - receiver: strategy                                            # 18
          data.healthEvent.processingStrategy: EXECUTE_REMEDIATION
          data.healthEvent.version: 1
        - receiver: types                                               # 19
          type: com.nvidia.nvsentinel.health.*
          source: "nvsentinel://bench/*"
        - receiver: messages                                            # 20
          data.healthEvent.message: "*recovered*"
receivers:
  - {name: all, stdout: {}}
  - {name: actionable, stdout: {}}
  - {name: gpu, stdout: {}}
  - {name: network, stdout: {}}
  - {name: xid, stdout: {}}
  - {name: fatal, stdout: {}}
  - {name: pager, stdout: {}}
  - {name: unhealthy, stdout: {}}
  - {name: rack, stdout: {}}
  - {name: zone, stdout: {}}
  - {name: agents, stdout: {}}
  - {name: checks, stdout: {}}
  - {name: strategy, stdout: {}}
  - {name: types, stdout: {}}
  - {name: messages, stdout: {}}
"#;

fn benches(c: &mut Criterion) {
    let (compiled, warnings) = validate(&parse(TREE).unwrap()).unwrap();
    assert!(warnings.0.is_empty(), "{warnings}");
    let lines: Vec<&str> = include_str!("../examples/health-events.jsonl")
        .lines()
        .collect();
    let events: Vec<_> = lines
        .iter()
        .map(|l| compiled.mapper.map(l.as_bytes()).unwrap())
        .collect();

    let mut group = c.benchmark_group("route");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("20_rules", |b| {
        let mut out = Vec::with_capacity(16);
        b.iter(|| {
            let mut sent = 0;
            for event in &events {
                compiled.routes.route(black_box(event), &mut out);
                sent += out.len();
            }
            black_box(sent)
        })
    });
    group.finish();

    let mut group = c.benchmark_group("map");
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("nvsentinel", |b| {
        b.iter(|| {
            for line in &lines {
                black_box(compiled.mapper.map(black_box(line.as_bytes())).unwrap());
            }
        })
    });
    group.finish();

    // One drop rule, then one match-all receiver: the per-event cost of the
    // rule is what differs between these.
    let filters = [
        (
            "pattern_action_none",
            "- data.healthEvent.recommendedAction: NONE",
        ),
        (
            "cel_action_not_none",
            r#"- expr: "!(event.recommendedAction != 'NONE')""#,
        ),
        (
            "cel_error_code_45",
            r#"- expr: "!(!('45' in event.errorCode))""#,
        ),
        (
            "cel_fatal_gpu_zone",
            r#"- expr: "!(event.isFatal && event.componentClass == 'GPU' && 'zone' in event.metadata && event.metadata.zone.startsWith('us-west'))""#,
        ),
    ];
    let mut group = c.benchmark_group("route_filter");
    group.throughput(Throughput::Elements(events.len() as u64));
    let mut delivered = Vec::new();
    for (name, rule) in filters {
        let yaml = format!(
            "metadata: {{cluster: bench}}\nsource: {{stdin: {{}}}}\nroute:\n  drop:\n    {rule}\n  match: [{{receiver: out}}]\nreceivers: [{{name: out, stdout: {{}}}}]\n"
        );
        let (tree, _) = validate(&parse(&yaml).unwrap()).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
        let events: Vec<_> = lines
            .iter()
            .map(|l| tree.mapper.map(l.as_bytes()).unwrap())
            .collect();
        let mut out = Vec::new();
        let sent: usize = events
            .iter()
            .map(|e| {
                tree.routes.route(e, &mut out);
                out.len()
            })
            .sum();
        assert_eq!(tree.routes.expr_errors(), 0, "{name}: CEL errors");
        delivered.push(sent);
        group.bench_function(name, |b| {
            let mut out = Vec::with_capacity(4);
            b.iter(|| {
                let mut sent = 0;
                for event in &events {
                    tree.routes.route(black_box(event), &mut out);
                    sent += out.len();
                }
                black_box(sent)
            })
        });
    }
    group.finish();

    // Where a CEL rule's time goes: building `event` once per event, and
    // evaluating one expression against it.
    use switchyard::route::expr::{self, Expr, Fields, View};
    let mut group = c.benchmark_group("cel");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("view", |b| {
        b.iter(|| {
            for event in &events {
                black_box(expr::view(View::Nvsentinel, black_box(event), Fields::ALL));
            }
        })
    });
    let views: Vec<_> = events
        .iter()
        .map(|e| expr::view(View::Nvsentinel, e, Fields::ALL))
        .collect();
    // (The views borrow the events: they live as long as `events`.)
    let filter = Expr::compile("event.recommendedAction != 'NONE'").unwrap();
    group.bench_function("eval_action_not_none", |b| {
        b.iter(|| {
            let mut kept = 0;
            for view in &views {
                kept += usize::from(filter.eval(black_box(view)).unwrap());
            }
            black_box(kept)
        })
    });
    group.finish();
    assert_eq!(
        delivered[0], delivered[1],
        "the pattern and NVSentinel's CEL filter drop the same events"
    );
}

criterion_group!(route, benches);
criterion_main!(route);
