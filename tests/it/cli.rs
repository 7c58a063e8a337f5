//! The `switchyard` binary, as users run it: `--version`, `validate`,
//! `route test`, and `run` across restarts, signals, a receiver outage and
//! malformed input.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support;

const BIN: &str = env!("CARGO_BIN_EXE_switchyard");

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn samples() -> Vec<String> {
    std::fs::read_to_string(root().join("examples/health-events.jsonl"))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn switchyard(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Polls until `f` holds, for at most 30 s.
fn wait_for(what: &str, f: impl FnMut() -> bool) {
    support::wait_until_blocking(what, Duration::from_secs(30), f)
}

fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|s| s.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

use support::{event_ids as ids_of, ids_in};

fn append(path: &Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "switchyard did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A temporary directory with a config that follows `input.jsonl` into the
/// file receiver `out.jsonl`.
struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(extra_receiver_yaml: &str, follow: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = support::yaml(
            "metadata: {cluster: test}\n\
             source: {file: {path: $input, follow: $follow, pollInterval: 20ms}}\n\
             state: {dir: $state, flushInterval: 50ms}\n\
             shutdownTimeout: 5s\n\
             route: {match: [{receiver: out}]}\n\
             receivers:\n  - name: out\n    file: {path: $out}\n$extra_receiver_yaml",
            &[
                ("input", &dir.path().join("input.jsonl").display()),
                ("follow", &follow),
                ("state", &dir.path().join("state").display()),
                ("out", &dir.path().join("out.jsonl").display()),
                ("extra_receiver_yaml", &extra_receiver_yaml),
            ],
        );
        std::fs::write(dir.path().join("switchyard.yaml"), config).unwrap();
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn spawn(&self) -> Child {
        Command::new(BIN)
            .args(["run", "-c"])
            .arg(self.path("switchyard.yaml"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

#[test]
fn version_and_help() {
    let out = switchyard(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("switchyard {}", env!("CARGO_PKG_VERSION"))
    );
    let help = text(&switchyard(&["--help"]).stdout);
    for needle in ["run", "validate", "route", "Examples:", "--log-format"] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}

#[test]
fn validate_prints_ok_or_every_error() {
    let out = switchyard(&["validate", "-c", "config/quickstart.yaml"]);
    assert_eq!(text(&out.stdout), "ok\n");
    assert!(out.status.success());

    let out = switchyard(&["validate", "-c", "tests/testdata/config/bad/semantic.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    let expected =
        std::fs::read_to_string(root().join("tests/testdata/config/bad/semantic.expected"))
            .unwrap()
            .replace("semantic.yaml", "tests/testdata/config/bad/semantic.yaml");
    assert_eq!(stderr, expected);
    assert_eq!(text(&out.stdout), "");

    let out = switchyard(&["validate", "-c", "does/not/exist.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).starts_with("does/not/exist.yaml: cannot read config:"));

    // The default path comes from $SWITCHYARD_CONFIG.
    let out = Command::new(BIN)
        .arg("validate")
        .env("SWITCHYARD_CONFIG", "config/quickstart.yaml")
        .current_dir(root())
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "ok\n");
}

#[test]
fn route_test_prints_receivers_per_event() {
    let out = switchyard(&[
        "route",
        "test",
        "-c",
        "config/quickstart.yaml",
        "examples/health-events.jsonl",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rows: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let docs = samples();
    assert_eq!(rows.len(), docs.len());
    for (row, doc) in rows.iter().zip(&docs) {
        let doc: serde_json::Value = serde_json::from_str(doc).unwrap();
        let he = &doc["healthevent"];
        let expected: Vec<&str> = match (he["recommendedaction"].as_i64(), he["isfatal"].as_bool())
        {
            (Some(0), _) => vec![],
            (_, Some(true)) => vec!["stdout", "fatal"],
            _ => vec!["stdout"],
        };
        assert_eq!(row["receivers"], serde_json::json!(expected), "{doc}");
        assert!(row["id"].as_str().is_some_and(|id| id.len() == 36));
    }

    // From stdin, with a malformed record reported on stderr.
    let mut child = Command::new(BIN)
        .args(["route", "test", "-c", "config/quickstart.yaml", "-"])
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, "{}\n{{\"_id\":{{\"$oid\":\"bad1\"}}}}", docs[0]).unwrap();
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    assert_eq!(text(&out.stdout).lines().count(), 1);
    assert_eq!(
        text(&out.stderr),
        "line 2: malformed record (_id bad1): document has no healthevent\n"
    );
}

/// Routes name NVSentinel's enums by name, number or glob, and route the
/// same whether the mapping writes numbers (the default) or names.
#[test]
fn route_test_is_the_same_with_enums_as_numbers_or_names() {
    let dir = tempfile::tempdir().unwrap();
    let run = |enums: &str| {
        let config = support::yaml(
            r#"
metadata: {cluster: c}
source: {stdin: {}}
mapping: {profile: nvsentinel, enums: $enums}
route:
  drop: [{data.healthEvent.recommendedAction: NONE}]
  routes:
    - match: [{receiver: restart, data.healthEvent.recommendedAction: "RESTART_*|REPLACE_VM"}]
    - match: [{receiver: reset, data: {healthEvent: {recommendedAction: 2}}}]
    - match: [{receiver: remediate, data.healthEvent.processingStrategy: EXECUTE_REMEDIATION}]
receivers: [{name: restart, stdout: {}}, {name: reset, stdout: {}}, {name: remediate, stdout: {}}]
"#,
            &[("enums", &enums)],
        );
        let path = dir.path().join(format!("{enums}.yaml"));
        std::fs::write(&path, config).unwrap();
        let out = switchyard(&[
            "route",
            "test",
            "-c",
            path.to_str().unwrap(),
            "examples/health-events.jsonl",
        ]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let numbers = run("numbers");
    assert_eq!(numbers, run("names"));
    let docs = samples();
    let rows: Vec<serde_json::Value> = numbers
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), docs.len());
    let mut reached = HashMap::new();
    for (row, doc) in rows.iter().zip(&docs) {
        let doc: serde_json::Value = serde_json::from_str(doc).unwrap();
        let ra = doc["healthevent"]["recommendedaction"]
            .as_i64()
            .unwrap_or(0);
        let ps = doc["healthevent"]["processingstrategy"]
            .as_i64()
            .unwrap_or(0);
        let mut expected = Vec::new();
        if ra != 0 {
            if [15, 24, 25].contains(&ra) {
                expected.push("restart");
            }
            if ra == 2 {
                expected.push("reset");
            }
            if ps == 1 {
                expected.push("remediate");
            }
        }
        for r in &expected {
            *reached.entry(*r).or_insert(0) += 1;
        }
        assert_eq!(row["receivers"], serde_json::json!(expected), "{doc}");
    }
    // Every rule matched something: the test would notice a rule that broke.
    assert_eq!(reached.len(), 3, "{reached:?}");
}

#[test]
fn quickstart_prints_selected_events_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(root().join("config/quickstart.yaml"))
        .unwrap()
        .replace(
            "examples/health-events.jsonl",
            &root()
                .join("examples/health-events.jsonl")
                .display()
                .to_string(),
        )
        .replace(".switchyard/", &format!("{}/", dir.path().display()));
    let config_path = dir.path().join("quickstart.yaml");
    std::fs::write(&config_path, config).unwrap();
    let run = || {
        Command::new(BIN)
            .arg("run")
            .arg("-c")
            .arg(&config_path)
            .output()
            .unwrap()
    };

    let first = run();
    assert!(first.status.success(), "{}", text(&first.stderr));
    let printed: Vec<serde_json::Value> = text(&first.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let actionable = samples()
        .iter()
        .filter(|l| !l.contains("\"recommendedaction\":0,"))
        .count();
    assert_eq!(printed.len(), actionable);
    assert!(printed.iter().all(|e| e["specversion"] == "1.0"
        && e["data"]["healthEvent"]["recommendedAction"].as_i64() > Some(0)));
    let fatal = lines_of(&dir.path().join("fatal.jsonl"));
    assert!(!fatal.is_empty());
    assert!(fatal.iter().all(|l| l.contains("\"isFatal\":true")));

    let second = run();
    assert!(second.status.success());
    assert_eq!(
        text(&second.stdout),
        "",
        "a restart continues from the saved position"
    );
    assert!(text(&second.stderr).contains("resuming file from saved position"));
}

#[test]
fn sigterm_drains_persists_and_restart_resumes_without_duplicates() {
    let setup = Setup::new("", true);
    let docs = samples();
    append(&setup.path("input.jsonl"), &docs[..300]);
    let mut child = setup.spawn();
    wait_for("300 events", || {
        lines_of(&setup.path("out.jsonl")).len() == 300
    });
    signal(&child, "-TERM");
    assert!(wait_exit(&mut child).success(), "exit 0 on SIGTERM");

    append(&setup.path("input.jsonl"), &docs[300..500]);
    let mut child = setup.spawn();
    wait_for("500 events", || {
        lines_of(&setup.path("out.jsonl")).len() >= 500
    });
    signal(&child, "-INT");
    assert!(wait_exit(&mut child).success(), "exit 0 on SIGINT");

    let ids = ids_of(&setup.path("out.jsonl"));
    assert_eq!(ids.len(), 500, "nothing re-sent after a graceful stop");
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), 500);
}

#[test]
fn sigkill_loses_nothing() {
    let setup = Setup::new("", true);
    let docs = samples();
    append(&setup.path("input.jsonl"), &docs[..400]);
    let mut child = setup.spawn();
    wait_for("some events", || {
        lines_of(&setup.path("out.jsonl")).len() >= 100
    });
    signal(&child, "-KILL");
    wait_exit(&mut child);

    append(&setup.path("input.jsonl"), &docs[400..]);
    let mut child = setup.spawn();
    let expected: std::collections::HashSet<String> = {
        let all = Command::new(BIN)
            .args(["route", "test", "-c"])
            .arg(setup.path("switchyard.yaml"))
            .arg(setup.path("input.jsonl"))
            .output()
            .unwrap();
        ids_in(&text(&all.stdout)).into_iter().collect()
    };
    assert_eq!(expected.len(), docs.len());
    wait_for("every event", || {
        let got: std::collections::HashSet<String> =
            ids_of(&setup.path("out.jsonl")).into_iter().collect();
        got == expected
    });
    signal(&child, "-TERM");
    assert!(wait_exit(&mut child).success());
    // At-least-once: only events after the last persisted position (flushed
    // every 50 ms here) may appear twice.
    let ids = ids_of(&setup.path("out.jsonl"));
    let mut counts: HashMap<&String, usize> = HashMap::new();
    for id in &ids {
        *counts.entry(id).or_default() += 1;
    }
    assert!(counts.values().all(|&c| c <= 2));
}

#[test]
fn receiver_outage_is_retried_and_nothing_is_lost() {
    let setup = Setup::new("", false);
    // The receiver's file path is a directory: every write fails until it goes.
    std::fs::create_dir_all(setup.path("out.jsonl")).unwrap();
    let config = std::fs::read_to_string(setup.path("switchyard.yaml"))
        .unwrap()
        .replace(
            "    file: {path:",
            "    retry: {initialBackoff: 50ms, maxBackoff: 200ms}\n    file: {path:",
        );
    std::fs::write(setup.path("switchyard.yaml"), config).unwrap();
    append(&setup.path("input.jsonl"), &samples()[..50]);
    let mut child = setup.spawn();
    let stderr = child.stderr.take().unwrap();
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let log = log.clone();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                log.lock().unwrap().push_str(&(line.unwrap() + "\n"));
            }
        })
    };
    wait_for("retries", || {
        log.lock()
            .unwrap()
            .matches("delivery failed; will retry")
            .count()
            >= 3
    });
    let position = std::fs::read_dir(setup.path("state")).unwrap().count();
    assert_eq!(
        position, 0,
        "no position is persisted while the receiver is down"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "still running, still retrying"
    );

    std::fs::remove_dir(setup.path("out.jsonl")).unwrap();
    assert!(wait_exit(&mut child).success());
    reader.join().unwrap();
    assert_eq!(ids_of(&setup.path("out.jsonl")).len(), 50);
    assert!(log.lock().unwrap().contains("delivered=50"));
}

#[test]
fn malformed_records_are_logged_counted_and_skipped() {
    let setup = Setup::new("", false);
    std::fs::copy(
        root().join("tests/testdata/nvsentinel/malformed-health-events.jsonl"),
        setup.path("input.jsonl"),
    )
    .unwrap();
    append(
        &setup.path("input.jsonl"),
        &["not json at all".to_owned(), samples()[0].clone()],
    );
    let out = Command::new(BIN)
        .arg("run")
        .arg("-c")
        .arg(setup.path("switchyard.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let stderr = text(&out.stderr);
    assert_eq!(
        stderr.matches("malformed record skipped").count(),
        9,
        "{stderr}"
    );
    assert!(
        stderr.contains("7589ca4a07c15471a4517d6c"),
        "the _id is logged"
    );
    assert!(stderr.contains("malformed=9"));
    assert_eq!(
        ids_of(&setup.path("out.jsonl")).len(),
        9,
        "8 odd-but-valid samples and the good one"
    );
}

#[test]
fn json_logs() {
    let setup = Setup::new("", false);
    append(&setup.path("input.jsonl"), &samples()[..1]);
    let out = Command::new(BIN)
        .args(["--log-format", "json", "run", "-c"])
        .arg(setup.path("switchyard.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success());
    for line in text(&out.stderr).lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(v["level"].is_string());
    }
}
