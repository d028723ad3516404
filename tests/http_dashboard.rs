//! The web dashboard: served at `/` with its embedded assets (right content types, a
//! strict Content-Security-Policy, nothing loaded from another origin, the token never
//! in the page), and driven in a real headless Chromium through chromedriver's
//! WebDriver protocol: it asks for the token, pauses a job with a click (seen on the
//! page and in the database), shows a running run's progress bar moving, a job's cron
//! schedule with its zone once, a run's page with and without history, the health
//! check's warnings on the overview, shows API errors, fits a phone-width screen, and
//! leaves screenshots in `target/tmp/`.
//!
//! The browser test is skipped (with a notice) when `chromium` or `chromedriver` is not
//! on `PATH`; `.ci/run` installs both.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::future::BoxFuture;
use kairos::http::HttpOptions;
use kairos::schedule::{CronSchedule, Schedule, parse_timezone};
use kairos::task::TaskOutcome;
use kairos::{Admin, Enqueue, NewJob, Registry, RunStatus, TaskContext, TaskDef};
use serde_json::{Value, json};

use common::cli::{Node, hello, node_builder};
use common::http::Api;

const TOKEN: &str = "dashboard-test-token";
const HERE: &str = "tests/http_dashboard.rs";

// ---------------------------------------------------------------------------------
// The page and its assets over plain HTTP

