//! The repository's own `jobs.toml` (the one the quickstart reads) stays valid.

#[test]
fn repository_jobs_toml_parses() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("jobs.toml");
    let config = kairos::config::Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.scheduler.max_workers, Some(8));
    let names: Vec<&str> = config.jobs.iter().map(|j| j.name.value.as_str()).collect();
    assert_eq!(names, ["report_berlin", "report_tokyo"]);
}
