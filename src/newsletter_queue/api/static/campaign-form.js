// newsletter-queue dashboard: the Campaigns panel's "New campaign" form and "Send…" dialog.
// Loaded after dashboard.js (same page, same rules: text only, no inline script or style);
// uses its helpers: $, h, api, announce, state, campaignPath, chooseTenant, loadCampaigns,
// dialogResult, fmtIso.
"use strict";

const FORM_FIELDS = { tenant: "cf-tenant", campaign: "cf-id", subject: "cf-subject",
  from_addr: "cf-from", reply_to: "cf-reply", html: "cf-html", text: "cf-text" };
// The API's names for a field (a route's body, the id checks) → the form's.
const API_FIELDS = { tenantId: "tenant", campaignId: "campaign", "body.subject": "subject",
  "body.html": "html", "body.text": "text", "body.from_addr": "from_addr",
  "body.reply_to": "reply_to" };
const UPLOAD_TYPES = { csv: "text/csv", ndjson: "application/x-ndjson", jsonl: "application/x-ndjson" };
const MAX_ROWS_SHOWN = 100;
const plural = (n, one, many) => `${n} ${n === 1 ? one : many || `${one}s`}`;
const orNull = (v) => (v === "" ? null : v);

// ---------- the form: save a draft (PUT …/campaigns/{campaign}) ----------
function formControl(apiField) {
  const name = API_FIELDS[apiField] || apiField;
  return FORM_FIELDS[name] ? $(FORM_FIELDS[name]) : null;
}

function clearFormErrors() {
  for (const id of Object.values(FORM_FIELDS)) {
    $(id).removeAttribute("aria-invalid");
    $(id).removeAttribute("aria-describedby");
  }
}

// The refusal as the API words it; the controls it names are marked and described by it.
function showFormError(err) {
  const body = err.body || {};
  const out = $("cf-result");
  const named = [];
  let headline = err.message;
  if (body.field) {
    const where = body.line ? `${body.field}, line ${body.line}` : body.field;
    if (!headline.startsWith(where)) headline = `${where}: ${headline}`;
    named.push(body.field);
  }
  const details = (body.errors || []).map((e) => { named.push(e.field); return `${e.field}: ${e.message}`; });
  if (body.state) details.push(`The campaign is ${body.state}: only a draft can be edited.`);
  announce(`Not saved: ${headline}`);
  out.replaceChildren(h("div", { id: "cf-error", class: "form-error", role: "alert" },
    h("p", {}, `Not saved: ${headline}`),
    details.length ? h("ul", {}, details.map((d) => h("li", {}, d))) : null));
  const controls = named.map(formControl).filter(Boolean);
  for (const el of controls) {
    el.setAttribute("aria-invalid", "true");
    el.setAttribute("aria-describedby", "cf-error");
  }
  if (controls.length) controls[0].focus();
}

