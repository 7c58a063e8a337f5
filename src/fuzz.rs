//! The fuzz targets' bodies. `fuzz/fuzz_targets/<name>.rs` hands libFuzzer's
//! input to the function of that name here; they live in the library so
//! that they build and lint with it, reach its crate-private parsers, and
//! run over the committed corpora in `cargo test`
//! (`every_committed_fuzz_input_runs_clean`). `scripts/fuzz` builds and runs
//! them; `docs/reliability.md` says what they found.
//!
//! Each body feeds its input to one parser or recovery path and asserts what
//! must hold for any input, beyond not panicking: a mapped event is a valid
//! CloudEvent 1.0 that reads back as itself; a decoded request's lines are
//! exactly its events; a reopened journal keeps every whole line and reads
//! them all; a route sends an event to known receivers, each at most once.

use std::collections::HashSet;
use std::path::Path;
use std::sync::LazyLock;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{Map, Value};

use crate::event::{self, Event};
use crate::journal::{self, lines::Chunk};
use crate::mapping::{EnumStyle, Profile};
use crate::mapping::{Mapper, Overrides};
use crate::source::http::check::{Mode, check};

/// A target's body: one input.
pub type Body = fn(&[u8]);

/// Every target: its name (`fuzz/fuzz_targets/<name>.rs`,
/// `fuzz/corpus/<name>/`) and its body.
pub const TARGETS: &[(&str, Body)] = &[
    ("config", config),
    ("routes", routes),
    ("http_decode", http_decode),
    ("mapping", mapping),
    ("journal", journal),
    ("nomad_frames", nomad_frames),
    ("kubernetes_frames", kubernetes_frames),
];

/// Config text: parsed, then validated; a refusal has at least one error
/// and renders with its places.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match crate::config::parse(text) {
        Err(diags) => {
            assert!(diags.has_errors(), "a refused config says why");
            let _ = diags.render("fuzz.yaml");
        }
        Ok(config) => match crate::config::validate(&config) {
            Ok((_, warnings)) => assert!(!warnings.has_errors()),
            Err(diags) => {
                assert!(diags.has_errors(), "a refused config says why");
                let _ = diags.render("fuzz.yaml");
            }
        },
    }
}

/// The mapping profiles the first input byte picks from.
const PROFILES: [(Profile, EnumStyle); 6] = [
    (Profile::Nvsentinel, EnumStyle::Numbers),
    (Profile::Nvsentinel, EnumStyle::Names),
    (Profile::KubernetesEvent, EnumStyle::Numbers),
    (Profile::Nomad, EnumStyle::Numbers),
    (Profile::Raw, EnumStyle::Numbers),
    (Profile::Cloudevents, EnumStyle::Numbers),
];

fn profile_name(profile: Profile) -> &'static str {
    match profile {
        Profile::Nvsentinel => "nvsentinel",
        Profile::KubernetesEvent => "kubernetes-event",
        Profile::Nomad => "nomad",
        Profile::Raw => "raw",
        Profile::Cloudevents => "cloudevents",
    }
}

static MAPPERS: LazyLock<Vec<Mapper>> = LazyLock::new(|| {
    let mut metadata = Map::new();
    metadata.insert("cluster".into(), "fuzz".into());
    PROFILES
        .iter()
        .map(|(p, e)| Mapper::new(*p, metadata.clone(), Overrides::default()).with_enums(*e))
        .collect()
});

fn mapper(profile: Profile) -> &'static Mapper {
    let i = PROFILES
        .iter()
        .position(|(p, _)| *p == profile)
        .expect("every profile is listed");
    &MAPPERS[i]
}

/// What a mapping makes is a valid CloudEvent 1.0 (as a receiver checks
/// it) and reads back as itself.
fn assert_valid(event: &Event, what: &str) {
    let value = event::to_value(event);
    if let Err(e) = check(&value, Mode::Structured) {
        panic!("{what} made an invalid CloudEvent: {e}: {value}");
    }
    let back: Event = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{what}'s CloudEvent does not read back: {e}: {value}"));
    assert_eq!(
        event::to_value(&back),
        value,
        "{what}'s CloudEvent reads back changed"
    );
}

