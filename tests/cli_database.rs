//! The `kairos` binary and the wrong database: read commands never create one; missing
//! files, folders and config files, files that are not databases and servers that do
//! not answer give errors naming the database and the cause, quickly; `kairos migrate`
//! creates a database and repairs a dropped table. And many processes (CLI or nodes)
//! starting at once on a fresh database all succeed. The quickstart example logs the
//! database it runs on, password hidden.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use kairos::{Admin, Registry, Scheduler, TaskDef};
use serde_json::Value;

use common::cli::{Kairos, Output, at_once, kairos_in, node_builder, noop};

/// Runs `kairos --database-url URL ARGS` from an empty folder.
fn kairos(url: &str, args: &[&str]) -> Output {
    Kairos::new(args).url_flag(url).run()
}

/// [`kairos`] off the async runtime.
async fn cli(url: &str, args: &[&str]) -> Output {
    Kairos::new(args).url_flag(url).spawn().await
}

/// Asserts a one-line `error:` on stderr, exit 1, containing every one of `needles`.
#[track_caller]
fn assert_error(out: &Output, needles: &[&str]) {
    out.assert_fails();
    for n in needles {
        assert!(out.stderr.contains(n), "mentions `{n}`: {out:#?}");
    }
}

/// The files of a folder.
fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Builds (without running) a node on `url`.
async fn build_node(url: &str) -> Result<Scheduler, kairos::BuildError> {
    let registry =
        Registry::from_tasks([TaskDef::new("noop", noop, "tests/cli_database.rs")]).unwrap();
    node_builder(url, registry, None).build().await
}

/// Whether table `name` exists in the database.
async fn table_exists(db: &common::TestDb, name: &str) -> bool {
    let sql = if db.name == "postgres" {
        format!(
            "SELECT COUNT(*) AS n FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = '{name}'"
        )
    } else {
        format!("SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name = '{name}'")
    };
    kairos::test_support::query_i64(&db.url, &sql)
        .await
        .unwrap()
        == 1
}

// ---------------------------------------------------------------------------------
// No database, or not the one meant

#[test]
fn read_commands_in_a_folder_without_a_database_fail_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["jobs", "list"][..],
        &["runs", "list"],
        &["runs", "show", "1"],
        &["queues", "list"],
        &["nodes", "list"],
        &["tasks", "list"],
        &["jobs", "pause", "x"],
        &["enqueue", "x"],
    ] {
        let out = kairos_in(dir.path(), args);
        assert_error(&out, &["kairos.db", "does not exist", "kairos migrate"]);
        assert!(
            files(dir.path()).is_empty(),
            "{args:?} created {:?}",
            files(dir.path())
        );
    }
    let out = kairos_in(
        dir.path(),
        &["--database-url", "sqlite://other.db", "runs", "list"],
    );
    assert_error(&out, &["other.db"]);
    assert!(files(dir.path()).is_empty(), "{:?}", files(dir.path()));
}

#[test]
fn a_config_file_named_but_missing_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    kairos_in(dir.path(), &["migrate"]);
    assert_eq!(kairos_in(dir.path(), &["jobs", "list"]).code, 0);
    for args in [
        &["--config", "nope.toml", "jobs", "list"][..],
        &["jobs", "list", "--config", "nope.toml"],
        &["--config", "nope.toml", "migrate"],
    ] {
        let out = kairos_in(dir.path(), args);
        assert_error(&out, &["nope.toml"]);
    }
}

#[test]
fn a_config_file_can_name_the_database() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ops.toml"),
        "[scheduler]\ndatabase_url = \"sqlite://from_config.db\"\n",
    )
    .unwrap();
    let out = kairos_in(dir.path(), &["--config", "ops.toml", "jobs", "list"]);
    assert_error(&out, &["from_config.db"]);
    let out = kairos_in(dir.path(), &["--config", "ops.toml", "migrate"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(dir.path().join("from_config.db").is_file());
    assert!(!dir.path().join("kairos.db").exists());
}

#[test]
fn a_folder_that_does_not_exist_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("no/such/folder/kairos.db");
    let url = format!("sqlite://{}", file.display());
    let out = kairos(&url, &["jobs", "list"]);
    assert_error(&out, &[&file.display().to_string()]);
    let out = kairos(&url, &["migrate"]);
    assert_error(
        &out,
        &[&file.display().to_string(), "folder", "does not exist"],
    );
    assert!(!dir.path().join("no").exists());
}

