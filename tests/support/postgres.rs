//! A private PostgreSQL for the tests, and a database of its own for each.
//!
//! `IMBED_TEST_POSTGRES` names a running server (`make test` starts one with
//! scripts/pg-test-server and passes its URL); without it the first test
//! that asks starts one in a temporary directory, stopped when the test
//! binary exits. `IMBED_TEST_STORE=postgres` makes [`durable_store`] answer
//! PostgreSQL, so the store tests written for SQLite run against it too.

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;

use serde_json::{Value, json};

/// The URL of the tests' PostgreSQL server (its database `imbed`).
pub fn server_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        if let Ok(url) = std::env::var("IMBED_TEST_POSTGRES") {
            return url;
        }
        let dir = tempfile::Builder::new()
            .prefix("imbed-test-pg.")
            .tempdir()
            .expect("a temporary directory")
            .keep();
        let started = Command::new(repo().join("scripts/pg-test-server"))
            .arg("start")
            .arg(&dir)
            .output()
            .expect("scripts/pg-test-server runs");
        assert!(
            started.status.success(),
            "scripts/pg-test-server start failed: {}",
            String::from_utf8_lossy(&started.stderr)
        );
        STARTED_IN.set(dir).expect("started once");
        // SAFETY: `stop_at_exit` is an `extern "C" fn()` that never unwinds.
        unsafe { libc::atexit(stop_at_exit) };
        String::from_utf8(started.stdout).unwrap().trim().to_owned()
    })
}

static STARTED_IN: OnceLock<std::path::PathBuf> = OnceLock::new();

extern "C" fn stop_at_exit() {
    if let Some(dir) = STARTED_IN.get() {
        let _ = Command::new(repo().join("scripts/pg-test-server"))
            .arg("stop")
            .arg(dir)
            .output();
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `sql` on the server's database `imbed` with psql; its output.
pub fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([url, "-XqAt", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The URL of a new, empty database named after `dir` (the same database
/// each time for the same `dir`, so a test can restart a server on it).
pub fn database(dir: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    dir.hash(&mut hasher);
    let name = format!("t{:016x}", hasher.finish());
    let server = server_url();
    let exists = psql(server, &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"));
    if exists.trim().is_empty() {
        psql(server, &format!("CREATE DATABASE {name}"));
    }
    let base = server.rsplit_once('/').expect("a URL with a database").0;
    format!("{base}/{name}")
}

/// Whether the store tests run against PostgreSQL (`IMBED_TEST_STORE=postgres`).
pub fn selected() -> bool {
    std::env::var("IMBED_TEST_STORE").is_ok_and(|store| store == "postgres")
}

/// The `store` of a durable server whose data is `dir`'s: the SQLite file
/// `file` in it, or with `IMBED_TEST_STORE=postgres` a database of its own.
pub fn durable_store(dir: &Path, file: &str) -> Value {
    if selected() {
        json!({"postgres": database(dir)})
    } else {
        json!({"path": dir.join(file).to_str().unwrap()})
    }
}
