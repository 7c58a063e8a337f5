//! Independent implementations in Python (from PyPI) that the tests check
//! Switchyard against: a script under `tests/it/support/` run with the packages
//! a `scripts/py-*` installer puts in place, killed when dropped (also when
//! a test panics). The script prints its port(s) on its first stdout line.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The PYTHONPATH `scripts/<installer>` prints (installing on first use).
pub fn python_path(installer: &str) -> String {
    let out = Command::new(root().join("scripts").join(installer))
        .current_dir(root())
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("runs scripts/{installer}: {e}"));
    assert!(
        out.status.success(),
        "scripts/{installer} failed: {}",
        out.status
    );
    let path = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(!path.is_empty(), "scripts/{installer} printed no path");
    path
}

/// A running `tests/it/support/<script>`, writing what it sees to `out`.
pub struct PyServer {
    child: Child,
    /// The ports it printed, in order.
    pub ports: Vec<u16>,
    pub out: PathBuf,
}

impl PyServer {
    pub fn start(script: &str, installer: &str, out: PathBuf) -> Self {
        let child = Command::new("python3")
            .arg(root().join("tests/it/support").join(script))
            .arg(&out)
            .env("PYTHONPATH", python_path(installer))
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starts python3");
        // The guard exists before anything can panic.
        let mut server = Self {
            child,
            ports: Vec::new(),
            out,
        };
        let mut line = String::new();
        BufReader::new(server.child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        server.ports = line
            .split_whitespace()
            .map(|p| p.parse())
            .collect::<Result<_, _>>()
            .unwrap_or_else(|_| panic!("{script} printed {line:?} instead of its ports"));
        assert!(!server.ports.is_empty(), "{script} printed no port");
        server
    }

    /// What it recorded: one JSON value per line.
    pub fn records(&self) -> Vec<serde_json::Value> {
        super::json_lines(&self.out)
    }
}

impl Drop for PyServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