#[test]
fn a_file_that_is_not_a_sqlite_database_is_named_with_the_cause() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("garbage.db");
    let garbage = "this is not a database, just some text\n".repeat(200);
    std::fs::write(&file, &garbage).unwrap();
    let url = format!("sqlite://{}", file.display());
    for args in [&["jobs", "list"][..], &["runs", "list"], &["migrate"]] {
        let out = kairos(&url, args);
        assert_error(&out, &["garbage.db", "not a SQLite database"]);
    }
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        garbage,
        "the file is left alone"
    );
}

/// A database that answers but holds no kairos tables is unhealthy for that reason,
/// not because it does not answer.
#[test]
fn health_tells_a_database_without_kairos_tables_from_one_that_does_not_answer() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("empty.db");
    std::fs::write(&file, b"").unwrap();
    let url = format!("sqlite://{}", file.display());
    let out = kairos(&url, &["health", "--json"]);
    assert_eq!(out.code, 1, "{out:#?}");
    let h = out.json();
    assert_eq!(h["database"], true, "{h}");
    let reason = h["reasons"][0].as_str().unwrap();
    assert!(
        reason.starts_with("the database cannot be used:") && reason.contains("no kairos tables"),
        "{h}"
    );
}

#[test]
fn a_folder_given_as_the_database_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().display());
    let out = kairos(&url, &["migrate"]);
    assert_error(&out, &[&dir.path().display().to_string(), "folder"]);
}

#[test]
fn an_unsupported_url_is_named() {
    let out = kairos("mysql://u:secret@h/db", &["jobs", "list"]);
    assert_error(&out, &["mysql://", "sqlite://", "postgres://"]);
}

// ---------------------------------------------------------------------------------
// PostgreSQL that does not answer

#[test]
fn postgres_with_nothing_listening_fails_within_a_few_seconds() {
    let url = "postgres://postgres:postgres@127.0.0.1:1/x";
    let out = kairos(url, &["jobs", "list"]);
    assert_error(&out, &["127.0.0.1:1"]);
    assert!(
        !out.stderr.contains(":postgres@"),
        "the password is hidden: {out:#?}"
    );
    assert!(out.took < Duration::from_secs(8), "took {:?}", out.took);
    let out = kairos(url, &["--connect-timeout", "1s", "runs", "list"]);
    assert_error(&out, &["127.0.0.1:1"]);
    assert!(out.took < Duration::from_secs(3), "took {:?}", out.took);
}

/// A refused connection is reported as refused, at once: nothing listens there, and
/// waiting longer (which "no answer within 5s" suggests) would not help.
#[test]
fn postgres_refusing_connections_is_reported_as_refused_at_once() {
    let out = kairos(
        "postgres://postgres:postgres@127.0.0.1:1/x",
        &["jobs", "list"],
    );
    assert_error(&out, &["127.0.0.1:1"]);
    assert!(
        out.stderr.contains("refused") || out.stderr.contains("nothing accepts connections"),
        "{out:#?}"
    );
    assert!(out.took < Duration::from_secs(2), "took {:?}", out.took);
}

#[test]
fn connect_timeout_bounds_a_connection_to_an_address_that_never_answers() {
    let url = "postgres://postgres:postgres@10.255.255.1:5432/x";
    for args in [
        &["--connect-timeout", "1s", "jobs", "list"][..],
        &["--connect-timeout", "1s", "migrate"],
    ] {
        let out = kairos(url, args);
        assert_error(&out, &["10.255.255.1"]);
        assert!(out.took < Duration::from_secs(3), "took {:?}", out.took);
    }
}

#[tokio::test]
async fn a_postgres_database_that_does_not_exist_is_named() {
    let Some(db) = common::postgres("a_postgres_database_that_does_not_exist_is_named").await
    else {
        return;
    };
    let url = db.url.replace("kairos_t_", "kairos_missing_");
    for args in [&["jobs", "list"][..], &["migrate"]] {
        let out = cli(&url, args).await;
        assert_error(&out, &["kairos_missing_", "does not exist"]);
        assert!(out.took < Duration::from_secs(3), "took {:?}", out.took);
    }
}

