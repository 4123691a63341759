// newsletter-queue dashboard: plain JavaScript, no build step, no third-party code.
// Polls the dev API every 2 s; every value is inserted as text (never as HTML).
// campaign-form.js (loaded after this file) adds the Campaigns panel's form and Send… dialog.
"use strict";

const POLL_MS = 2000;
const PAGE_SIZE = 20;
const $ = (id) => document.getElementById(id);
const state = {
  live: true, queues: [], page: 1, total: 0, drawerJob: null, lastFocus: null,
  rendered: {}, timer: null, busy: false, tenant: "", campaignPage: 1, drawerCampaign: null,
  sendTarget: null, // the campaign the Send… dialog is open for (campaign-form.js)
};

// ---------- small helpers ----------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "text") el.textContent = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}
const fmtTime = (ms) => (ms ? new Date(ms).toLocaleTimeString() : "–");
const fmtDate = (ms) => (ms ? new Date(ms).toLocaleString() : "–");
const fmtAge = (s) => (s === null || s === undefined ? "–" : s < 90 ? `${Math.round(s)} s`
  : s < 5400 ? `${Math.round(s / 60)} min` : `${(s / 3600).toFixed(1)} h`);
const json = (v) => JSON.stringify(v, null, 2);

function announce(text) { $("announcer").textContent = text; }
function showAlert(text) {
  const el = $("alert");
  el.textContent = text;
  el.hidden = !text;
}

// Re-render a region only when its data changed, keeping keyboard focus in place.
function renderIfChanged(key, data, render) {
  const sig = JSON.stringify(data);
  if (state.rendered[key] === sig) return;
  state.rendered[key] = sig;
  const focusKey = document.activeElement && document.activeElement.dataset
    ? document.activeElement.dataset.focusKey : null;
  render(data);
  if (focusKey) {
    const again = document.querySelector(`[data-focus-key="${CSS.escape(focusKey)}"]`);
    if (again) again.focus();
  }
}

// ---------- API ----------
async function api(path, options = {}, retried = false) {
  const headers = Object.assign({ Accept: "application/json" }, options.headers || {});
  const token = sessionStorage.getItem("nlq-token");
  if (token) headers.Authorization = `Bearer ${token}`;
  const res = await fetch(path, Object.assign({}, options, { headers }));
  if (res.status === 401 && !retried) {
    if (await askToken()) return api(path, options, true);
  }
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  if (!res.ok) {
    const err = new Error((body && body.error) || `HTTP ${res.status}`);
    err.status = res.status;
    err.body = body || {}; // the API's details: field/line, errors, rows …
    throw err;
  }
  return body;
}
const post = (path, body) => api(path, {
  method: "POST",
  headers: body ? { "Content-Type": "application/json" } : {},
  body: body ? JSON.stringify(body) : undefined,
});

function dialogResult(dialog) {
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue), { once: true });
    dialog.showModal();
  });
}
async function confirmAction(text) {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  dialog.returnValue = "cancel";
  const result = dialogResult(dialog);
  $("confirm-cancel").focus();
  return (await result) === "ok";
}
async function askToken() {
  const dialog = $("token-dialog");
  $("token-input").value = "";
  dialog.returnValue = "cancel";
  const ok = (await dialogResult(dialog)) === "ok" && $("token-input").value;
  if (ok) sessionStorage.setItem("nlq-token", $("token-input").value);
  return Boolean(ok);
}

// Confirm, run, report the outcome (aria-live), refresh.
async function act(question, run, done) {
  if (!(await confirmAction(question))) { announce("Cancelled."); return; }
  try {
    const result = await run();
    const message = typeof done === "function" ? done(result) : done;
    showAlert("");
    announce(message);
  } catch (err) {
    showAlert(`Failed: ${err.message}`);
  }
  state.rendered = {};
  await refresh();
}

