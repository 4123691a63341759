// newsletter-queue dashboard: the Suppressions panel — the tenant's suppression list
// (newest first, by reason, paged) with Add, Import…, Remove and Erase….
// Loaded after dashboard.js and campaign-form.js (same page, same rules: text only, no
// inline script or style); uses their helpers: $, h, api, announce, showAlert,
// confirmAction, renderIfChanged, state, fmtIso, plural, rowList, uploadType. The tenant
// is the Campaigns panel's (state.tenant); dashboard.js's refresh calls loadSuppressions.
"use strict";

const SUP_PAGE_SIZE = 20;
const SUP_ROWS_SHOWN = 100; // the API lists at most the first 100 bad rows of an import
const sup = { tenant: "", page: 1 }; // the list on screen
const tenantPath = (tenant, rest) => `/api/tenants/${encodeURIComponent(tenant)}${rest}`;

function supQuery() {
  const qs = new URLSearchParams({ page: sup.page, page_size: SUP_PAGE_SIZE });
  if ($("sup-reason").value) qs.set("reason", $("sup-reason").value);
  return String(qs);
}

async function loadSuppressions() {
  const tenant = state.tenant;
  if (tenant !== sup.tenant) {
    sup.tenant = tenant;
    sup.page = 1;
    delete state.rendered.suppressions;
  }
  if (!tenant) {
    $("sup-note").textContent = "Choose a tenant in the Campaigns panel to see its suppression list.";
    $("sup-table").tBodies[0].replaceChildren();
    return;
  }
  const qs = supQuery();
  try {
    const data = await api(`${tenantPath(tenant, "/suppressions")}?${qs}`);
    if (tenant !== state.tenant || qs !== supQuery()) return; // a newer choice is loading
    const pages = Math.max(1, Math.ceil(data.total / data.page_size));
    if (data.page > pages) { // the last page emptied (a removal): show the new last one
      sup.page = pages;
      return loadSuppressions();
    }
    renderIfChanged("suppressions", data, renderSuppressions);
  } catch (err) {
    if (tenant !== state.tenant) return;
    delete state.rendered.suppressions;
    $("sup-note").textContent = `Suppression list unavailable: ${err.message}`;
    $("sup-table").tBodies[0].replaceChildren();
  }
}

function reloadSuppressions() {
  delete state.rendered.suppressions;
  return loadSuppressions();
}

function renderSuppressions(data) {
  const pages = Math.max(1, Math.ceil(data.total / data.page_size));
  const reason = $("sup-reason").value;
  $("sup-note").textContent = `${plural(data.total, "address", "addresses")} on the list of tenant ` +
    `${data.tenant}${reason ? ` with reason ${reason}` : ""}, newest first.`;
  $("sup-page-info").textContent = `Page ${data.page} of ${pages}`;
  $("sup-prev").disabled = data.page <= 1;
  $("sup-next").disabled = data.page >= pages;
  const body = $("sup-table").tBodies[0];
  body.replaceChildren();
  if (!data.suppressions.length) {
    body.append(h("tr", {}, h("td", { colspan: 5, class: "empty" },
      reason ? `No address with reason ${reason}.` : "No address is on the list.")));
  }
  data.suppressions.forEach((s, index) => {
    body.append(h("tr", { "data-testid": "sup-row", "data-hash": s.email_hash },
      h("td", { class: "addr" }, s.email === null
        ? h("span", { class: "empty", title: `erased; hash ${s.email_hash}` }, "(erased)") : s.email),
      h("td", {}, s.reason), h("td", {}, s.campaign_id || "–"), h("td", {}, fmtIso(s.created_at)),
      h("td", {}, s.email === null ? null : h("button", { type: "button", "data-sup-remove": "1",
        "data-focus-key": `sup-remove-${s.email_hash}`, "aria-label": `Remove ${s.email}`,
        onclick: () => removeEntry(data.tenant, s.email, index) }, "Remove"))));
  });
}