// ---------------------------------------------------------------------------------
// kairos migrate

#[test]
fn migrate_creates_a_fresh_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = kairos_in(dir.path(), &["migrate"]);
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(
        out.stdout.contains("kairos.db") && out.stdout.contains("applied"),
        "{out:#?}"
    );
    assert!(dir.path().join("kairos.db").is_file());
    let out = kairos_in(dir.path(), &["jobs", "list"]);
    assert_eq!((out.code, out.stdout.trim()), (0, "(none)"), "{out:#?}");
    let out = kairos_in(dir.path(), &["migrate", "--json"]);
    assert_eq!(out.code, 0, "{out:#?}");
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v["applied"],
        serde_json::json!([]),
        "a second migrate has nothing to do"
    );
    assert!(out.stdout.contains("kairos.db"), "{out:#?}");
}

#[tokio::test]
async fn migrate_creates_the_tables_in_an_empty_postgres_database() {
    let Some(db) =
        common::postgres("migrate_creates_the_tables_in_an_empty_postgres_database").await
    else {
        return;
    };
    let out = cli(&db.url, &["jobs", "list"]).await;
    assert_error(&out, &["no kairos tables", "kairos migrate"]);
    let out = cli(&db.url, &["migrate"]).await;
    assert_eq!(out.code, 0, "{out:#?}");
    assert!(out.stdout.contains("applied"), "{out:#?}");
    assert!(table_exists(&db, "kairos_runs").await);
    let out = cli(&db.url, &["runs", "list", "--json"]).await;
    assert_eq!(out.code, 0, "{out:#?}");
}

#[tokio::test]
async fn a_dropped_table_is_reported_as_damage_and_repaired_by_migrate() {
    for db in common::databases("a_dropped_table_is_reported_as_damage").await {
        build_node(&db.url)
            .await
            .expect("a node creates the schema");
        let admin = Admin::connect(&db.url).await.unwrap();
        admin.enqueue(kairos::Enqueue::new("noop")).await.unwrap();
        kairos::test_support::execute(&db.url, "DROP TABLE kairos_run_history")
            .await
            .unwrap();
        assert!(!table_exists(&db, "kairos_run_history").await);

        for args in [
            &["runs", "list"][..],
            &["jobs", "list"],
            &["runs", "show", "1"],
        ] {
            let out = cli(&db.url, args).await;
            assert_error(&out, &["damaged", "kairos_run_history", "kairos migrate"]);
        }
        let out = cli(&db.url, &["runs", "list", "--json"]).await;
        assert_eq!(out.code, 1, "{out:#?}");
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert!(
            v["error"]["message"].as_str().unwrap().contains("damaged"),
            "{v}"
        );

        let out = cli(&db.url, &["migrate"]).await;
        assert_eq!(out.code, 0, "{out:#?}");
        assert!(
            out.stdout.contains("repaired") && out.stdout.contains("kairos_run_history"),
            "says what it repaired: {out:#?}"
        );
        assert!(table_exists(&db, "kairos_run_history").await);

        let out = cli(&db.url, &["runs", "list", "--json"]).await;
        assert_eq!(out.code, 0, "{out:#?}");
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["total"], 1, "the other tables kept their rows: {v}");
        let out = cli(&db.url, &["migrate", "--json"]).await;
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(
            v["repaired"],
            serde_json::json!([]),
            "nothing left to repair"
        );
    }
}

#[tokio::test]
async fn migrate_reports_a_repair_in_json() {
    for db in common::databases("migrate_reports_a_repair_in_json").await {
        build_node(&db.url).await.unwrap();
        kairos::test_support::execute(&db.url, "DROP TABLE kairos_run_history")
            .await
            .unwrap();
        let out = cli(&db.url, &["migrate", "--json"]).await;
        assert_eq!(out.code, 0, "{out:#?}");
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        let repaired = v["repaired"].as_array().expect("repaired");
        assert!(
            repaired
                .iter()
                .any(|r| r.as_str().is_some_and(|r| r.contains("kairos_run_history"))),
            "{v}"
        );
    }
}