// ---------- overview ----------
function renderCards(data) {
  const cards = $("cards");
  cards.replaceChildren();
  for (const name of data.queue_names) {
    const m = data.queues[name];
    const hl = data.health[name] || { status: "unknown", reasons: [] };
    const card = h("article", { class: "card", "aria-labelledby": `card-${name}`,
      "data-queue": name });
    const badge = h("span", { class: "badge", "data-status": hl.status,
      "data-testid": `health-${name}` }, hl.status);
    card.append(h("div", { class: "card-head" },
      h("h3", { id: `card-${name}` }, name), badge));
    if (!m) { card.append(h("p", { class: "muted" }, "No data (Redis unreachable).")); cards.append(card); continue; }
    if (m.is_paused) card.append(h("p", { class: "paused-flag", "data-testid": `paused-${name}` }, "Paused"));
    const dl = h("dl", { class: "counts" });
    for (const s of data.overview_states) {
      dl.append(h("div", {}, h("dt", {}, s), h("dd", { "data-testid": `count-${name}-${s}` },
        String(m.counts[s] ?? 0))));
    }
    card.append(dl);
    const p = m.processing_ms || {};
    card.append(h("ul", { class: "facts" },
      h("li", {}, `Last hour: ${m.completed_last_hour} done, ${m.failed_last_hour} failed` +
        (m.error_rate === null ? "" : ` (${(m.error_rate * 100).toFixed(1)}% errors)`)),
      h("li", {}, `Processing p50/p95/p99: ${p.p50 ?? "–"} / ${p.p95 ?? "–"} / ${p.p99 ?? "–"} ms`),
      h("li", {}, `Oldest waiting: ${fmtAge(m.oldest_waiting_age_s)} · Workers: ${m.workers}`)));
    if (hl.reasons.length) card.append(h("ul", { class: "reasons" }, hl.reasons.map((r) => h("li", {}, r))));
    const actions = h("div", { class: "card-actions" });
    const pauseVerb = m.is_paused ? "resume" : "pause";
    actions.append(
      h("button", { type: "button", class: m.is_paused ? "primary" : "",
        "data-focus-key": `${pauseVerb}-${name}`, "data-testid": `${pauseVerb}-${name}`,
        onclick: () => act(`${m.is_paused ? "Resume" : "Pause"} the ${name} queue?`,
          () => post(`/api/dev/queue?action=${pauseVerb}&queue=${encodeURIComponent(name)}`),
          `${name} queue ${m.is_paused ? "resumed" : "paused"}.`) },
        m.is_paused ? `Resume ${name}` : `Pause ${name}`),
      h("button", { type: "button", "data-focus-key": `clean-${name}`,
        onclick: () => act(`Remove every completed job of ${name}?`,
          () => post(`/api/dev/queues/${encodeURIComponent(name)}/clean?state=completed`),
          (r) => `Removed ${r.removed} completed ${name} job(s).`) }, "Clean completed"),
      h("button", { type: "button", "data-focus-key": `retry-${name}`, disabled: !m.counts.failed,
        onclick: () => act(`Retry all ${m.counts.failed} failed ${name} job(s)?`,
          () => post(`/api/dev/queues/${encodeURIComponent(name)}/retry-failed`),
          (r) => `${r.retried} ${name} job(s) moved back to waiting.`) }, "Retry failed"),
      h("button", { type: "button", "data-focus-key": `view-${name}`,
        onclick: () => { $("job-queue").value = name; state.page = 1; loadJobs(); $("jobs").scrollIntoView(); } },
        "View jobs"));
    card.append(actions);
    cards.append(card);
  }
}