/// `<profile byte><record>`: one record through one mapping profile.
pub fn mapping(data: &[u8]) {
    let Some((&pick, record)) = data.split_first() else {
        return;
    };
    let i = usize::from(pick) % PROFILES.len();
    let mapper = &MAPPERS[i];
    let mapped = mapper.map(record);
    if let Ok(event) = &mapped {
        assert_valid(event, profile_name(PROFILES[i].0));
    }
    if mapper.encodes() {
        // Straight to JSON: the same bytes as the DOM writes, or the same error.
        let mut direct = Vec::new();
        match (mapper.encode(record, &mut direct), mapped) {
            (Ok(_), Ok(event)) => {
                let mut json = Vec::new();
                event::write_json(&event, &mut json);
                if direct != json {
                    // A document without a time gets the time of mapping:
                    // two calls, two times. Nothing else may differ.
                    let without_time = |bytes: &[u8]| {
                        let mut v: Value = serde_json::from_slice(bytes).expect("JSON");
                        v["time"] = Value::Null;
                        v["data"]["healthEvent"]["generatedTimestamp"] = Value::Null;
                        v
                    };
                    assert_eq!(
                        without_time(&direct),
                        without_time(&json),
                        "encode writes what map makes"
                    );
                }
            }
            (Err(a), Err(b)) => assert_eq!(a, b, "encode refuses as map does"),
            (a, b) => panic!(
                "encode and map disagree: {:?} vs {:?}",
                a.map(drop),
                b.map(drop)
            ),
        }
    }
}

/// `<profile byte><route YAML>\0<record>`: the YAML is the `route:` of a
/// config with receivers `a`, `b` and `c`; the record is mapped by the
/// profile and routed. Receivers come out known and each at most once.
pub fn routes(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (yaml, record) = match rest.iter().position(|b| *b == 0) {
        Some(n) => (&rest[..n], &rest[n + 1..]),
        None => (rest, &b"{}"[..]),
    };
    let Ok(yaml) = std::str::from_utf8(yaml) else {
        return;
    };
    let profile = PROFILES[usize::from(pick) % PROFILES.len()].0;
    let mut text = format!(
        "metadata: {{cluster: fuzz}}\nsource: {{stdin: {{}}}}\nmapping: {{profile: {}}}\nreceivers:\n  - {{name: a, stdout: {{}}}}\n  - {{name: b, stdout: {{}}}}\n  - {{name: c, stdout: {{}}}}\nroute:\n",
        profile_name(profile)
    );
    for line in yaml.lines() {
        text.push_str("  ");
        text.push_str(line);
        text.push('\n');
    }
    let Ok(config) = crate::config::parse(&text) else {
        return;
    };
    let Ok((compiled, _)) = crate::config::validate(&config) else {
        return;
    };
    let Ok(event) = compiled.mapper.map(record) else {
        return;
    };
    let mut out = Vec::new();
    compiled.routes.route(&event, &mut out);
    let mut seen = HashSet::new();
    for id in &out {
        assert!(
            *id < compiled.receivers.len(),
            "routed to an unknown receiver {id}"
        );
        assert!(seen.insert(*id), "routed to receiver {id} twice");
    }
    // Routing again gives the same answer (the CEL view is rebuilt).
    let mut again = Vec::new();
    compiled.routes.route(&event, &mut again);
    assert_eq!(out, again);
}