async function saveCampaign(event) {
  event.preventDefault();
  const value = (key) => $(FORM_FIELDS[key]).value;
  const tenant = value("tenant").trim(), id = value("campaign").trim();
  const body = { subject: value("subject"), html: orNull(value("html")), text: orNull(value("text")),
    from_addr: orNull(value("from_addr").trim()), reply_to: orNull(value("reply_to").trim()) };
  clearFormErrors();
  $("cf-save").disabled = true;
  $("cf-result").replaceChildren(h("p", { class: "muted" }, "Saving…"));
  try {
    const s = await api(campaignPath(tenant, id), { method: "PUT",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const message = `Saved campaign ${s.campaign_id} of tenant ${tenant} as a ${s.state}.`;
    $("cf-result").replaceChildren(h("p", { class: "form-ok" }, message, " ",
      h("button", { type: "button", onclick: () => openSend(tenant, id, body.subject) }, "Send…")));
    announce(message);
    if (tenant !== state.tenant) chooseTenant(tenant);
    delete state.rendered.campaigns;
    await loadCampaigns();
  } catch (err) {
    showFormError(err);
  } finally {
    $("cf-save").disabled = false;
  }
}

// The tenant box follows the panel's tenant until it is typed in.
function defaultTenant() {
  const box = $("cf-tenant");
  if (!box.value || box.dataset.auto === "1") {
    box.value = state.tenant;
    box.dataset.auto = "1";
  }
}

// ---------- the dialog: send a draft to a file of recipients (POST …/send) ----------
function uploadType(name) {
  const ext = name.includes(".") ? name.split(".").pop().toLowerCase() : "";
  return UPLOAD_TYPES[ext] || null;
}

function rowList(rows) {
  return h("ul", { class: "bad-rows", "data-testid": "bad-rows" }, rows.slice(0, MAX_ROWS_SHOWN).map((r) =>
    h("li", {}, r.row ? `Row ${r.row}${r.field === "(row)" ? "" : `, ${r.field}`}: ${r.message}`
      : `The file: ${r.message}`)));
}

function sentSummary(r, tenant, id) {
  if (!r.created) {
    return [h("p", { class: "form-ok", "data-testid": "send-summary" },
      `Campaign ${id} was sent before (it is ${r.state}): nothing was added.`)];
  }
  const when = r.state === "scheduled" ? `scheduled for ${fmtIso($("send-at").value
    ? new Date($("send-at").value).toISOString() : null)}` : "sending";
  const parts = [h("p", { class: "form-ok", "data-testid": "send-summary" },
    `${plural(r.recipients, "recipient")} in ${plural(r.batches, "batch", "batches")}, ${when}.`)];
  if (r.duplicates) {
    parts.push(h("p", { class: "muted" }, `${plural(r.duplicates, "duplicate address", "duplicate addresses")} ` +
      "collapsed (the first row of each was kept)."));
  }
  if (r.skipped && r.skipped.length) {
    // The API lists at most the first 100: then there may be more.
    parts.push(h("p", {}, r.skipped.length >= MAX_ROWS_SHOWN ? "100 bad rows or more left out (the first 100):"
      : `${plural(r.skipped.length, "bad row")} left out:`), rowList(r.skipped));
  }
  return parts;
}

function sendFailure(err) {
  const body = err.body || {};
  const rows = body.rows || [];
  // Bad rows: their count here, each with its number below (the message repeats them).
  const why = rows.length ? `${plural(rows.length, "bad row")}${body.truncated ? " or more" : ""}.` : err.message;
  const parts = [h("p", { "data-testid": "send-refused" }, `Nothing was sent: ${why}`)];
  if (rows.length) {
    parts.push(rowList(rows));
    if (body.truncated || body.rows.length > MAX_ROWS_SHOWN) parts.push(h("p", { class: "muted" }, "More bad rows were not listed."));
    parts.push(h("p", { class: "muted" }, "Fix the file, or tick “Send the good rows despite bad ones”."));
  } else if (body.errors && body.errors.length) {
    parts.push(h("ul", {}, body.errors.map((e) => h("li", {}, `${e.field}: ${e.message}`))));
  }
  return h("div", { class: "form-error", role: "alert" }, parts);
}

async function sendCampaign() {
  const target = state.sendTarget;
  const out = $("send-result");
  const file = $("send-file").files[0];
  const type = file ? uploadType(file.name) : null;
  if (!file || !type) {
    out.replaceChildren(h("p", { class: "form-error", role: "alert" }, file
      ? `${file.name} is not a .csv, .ndjson or .jsonl file: nothing was sent.` : "Choose a file of recipients."));
    return;
  }
  const qs = new URLSearchParams();
  const at = $("send-at").value;
  if (at) qs.set("send_at", new Date(at).toISOString()); // local time → ISO UTC
  if ($("send-partial").checked) qs.set("partial", "true");
  if ($("send-batch").value) qs.set("batch_size", $("send-batch").value);
  $("send-ok").disabled = true;
  out.replaceChildren(h("p", { class: "muted" }, `Uploading ${file.name} and checking its rows…`));
  try {
    // The File itself is the body: the browser streams it from disk.
    const r = await api(`${campaignPath(target.tenant, target.id)}/send${String(qs) ? `?${qs}` : ""}`,
      { method: "POST", headers: { "Content-Type": type }, body: file });
    if (state.sendTarget !== target) return;
    target.sent = true;
    out.replaceChildren(...sentSummary(r, target.tenant, target.id));
    announce(`Campaign ${target.id}: ${out.textContent}`);
    delete state.rendered.campaigns;
    await loadCampaigns();
  } catch (err) {
    if (state.sendTarget !== target) return;
    out.replaceChildren(sendFailure(err));
    $("send-ok").disabled = false;
  }
}

async function openSend(tenant, id, subject) {
  const dialog = $("send-dialog");
  const opener = document.activeElement;
  state.sendTarget = { tenant, id };
  $("send-title").textContent = `Send campaign ${id}`;
  $("send-what").textContent = `Tenant ${tenant}` + (subject ? ` · subject: ${subject}` : "");
  $("send-form").reset();
  $("send-result").replaceChildren();
  $("send-ok").disabled = false;
  dialog.returnValue = "cancel";
  const target = state.sendTarget;
  const closed = dialogResult(dialog);
  $("send-file").focus();
  await closed;
  state.sendTarget = null;
  // Once sent, the draft's Send… goes at the next render: focus what stays instead — the
  // open drawer's Close, or the campaign's name in the list (re-focused across renders).
  const back = !target.sent && opener && opener.isConnected ? opener
    : !$("drawer").hidden ? $("drawer-close")
      : document.querySelector(`[data-focus-key="open-${CSS.escape(id)}"]`);
  if (back) back.focus();
}

function initCampaignForm() {
  $("campaign-form").addEventListener("submit", saveCampaign);
  $("campaign-new").addEventListener("toggle", () => { if ($("campaign-new").open) defaultTenant(); });
  $("cf-tenant").addEventListener("input", () => { delete $("cf-tenant").dataset.auto; });
  $("campaign-filters").addEventListener("submit", defaultTenant);
  $("send-form").addEventListener("submit", (e) => {
    if (e.submitter && e.submitter.value === "cancel") return; // Close: the dialog closes
    e.preventDefault();
    sendCampaign();
  });
}

document.addEventListener("DOMContentLoaded", initCampaignForm);