function renderChart(container, series, minuteStart, label) {
  const W = 600, H = 180, L = 34, B = 22, T = 8, R = 8;
  const max = Math.max(1, ...series.flatMap((s) => s.values));
  const n = Math.max(1, ...series.map((s) => s.values.length));
  const x = (i) => L + (i * (W - L - R)) / Math.max(n - 1, 1);
  const y = (v) => T + (H - T - B) * (1 - v / max);
  const ns = "http://www.w3.org/2000/svg";
  const el = (tag, attrs) => { const e = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v); return e; };
  const total = series.map((s) => `${s.name} ${s.values.reduce((a, b) => a + b, 0)}`).join(", ");
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": `${label} over the last hour: ${total}` });
  const title = el("title", {}); title.textContent = `${label}: ${total}`; svg.append(title);
  for (const frac of [0, 0.5, 1]) {
    const v = Math.round(max * frac);
    svg.append(el("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    const t = el("text", { x: L - 4, y: y(v) + 3, "text-anchor": "end" }); t.textContent = String(v); svg.append(t);
  }
  svg.append(el("line", { x1: L, x2: L, y1: T, y2: H - B, class: "axis" }));
  svg.append(el("line", { x1: L, x2: W - R, y1: H - B, y2: H - B, class: "axis" }));
  for (const i of [0, 15, 30, 45, n - 1]) {
    const anchor = i === 0 ? "start" : i === n - 1 ? "end" : "middle";
    const t = el("text", { x: x(i), y: H - 6, "text-anchor": anchor });
    t.textContent = i === n - 1 ? "now" : `-${n - 1 - i}m`; svg.append(t);
  }
  series.forEach((s, k) => {
    const pts = s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(" ");
    svg.append(el("polyline", { points: pts, class: `series s${k}` }));
  });
  container.replaceChildren(svg);
}

function renderCharts(data) {
  const names = data.queue_names.filter((q) => data.queues[q]);
  const pick = (field) => names.map((q) => ({ name: q, values: data.queues[q][field] }));
  const start = names.length ? data.queues[names[0]].minute_start_ms : 0;
  renderChart($("chart-completed"), pick("completed_per_minute"), start, "Completed jobs per minute");
  renderChart($("chart-failed"), pick("failed_per_minute"), start, "Failed jobs per minute");
  $("legend").replaceChildren(...names.map((q, k) => h("li", { class: `s${k}` }, q)));
}

function renderErrors(errors) {
  const body = $("error-table").tBodies[0];
  body.replaceChildren();
  if (!errors.length) body.append(h("tr", {}, h("td", { colspan: 5, class: "empty" }, "No errors recorded.")));
  for (const e of errors) {
    body.append(h("tr", {},
      h("td", {}, fmtTime(e.timestamp_ms)), h("td", {}, e.queue),
      h("td", {}, h("button", { type: "button", class: "link", "data-focus-key": `err-${e.id}`,
        onclick: () => openJob(e.queue, e.job_id) }, e.job_id)),
      h("td", {}, `${e.attempt}/${e.max_attempts}${e.final ? " (final)" : ""}`),
      h("td", { class: "reason", title: e.error }, e.error)));
  }
}

function renderWorkers(data) {
  const body = $("worker-table").tBodies[0];
  body.replaceChildren();
  let count = 0;
  for (const q of data.queue_names) {
    for (const w of (data.queues[q] && data.queues[q].worker_list) || []) {
      count += 1;
      body.append(h("tr", {}, h("td", {}, q), h("td", {}, w.name), h("td", {}, w.addr),
        h("td", {}, fmtAge(w.age_s)), h("td", {}, fmtAge(w.idle_s))));
    }
  }
  if (!count) body.append(h("tr", {}, h("td", { colspan: 5, class: "empty" }, "No workers connected.")));
  const b = data.breakers || {};
  $("breakers").textContent = Object.keys(b).length
    ? "Circuit breakers: " + Object.entries(b).map(([k, v]) => `${k} ${v.state}`).join(", ") : "";
}

function renderOverview(data) {
  const overall = $("overall");
  overall.dataset.status = data.status;
  overall.textContent = data.status;
  const r = data.redis;
  $("redis").textContent = r.ok
    ? `Redis ${r.version} at ${r.url} · ${(r.used_memory / 1048576).toFixed(1)} MiB used`
    : `Redis unreachable at ${r.url}: ${r.error}`;
  $("updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
  const summary = data.queue_names.map((q) => `${q} ${(data.health[q] || {}).status}`).join(", ");
  if (state.rendered.summary !== summary) { state.rendered.summary = summary; announce(`Queue health: ${summary}`); }
  renderIfChanged("cards", { q: data.queues, h: data.health, n: data.queue_names }, () => renderCards(data));
  renderIfChanged("charts", data.queue_names.map((q) => data.queues[q] &&
    [data.queues[q].completed_per_minute, data.queues[q].failed_per_minute]), () => renderCharts(data));
  renderIfChanged("errors", data.recent_errors, renderErrors);
  renderIfChanged("workers", { q: data.queue_names.map((q) => data.queues[q] && data.queues[q].worker_list), b: data.breakers }, () => renderWorkers(data));
  if (!state.queues.length) {
    state.queues = data.queue_names;
    $("job-queue").replaceChildren(...data.queue_names.map((q) => h("option", { value: q }, q)));
    // The states come from the server (engine/states.py), like the queue names.
    $("job-state").replaceChildren(...data.job_states.map((s) =>
      h("option", { value: s, selected: s === "failed" }, s)));
  }
}

// ---------- jobs ----------
async function loadJobs() {
  const queue = $("job-queue").value || state.queues[0];
  if (!queue) return;
  const st = $("job-state").value;
  const search = $("job-search").value.trim();
  const qs = new URLSearchParams({ state: st, page: state.page, page_size: PAGE_SIZE });
  if (search) qs.set("search", search);
  const data = await api(`/api/dev/queues/${encodeURIComponent(queue)}/jobs?${qs}`);
  state.total = data.total;
  noteTenants(data.jobs.map((j) => j.tenant_id));
  renderIfChanged("jobs", data, renderJobs);
}

function renderJobs(data) {
  const pages = Math.max(1, Math.ceil(data.total / data.page_size));
  $("job-caption").textContent = `${data.total} ${data.state} job(s) in ${data.queue}` +
    (data.search ? ` matching “${data.search}”` : "") + (data.truncated ? " (search limited to the newest 5000)" : "");
  $("page-info").textContent = `Page ${data.page} of ${pages}`;
  $("prev-page").disabled = data.page <= 1;
  $("next-page").disabled = data.page >= pages;
  const body = $("job-table").tBodies[0];
  body.replaceChildren();
  if (!data.jobs.length) body.append(h("tr", {}, h("td", { colspan: 7, class: "empty" }, "No jobs.")));
  for (const j of data.jobs) {
    body.append(h("tr", { "data-job-id": j.id },
      h("td", {}, h("button", { type: "button", class: "link", "data-focus-key": `job-${j.id}`,
        "aria-label": `Open job ${j.id}`, onclick: () => openJob(data.queue, j.id) }, j.id)),
      h("td", {}, j.name), h("td", {}, j.campaign_id || "–"), h("td", {}, j.tenant_id || "–"),
      h("td", {}, String(j.attempts_made)), h("td", {}, fmtDate(j.timestamp)),
      h("td", { class: "reason", title: j.failed_reason || "" }, j.failed_reason || "")));
  }
}

async function openJob(queue, id) {
  state.lastFocus = document.activeElement;
  state.drawerCampaign = null;
  state.drawerJob = { queue, id };
  const drawer = $("drawer");
  $("drawer-title").textContent = `Job ${id} (${queue})`;
  $("drawer-body").replaceChildren(h("p", { class: "muted" }, "Loading…"));
  drawer.hidden = false;
  $("drawer-close").focus();
  try {
    renderDrawer(await api(`/api/dev/queues/${encodeURIComponent(queue)}/jobs/${encodeURIComponent(id)}`));
  } catch (err) {
    $("drawer-body").replaceChildren(h("p", { role: "alert" }, `Could not load the job: ${err.message}`));
  }
}

function closeDrawer() {
  $("drawer").hidden = true;
  state.drawerJob = null;
  state.drawerCampaign = null;
  if (state.lastFocus && document.contains(state.lastFocus)) state.lastFocus.focus();
}

function renderDrawer(job) {
  const q = encodeURIComponent(job.queue), id = encodeURIComponent(job.id);
  const jobAction = (op, question, verb) => h("button", { type: "button", class: op === "remove" ? "danger" : "",
    onclick: () => act(question, () => post(`/api/dev/queues/${q}/jobs/${id}/${op}`),
      (r) => `Job ${job.id} ${verb}.`).then(() => (op === "remove" ? closeDrawer() : openJob(job.queue, job.id))) },
    op[0].toUpperCase() + op.slice(1));
  const facts = [["State", job.state], ["Name", job.name], ["Attempts", `${job.attempts_made} of ${job.max_attempts}`],
    ["Created", fmtDate(job.timestamp)], ["Started", fmtDate(job.processed_on)],
    ["Finished", fmtDate(job.finished_on)], ["Priority", job.priority || "–"],
    ["Delay", job.delay ? `${job.delay} ms` : "–"], ["Worker", job.processed_by || "–"],
    ["Failed reason", job.failed_reason || "–"]];
  const body = $("drawer-body");
  body.replaceChildren(
    h("dl", {}, facts.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))])),
    h("div", { class: "card-actions", role: "group", "aria-label": "Job actions" },
      (job.state === "failed" || job.state === "completed") && jobAction("retry", `Retry job ${job.id}?`, "moved back to waiting"),
      job.state === "delayed" && jobAction("promote", `Run delayed job ${job.id} now?`, "promoted"),
      jobAction("remove", `Remove job ${job.id} for good?`, "removed")),
    h("h3", {}, "Progress"), h("pre", {}, json(job.progress)),
    h("h3", {}, "Data"), h("pre", {}, json(job.data)),
    h("h3", {}, "Options"), h("pre", {}, json(job.opts)),
    h("h3", {}, `Logs (${job.logs.length})`),
    job.logs.length ? h("pre", {}, job.logs.join("\n")) : h("p", { class: "empty" }, "No log lines."),
    h("h3", { id: "stack-h" }, `Stack traces (${job.stacktrace.length})`),
    job.stacktrace.length ? h("div", { "aria-labelledby": "stack-h" }, job.stacktrace.map((s, i) =>
      h("pre", { class: "stack", "data-testid": "stacktrace", "aria-label": `Attempt ${i + 1} stack trace` }, s)))
      : h("p", { class: "empty" }, "No stack traces."),
    job.return_value !== null ? h("div", {}, h("h3", {}, "Return value"), h("pre", {}, json(job.return_value))) : null);
}