/// `<header lines>\n\n<body>`: one request to `source.http`. What it
/// accepts is one line per event, each a valid CloudEvent that the
/// `cloudevents` mapping reads.
pub fn http_decode(data: &[u8]) {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(n) => (&data[..n], &data[n + 2..]),
        None => (data, &b""[..]),
    };
    let mut headers = HeaderMap::new();
    for line in head.split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(line[..colon].trim_ascii()),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let Ok(lines) = crate::source::http::decode::decode(&headers, body) else {
        return;
    };
    assert!(lines.bytes.last().is_none_or(|b| *b == b'\n'));
    let mut count = 0;
    for line in lines.bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        count += 1;
        let value: Value = serde_json::from_slice(line).expect("a decoded line is JSON");
        if let Err(e) = check(&value, Mode::Structured) {
            panic!("decoded an invalid CloudEvent: {e}: {value}");
        }
        let event = mapper(Profile::Cloudevents)
            .map(line)
            .unwrap_or_else(|e| panic!("a decoded event does not map: {e}: {value}"));
        assert_valid(&event, "source.http");
    }
    assert_eq!(count, lines.count, "the count is the lines'");
}

thread_local! {
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
}

/// `<segment>\xFF<segment>…\xFF<position file>`: a disk buffer's directory
/// as a crash or a damaged disk may leave it (segments at cumulative
/// offsets, empty ones left out). Opening it keeps every whole line, starts
/// where a line starts, reads everything in order, and takes appends.
pub fn journal(data: &[u8]) {
    let mut parts: Vec<&[u8]> = data.split(|b| *b == 0xFF).collect();
    let position = parts.pop().unwrap_or_default();
    parts.retain(|p| !p.is_empty());

    let state = tempfile::tempdir().expect("a temporary directory");
    let dir = state.path().join("buffers").join("fuzz");
    std::fs::create_dir_all(&dir).expect("the buffer's directory");
    std::fs::write(dir.join("journal-id"), "1\n").expect("journal-id");
    let mut base = 0u64;
    let mut last = (0u64, &b""[..]);
    for part in &parts {
        std::fs::write(journal::segment_path(&dir, base), part).expect("a segment");
        last = (base, part);
        base += part.len() as u64;
    }
    if !position.is_empty() {
        // Where the disk buffer keeps its position.
        let store = crate::state::FileStore::open(&dir, "buffer").expect("a position store");
        std::fs::write(store.path(), position).expect("the position");
    }
    let whole = last
        .1
        .iter()
        .rposition(|b| *b == b'\n')
        .map_or(0, |n| n + 1);
    let end = last.0 + whole as u64;

    let ctx = crate::pipeline::buffer::BufferContext::new(
        state.path(),
        std::time::Duration::from_secs(1),
        tokio_util::sync::CancellationToken::new(),
    );
    let start = match crate::pipeline::buffer::open(&ctx, "fuzz", 1 << 20) {
        Ok(opened) => {
            assert_eq!(opened.end(), end, "the torn tail is cut, whole lines kept");
            opened.start()
        }
        Err(e) => {
            // Only a position file that is not JSON is refused.
            assert!(e.contains("is corrupt"), "{e}");
            assert!(serde_json::from_slice::<Value>(position).is_err());
            return;
        }
    };
    let mut writer = journal::open(&dir, 1 << 20).expect("the journal opens again");
    assert_eq!(writer.end(), end);
    let shared = writer.shared().clone();
    assert!(shared.is_line_start(start), "the reader starts at a line");

    RUNTIME.with(|rt| {
        rt.block_on(async {
            let mut lines = journal::Lines::new(shared.clone(), start);
            let mut at = start;
            while at < end {
                match lines.next().await.expect("the journal reads") {
                    Chunk::Lines(lines) => {
                        for (line, after) in lines {
                            assert!(!line.contains(&b'\n'));
                            assert_eq!(after, at + line.len() as u64 + 1);
                            at = after;
                        }
                    }
                    Chunk::Broken { from, to } => {
                        assert_eq!(from, at);
                        assert!(to > from);
                        at = to;
                    }
                    Chunk::End => panic!("the writer is alive"),
                }
            }
            assert_eq!(at, end, "read exactly up to the end");
            writer
                .write_synced([&b"{\"appended\":true}\n"[..]])
                .expect("an append");
            match lines.next().await.expect("the journal reads") {
                Chunk::Lines(got) => {
                    assert_eq!(got.len(), 1);
                    assert_eq!(got[0].0, b"{\"appended\":true}");
                }
                _ => panic!("the appended line reads back"),
            }
        })
    });
}