// ---------- remove one entry (DELETE …/suppressions/{email}) ----------
async function removeEntry(tenant, email, index) {
  if (!(await confirmAction(`Take ${email} off the suppression list of tenant ${tenant}? ` +
    "Its next campaign will mail it again."))) { announce("Cancelled."); return; }
  try {
    await api(tenantPath(tenant, `/suppressions/${encodeURIComponent(email)}`), { method: "DELETE" });
    showAlert("");
    announce(`${email} is off the suppression list of tenant ${tenant}.`);
  } catch (err) {
    showAlert(`Not removed: ${err.message}`);
  }
  await reloadSuppressions();
  // The row is gone: keep the keyboard in the list (the next row's Remove, else the note).
  if (document.activeElement && document.activeElement !== document.body) return;
  const buttons = $("sup-table").querySelectorAll("button[data-sup-remove]");
  (buttons[Math.min(index, buttons.length - 1)] || $("sup-note")).focus();
}

// ---------- results and refusals, as the API words them ----------
function supOk(out, testid, ...lines) {
  out.replaceChildren(...lines.map((line, i) => (line instanceof Node ? line
    : h("p", { class: i === 0 ? "form-ok" : "muted", "data-testid": i === 0 ? testid : null }, line))));
  announce(out.textContent);
}

// ``typed``: the addresses sent, so that "emails[1]" can say which one it was.
function supFailure(lead, err, typed) {
  const body = err.body || {};
  const named = (body.errors || []).map((e) => {
    const at = /^emails\[(\d+)\]$/.exec(e.field || "");
    const which = at && typed && typed[Number(at[1])] !== undefined ? ` (${typed[Number(at[1])]})` : "";
    return `${e.field}${which}: ${e.message}`;
  });
  const rows = body.rows || [];
  announce(`${lead}: ${err.message}`);
  return h("div", { class: "form-error", role: "alert", "data-testid": "sup-refused" },
    h("p", {}, `${lead}: ${err.message}`),
    rows.length ? rowList(rows) : named.length ? h("ul", {}, named.map((t) => h("li", {}, t))) : null);
}

function needTenant(out) {
  if (state.tenant) return state.tenant;
  out.replaceChildren(h("p", { class: "form-error", role: "alert" },
    "Choose a tenant first, in the Campaigns panel."));
  return null;
}

// ---------- Add (POST …/suppressions) ----------
async function addAddresses(event) {
  event.preventDefault();
  const out = $("sup-add-result");
  const box = $("sup-add-emails");
  box.removeAttribute("aria-invalid");
  box.removeAttribute("aria-describedby");
  const tenant = needTenant(out);
  if (!tenant) return;
  const emails = box.value.split(/[\s,;]+/).filter(Boolean);
  if (!emails.length) {
    out.replaceChildren(h("p", { class: "form-error", role: "alert" }, "Type at least one address."));
    box.focus();
    return;
  }
  const reason = $("sup-add-reason").value;
  $("sup-add-ok").disabled = true;
  out.replaceChildren(h("p", { class: "muted" }, "Adding…"));
  try {
    const r = await api(tenantPath(tenant, "/suppressions"), { method: "POST",
      headers: { "Content-Type": "application/json" }, body: JSON.stringify({ emails, reason }) });
    supOk(out, "sup-add-summary", `${plural(r.added, "address", "addresses")} added to the list of ` +
      `tenant ${tenant} (${reason})` + (r.already ? `; ${r.already} already on it.` : "."));
    box.value = "";
    await reloadSuppressions();
  } catch (err) {
    const refusal = supFailure("Nothing was added", err, emails);
    refusal.id = "sup-add-error";
    out.replaceChildren(refusal);
    box.setAttribute("aria-invalid", "true");
    box.setAttribute("aria-describedby", "sup-add-error");
    box.focus();
  } finally {
    $("sup-add-ok").disabled = false;
  }
}