#[tokio::test]
async fn a_dropped_column_is_reported_by_migrate_not_papered_over() {
    for db in common::databases("a_dropped_column_is_reported_by_migrate").await {
        build_node(&db.url).await.unwrap();
        kairos::test_support::execute(
            &db.url,
            "ALTER TABLE kairos_run_history DROP COLUMN message",
        )
        .await
        .unwrap();
        let out = cli(&db.url, &["migrate"]).await;
        assert_error(&out, &["damaged", "kairos_run_history", "message"]);
        assert!(!out.stderr.contains("applied"), "{out:#?}");
    }
}

/// A database whose nodes registered before node names existed is upgraded by the
/// first admin command; those nodes list as `<hostname>:<pid>`.
#[tokio::test]
async fn nodes_registered_before_names_existed_list_by_host_and_pid_after_the_upgrade() {
    for db in common::databases("nodes_before_names").await {
        build_node(&db.url).await.unwrap();
        kairos::test_support::insert_node(&db.url, "old-node", "stopped", 1_000)
            .await
            .unwrap();
        for sql in [
            "ALTER TABLE kairos_nodes DROP COLUMN name",
            "DELETE FROM kairos_migrations WHERE version = 'm20261130_000006_node_names'",
        ] {
            kairos::test_support::execute(&db.url, sql).await.unwrap();
        }
        let nodes = cli(&db.url, &["nodes", "list", "--json"]).await.ok().json();
        let old = nodes
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == "old-node")
            .unwrap_or_else(|| panic!("{}: {nodes}", db.name));
        assert_eq!(old["name"], "elsewhere:1", "{}: {nodes}", db.name);
    }
}

/// `kairos migrate` cannot bring back a dropped column, so a read command must not
/// tell the user that running it repairs the damage.
#[tokio::test]
async fn a_dropped_column_is_not_promised_a_repair_by_migrate() {
    let db = common::sqlite();
    build_node(&db.url).await.unwrap();
    kairos::test_support::execute(
        &db.url,
        "ALTER TABLE kairos_run_history DROP COLUMN message",
    )
    .await
    .unwrap();
    let out = cli(&db.url, &["runs", "list"]).await;
    assert_error(&out, &["damaged", "message"]);
    assert!(
        !out.stderr.contains("run `kairos migrate` to repair it"),
        "{out:#?}"
    );
    assert_eq!(
        cli(&db.url, &["migrate"]).await.code,
        1,
        "migrate indeed cannot"
    );
}

// ---------------------------------------------------------------------------------
// Many processes at once

/// Starts `n` `kairos migrate` processes against `url` at the same moment and returns
/// their outputs.
fn migrate_at_once(url: &str, n: usize) -> Vec<(i32, String)> {
    let dir = tempfile::tempdir().unwrap();
    let migrate = Kairos::new(&["migrate"]).url_flag(url).dir(dir.path());
    at_once(vec![migrate; n])
        .into_iter()
        .map(|out| (out.code, out.stderr))
        .collect()
}

#[tokio::test]
async fn five_migrates_at_once_on_a_fresh_sqlite_file_all_succeed() {
    for round in 0..3 {
        let db = common::sqlite();
        let url = db.url.clone();
        let results = tokio::task::spawn_blocking(move || migrate_at_once(&url, 5))
            .await
            .unwrap();
        for (code, err) in &results {
            assert_eq!(*code, 0, "round {round}: {results:#?}: {err}");
        }
        let out = cli(&db.url, &["jobs", "list"]).await;
        assert_eq!(out.code, 0, "{out:#?}");
    }
}