/// A GET answered with its status, headers and body.
async fn fetch(url: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(url)
        .send()
        .await
        .expect("answered");
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

fn header<'a>(h: &'a reqwest::header::HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// Every `http://` or `https://` in `text` but the SVG namespace name (an identifier
/// the browser never fetches).
fn external_urls(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for scheme in ["http://", "https://"] {
        for (i, _) in text.match_indices(scheme) {
            let rest = &text[i..];
            let end = rest
                .find(|c: char| c.is_whitespace() || c == '"' || c == '\'' || c == ')')
                .unwrap_or(rest.len());
            let url = &rest[..end];
            if url != "http://www.w3.org/2000/svg" {
                found.push(url.to_string());
            }
        }
    }
    found
}

/// An admin over a fresh database, as `kairos serve` has (the database made by a node
/// that is not running).
async fn admin_on(url: &str) -> Admin {
    let registry = Registry::from_tasks([TaskDef::new("hello", hello, HERE)]).unwrap();
    drop(node_builder(url, registry, None).build().await.unwrap());
    Admin::connect(url).await.unwrap()
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_embedded_with_the_right_types() {
    let db = common::sqlite();
    let admin = admin_on(&db.url).await;
    let api = Api::start(admin.clone(), HttpOptions::new()).await;

    let (status, h, html) = fetch(&format!("{}/", api.base)).await;
    assert_eq!(status, 200);
    assert_eq!(header(&h, "content-type"), "text/html; charset=utf-8");
    let csp = header(&h, "content-security-policy");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    assert!(!csp.contains("unsafe-inline"), "{csp}");
    assert_eq!(header(&h, "x-content-type-options"), "nosniff");
    assert!(html.contains(r#"<meta name="kairos-auth" content="none">"#));
    assert!(html.contains(r#"<script src="/dashboard/app.js" defer></script>"#));
    assert!(
        external_urls(&html).is_empty(),
        "{:?}",
        external_urls(&html)
    );

    // Every asset the page names is served, with its type, and loads nothing from
    // another origin.
    for (path, content_type) in [
        ("/dashboard/app.js", "text/javascript; charset=utf-8"),
        ("/dashboard/app.css", "text/css; charset=utf-8"),
        ("/dashboard/icon.svg", "image/svg+xml; charset=utf-8"),
    ] {
        assert!(
            html.contains(&format!("\"{path}\"")),
            "index.html names {path}"
        );
        let (status, h, body) = fetch(&format!("{}{path}", api.base)).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(header(&h, "content-type"), content_type, "{path}");
        assert!(!body.is_empty(), "{path}");
        assert!(
            external_urls(&body).is_empty(),
            "{path} names {:?}",
            external_urls(&body)
        );
        assert!(
            !body.contains("//cdn") && !body.contains("@import"),
            "{path}"
        );
    }
    // The page still knows nothing the API does not say: an unknown asset is the
    // API's 404.
    let missing = api.get("/dashboard/nothing.js").await;
    missing.error(404, "no_route");
    // The API is where it was.
    api.get("/api/v1/jobs").await.expect(200);
}

#[tokio::test]
async fn the_page_is_open_says_whether_a_token_is_needed_and_never_holds_it() {
    let db = common::sqlite();
    let admin = admin_on(&db.url).await;
    for (opts, mode) in [
        (HttpOptions::new().token(TOKEN), "token"),
        (
            HttpOptions::new().token(TOKEN).protect_reads(true),
            "token-reads",
        ),
    ] {
        let api = Api::start(admin.clone(), opts).await;
        // A browser cannot attach a bearer token to a navigation: the page and its
        // assets are open, the data behind them is not.
        let (status, _, html) = fetch(&format!("{}/", api.base)).await;
        assert_eq!(status, 200);
        assert!(
            html.contains(&format!(r#"<meta name="kairos-auth" content="{mode}">"#)),
            "{mode}"
        );
        for path in ["/", "/dashboard/app.js", "/dashboard/app.css"] {
            let (status, _, body) = fetch(&format!("{}{path}", api.base)).await;
            assert_eq!(status, 200, "{path}");
            assert!(!body.contains(TOKEN), "{path} holds the token");
        }
        api.post_empty("/api/v1/jobs/x/pause")
            .await
            .error(401, "unauthorized");
        if mode == "token-reads" {
            api.get("/api/v1/jobs").await.error(401, "unauthorized");
        }
    }
}

// ---------------------------------------------------------------------------------
// A minimal WebDriver client over chromedriver

/// `name` on `PATH`.
fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// A chromedriver process (in its own process group, with the browsers it starts);
/// killed when dropped.
struct Driver {
    child: Child,
    url: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and any browser it left behind.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Driver {
    async fn start(chromedriver: &Path) -> Driver {
        use std::os::unix::process::CommandExt;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let profile = tempfile::tempdir().unwrap();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .arg(format!(
                "--log-path={}",
                profile.path().join("chromedriver.log").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start chromedriver");
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
            profile: profile.path().to_path_buf(),
            _profile: profile,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(r) = driver
                .http
                .get(format!("{}/status", driver.url))
                .send()
                .await
                && let Ok(v) = r.json::<Value>().await
                && v["value"]["ready"] == true
            {
                return driver;
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A new headless Chromium session.
    async fn session(&self, chromium: &Path) -> Session {
        let user_data = self.profile.join("chromium");
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--no-proxy-server",
            "--window-size=1280,900",
            &format!("--user-data-dir={}", user_data.display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args},
            "timeouts": {"script": 10_000, "pageLoad": 20_000, "implicit": 0},
        }}});
        let v = self
            .call(reqwest::Method::POST, "/session", Some(caps))
            .await;
        let id = v["sessionId"].as_str().expect("a session id").to_string();
        Session {
            driver_url: self.url.clone(),
            http: self.http.clone(),
            path: format!("/session/{id}"),
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        call(&self.http, &self.url, method, path, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }
}

/// One WebDriver command: its `value`, or the WebDriver error.
async fn call(
    http: &reqwest::Client,
    base: &str,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let mut req = http.request(method, format!("{base}{path}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.map_err(|e| e.to_string())?;
    let v: Value = resp.json().await.map_err(|e| e.to_string())?;
    let value = v["value"].clone();
    match value.get("error") {
        Some(e) => Err(format!("{e}: {}", value["message"])),
        None => Ok(value),
    }
}

/// The W3C key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// A browser session.
struct Session {
    driver_url: String,
    http: reqwest::Client,
    path: String,
}

impl Session {
    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let full = format!("{}{path}", self.path);
        call(&self.http, &self.driver_url, method, &full, body)
            .await
            .unwrap_or_else(|e| panic!("WebDriver {path}: {e}"))
    }

    async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({ "url": url })))
            .await;
    }

    /// Runs `script` (a function body) in the page and returns its value.
    async fn js(&self, script: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({ "script": script, "args": [] })),
        )
        .await
    }

    /// Polls `script` until it returns something other than `null` or `false`.
    async fn wait_for(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let v = self.js(script).await;
            if !v.is_null() && v != false {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The element `css` selects, waiting for it to appear.
    async fn element(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let r = call(
                &self.http,
                &self.driver_url,
                reqwest::Method::POST,
                &format!("{}/element", self.path),
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
            if let Ok(v) = r {
                return v[ELEMENT]
                    .as_str()
                    .unwrap_or_else(|| panic!("an element reference: {v}"))
                    .to_string();
            }
            assert!(Instant::now() < deadline, "no element `{css}` appeared");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A real click (WebDriver moves the pointer and clicks), waiting for the element;
    /// tried again when a live refresh replaced the element meanwhile.
    async fn click(&self, css: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let id = self.element(css).await;
            let r = call(
                &self.http,
                &self.driver_url,
                reqwest::Method::POST,
                &format!("{}/element/{id}/click", self.path),
                Some(json!({})),
            )
            .await;
            match r {
                Ok(_) => return,
                Err(e) if e.contains("stale element") && Instant::now() < deadline => continue,
                Err(e) => panic!("clicking `{css}`: {e}"),
            }
        }
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.cmd(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn window_size(&self, width: u32, height: u32) {
        self.cmd(
            reqwest::Method::POST,
            "/window/rect",
            Some(json!({ "width": width, "height": height })),
        )
        .await;
    }

    /// A PNG of the viewport, written to `target/tmp/NAME`; returns the path.
    async fn screenshot(&self, name: &str) -> PathBuf {
        let b64 = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(b64.as_str().expect("base64 text"))
            .expect("a base64 PNG");
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
        std::fs::write(&path, png).unwrap();
        println!("dashboard screenshot: {}", path.display());
        path
    }

    async fn quit(self) {
        let _ = call(
            &self.http,
            &self.driver_url,
            reqwest::Method::DELETE,
            &self.path,
            None,
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------
// The dashboard in Chromium

/// Reports progress from 1 to 100 over about 15 s, in the stage `crunching`.
fn slow(ctx: TaskContext, _: Value) -> BoxFuture<'static, TaskOutcome> {
    Box::pin(async move {
        ctx.stage("crunching");
        for i in 1..=100u8 {
            ctx.progress(i, format!("step {i} of 100"));
            tokio::select! {
                _ = ctx.cancelled() => return Ok(None),
                _ = tokio::time::sleep(Duration::from_millis(150)) => {}
            }
        }
        Ok(None)
    })
}

#[tokio::test]
async fn chromium_pauses_a_job_and_watches_a_run_progress() {
    let (Some(chromium), Some(chromedriver)) = (which("chromium"), which("chromedriver")) else {
        eprintln!(
            "SKIPPED (chromium): chromium_pauses_a_job_and_watches_a_run_progress: chromium \
             or chromedriver is not on PATH (.ci/run installs Debian's chromium and \
             chromium-driver)"
        );
        return;
    };
    let db = common::sqlite();
    let registry = Registry::from_tasks([
        TaskDef::new("hello", hello, HERE),
        TaskDef::new("slow", slow, HERE),
    ])
    .unwrap();
    let node = Node::start_with(&db.url, node_builder(&db.url, registry, None)).await;
    let admin = node.handle.admin().clone();
    let api = Api::start(admin.clone(), HttpOptions::new().token(TOKEN)).await;

    // Bounded: a browser that hangs fails the test instead of stalling CI; the driver
    // and its browser are killed when `driver` drops, whatever happens.
    let driver = Driver::start(&chromedriver).await;
    let outcome = tokio::time::timeout(
        Duration::from_secs(150),
        drive(&driver, &chromium, &api, &admin),
    )
    .await;
    let log = std::fs::read_to_string(driver.profile.join("chromedriver.log")).unwrap_or_default();
    drop(driver);
    node.stop().await;
    if outcome.is_err() {
        panic!(
            "the browser test took over 150 s; chromedriver's log ends with:\n{}",
            log.lines().rev().take(30).collect::<Vec<_>>().join("\n")
        );
    }
}

async fn drive(driver: &Driver, chromium: &Path, api: &Api, admin: &Admin) {
    for (name, every) in [("nightly", 24 * 3600), ("tick", 1)] {
        admin
            .create_job(NewJob::new(
                name,
                "hello",
                Schedule::Every(Duration::from_secs(every)),
            ))
            .await
            .unwrap();
    }
    let run_id = admin.enqueue(Enqueue::new("slow")).await.unwrap().id;
    let s = driver.session(chromium).await;

    // The page asks for the token once, before anything else.
    s.goto(&format!("{}/#/jobs", api.base)).await;
    s.wait_for(
        "the token dialog",
        "return document.getElementById('token-dialog').open",
    )
    .await;
    s.type_into("#token-input", TOKEN).await;
    s.click("#token-save").await;
    // The page stores it when the dialog's `close` event comes, a task after the click.
    s.wait_for(
        "the token to be stored",
        &format!("return sessionStorage.getItem('kairos.token') === '{TOKEN}'"),
    )
    .await;

    // Jobs: pause one with a click; the page and the database agree.
    let row = r#"tr[data-job="nightly"]"#;
    s.click(&format!(r#"{row} button[data-action="pause"]"#))
        .await;
    s.wait_for(
        "the job shown paused",
        &format!(
            r#"const r = document.querySelector('{row}');
               return r && r.dataset.paused === 'true'
                 && r.querySelector('td.state').textContent === 'paused'"#
        ),
    )
    .await;
    assert!(admin.job("nightly").await.unwrap().paused);
    assert!(!admin.job("tick").await.unwrap().paused);
    // The interval job's slots and last outcome appear.
    s.wait_for(
        "the recent slots of `tick`",
        r#"return document.querySelectorAll('tr[data-job="tick"] .slot').length > 0"#,
    )
    .await;
    s.wait_for(
        "the live badge",
        "return document.getElementById('live').textContent === 'live'",
    )
    .await;
    s.screenshot("dashboard-jobs.png").await;

    // Runs: the running run's progress bar moves (live, from the event stream).
    s.goto(&format!("{}/#/runs?status=running", api.base)).await;
    let bar = format!(r#"tr[data-run-id="{run_id}"] [role="progressbar"]"#);
    let first = s
        .wait_for(
            "the run's progress bar",
            &format!(
                r#"const b = document.querySelector('{bar}');
                   return b && b.getAttribute('aria-valuenow')"#
            ),
        )
        .await;
    let first: u32 = first.as_str().unwrap().parse().unwrap();
    let later = s
        .wait_for(
            "the progress bar to move",
            &format!(
                r#"const b = document.querySelector('{bar}');
                   const v = b && Number(b.getAttribute('aria-valuenow'));
                   return v > {first} ? v : null"#
            ),
        )
        .await;
    assert!(later.as_u64().unwrap() > u64::from(first));
    let stage = s
        .js(&format!(
            r#"return document.querySelector('tr[data-run-id="{run_id}"] [data-field="stage"]').textContent"#
        ))
        .await;
    assert_eq!(stage, "crunching");
    s.screenshot("dashboard-runs.png").await;

    // The run's detail page shows its progress too.
    s.click(&format!(r#"tr[data-run-id="{run_id}"] a"#)).await;
    s.wait_for(
        "the run detail",
        &format!(r#"return location.hash === '#/runs/{run_id}' && document.querySelector('.panel [role="progressbar"]')"#),
    )
    .await;

    // The overview's per-task chart counts a cancelled run apart from the failures.
    let later = admin
        .enqueue(Enqueue::new("hello").delay(Duration::from_secs(3600)))
        .await
        .unwrap()
        .id;
    admin.cancel_run(later).await.unwrap();
    s.goto(&format!("{}/#/overview", api.base)).await;
    s.wait_for(
        "the cancelled run apart in the per-task chart",
        r#"const t = [...document.querySelectorAll('.chart rect title')].map(t => t.textContent);
           return t.includes('hello: 1 cancelled or expired') && t.includes('hello: 0 failed or timed out')"#,
    )
    .await;

    job_and_run_pages(&s, api, admin, later).await;
    overview_warnings(&s, api, admin).await;

    // The other views load without an error.
    for (view, ready) in [
        (
            "overview",
            r#"document.querySelector('[data-stat="running"]') && document.querySelector('.chart svg')"#,
        ),
        (
            "queues",
            r#"document.querySelector('tr[data-queue="default"]')"#,
        ),
        (
            "nodes",
            r#"[...document.querySelectorAll('tr[data-node] .badge')].some(b => b.textContent === 'alive')"#,
        ),
        (
            "jobs/tick",
            r#"document.querySelector('.slot') || [...document.querySelectorAll('td')].some(t => t.textContent === 'ran')"#,
        ),
    ] {
        s.goto(&format!("{}/#/{view}", api.base)).await;
        s.wait_for(view, &format!("return {ready}")).await;
        if view == "overview" {
            s.screenshot("dashboard-overview.png").await;
        }
    }
    let errors = s
        .js("return [...document.querySelectorAll('#errors .error:not(.notice)')].map(e => e.textContent)")
        .await;
    assert_eq!(errors, json!([]), "errors shown");

    // An API error is shown to the user with its code and message.
    s.goto(&format!("{}/#/runs/999999", api.base)).await;
    let shown = s
        .wait_for(
            "the error message",
            "const e = document.querySelector('#errors .error'); return e && e.textContent",
        )
        .await;
    let shown = shown.as_str().unwrap();
    assert!(shown.contains("not_found"), "{shown}");
    assert!(shown.contains("999999"), "{shown}");

    // Phone width: nothing wider than the screen.
    s.window_size(390, 844).await;
    s.goto(&format!("{}/#/runs", api.base)).await;
    s.wait_for(
        "the runs at phone width",
        &format!(r#"return document.querySelector('tr[data-run-id="{run_id}"]')"#),
    )
    .await;
    let overflow = s
        .js("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        .await;
    assert_eq!(overflow, 0, "the page scrolls sideways at phone width");
    s.screenshot("dashboard-phone.png").await;

    // Nothing of the token leaked into the address or the page.
    let page = s
        .js("return location.href + document.documentElement.outerHTML")
        .await;
    assert!(!page.as_str().unwrap().contains(TOKEN));
    s.quit().await;
}

/// The text nodes directly inside the element `css` selects: data placed beside the
/// page's elements instead of in one (`null` from an absent section, say).
fn stray_text(css: &str) -> String {
    format!(
        r#"const e = document.querySelector('{css}');
           return e && [...e.parentElement.childNodes]
             .filter(n => n.nodeType === Node.TEXT_NODE).map(n => n.textContent)"#
    )
}

/// A job's page names its cron schedule's zone once; a run's page shows its history
/// when it has one and nothing in its place when it has none.
async fn job_and_run_pages(s: &Session, api: &Api, admin: &Admin, cancelled: i64) {
    let berlin = parse_timezone("Europe/Berlin").unwrap();
    let cron = Schedule::Cron(CronSchedule::parse("0 3 * * *", berlin).unwrap());
    let text = cron.to_string();
    assert_eq!(text, r#"cron "0 3 * * *" (Europe/Berlin)"#);
    admin
        .create_job(NewJob::new("berlin", "hello", cron))
        .await
        .unwrap();
    let schedule_of = r#"const dt = [...document.querySelectorAll('dt')].find(d => d.textContent === 'Schedule');
           return dt && dt.nextElementSibling.textContent"#;
    s.goto(&format!("{}/#/jobs/berlin", api.base)).await;
    let shown = s.wait_for("the job's schedule", schedule_of).await;
    assert_eq!(shown, text.as_str(), "the job page's schedule");
    s.goto(&format!("{}/#/jobs", api.base)).await;
    let shown = s
        .wait_for(
            "the schedule in the jobs list",
            r#"const c = document.querySelector('tr[data-job="berlin"] td[data-label="Schedule"]');
               return c && c.textContent"#,
        )
        .await;
    assert_eq!(shown, text.as_str(), "the jobs list's schedule");

    // A run that succeeded at its first attempt has no history.
    let once = admin.enqueue(Enqueue::new("hello")).await.unwrap().id;
    let deadline = Instant::now() + Duration::from_secs(15);
    while admin.run(once).await.unwrap().status != RunStatus::Succeeded {
        assert!(Instant::now() < deadline, "run {once} did not succeed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(admin.run(once).await.unwrap().history.is_empty());
    s.goto(&format!("{}/#/runs/{once}", api.base)).await;
    let panel = format!(r#".panel[data-run-id="{once}"]"#);
    s.wait_for(
        "the succeeded run's page",
        &format!(r#"return document.querySelector('{panel}')"#),
    )
    .await;
    assert_eq!(s.js(&stray_text(&panel)).await, json!([]), "run {once}");
    let history =
        "return [...document.querySelectorAll('h2')].some(h => h.textContent === 'History')";
    assert_eq!(s.js(history).await, false);

    // A run cancelled while queued has it.
    assert!(!admin.run(cancelled).await.unwrap().history.is_empty());
    s.goto(&format!("{}/#/runs/{cancelled}", api.base)).await;
    let panel = format!(r#".panel[data-run-id="{cancelled}"]"#);
    s.wait_for(
        "the cancelled run's page",
        &format!(r#"return document.querySelector('{panel}')"#),
    )
    .await;
    assert_eq!(
        s.js(&stray_text(&panel)).await,
        json!([]),
        "run {cancelled}"
    );
    assert_eq!(s.js(history).await, true);
    let events = s
        .js(r#"return [...document.querySelectorAll('td[data-label="Event"]')].map(t => t.textContent)"#)
        .await;
    assert_eq!(events, json!(["cancelled"]));
}

/// The overview shows the health check's warnings: every live node paused.
async fn overview_warnings(s: &Session, api: &Api, admin: &Admin) {
    let warnings =
        "return [...document.querySelectorAll('#view .warning')].map(w => w.textContent)";
    s.goto(&format!("{}/#/overview", api.base)).await;
    s.wait_for(
        "the overview's health",
        r#"return document.querySelector('#view .b-alive')"#,
    )
    .await;
    assert_eq!(s.js(warnings).await, json!([]));

    admin.set_nodes_paused(None, true).await.unwrap();
    let health = api.get("/health").await.expect(200);
    let said = health["warnings"][0].as_str().unwrap().to_string();
    assert!(said.contains("every live node is paused"), "{health}");
    s.goto(&format!("{}/#/overview", api.base)).await;
    let shown = s
        .wait_for(
            "the health warning",
            "const w = document.querySelectorAll('#view .warning'); return w.length ? [...w].map(w => w.textContent) : null",
        )
        .await;
    assert_eq!(shown, json!([format!("warning {said}")]));
    // Still healthy (a warning is no failure), and shown apart from it, as text.
    let badges = s
        .js("return [...document.querySelectorAll('#view > h1 + div .badge')].map(b => b.textContent)")
        .await;
    assert_eq!(badges, json!(["healthy", "warning"]));
    let text = s
        .js("return document.querySelector('#view .warning span:not(.badge)').textContent")
        .await;
    assert_eq!(text, said.as_str());
    s.screenshot("dashboard-warning.png").await;

    // Gone with the next refresh once a node runs again.
    admin.set_nodes_paused(None, false).await.unwrap();
    s.wait_for(
        "the warning to go",
        "return document.querySelectorAll('#view .warning').length === 0",
    )
    .await;
}