/// `<chunk size byte><body>`: Nomad's event stream body in chunks. The
/// lines are the body's, whatever the chunking; frames become records the
/// `nomad` mapping turns into valid CloudEvents.
pub fn nomad_frames(data: &[u8]) {
    use crate::source::nomad::{LineBuf, Parsed, Resume, occurrences, parse, record_line};
    let Some((&size, body)) = data.split_first() else {
        return;
    };
    let size = usize::from(size).max(1);
    let mut buf = LineBuf::default();
    let mut lines = Vec::new();
    for chunk in body.chunks(size) {
        buf.push(chunk);
        while let Some(line) = buf.next_line().expect("short lines") {
            lines.push(line.to_vec());
        }
    }
    let mut expected: Vec<&[u8]> = body.split(|b| *b == b'\n').collect();
    expected.pop(); // after the last newline: not a line yet
    assert_eq!(lines, expected, "the lines do not depend on the chunks");

    let mut resume = Resume::new(None);
    for line in &lines {
        let Parsed::Events { index, events } = parse(line) else {
            continue;
        };
        let plan = resume.frame(index, events.len());
        assert!(plan.skip <= events.len());
        let ordinals = occurrences(&events);
        for (i, (event, ordinal)) in events.iter().zip(ordinals).enumerate().skip(plan.skip) {
            resume.taken(index, i as u64 + 1);
            let record = record_line("fuzz", ordinal, event);
            if let Ok(e) = mapper(Profile::Nomad).map(&record) {
                assert_valid(&e, "nomad");
            }
        }
    }
}

/// One line of a Kubernetes watch (`{"type": …, "object": …}`): an Event
/// or a `HealthEventResource` becomes the record its mapping reads.
pub fn kubernetes_frames(data: &[u8]) {
    use crate::mapping::kubernetes::{event_time, occurrence};
    use crate::source::kubernetes::objects::{health_event_document, identity, with_event_kind};
    use kube::api::{DynamicObject, WatchEvent};
    let Ok(event) = serde_json::from_slice::<WatchEvent<DynamicObject>>(data) else {
        return;
    };
    let (WatchEvent::Added(o) | WatchEvent::Modified(o)) = event else {
        return;
    };
    let mut obj = serde_json::to_value(o).expect("objects serialise");
    let _ = identity(&obj);
    let _ = occurrence(&obj);
    let _ = event_time(&obj);
    if let Ok(doc) = health_event_document(&obj) {
        let record = serde_json::to_vec(&doc).expect("JSON serialises");
        let nvsentinel = PROFILES.iter().zip(MAPPERS.iter());
        for (_, m) in nvsentinel.filter(|((p, _), _)| *p == Profile::Nvsentinel) {
            if let Ok(e) = m.map(&record) {
                assert_valid(&e, "nvsentinel (HealthEventResource)");
            }
        }
    }
    with_event_kind(&mut obj);
    let record = serde_json::to_vec(&obj).expect("JSON serialises");
    if let Ok(e) = mapper(Profile::KubernetesEvent).map(&record) {
        assert_valid(&e, "kubernetes-event");
    }
}

/// Runs every file of `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/`;
/// returns how many ran.
pub fn run_committed(root: &Path) -> usize {
    let mut ran = 0;
    for (name, body) in TARGETS {
        for kind in ["corpus", "regressions"] {
            let Ok(entries) = std::fs::read_dir(root.join(kind).join(name)) else {
                continue;
            };
            let mut paths: Vec<_> = entries.map(|e| e.expect("a dir entry").path()).collect();
            paths.sort();
            for path in paths {
                let input = std::fs::read(&path).expect("a corpus file");
                let run = std::panic::catch_unwind(|| body(&input));
                assert!(
                    run.is_ok(),
                    "fuzz target {name} fails on {}",
                    path.display()
                );
                ran += 1;
            }
        }
    }
    ran
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_committed_fuzz_input_runs_clean() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
        let ran = super::run_committed(&root);
        assert!(
            ran > 100,
            "only {ran} committed fuzz inputs under {}",
            root.display()
        );
    }
}
