// kairos dashboard: a single page over the JSON API (/api/v1), updated live from the
// Server-Sent Events stream and by a light periodic refresh.
//
// Rules this file keeps:
// - Data reaches the DOM only as text (textContent, text nodes, setAttribute on
//   non-URL attributes); markup is never built from strings.
// - Nothing is loaded from another origin.
// - The admin token (when the server has one) lives in this tab's sessionStorage and is
//   sent only as an Authorization header to this origin.
"use strict";

(() => {
  const SVG_NS = "http://www.w3.org/2000/svg";
  const TOKEN_KEY = "kairos.token";
  const SAMPLES_KEY = "kairos.throughput";
  const REFRESH_MS = 5000;
  const EXTRAS_MS = 15000;
  const STATUSES = ["queued", "running", "succeeded", "failed", "timed_out", "cancelled", "expired"];
  const FINISHED = ["succeeded", "failed", "timed_out", "cancelled", "expired"];
  const RETRYABLE = ["failed", "timed_out", "cancelled"];
  // none | token (changes need it) | token-reads (every request needs it)
  const AUTH = (document.querySelector('meta[name="kairos-auth"]') || {}).content || "none";

  let token = sessionStorage.getItem(TOKEN_KEY) || "";

  // ---------------------------------------------------------------------------
  // DOM helpers: data only ever becomes text.

  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    setAttrs(e, attrs);
    add(e, children);
    return e;
  }

  function svg(tag, attrs, ...children) {
    const e = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v != null) e.setAttribute(k, String(v));
    }
    add(e, children);
    return e;
  }

  function setAttrs(e, attrs) {
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k === "class") e.className = v;
      else if (k === "text") e.textContent = String(v);
      else if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), v);
      else if (k === "data") for (const [dk, dv] of Object.entries(v)) e.dataset[dk] = String(dv);
      else if (k === "checked" || k === "disabled" || k === "selected" || k === "value") e[k] = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
  }

  function add(parent, children) {
    for (const c of children.flat(Infinity)) {
      if (c == null || c === false) continue;
      parent.append(c instanceof Node ? c : String(c));
    }
  }

  function clear(e) {
    while (e.firstChild) e.firstChild.remove();
    return e;
  }

  /** A link to a route of this page; `parts` are encoded, so data cannot change the URL's kind. */
  function link(content, ...parts) {
    return el("a", { href: "#/" + parts.map((p) => encodeURIComponent(String(p))).join("/") }, content);
  }

  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // ---------------------------------------------------------------------------
  // Formatting

  function fmtTime(iso) {
    if (!iso) return "";
    const d = new Date(iso);
    if (isNaN(d)) return String(iso);
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())} ${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }

  function dur(ms) {
    if (ms == null) return "";
    if (ms < 1000) return `${Math.round(ms)} ms`;
    let s = Math.round(ms / 1000);
    if (s < 60) return `${(ms / 1000).toFixed(ms < 10000 ? 1 : 0)} s`;
    const d = Math.floor(s / 86400); s -= d * 86400;
    const h = Math.floor(s / 3600); s -= h * 3600;
    const m = Math.floor(s / 60); s -= m * 60;
    if (d) return `${d}d ${h}h`;
    if (h) return `${h}h ${m}m`;
    return `${m}m ${s}s`;
  }

  function rel(iso) {
    if (!iso) return "";
    const diff = new Date(iso).getTime() - Date.now();
    if (isNaN(diff)) return String(iso);
    if (Math.abs(diff) < 1000) return "now";
    return diff > 0 ? `in ${dur(diff)}` : `${dur(-diff)} ago`;
  }

  /** Relative time, with the absolute local time as its tooltip. */
  function when(iso, empty) {
    if (!iso) return el("span", { class: "muted", text: empty || "—" });
    return el("time", { datetime: iso, title: fmtTime(iso), text: rel(iso) });
  }

  function badge(text, kind) {
    return el("span", { class: `badge b-${kind || text}`, text });
  }

  function progressBar(percent, message) {
    const p = percent == null ? null : Math.max(0, Math.min(100, Number(percent)));
    const fill = el("div", { class: "fill" });
    fill.style.width = `${p || 0}%`;
    return el("div", {
      class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100,
      "aria-valuenow": p == null ? null : p, "aria-valuetext": message || null, title: message || null,
    }, el("div", { class: "track" }, fill), el("span", { class: "pct", text: p == null ? "—" : `${p}%` }));
  }

  function updateProgressBar(bar, percent, message) {
    const p = Math.max(0, Math.min(100, Number(percent)));
    bar.setAttribute("aria-valuenow", String(p));
    if (message) {
      bar.setAttribute("aria-valuetext", message);
      bar.title = message;
    }
    bar.querySelector(".fill").style.width = `${p}%`;
    bar.querySelector(".pct").textContent = `${p}%`;
  }

  function json(v) {
    return el("pre", { class: "mono", text: JSON.stringify(v, null, 2) });
  }

  /** A table that turns into stacked cards on a narrow screen. */
  function table(headers, rows, empty) {
    if (!rows.length) return el("div", { class: "table-wrap" }, el("div", { class: "empty", text: empty || "Nothing here." }));
    const head = el("tr", null, headers.map((h) => {
      const [label, cls] = Array.isArray(h) ? h : [h, null];
      return el("th", { class: cls }, label);
    }));
    for (const tr of rows) {
      [...tr.children].forEach((td, i) => {
        const h = headers[i];
        const label = Array.isArray(h) ? h[0] : h;
        if (typeof label === "string" && label && !td.dataset.label) td.dataset.label = label;
      });
    }
    return el("div", { class: "table-wrap" }, el("table", { class: "stack" }, el("thead", null, head), el("tbody", null, rows)));
  }

  function td(content, cls) {
    return el("td", { class: cls }, content);
  }

  // ---------------------------------------------------------------------------
  // Messages to the user

  const errorBox = document.getElementById("errors");
  const shown = new Map();

  function notify(kind, title, message, ms) {
    const key = `${kind}|${title}|${message}`;
    const old = shown.get(key);
    if (old) {
      clearTimeout(old.timer);
      old.timer = setTimeout(() => dismiss(key), ms);
      return;
    }
    const box = el("div", { class: kind === "error" ? "error" : "error notice", role: kind === "error" ? "alert" : "status" },
      el("strong", { text: title }),
      el("span", { class: "msg", text: message }),
      el("button", { type: "button", class: "link close", "aria-label": "Dismiss", text: "×", onclick: () => dismiss(key) }));
    if (kind !== "error") box.style.borderColor = "var(--ok)";
    errorBox.append(box);
    shown.set(key, { box, timer: setTimeout(() => dismiss(key), ms) });
  }

  function dismiss(key) {
    const s = shown.get(key);
    if (!s) return;
    clearTimeout(s.timer);
    s.box.remove();
    shown.delete(key);
  }

  /** Shows an API error (`{"error": {code, message}}`) or any other failure. */
  function showError(e, doing) {
    const title = e instanceof ApiError
      ? `${doing ? doing + ": " : ""}${e.code}${e.status ? ` (HTTP ${e.status})` : ""}`
      : (doing || "Error");
    notify("error", title, e.message || String(e), 12000);
  }

  function showDone(message) {
    notify("ok", "Done", message, 4000);
  }

  // ---------------------------------------------------------------------------
  // The API

  class ApiError extends Error {
    constructor(status, code, message, details) {
      super(message);
      this.status = status;
      this.code = code;
      this.details = details || {};
    }
  }

  function authHeaders(h) {
    if (token) h.Authorization = `Bearer ${token}`;
    return h;
  }

  /**
   * Calls the API; answers its JSON, or throws an ApiError. A 401 (or a refused token)
   * asks for the token once and repeats the call. `ok` lists extra statuses whose JSON
   * body is an answer (503 from /health).
   */
  async function api(method, path, body, ok, retried) {
    const headers = authHeaders({ Accept: "application/json" });
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let resp;
    try {
      resp = await fetch(path, {
        method, headers, cache: "no-store", credentials: "omit",
        body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch (e) {
      throw new ApiError(0, "unreachable", `cannot reach the server (${e.message})`);
    }
    const text = await resp.text();
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (_) {
      data = null;
    }
    if (resp.ok || (ok || []).includes(resp.status)) return data;
    const err = (data && data.error) || {};
    const e = new ApiError(resp.status, err.code || `http_${resp.status}`, err.message || resp.statusText || "request failed", err.details);
    const refused = resp.status === 403 && token && /token/i.test(e.message);
    if ((resp.status === 401 || refused) && !retried) {
      const why = refused
        ? "The server refused this token. Enter the right one."
        : method === "GET" ? "This server needs its admin token for every request." : "This change needs the server's admin token.";
      if (await askToken(why)) return api(method, path, body, ok, true);
    }
    throw e;
  }

  const get = (path, ok) => api("GET", path, undefined, ok);
  const post = (path, body) => api("POST", path, body);

  // ---------------------------------------------------------------------------
  // The token dialog

  const dialog = document.getElementById("token-dialog");
  const tokenButton = document.getElementById("token-button");
  let asking = null;

  function askToken(why) {
    if (asking) return asking;
    document.getElementById("token-why").textContent = why;
    const input = document.getElementById("token-input");
    input.value = "";
    asking = new Promise((resolve) => {
      const done = (saved) => {
        dialog.removeEventListener("close", onClose);
        asking = null;
        resolve(saved);
      };
      const onClose = () => {
        const value = input.value.trim();
        input.value = "";
        if (dialog.returnValue === "save" && value) {
          token = value;
          sessionStorage.setItem(TOKEN_KEY, token);
          updateTokenButton();
          live.restart();
          done(true);
        } else {
          done(false);
        }
      };
      dialog.addEventListener("close", onClose);
      dialog.returnValue = "";
      dialog.showModal();
      input.focus();
    });
    return asking;
  }

  document.getElementById("token-skip").addEventListener("click", () => dialog.close("skip"));

  function updateTokenButton() {
    tokenButton.hidden = AUTH === "none";
    tokenButton.textContent = token ? "Forget token" : "Enter token";
  }

  tokenButton.addEventListener("click", async () => {
    if (token) {
      token = "";
      sessionStorage.removeItem(TOKEN_KEY);
      updateTokenButton();
      live.restart();
    } else if (await askToken("Enter the server's admin token.")) {
      refreshSoon(0);
    }
  });

  // ---------------------------------------------------------------------------
  // Live events: SSE read through fetch, so the token can go in a header.

  const liveBadge = document.getElementById("live");

  const live = {
    ctl: null,
    listeners: new Set(),
    running: false,

    setState(on, why) {
      liveBadge.textContent = on ? "live" : "offline";
      liveBadge.className = `live ${on ? "on" : "off"}`;
      liveBadge.title = on ? "Live updates from /api/v1/events" : (why || "Reconnecting to /api/v1/events");
    },

    restart() {
      if (this.ctl) this.ctl.abort();
    },

    async run() {
      if (this.running) return;
      this.running = true;
      let delay = 1000;
      for (;;) {
        const ctl = new AbortController();
        this.ctl = ctl;
        let why = "";
        try {
          const resp = await fetch("/api/v1/events", {
            headers: authHeaders({ Accept: "text/event-stream" }), signal: ctl.signal, cache: "no-store", credentials: "omit",
          });
          if (!resp.ok || !resp.body) throw new Error(`HTTP ${resp.status}`);
          const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
          let buf = "";
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            buf += value.replace(/\r/g, "");
            let i;
            while ((i = buf.indexOf("\n\n")) >= 0) {
              const block = buf.slice(0, i);
              buf = buf.slice(i + 2);
              if (this.block(block)) delay = 1000;
            }
          }
          why = "the event stream ended";
        } catch (e) {
          why = `event stream: ${e.message}`;
        }
        this.setState(false, why);
        await sleep(ctl.signal.aborted ? 100 : delay);
        delay = Math.min(delay * 2, 15000);
      }
    },

    block(block) {
      let name = "message";
      let data = "";
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) name = line.slice(6).trim();
        else if (line.startsWith("data:")) data += line.slice(5).trim();
      }
      if (!data) return false;
      let ev;
      try {
        ev = JSON.parse(data);
      } catch (_) {
        return false;
      }
      if (name === "subscribed") {
        this.setState(true);
        return true;
      }
      for (const f of this.listeners) f(name, ev);
      return true;
    },
  };

  // ---------------------------------------------------------------------------
  // Views

  const main = document.getElementById("view");
  let view = null;
  let refreshing = false;
  let again = false;
  let refreshTimer = null;
  let busy = 0;

  /** Runs a change, shows its error, then refreshes the view. */
  async function act(doing, f) {
    busy++;
    try {
      const r = await f();
      return r;
    } catch (e) {
      showError(e, doing);
      return undefined;
    } finally {
      busy--;
      refreshSoon(0);
    }
  }

  async function refresh() {
    if (!view) return;
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = true;
    const v = view;
    try {
      await v.refresh();
    } catch (e) {
      if (v === view) showError(e, `Loading ${v.name}`);
    } finally {
      refreshing = false;
      if (again) {
        again = false;
        refreshSoon(200);
      }
    }
  }

  function refreshSoon(ms) {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(refresh, ms);
  }

  setInterval(() => {
    if (!document.hidden && !busy) refresh();
  }, REFRESH_MS);
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden) refreshSoon(0);
  });

  live.listeners.add((kind, ev) => {
    if (!view) return;
    if (kind === "run_progress" && ev.run_id != null) {
      for (const bar of document.querySelectorAll(`[data-run-id="${Number(ev.run_id)}"] [role="progressbar"]`)) {
        updateProgressBar(bar, ev.data.percent, ev.data.message);
      }
      for (const m of document.querySelectorAll(`[data-run-id="${Number(ev.run_id)}"] .progress-msg`)) {
        m.textContent = ev.data.message || "";
      }
    } else if (kind === "run_stage" && ev.run_id != null) {
      for (const s of document.querySelectorAll(`[data-run-id="${Number(ev.run_id)}"] [data-field="stage"]`)) {
        s.textContent = ev.data.stage || "";
      }
    }
    if (view.onEvent) view.onEvent(kind, ev);
  });

  // -- Overview ---------------------------------------------------------------

  function loadSamples() {
    try {
      return JSON.parse(sessionStorage.getItem(SAMPLES_KEY) || "[]").filter((s) => Date.now() - s.t < 3600e3);
    } catch (_) {
      return [];
    }
  }

  function throughputChart(samples, hourly) {
    const W = 600, H = 180, L = 36, R = 8, T = 10, B = 22;
    const now = Date.now();
    const from = now - 30 * 60e3;
    const pts = samples.filter((s) => s.t >= from);
    const max = Math.max(1, hourly || 0, ...pts.map((s) => s.c));
    const x = (t) => L + ((t - from) / (now - from)) * (W - L - R);
    const y = (v) => T + (1 - v / max) * (H - T - B);
    const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Runs finished per minute, last 30 minutes" });
    for (const f of [0, 0.5, 1]) {
      const v = max * f;
      g.append(svg("line", { class: "axis", x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      g.append(svg("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end" }, String(Math.round(v))));
    }
    for (const m of [30, 20, 10, 0]) {
      g.append(svg("text", { x: x(now - m * 60e3), y: H - 6, "text-anchor": m === 0 ? "end" : "middle" }, m ? `-${m}m` : "now"));
    }
    if (hourly != null) {
      g.append(svg("line", { class: "axis", x1: L, x2: W - R, y1: y(hourly), y2: y(hourly), "stroke-dasharray": "4 3" }));
    }
    if (pts.length) {
      const line = pts.map((s, i) => `${i ? "L" : "M"}${x(s.t).toFixed(1)},${y(s.c).toFixed(1)}`).join(" ");
      const area = `${line} L${x(pts[pts.length - 1].t).toFixed(1)},${y(0)} L${x(pts[0].t).toFixed(1)},${y(0)} Z`;
      g.append(svg("path", { class: "area", d: area }), svg("path", { class: "line", d: line }));
      for (const s of pts.slice(-1)) g.append(svg("circle", { cx: x(s.t), cy: y(s.c), r: 3, class: "dot" }));
    }
    return g;
  }

  function taskChart(tasks) {
    const rows = tasks.filter((t) => t.finished > 0).slice(0, 12);
    const W = 600, bar = 16, gap = 6, L = 140, R = 40;
    const H = Math.max(1, rows.length) * (bar + gap) + 4;
    const max = Math.max(1, ...rows.map((t) => t.finished));
    const g = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Runs finished per task in the last hour" });
    rows.forEach((t, i) => {
      const y0 = i * (bar + gap) + 2;
      const w = (n) => (n / max) * (W - L - R);
      // Cancelled and expired runs finished without failing: grey, not red.
      const other = Math.max(0, t.finished - t.succeeded - t.failed);
      g.append(svg("text", { x: L - 6, y: y0 + bar - 4, "text-anchor": "end" }, t.task.length > 22 ? `${t.task.slice(0, 21)}…` : t.task));
      g.append(svg("rect", { class: "bar-ok", x: L, y: y0, width: w(t.succeeded), height: bar, rx: 2 }, svg("title", null, `${t.task}: ${t.succeeded} succeeded`)));
      g.append(svg("rect", { class: "bar-bad", x: L + w(t.succeeded), y: y0, width: w(t.failed), height: bar, rx: 2 }, svg("title", null, `${t.task}: ${t.failed} failed or timed out`)));
      g.append(svg("rect", { class: "bar-other", x: L + w(t.succeeded + t.failed), y: y0, width: w(other), height: bar, rx: 2 }, svg("title", null, `${t.task}: ${other} cancelled or expired`)));
      g.append(svg("text", { x: L + w(t.finished) + 4, y: y0 + bar - 4 }, String(t.finished)));
    });
    return g;
  }

  function Overview() {
    const cards = el("div", { class: "cards" });
    const chart = el("div", { class: "chart" });
    const perTask = el("div", { class: "chart" });
    const failures = el("div");
    const health = el("div");
    add(main, [
      el("h1", { text: "Overview" }),
      health,
      cards,
      el("div", { class: "grid2" },
        el("section", null, el("h2", { text: "Throughput (runs finished per minute)" }), el("div", { class: "panel" }, chart,
          el("div", { class: "legend" }, el("span", null, el("i", { class: "sw" }), "last minute, sampled while this page is open"), el("span", { text: "- - hourly average" })))),
        el("section", null, el("h2", { text: "Finished per task, last hour" }), el("div", { class: "panel" }, perTask,
          el("div", { class: "legend" }, el("span", null, el("i", { class: "sw-ok" }), "succeeded"), el("span", null, el("i", { class: "sw-bad" }), "failed"))))),
      el("h2", { text: "Recent failures" }),
      failures,
    ]);
    for (const [cls, color] of [["sw", "var(--accent)"], ["sw-ok", "var(--ok)"], ["sw-bad", "var(--bad)"]]) {
      for (const i of main.querySelectorAll(`i.${cls}`)) i.style.background = color;
    }
    return {
      name: "overview",
      async refresh() {
        const [stats, h, failed] = await Promise.all([
          get("/api/v1/stats"),
          get("/health", [503]),
          get("/api/v1/runs?status=failed,timed_out&page_size=10"),
        ]);
        const samples = loadSamples();
        samples.push({ t: Date.now(), c: stats.completed_last_minute });
        sessionStorage.setItem(SAMPLES_KEY, JSON.stringify(samples.slice(-720)));

        add(clear(health), [el("p", null,
          h && h.healthy ? badge("healthy", "alive") : badge("unhealthy", "unhealthy"), " ",
          el("span", { class: "muted", text: h ? `${h.live_workers} live worker(s); last heartbeat ${h.last_heartbeat ? rel(h.last_heartbeat) : "never"}` : "" }),
          h && h.reasons && h.reasons.length ? el("span", { class: "muted", text: ` — ${h.reasons.join("; ")}` }) : null),
        // Worth knowing though not wrong (every live node paused, say): still healthy.
        ((h && h.warnings) || []).map((w) => el("p", { class: "warning" }, badge("warning"), " ", el("span", { text: w })))]);

        const card = (n, label, cls) => el("div", { class: `card ${cls || ""}`, data: { stat: label } }, el("div", { class: "n", text: n }), el("div", { class: "l", text: label }));
        const pct = (r) => (r == null ? "—" : `${(r * 100).toFixed(1)}%`);
        clear(cards).append(
          ...STATUSES.map((s) => card(String(stats.counts[s] || 0), s, s)),
          card(String(stats.completed_last_minute), "finished last minute"),
          card(String(stats.completed_last_hour), "finished last hour"),
          card(stats.per_minute_last_hour.toFixed(1), "per minute (hour)"),
          card(pct(stats.completion_rate), "completion rate"),
          card(pct(stats.failure_rate), "failure rate", stats.failure_rate > 0 ? "failed" : ""));
        clear(chart).append(throughputChart(loadSamples(), stats.per_minute_last_hour));
        clear(perTask).append(stats.tasks.some((t) => t.finished > 0)
          ? taskChart(stats.tasks)
          : el("p", { class: "muted", text: "No run finished in the last hour." }));
        clear(failures).append(table(["Run", "Task", "Status", "Error", "Finished"], failed.runs.map((r) =>
          el("tr", { data: { runId: r.id } },
            td(link(`#${r.id}`, "runs", r.id)), td(r.task), td(badge(r.status)),
            td(el("span", { class: "mono", text: (r.error || "").slice(0, 200) })), td(when(r.finished_at)))),
        "No failed runs."));
      },
    };
  }

  // -- Jobs -------------------------------------------------------------------

  async function pool(items, n, f) {
    const queue = [...items];
    await Promise.all(Array.from({ length: Math.min(n, queue.length) }, async () => {
      while (queue.length) await f(queue.shift());
    }));
  }

  function slotStrip(slots) {
    return el("div", { class: "slots", "aria-label": "Recent slots" }, slots.map((s) => el("span", {
      class: `slot ${s.outcome}`,
      title: `${fmtTime(s.scheduled_for)}: ${s.outcome}${s.reason ? ` (${s.reason})` : ""}${s.run_id ? `, run #${s.run_id}` : ""}`,
    })));
  }

  function jobState(j) {
    // A disabled job may be paused too: both must be undone before it fires again.
    if (!j.enabled) return j.paused ? el("span", null, badge("disabled"), " ", badge("paused")) : badge("disabled");
    return j.paused ? badge("paused") : badge("active");
  }

  function Jobs() {
    const selected = new Set();
    const extras = new Map(); // name -> {last, slots, at}
    let jobs = [];
    const body = el("div");
    const bulk = el("div", { class: "toolbar" });
    add(main, [el("div", { class: "head-row" }, el("h1", { text: "Jobs" })), bulk, body]);

    const bulkAct = async (action) => {
      const names = jobs.filter((j) => selected.has(j.name)).map((j) => j.name);
      let done = 0;
      await act(`${action} jobs`, async () => {
        for (const n of names) {
          await post(`/api/v1/jobs/${encodeURIComponent(n)}/${action}`);
          done++;
        }
      });
      if (done) showDone(`${action === "pause" ? "Paused" : "Resumed"} ${done} job(s).`);
      selected.clear();
    };

    function renderBulk() {
      const n = jobs.filter((j) => selected.has(j.name)).length;
      clear(bulk).append(
        el("span", { class: "muted", text: `${jobs.length} job(s); ${n} selected` }),
        el("button", { type: "button", data: { action: "bulk-pause" }, disabled: !n, onclick: () => bulkAct("pause"), text: "Pause selected" }),
        el("button", { type: "button", data: { action: "bulk-resume" }, disabled: !n, onclick: () => bulkAct("resume"), text: "Resume selected" }));
    }

    function render() {
      const all = el("input", {
        type: "checkbox", "aria-label": "Select every job", checked: jobs.length > 0 && jobs.every((j) => selected.has(j.name)),
        onchange: (e) => {
          for (const j of jobs) e.target.checked ? selected.add(j.name) : selected.delete(j.name);
          render();
        },
      });
      const rows = jobs.map((j) => {
        const x = extras.get(j.name) || {};
        const last = x.last;
        const box = el("input", {
          type: "checkbox", "aria-label": `Select ${j.name}`, checked: selected.has(j.name),
          onchange: (e) => {
            e.target.checked ? selected.add(j.name) : selected.delete(j.name);
            render();
          },
        });
        const path = `/api/v1/jobs/${encodeURIComponent(j.name)}`;
        return el("tr", { class: selected.has(j.name) ? "selected" : null, data: { job: j.name, paused: j.paused } },
          td(box),
          td(link(j.name, "jobs", j.name)),
          td(j.task),
          td(el("span", { class: "mono", text: j.schedule.text, title: j.schedule.timezone || "" })),
          td(j.paused || !j.enabled ? el("span", { class: "muted", text: j.next_run_at ? `(${rel(j.next_run_at)})` : "—" }) : when(j.next_run_at)),
          td(jobState(j), "state"),
          td(last ? el("span", null, link(badge(last.status), "runs", last.id), " ", when(last.finished_at || last.started_at || last.created_at)) : el("span", { class: "muted", text: x.at ? "never ran" : "…" })),
          td(x.slots ? slotStrip(x.slots) : ""),
          td([
            j.paused
              ? el("button", { type: "button", class: "small", data: { action: "resume" }, text: "Resume", onclick: () => act(`Resume ${j.name}`, () => post(`${path}/resume`)) })
              : el("button", { type: "button", class: "small", data: { action: "pause" }, text: "Pause", onclick: () => act(`Pause ${j.name}`, () => post(`${path}/pause`)) }),
            " ",
            el("button", {
              type: "button", class: "small", data: { action: "trigger" }, text: "Trigger",
              onclick: () => act(`Trigger ${j.name}`, async () => {
                const run = await post(`${path}/trigger`);
                showDone(`Job ${j.name}: run #${run.id} queued.`);
              }),
            }),
          ], "actions"));
      });
      clear(body).append(table([[all, null], "Name", "Task", "Schedule", "Next fire", "State", "Last outcome", "Recent slots", ""], rows, "No jobs yet."));
      renderBulk();
    }

    async function loadExtras(force) {
      const stale = jobs.filter((j) => force || !extras.has(j.name) || Date.now() - extras.get(j.name).at > EXTRAS_MS).slice(0, 200);
      await pool(stale, 4, async (j) => {
        const name = encodeURIComponent(j.name);
        const [runs, slots] = await Promise.all([
          get(`/api/v1/runs?job=${name}&page_size=1`),
          get(`/api/v1/jobs/${name}/slots?since=7d&limit=20`),
        ]);
        extras.set(j.name, { last: runs.runs[0], slots: slots.slots, at: Date.now() });
      });
    }

    let force = false;
    return {
      name: "jobs",
      async refresh() {
        jobs = (await get("/api/v1/jobs")).jobs;
        for (const n of [...selected]) if (!jobs.some((j) => j.name === n)) selected.delete(n);
        render();
        await loadExtras(force);
        force = false;
        render();
      },
      onEvent(kind) {
        if (kind.startsWith("job_") || kind === "slot_skipped" || kind === "run_finished" || kind === "run_queued") {
          force = force || kind !== "run_queued";
          refreshSoon(500);
        }
      },
    };
  }

  function JobDetail(name) {
    const body = el("div");
    add(main, [el("p", null, link("← Jobs", "jobs")), body]);
    const path = `/api/v1/jobs/${encodeURIComponent(name)}`;
    return {
      name: `job ${name}`,
      async refresh() {
        const [job, slots] = await Promise.all([get(path), get(`${path}/slots?since=7d&limit=200`)]);
        clear(body).append(
          el("div", { class: "head-row", data: { job: job.name, paused: job.paused } },
            el("h1", null, "Job ", el("span", { class: "mono", text: job.name }), " ", jobState(job)),
            el("div", null,
              job.paused
                ? el("button", { type: "button", data: { action: "resume" }, text: "Resume", onclick: () => act("Resume", () => post(`${path}/resume`)) })
                : el("button", { type: "button", data: { action: "pause" }, text: "Pause", onclick: () => act("Pause", () => post(`${path}/pause`)) }),
              " ",
              el("button", { type: "button", data: { action: "trigger" }, text: "Trigger", onclick: () => act("Trigger", async () => showDone(`Run #${(await post(`${path}/trigger`)).id} queued.`)) }))),
          el("div", { class: "panel" }, el("dl", { class: "kv" },
            kv("Task", job.task),
            kv("Schedule", el("span", { class: "mono", data: { field: "schedule" }, text: job.schedule.text })),
            kv("Next fire", when(job.next_run_at)),
            kv("Last fired", when(job.last_fired_at)),
            kv("Misfire", `${job.misfire}${job.misfire === "catch_up" ? ` (at most ${job.max_catch_up})` : ""}, grace ${dur(job.misfire_grace_ms)}`),
            kv("Overlap", job.overlap),
            kv("Priority", job.priority == null ? "task's" : String(job.priority)),
            kv("Source", job.source + (job.disabled_reason ? ` (disabled: ${job.disabled_reason})` : "")),
            kv("Params", json(job.params)))),
          el("h2", { text: "Slots, last 7 days" }),
          table(["Slot", "Outcome", "Why", "Run"], slots.slots.slice().reverse().map((x) => el("tr", null,
            td(el("span", { title: x.scheduled_for, text: fmtTime(x.scheduled_for) })),
            td(badge(x.outcome)), td(x.reason || ""), td(x.run_id ? link(`#${x.run_id}`, "runs", x.run_id) : ""))),
          "No slots in the last 7 days."),
          el("h2", { text: "Recent runs" }),
          runsTable(job.recent_runs, false));
      },
      onEvent(kind, ev) {
        if (ev.job === name && kind !== "run_progress" && kind !== "run_stage" && kind !== "run_log") refreshSoon(300);
      },
    };
  }

  function kv(k, v) {
    return [el("dt", { text: k }), el("dd", null, v == null || v === "" ? el("span", { class: "muted", text: "—" }) : v)];
  }

  // -- Runs -------------------------------------------------------------------

  function runActions(r) {
    const path = `/api/v1/runs/${r.id}`;
    const out = [];
    if (r.status === "queued" || r.status === "running") {
      out.push(el("button", {
        type: "button", class: "small danger", data: { action: "cancel" }, text: r.cancel_requested ? "Cancelling…" : "Cancel", disabled: r.cancel_requested,
        onclick: () => {
          if (confirm(`Cancel run #${r.id} (${r.task})?`)) {
            act(`Cancel run #${r.id}`, async () => showDone(`Run #${r.id}: ${(await post(`${path}/cancel`)).outcome}.`));
          }
        },
      }));
    }
    if (RETRYABLE.includes(r.status)) {
      out.push(el("button", {
        type: "button", class: "small", data: { action: "retry" }, text: "Retry",
        onclick: () => act(`Retry run #${r.id}`, async () => showDone(`Run #${(await post(`${path}/retry`)).id} queued again.`)),
      }));
    }
    return out;
  }

  function runDuration(r) {
    if (!r.started_at) return "";
    const end = r.finished_at ? new Date(r.finished_at) : new Date();
    return dur(end - new Date(r.started_at));
  }

  function runsTable(runs, withActions) {
    const headers = ["Run", "Task", "Queue", "Status", "Progress", "Stage", "Attempt", "Created", "Duration"];
    if (withActions) headers.push("");
    return table(headers, runs.map((r) => {
      const cells = [
        td(link(`#${r.id}`, "runs", r.id)),
        td(r.job ? [r.task, el("div", { class: "progress-msg", text: `job ${r.job}` })] : r.task),
        td(r.queue),
        td(badge(r.status)),
        td(r.status === "running" || r.progress != null
          ? [progressBar(r.progress, r.progress_message), el("div", { class: "progress-msg", text: r.progress_message || "" })]
          : el("span", { class: "muted", text: "—" })),
        td(el("span", { data: { field: "stage" }, text: r.stage || "" })),
        td(`${r.attempt}/${r.max_attempts}`, "num"),
        td(when(r.created_at)),
        td(r.status === "queued" ? el("span", { class: "muted", text: r.run_at && new Date(r.run_at) > new Date() ? `starts ${rel(r.run_at)}` : "waiting" }) : runDuration(r)),
      ];
      if (withActions) cells.push(td(runActions(r), "actions"));
      return el("tr", { data: { runId: r.id, status: r.status } }, cells);
    }), "No runs match.");
  }

  function Runs(params) {
    const f = {
      status: params.get("status") || "",
      task: params.get("task") || "",
      queue: params.get("queue") || "",
      tag: params.get("tag") || "",
      page: Math.max(1, Number(params.get("page")) || 1),
      page_size: Math.min(500, Math.max(1, Number(params.get("page_size")) || 25)),
    };
    const go = (changes) => {
      const next = { ...f, ...changes };
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries(next)) if (v !== "" && !(k === "page" && v === 1) && !(k === "page_size" && v === 25)) q.set(k, String(v));
      const s = q.toString();
      const hash = `#/runs${s ? `?${s}` : ""}`;
      if (location.hash === hash) refreshSoon(0);
      else location.hash = hash;
    };
    const statusSel = el("select", { name: "status", "aria-label": "Status" },
      el("option", { value: "", text: "any status" }),
      STATUSES.map((s) => el("option", { value: s, text: s, selected: s === f.status })));
    const taskSel = el("select", { name: "task", "aria-label": "Task" }, el("option", { value: "", text: "any task" }));
    const queueSel = el("select", { name: "queue", "aria-label": "Queue" }, el("option", { value: "", text: "any queue" }));
    const tagIn = el("input", { name: "tag", type: "text", placeholder: "key=value", value: f.tag, "aria-label": "Tag" });
    const form = el("form", {
      class: "toolbar",
      onsubmit: (e) => {
        e.preventDefault();
        go({ status: statusSel.value, task: taskSel.value, queue: queueSel.value, tag: tagIn.value.trim(), page: 1 });
      },
    },
    el("label", null, "Status", statusSel),
    el("label", null, "Task", taskSel),
    el("label", null, "Queue", queueSel),
    el("label", { class: "grow" }, "Tag", tagIn),
    el("button", { type: "submit", class: "primary", text: "Filter" }),
    el("button", { type: "button", text: "Clear", onclick: () => go({ status: "", task: "", queue: "", tag: "", page: 1 }) }));
    for (const s of [statusSel, taskSel, queueSel]) s.addEventListener("change", () => form.requestSubmit());
    const body = el("div");
    const pager = el("div", { class: "pager" });
    add(main, [el("h1", { text: "Runs" }), form, body, pager]);

    const fillOptions = (sel, names, current) => {
      const want = [...new Set([...names, current].filter(Boolean))].sort();
      sel.length = 1;
      for (const n of want) sel.append(el("option", { value: n, text: n, selected: n === current }));
    };
    Promise.all([get("/api/v1/tasks"), get("/api/v1/queues")]).then(([t, q]) => {
      fillOptions(taskSel, t.tasks.map((x) => x.name), f.task);
      fillOptions(queueSel, q.queues.map((x) => x.name), f.queue);
    }).catch((e) => showError(e, "Loading tasks and queues"));
    fillOptions(taskSel, [], f.task);
    fillOptions(queueSel, [], f.queue);

    let visible = new Set();
    return {
      name: "runs",
      async refresh() {
        const q = new URLSearchParams();
        for (const k of ["status", "task", "queue", "tag"]) if (f[k]) q.set(k, f[k]);
        q.set("page", String(f.page));
        q.set("page_size", String(f.page_size));
        const page = await get(`/api/v1/runs?${q}`);
        visible = new Set(page.runs.map((r) => r.id));
        clear(body).append(runsTable(page.runs, true));
        const pages = Math.max(1, Math.ceil(page.total / page.page_size));
        clear(pager).append(
          el("button", { type: "button", text: "← Newer", disabled: f.page <= 1, onclick: () => go({ page: f.page - 1 }) }),
          el("span", { class: "muted", text: `page ${f.page} of ${pages} · ${page.total} run(s)` }),
          el("button", { type: "button", text: "Older →", disabled: f.page >= pages, onclick: () => go({ page: f.page + 1 }) }));
      },
      onEvent(kind, ev) {
        const becomes = { run_queued: "queued", run_retried: "queued", run_started: "running", run_finished: ev.data && ev.data.status }[kind];
        if (!becomes) return;
        // A run on this page changed, or one that now belongs on the first page.
        const fits = f.page === 1 && (!f.status || f.status === becomes) && (!f.task || f.task === ev.task);
        if (visible.has(ev.run_id) || fits) refreshSoon(400);
      },
    };
  }

  function RunDetail(id) {
    const body = el("div");
    const logs = el("pre", { class: "logs mono", "aria-label": "Log" });
    let after = 0;
    let lines = 0;
    add(main, [el("p", null, link("← Runs", "runs")), body, el("h2", { text: "Log" }), logs]);
    logs.textContent = "";

    async function loadLogs() {
      const r = await get(`/api/v1/runs/${id}/logs?after=${after}&limit=1000`);
      for (const l of r.logs) {
        const line = el("div", { class: `log-${l.level}` }, `${fmtTime(l.at)} [${l.level}] (attempt ${l.attempt}) ${l.message}`);
        logs.append(line);
        lines++;
      }
      after = r.next_after;
      if (!lines && !logs.firstChild) logs.append(el("span", { class: "muted", text: "No log lines." }));
      if (r.logs.length) {
        const empty = logs.querySelector(".muted");
        if (empty) empty.remove();
        logs.scrollTop = logs.scrollHeight;
      }
    }

    return {
      name: `run #${id}`,
      async refresh() {
        const [r] = await Promise.all([get(`/api/v1/runs/${id}`), loadLogs()]);
        const path = `/api/v1/runs/${r.id}`;
        const del = r.status !== "running"
          ? el("button", {
            type: "button", class: "danger", data: { action: "delete" }, text: "Delete",
            onclick: () => {
              if (confirm(`Delete run #${r.id} with its history and log?`)) {
                act(`Delete run #${r.id}`, async () => {
                  await api("DELETE", path);
                  location.hash = "#/runs";
                });
              }
            },
          })
          : null;
        add(clear(body), [
          el("div", { class: "head-row", data: { runId: r.id, status: r.status } },
            el("h1", null, `Run #${r.id} `, badge(r.status)),
            el("div", null, runActions(r), " ", del)),
          el("div", { class: "panel", data: { runId: r.id } }, el("dl", { class: "kv" },
            kv("Task", r.task),
            kv("Job", r.job ? link(r.job, "jobs", r.job) : null),
            kv("Queue", r.queue),
            kv("Origin", r.origin),
            kv("Progress", r.status === "running" || r.progress != null ? [progressBar(r.progress, r.progress_message), el("div", { class: "progress-msg", text: r.progress_message || "" })] : null),
            kv("Stage", el("span", { data: { field: "stage" }, text: r.stage || "" })),
            kv("Attempt", `${r.attempt} of ${r.max_attempts}`),
            kv("Priority", String(r.priority)),
            kv("Node", r.node_id),
            kv("Created", when(r.created_at)),
            kv("Run at", when(r.run_at)),
            kv("Started", when(r.started_at)),
            kv("Finished", when(r.finished_at)),
            kv("Duration", runDuration(r)),
            kv("Timeout", dur(r.timeout_ms)),
            r.estimate ? kv("Estimate", `start ${rel(r.estimate.start)}${r.estimate.completion ? `, done ${rel(r.estimate.completion)}` : ""} (${r.estimate.ahead} ahead)${r.estimate.held ? `; held: ${r.estimate.held}` : ""}`) : null,
            kv("Tags", Object.keys(r.tags || {}).length ? Object.entries(r.tags).map(([k, v]) => `${k}=${v}`).join(", ") : null),
            kv("Params", json(r.params)),
            r.result != null ? kv("Result", json(r.result)) : null,
            r.error ? kv("Error", el("pre", { class: "mono log-error", text: r.error })) : null,
            r.checkpoint != null ? kv("Checkpoint", json(r.checkpoint)) : null,
            kv("Webhook", r.callback_url ? `${r.callback_url} (${(r.deliveries || []).length} deliveries)` : null))),
          r.history && r.history.length ? [el("h2", { text: "History" }), table(["At", "Attempt", "Event", "Message", "Node"], r.history.map((h) => el("tr", null,
            td(el("span", { title: h.at, text: fmtTime(h.at) })), td(String(h.attempt), "num"), td(badge(h.event, "queued")), td(h.message || ""), td(h.node_id || "")))
          )] : null]);
      },
      onEvent(kind, ev) {
        if (Number(ev.run_id) !== Number(id)) return;
        if (kind === "run_log") loadLogs().catch((e) => showError(e, "Loading the log"));
        else if (kind !== "run_progress" && kind !== "run_stage") refreshSoon(200);
      },
    };
  }

  // -- Queues and nodes -------------------------------------------------------

  function Queues() {
    const body = el("div");
    add(main, [el("h1", { text: "Queues" }), body]);
    return {
      name: "queues",
      async refresh() {
        const { queues } = await get("/api/v1/queues");
        clear(body).append(table(["Queue", ["Queued", "num"], ["Running", "num"], ["Concurrency", "num"], "Rate limit", "State", ""], queues.map((q) => {
          const path = `/api/v1/queues/${encodeURIComponent(q.name)}`;
          return el("tr", { data: { queue: q.name, paused: q.paused } },
            td(el("a", { href: `#/runs?${new URLSearchParams({ queue: q.name })}`, text: q.name })),
            td(String(q.queued), "num"),
            td(String(q.running), "num"),
            td(q.concurrency == null ? "∞" : String(q.concurrency), "num"),
            td(q.rate_limit == null ? "—" : `${q.rate_limit} per ${dur(q.rate_window_ms)}`),
            td(q.paused ? badge("paused") : badge("active")),
            td(q.paused
              ? el("button", { type: "button", class: "small", data: { action: "resume" }, text: "Resume", onclick: () => act(`Resume queue ${q.name}`, () => post(`${path}/resume`)) })
              : el("button", { type: "button", class: "small", data: { action: "pause" }, text: "Pause", onclick: () => act(`Pause queue ${q.name}`, () => post(`${path}/pause`)) }), "actions"));
        }), "No queues."));
      },
      onEvent(kind) {
        if (kind === "run_started" || kind === "run_finished" || kind === "run_queued") refreshSoon(1000);
      },
    };
  }

  function Nodes() {
    const body = el("div");
    add(main, [el("h1", { text: "Nodes" }), body]);
    return {
      name: "nodes",
      async refresh() {
        const { nodes } = await get("/api/v1/nodes");
        clear(body).append(table(["Node", "Host", "Status", "Heartbeat", ["Running", "num"], "Started", "Version", ""], nodes.map((n) => {
          const path = `/api/v1/nodes/${encodeURIComponent(n.id)}`;
          const action = n.status === "running" && n.alive
            ? n.paused
              ? el("button", { type: "button", class: "small", data: { action: "resume" }, text: "Resume", onclick: () => act("Resume node", () => post(`${path}/resume`)) })
              : el("button", { type: "button", class: "small", data: { action: "pause" }, text: "Pause", onclick: () => act("Pause node", () => post(`${path}/pause`)) })
            : null;
          return el("tr", { data: { node: n.id } },
            td([el("div", { text: n.name }), el("span", { class: "mono muted", title: n.id, text: n.id.length > 14 ? `${n.id.slice(0, 13)}…` : n.id })]),
            td(`${n.hostname} (pid ${n.pid})`),
            td([n.alive ? badge("alive") : badge("dead"), " ", n.status !== "running" ? badge(n.status) : null, n.paused ? badge("paused") : null]),
            td(when(n.heartbeat_at)),
            td(`${n.running} / ${n.max_workers}`, "num"),
            td(when(n.started_at)),
            td(n.version),
            td(action, "actions"));
        }), "No node has run against this database."));
      },
    };
  }

  // ---------------------------------------------------------------------------
  // Routing: #/overview, #/jobs, #/jobs/NAME, #/runs?filters, #/runs/ID, #/queues, #/nodes

  function route() {
    const h = location.hash.replace(/^#\/?/, "");
    const q = h.indexOf("?");
    const path = q >= 0 ? h.slice(0, q) : h;
    const params = new URLSearchParams(q >= 0 ? h.slice(q + 1) : "");
    let parts;
    try {
      parts = path.split("/").filter(Boolean).map(decodeURIComponent);
    } catch (_) {
      parts = [];
    }
    const top = parts[0] || "overview";
    clear(main);
    if (top === "jobs" && parts[1]) view = JobDetail(parts[1]);
    else if (top === "jobs") view = Jobs();
    else if (top === "runs" && parts[1] && /^\d+$/.test(parts[1])) view = RunDetail(parts[1]);
    else if (top === "runs") view = Runs(params);
    else if (top === "queues") view = Queues();
    else if (top === "nodes") view = Nodes();
    else view = Overview();
    for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === top);
    document.title = `kairos · ${view.name}`;
    refreshSoon(0);
  }

  window.addEventListener("hashchange", route);

  async function start() {
    updateTokenButton();
    if (AUTH !== "none" && !token) {
      await askToken(AUTH === "token-reads"
        ? "This server needs its admin token for every request. It is kept in this tab only (session storage)."
        : "This server needs its admin token for changes (reading works without it). It is kept in this tab only (session storage).");
    }
    route();
    live.run();
  }

  start();
})();