// ---------- campaigns ----------
// A tenant's campaigns (GET /api/tenants/{tenant}/campaigns), refreshed with the rest.
const CAMPAIGN_PAGE_SIZE = 20;
const OUTCOMES = ["sent", "bounced", "failed", "pending"];
const campaignPath = (tenant, id) => `/api/tenants/${encodeURIComponent(tenant)}/campaigns` +
  (id === undefined ? "" : `/${encodeURIComponent(id)}`);
// A list item carries its status nested ({campaign_id, subject, status: {...}}) or flat.
const campaignStatus = (c) => c.status || c;
const fmtIso = (iso) => (iso ? new Date(iso).toLocaleString() : "–");
const fmtPct = (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)}%`);
const fmtRate = (s) => `${Number(s.rate || 0).toFixed(1)} msg/s` +
  (s.eta_seconds === null || s.eta_seconds === undefined ? "" : ` · ETA ${fmtAge(s.eta_seconds)}`);

function noteTenants(ids) {
  const list = $("campaign-tenants");
  const known = new Set([...list.options].map((o) => o.value));
  for (const id of ids) {
    if (!id || known.has(id)) continue;
    known.add(id);
    list.append(h("option", { value: id }));
  }
  if (!state.tenant && list.options.length) chooseTenant(list.options[0].value);
}

function chooseTenant(tenant) {
  state.tenant = tenant.trim();
  state.campaignPage = 1;
  $("campaign-tenant").value = state.tenant;
  if (state.tenant) sessionStorage.setItem("nlq-tenant", state.tenant);
  delete state.rendered.campaigns;
}

async function loadCampaigns() {
  if (!state.tenant) {
    // Offer the tenants of recent email jobs until one is chosen.
    try {
      const recent = await api("/api/dev/queues/email/jobs?state=completed&page_size=50");
      noteTenants(recent.jobs.map((j) => j.tenant_id));
    } catch (err) { /* suggestions only */ }
    if (!state.tenant) return;
  }
  const tenant = state.tenant;
  const qs = new URLSearchParams({ page: state.campaignPage, page_size: CAMPAIGN_PAGE_SIZE });
  try {
    const data = await api(`${campaignPath(tenant)}?${qs}`);
    if (tenant !== state.tenant) return;
    renderIfChanged("campaigns", data, renderCampaigns);
  } catch (err) {
    $("campaign-note").textContent = `Campaigns unavailable: ${err.message}`;
    state.rendered.campaigns = null;
    $("campaign-list").replaceChildren();
  }
  if (state.drawerCampaign) await loadCampaignDrawer();
}

function progressBar(s) {
  const total = Math.max(s.total, 1);
  const label = OUTCOMES.map((k) => `${s[k]} ${k}`).join(", ") + ` of ${s.total}`;
  return h("div", { class: "progress", role: "img", "aria-label": `Progress: ${label}`, title: label },
    OUTCOMES.filter((k) => s[k] > 0).map((k) => h("span", { class: `seg seg-${k}`,
      "data-testid": `bar-${s.campaign_id}-${k}`, "data-count": s[k],
      "data-width": ((s[k] * 100) / total).toFixed(3) })));
}

// Inline styles are refused by the page's CSP (style-src 'self'): widths are set through
// the CSSOM after the elements exist, which the CSP allows.
function applyWidths(root) {
  for (const seg of root.querySelectorAll(".seg[data-width]")) seg.style.width = `${seg.dataset.width}%`;
}

function campaignActions(tenant, s, where, subject) {
  const id = s.campaign_id;
  const button = (verb, question, cls) => h("button", { type: "button", class: cls,
    "data-focus-key": `${where}-${verb}-${id}`, "data-testid": `campaign-${verb}-${id}`,
    onclick: () => act(question, () => post(`${campaignPath(tenant, id)}/${verb}`),
      (r) => `Campaign ${id} is ${r.state}.`) }, verb[0].toUpperCase() + verb.slice(1));
  const canPause = s.state === "sending" || s.state === "scheduled";
  return h("div", { class: "card-actions", role: "group", "aria-label": `Actions for campaign ${id}` },
    s.state === "draft" && h("button", { type: "button", class: "primary", "aria-haspopup": "dialog",
      "data-focus-key": `${where}-send-${id}`, "data-testid": `campaign-send-${id}`,
      onclick: () => openSend(tenant, id, subject) }, "Send…"), // campaign-form.js
    canPause && button("pause", `Pause campaign ${id} of ${tenant}? Running batches stop at their next chunk.`, ""),
    s.state === "paused" && button("resume", `Resume campaign ${id} of ${tenant}?`, "primary"),
    (canPause || s.state === "paused") && button("cancel",
      `Cancel campaign ${id} of ${tenant}? Nothing more will be sent; this cannot be undone.`, "danger"));
}

function campaignCounts(s) {
  const dl = h("dl", { class: "counts" });
  for (const k of ["total", ...OUTCOMES]) {
    dl.append(h("div", {}, h("dt", {}, k), h("dd", { "data-testid": `campaign-${k}-${s.campaign_id}` },
      String(s[k] ?? 0))));
  }
  return dl;
}

function renderCampaigns(data) {
  const pages = Math.max(1, Math.ceil(data.total / data.page_size));
  $("campaign-note").textContent = `${data.total} campaign(s) of tenant ${data.tenant}, newest first.`;
  $("campaign-page-info").textContent = `Page ${data.page} of ${pages}`;
  $("campaign-prev").disabled = data.page <= 1;
  $("campaign-next").disabled = data.page >= pages;
  const list = $("campaign-list");
  list.replaceChildren();
  if (!data.campaigns.length) list.append(h("p", { class: "empty" }, "No campaigns saved for this tenant."));
  for (const c of data.campaigns) {
    const s = Object.assign({ campaign_id: c.campaign_id }, campaignStatus(c));
    const card = h("article", { class: "card campaign", "data-campaign": s.campaign_id,
      "aria-label": `Campaign ${s.campaign_id}` },
      h("div", { class: "card-head" },
        h("h3", {}, h("button", { type: "button", class: "link", "data-focus-key": `open-${s.campaign_id}`,
          "aria-label": `Open campaign ${s.campaign_id}`,
          onclick: () => openCampaign(data.tenant, s.campaign_id) }, s.campaign_id)),
        h("span", { class: "badge", "data-state": s.state, "data-testid": `campaign-state-${s.campaign_id}` }, s.state)),
      c.subject ? h("p", { class: "subject", title: c.subject }, c.subject) : null,
      progressBar(s), campaignCounts(s),
      h("p", { class: "muted", "data-testid": `campaign-rate-${s.campaign_id}` },
        `${fmtRate(s)} · batches ${s.batches_done}/${s.batches_total}`),
      campaignActions(data.tenant, s, "list", c.subject));
    list.append(card);
  }
  applyWidths(list);
}

function openCampaign(tenant, id) {
  state.lastFocus = document.activeElement;
  state.drawerJob = null;
  state.drawerCampaign = { tenant, id };
  delete state.rendered.drawerCampaign;
  $("drawer-title").textContent = `Campaign ${id} (${tenant})`;
  const form = h("form", { class: "filters", role: "search", "aria-label": "Find a recipient",
    onsubmit: (e) => { e.preventDefault(); findRecipient(tenant, id); } },
  h("label", {}, "Recipient", h("input", { id: "recipient-email", type: "search", name: "email",
    placeholder: "reader@example.com", autocomplete: "off" })),
  h("button", { type: "submit" }, "Look up"));
  $("drawer-body").replaceChildren(
    h("div", { id: "campaign-facts" }, h("p", { class: "muted" }, "Loading…")),
    h("h3", {}, "Recipient"), form,
    h("div", { id: "recipient-result", "aria-live": "polite", "data-testid": "recipient-result" }));
  $("drawer").hidden = false;
  $("drawer-close").focus();
  return loadCampaignDrawer();
}

async function loadCampaignDrawer() {
  const open = state.drawerCampaign;
  if (!open) return;
  try {
    const s = await api(campaignPath(open.tenant, open.id));
    if (state.drawerCampaign !== open) return;
    renderIfChanged("drawerCampaign", s, () => renderCampaignFacts(open.tenant, s));
  } catch (err) {
    if (state.drawerCampaign !== open) return;
    delete state.rendered.drawerCampaign;
    $("campaign-facts").replaceChildren(h("p", { role: "alert" }, `Could not load the campaign: ${err.message}`));
  }
}

function renderCampaignFacts(tenant, s) {
  const facts = [["State", s.state], ["Total", s.total], ["Sent", s.sent], ["Bounced", s.bounced],
    ["Failed", s.failed], ["Pending", s.pending], ["Batches", `${s.batches_done} of ${s.batches_total}`],
    ["Rate", fmtRate(s)], ["Send at", fmtIso(s.send_at)], ["Started", fmtIso(s.started_at)],
    ["Finished", fmtIso(s.finished_at)]];
  const parts = [
    h("dl", {}, facts.flatMap(([k, v]) => [h("dt", {}, k),
      h("dd", { "data-testid": `drawer-${k.toLowerCase().replace(" ", "-")}` }, String(v))])),
    progressBar(s), campaignActions(tenant, s, "drawer")];
  const st = s.stats;
  if (st) {
    parts.push(h("h3", {}, "Stats"), h("dl", { "data-testid": "campaign-stats" },
      h("dt", {}, "Opens"), h("dd", {}, `${st.unique_opens} (${fmtPct(st.open_rate)})`),
      h("dt", {}, "Clicks"), h("dd", {}, `${st.unique_clicks} (${fmtPct(st.click_rate)})`),
      h("dt", {}, "Unsubscribes"), h("dd", {}, String(st.unsubscribes)),
      h("dt", {}, "Complaints"), h("dd", {}, String(st.complaints))),
    h("h3", {}, "Top links"), st.top_links.length
      ? h("ol", { class: "top-links" }, st.top_links.map((l) => h("li", {}, h("span", { class: "url" }, l.url),
        ` — ${l.clicks} click(s)`)))
      : h("p", { class: "empty" }, "No clicks recorded."));
  } else if (s.state === "completed" || s.state === "cancelled") {
    parts.push(h("p", { class: "muted" }, "Stats are being computed…"));
  }
  const box = $("campaign-facts");
  box.replaceChildren(...parts);
  applyWidths(box);
}

async function findRecipient(tenant, id) {
  const email = $("recipient-email").value.trim();
  const out = $("recipient-result");
  if (!email) { out.replaceChildren(h("p", { class: "muted" }, "Type an address.")); return; }
  out.replaceChildren(h("p", { class: "muted" }, "Looking up…"));
  let here;
  try {
    const d = await api(`${campaignPath(tenant, id)}/recipients/${encodeURIComponent(email)}`);
    here = h("dl", {}, [["Address", d.email], ["Status", d.status],
      ["SMTP code", d.smtp_code ?? "–"], ["SMTP response", d.smtp_response || "–"],
      ["Message-ID", d.message_id || "–"], ["Attempt", d.attempt],
      ["First recorded", fmtIso(d.created_at)], ["Updated", fmtIso(d.updated_at)]]
      .flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, String(v))]));
  } catch (err) {
    here = h("p", { class: "empty" }, err.status === 404
      ? `No delivery recorded for ${email} in ${id} (yet).` : `Lookup failed: ${err.message}`);
  }
  out.replaceChildren(here, h("h4", {}, "Every campaign this address got"),
    await recipientHistory(tenant, email));
}

// The address's deliveries across the tenant's campaigns, newest first.
async function recipientHistory(tenant, email) {
  try {
    const path = `/api/tenants/${encodeURIComponent(tenant)}/recipients/` +
      `${encodeURIComponent(email)}/campaigns?limit=20`;
    const { campaigns } = await api(path);
    if (!campaigns.length) return h("p", { class: "empty" }, "None recorded.");
    return h("table", { "data-testid": "recipient-history" },
      h("thead", {}, h("tr", {}, ["Campaign", "Status", "SMTP code", "Updated"].map((c) => h("th", {}, c)))),
      h("tbody", {}, campaigns.map((d) => h("tr", {}, h("td", {}, d.campaign_id), h("td", {}, d.status),
        h("td", {}, String(d.smtp_code ?? "–")), h("td", {}, fmtIso(d.updated_at))))));
  } catch (err) {
    return h("p", { class: "empty" }, `History unavailable: ${err.message}`);
  }
}

// ---------- dead letters and mail ----------
async function loadDeadLetters() {
  try {
    const data = await api("/api/dev/dead-letters?limit=50");
    $("dead-note").textContent = "";
    renderIfChanged("dead", data.dead_letters, renderDeadLetters);
  } catch (err) {
    $("dead-note").textContent = `Dead letters unavailable: ${err.message}`;
  }
}

function renderDeadLetters(letters) {
  const body = $("dead-table").tBodies[0];
  body.replaceChildren();
  if (!letters.length) body.append(h("tr", {}, h("td", { colspan: 6, class: "empty" }, "No dead letters.")));
  for (const d of letters) {
    body.append(h("tr", {}, h("td", {}, String(d.id)), h("td", {}, d.queue),
      h("td", {}, `${d.job_id} (${d.job_name})`), h("td", { class: "reason", title: d.error }, d.error),
      h("td", {}, d.failed_at ? new Date(d.failed_at).toLocaleString() : "–"),
      h("td", {}, h("button", { type: "button", "data-focus-key": `replay-${d.id}`,
        onclick: () => act(`Replay dead letter ${d.id} as a new ${d.queue} job?`,
          () => post(`/api/dev/dead-letters/${d.id}/replay`), (r) => `Replayed as job ${r.job_id}.`) }, "Replay"))));
  }
}

async function loadMail() {
  const data = await api("/api/dev/mail?limit=30");
  $("mail-note").textContent = `${data.total} recent message(s) kept from the dev SMTP sink` +
    (data.total > data.messages.length ? `; the newest ${data.messages.length} shown.` : ".");
  renderIfChanged("mail", data.messages.map((m) => m.id + m.message_id), () => {
    $("mail-list").replaceChildren(...data.messages.map((m) => h("li", { "data-testid": "mail-item" },
      h("details", {}, h("summary", {}, h("strong", {}, m.subject || "(no subject)"),
        h("span", { class: "mail-meta" }, ` — to ${m.rcpt_tos.join(", ")} · ${fmtTime(m.received_at * 1000)}`)),
      h("p", { class: "mail-meta" }, `From ${m.mail_from} · ${m.message_id}`),
      h("pre", {}, m.text || "(HTML only)")))));
  });
}

// ---------- loop ----------
async function refresh() {
  if (state.busy) return;
  state.busy = true;
  try {
    const data = await api("/api/dev/queue?action=dashboard");
    renderOverview(data);
    if (data.redis.ok) {
      showAlert("");
      await Promise.all([loadJobs(), loadCampaigns(), loadDeadLetters(), loadMail()]);
    }
  } catch (err) {
    showAlert(`Cannot reach the queue API: ${err.message}`);
    $("overall").dataset.status = "critical";
    $("overall").textContent = "unreachable";
  } finally {
    state.busy = false;
  }
}

function schedule() {
  clearTimeout(state.timer);
  if (state.live) state.timer = setTimeout(async () => { await refresh(); schedule(); }, POLL_MS);
}

function init() {
  $("live-toggle").addEventListener("click", () => {
    state.live = !state.live;
    $("live-toggle").setAttribute("aria-pressed", String(state.live));
    $("live-toggle").textContent = `Live updates: ${state.live ? "on" : "off"}`;
    announce(`Live updates ${state.live ? "on" : "off"}`);
    if (state.live) refresh();
    schedule();
  });
  $("token-button").addEventListener("click", askToken);
  $("job-filters").addEventListener("submit", (e) => { e.preventDefault(); state.page = 1; loadJobs(); });
  $("job-queue").addEventListener("change", () => { state.page = 1; loadJobs(); });
  $("job-state").addEventListener("change", () => { state.page = 1; loadJobs(); });
  $("prev-page").addEventListener("click", () => { state.page = Math.max(1, state.page - 1); loadJobs(); });
  $("next-page").addEventListener("click", () => { state.page += 1; loadJobs(); });
  $("drawer-close").addEventListener("click", closeDrawer);
  chooseTenant(new URLSearchParams(location.search).get("tenant") || sessionStorage.getItem("nlq-tenant") || "");
  $("campaign-filters").addEventListener("submit", (e) => {
    e.preventDefault(); chooseTenant($("campaign-tenant").value); loadCampaigns();
  });
  $("campaign-prev").addEventListener("click", () => {
    state.campaignPage = Math.max(1, state.campaignPage - 1); loadCampaigns();
  });
  $("campaign-next").addEventListener("click", () => { state.campaignPage += 1; loadCampaigns(); });
  document.addEventListener("keydown", (e) => {
    if ($("drawer").hidden || document.querySelector("dialog[open]")) return; // a dialog on top has the keys
    if (e.key === "Escape") { closeDrawer(); return; }
    if (e.key !== "Tab") return;
    // Keep keyboard focus inside the open drawer (it is a modal dialog).
    const focusable = [...$("drawer").querySelectorAll("button, summary, input, [tabindex]")]
      .filter((el) => !el.disabled && el.offsetParent !== null);
    if (!focusable.length) return;
    const first = focusable[0], last = focusable[focusable.length - 1];
    if (e.shiftKey && document.activeElement === first) { e.preventDefault(); last.focus(); }
    else if (!e.shiftKey && document.activeElement === last) { e.preventDefault(); first.focus(); }
  });
  refresh().then(schedule);
}

document.addEventListener("DOMContentLoaded", init);