// ---------- Import… (POST …/suppressions/import, the file as the body) ----------
async function importFile(event) {
  event.preventDefault();
  const out = $("sup-import-result");
  const tenant = needTenant(out);
  if (!tenant) return;
  const file = $("sup-import-file").files[0];
  const type = file ? uploadType(file.name) : null; // campaign-form.js: by the extension
  if (!file || !type) {
    out.replaceChildren(h("p", { class: "form-error", role: "alert" }, file
      ? `${file.name} is not a .csv, .ndjson or .jsonl file: nothing was imported.` : "Choose a file."));
    return;
  }
  const reason = $("sup-import-reason").value;
  $("sup-import-ok").disabled = true;
  out.replaceChildren(h("p", { class: "muted" }, `Uploading ${file.name}…`));
  try {
    // The File itself is the body: the browser streams it from disk.
    const r = await api(`${tenantPath(tenant, "/suppressions/import")}?${new URLSearchParams({ reason })}`,
      { method: "POST", headers: { "Content-Type": type }, body: file });
    const lines = [`${file.name}: ${plural(r.added, "address", "addresses")} added to the list of ` +
      `tenant ${tenant} (${reason}), ${r.already} already on it.`];
    if (r.duplicates) lines.push(`${plural(r.duplicates, "repeated address", "repeated addresses")} counted once.`);
    if (r.bad_rows.length) {
      lines.push(h("p", { "data-testid": "sup-bad-rows-head" }, r.bad_rows.length >= SUP_ROWS_SHOWN
        ? "100 bad rows or more left out (the first 100):" : `${plural(r.bad_rows.length, "bad row")} left out:`),
      rowList(r.bad_rows));
    }
    supOk(out, "sup-import-summary", ...lines);
    await reloadSuppressions();
  } catch (err) {
    out.replaceChildren(supFailure("Nothing was imported", err));
  } finally {
    $("sup-import-ok").disabled = false;
  }
}

// ---------- Erase… (DELETE …/recipients/{email}) ----------
async function eraseAddress(event) {
  event.preventDefault();
  const out = $("sup-erase-result");
  const tenant = needTenant(out);
  if (!tenant) return;
  const email = $("sup-erase-email").value.trim();
  if (!email) {
    out.replaceChildren(h("p", { class: "form-error", role: "alert" }, "Type the address to erase."));
    $("sup-erase-email").focus();
    return;
  }
  const ok = await confirmAction(`Erase ${email} from tenant ${tenant}? Every delivery and event ` +
    "of this address is deleted — the campaigns it got, its opens, clicks and unsubscribes — and " +
    "only a hashed suppression entry is kept, so it is never mailed again. This cannot be undone.");
  if (!ok) {
    out.replaceChildren(h("p", { class: "muted" }, "Cancelled: nothing was erased."));
    announce("Cancelled.");
    return;
  }
  $("sup-erase-ok").disabled = true;
  out.replaceChildren(h("p", { class: "muted" }, "Erasing…"));
  try {
    const r = await api(tenantPath(tenant, `/recipients/${encodeURIComponent(email)}`), { method: "DELETE" });
    supOk(out, "sup-erase-summary", `Erased ${email}: ${plural(r.deliveries, "delivery", "deliveries")} ` +
      `and ${plural(r.events, "event")} deleted; ` + (r.suppression_created
      ? "a hashed suppression entry (manual) keeps it from being mailed."
      : "its suppression entry keeps only the hash now."));
    $("sup-erase-email").value = "";
    await reloadSuppressions();
  } catch (err) {
    out.replaceChildren(supFailure("Not erased", err));
  } finally {
    $("sup-erase-ok").disabled = false;
  }
}

function initSuppressions() {
  $("sup-add-form").addEventListener("submit", addAddresses);
  $("sup-import-form").addEventListener("submit", importFile);
  $("sup-erase-form").addEventListener("submit", eraseAddress);
  $("sup-filters").addEventListener("submit", (e) => { e.preventDefault(); sup.page = 1; reloadSuppressions(); });
  $("sup-reason").addEventListener("change", () => { sup.page = 1; reloadSuppressions(); });
  $("sup-prev").addEventListener("click", () => { sup.page = Math.max(1, sup.page - 1); reloadSuppressions(); });
  $("sup-next").addEventListener("click", () => { sup.page += 1; reloadSuppressions(); });
  // dashboard.js's handler (registered first) has chosen the tenant by then.
  $("campaign-filters").addEventListener("submit", () => { reloadSuppressions(); });
}

document.addEventListener("DOMContentLoaded", initSuppressions);