#[tokio::test]
async fn three_migrates_at_once_on_a_fresh_postgres_database_all_succeed() {
    for round in 0..3 {
        let Some(db) = common::postgres("three_migrates_at_once_on_a_fresh_postgres").await else {
            return;
        };
        let url = db.url.clone();
        let results = tokio::task::spawn_blocking(move || migrate_at_once(&url, 3))
            .await
            .unwrap();
        for (code, err) in &results {
            assert_eq!(*code, 0, "round {round}: {results:#?}: {err}");
        }
        assert!(table_exists(&db, "kairos_runs").await);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_built_at_once_on_a_fresh_database_all_succeed() {
    for round in 0..2 {
        for db in common::databases("nodes_built_at_once_on_a_fresh_database").await {
            let (a, b, c, d) = tokio::join!(
                build_node(&db.url),
                build_node(&db.url),
                build_node(&db.url),
                build_node(&db.url),
            );
            for (i, r) in [a, b, c, d].into_iter().enumerate() {
                if let Err(e) = r {
                    panic!("{} round {round}: node {i} failed to build: {e}", db.name);
                }
            }
            let admin = Admin::connect(&db.url).await.unwrap();
            assert_eq!(admin.tasks().await.unwrap().len(), 1);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_and_migrates_started_together_all_succeed() {
    for db in common::databases("nodes_and_migrates_started_together").await {
        let url = db.url.clone();
        let cli_side = tokio::task::spawn_blocking(move || migrate_at_once(&url, 3));
        let (a, b) = tokio::join!(build_node(&db.url), build_node(&db.url));
        a.unwrap_or_else(|e| panic!("{}: {e}", db.name));
        b.unwrap_or_else(|e| panic!("{}: {e}", db.name));
        for (code, err) in cli_side.await.unwrap() {
            assert_eq!(code, 0, "{}: {err}", db.name);
        }
    }
}

// ---------------------------------------------------------------------------------
// The quickstart example

/// Builds the quickstart example (nothing to do once `cargo test` built the examples)
/// and returns its executable.
fn quickstart_executable() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--example",
            "quickstart",
            "--message-format",
            "json",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "quickstart")
        .and_then(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo names the quickstart's executable")
}

/// Runs the quickstart for a second in `dir`, with the repository's jobs.toml (its
/// `database_url` set to `database_url` when given) and the environment `env`: its log.
fn run_quickstart(
    exe: &Path,
    dir: &Path,
    database_url: Option<&str>,
    env: &[(&str, &str)],
) -> String {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut toml = std::fs::read_to_string(repo.join("jobs.toml")).unwrap();
    if let Some(url) = database_url {
        toml = toml.replace(
            "[scheduler]\n",
            &format!("[scheduler]\ndatabase_url = \"{url}\"\n"),
        );
    }
    std::fs::write(dir.join("jobs.toml"), toml).unwrap();
    let mut child = Command::new(exe)
        .current_dir(dir)
        .env_remove("KAIROS_DATABASE_URL")
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .env("KAIROS_QUICKSTART_SECONDS", "1")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the quickstart");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("the quickstart did not stop by itself");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{log}");
    log
}

/// The line of the quickstart's log that names its database.
#[track_caller]
fn running_on(log: &str) -> &str {
    log.lines()
        .find(|l| l.contains("kairos quickstart running on"))
        .unwrap_or_else(|| panic!("no line names the database: {log}"))
}

/// The quickstart logs the database it runs on, from KAIROS_DATABASE_URL or jobs.toml,
/// never the SQLite default it does not use, and never a password.
#[tokio::test]
async fn the_quickstart_logs_the_database_it_runs_on_without_its_password() {
    let exe = tokio::task::spawn_blocking(quickstart_executable)
        .await
        .unwrap();
    for db in common::databases("the_quickstart_logs_its_database").await {
        let dir = tempfile::tempdir().unwrap();
        let (exe, path, url) = (exe.clone(), dir.path().to_path_buf(), db.url.clone());
        let log = tokio::task::spawn_blocking(move || {
            run_quickstart(&exe, &path, None, &[("KAIROS_DATABASE_URL", &url)])
        })
        .await
        .unwrap();
        let line = running_on(&log);
        let shown = match db.url.split_once('@') {
            // postgres://user:password@host/db
            Some((user_password, host)) => {
                let (user, password) = user_password.rsplit_once(':').unwrap();
                assert!(!line.contains(&format!(":{password}@")), "{line}");
                format!("{user}:***@{host}")
            }
            None => db.url.clone(),
        };
        assert!(
            line.contains(&format!("running on {shown}; press Ctrl-C")),
            "{}: {line}",
            db.name
        );
        assert!(!dir.path().join("kairos.db").exists(), "{}", db.name);
    }

    let db = common::sqlite();
    let dir = tempfile::tempdir().unwrap();
    let (path, url) = (dir.path().to_path_buf(), db.url.clone());
    let log = tokio::task::spawn_blocking(move || run_quickstart(&exe, &path, Some(&url), &[]))
        .await
        .unwrap();
    assert!(
        running_on(&log).contains(&format!("running on {}; press Ctrl-C", db.url)),
        "{log}"
    );
    assert!(!dir.path().join("kairos.db").exists());
}
