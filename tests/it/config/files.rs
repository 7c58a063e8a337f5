//! Config files as users write them: every bad file under
//! `tests/testdata/config/bad/` must produce exactly the diagnostics in its
//! `.expected` file; every good file (and the shipped configs) must validate.
//!
//! Set `UPDATE_EXPECTED=1` to rewrite the `.expected` files after a deliberate
//! change of wording, then review the diff.

use std::path::{Path, PathBuf};

use switchyard::config;

use crate::support;

fn yaml_files(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no configs in {}", dir.display());
    files
}

/// Validates like `switchyard validate`, rendering with the file's base name.
fn diagnostics(path: &Path) -> (bool, String) {
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    match config::load(path).and_then(|c| config::validate(&c)) {
        Ok((_, warnings)) => (true, warnings.render(&name)),
        Err(diags) => (false, diags.render(&name)),
    }
}

#[test]
fn bad_configs_report_every_error_with_its_place() {
    for path in yaml_files("tests/testdata/config/bad") {
        let (ok, actual) = diagnostics(&path);
        assert!(!ok, "{} should not validate", path.display());
        let expected_path = path.with_extension("expected");
        if std::env::var_os("UPDATE_EXPECTED").is_some() {
            std::fs::write(&expected_path, &actual).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("missing {}", expected_path.display()));
        assert_eq!(actual, expected, "diagnostics of {}", path.display());
        assert!(
            !actual.contains("hunter2"),
            "a password in a URI never reaches a message"
        );
    }
}

/// The environment the good configs' `${…}` read.
const GOOD_ENV: [(&str, &str); 11] = [
    ("SWITCHYARD_TEST_CLUSTER", "test-cluster"),
    ("CLUSTER_NAME", "test-cluster"),
    ("MONGODB_URI", "mongodb://127.0.0.1:27017/?replicaSet=rs0"),
    (
        "SLACK_WEBHOOK_URL",
        "https://hooks.slack.com/services/T0/B0/x",
    ),
    ("TEAMS_WEBHOOK_URL", "https://example.webhook.office.com/x"),
    ("OPSGENIE_API_KEY", "key"),
    ("PD_ROUTING_KEY", "key"),
    ("COLLECTOR_URL", "https://collector.example.org/events"),
    ("NOMAD_ADDR", "https://nomad.example:4646"),
    ("NOMAD_TOKEN", "token"),
    ("HTTP_SOURCE_TOKEN", "token"),
];

/// Every good config validates without a warning. The configs read their
/// secrets from the environment, which a test must not change while other
/// tests of this binary run: the check runs in a child process of this
/// binary with [`GOOD_ENV`] set.
#[test]
fn good_configs_validate() {
    let out = support::process::rerun_with_env(
        "config::files::good_configs_in_their_environment",
        &GOOD_ENV,
    );
    assert!(
        out.contains("good configs validated"),
        "the child did not check the configs:\n{out}"
    );
}

/// [`good_configs_validate`]'s body, run in its child process.
#[test]
#[ignore = "run by good_configs_validate, in a child process with GOOD_ENV set"]
fn good_configs_in_their_environment() {
    if !support::process::is_rerun() {
        eprintln!("skipped: run by good_configs_validate with its environment");
        return;
    }
    let mut files = yaml_files("tests/testdata/config/good");
    files.extend(yaml_files("config"));
    files.extend(yaml_files("config/examples"));
    files.extend(yaml_files("config/scale-out"));
    files.extend(yaml_files("examples"));
    for path in &files {
        let (ok, warnings) = diagnostics(path);
        assert!(ok, "{} should validate:\n{warnings}", path.display());
        assert_eq!(warnings, "", "{} should have no warnings", path.display());
    }
    println!("{} good configs validated", files.len());
}
