// The dashboard's behaviour: the API token, the buttons (they call the JSON API), and live numbers.
// Plain JavaScript, no build step; everything user-supplied is set with textContent, never innerHTML.
"use strict";

const TOKEN_KEY = "selfloop.apiToken";
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);

function token() { return localStorage.getItem(TOKEN_KEY) || ""; }

function flash(message, isError) {
  const box = document.getElementById("flash");
  box.textContent = message;
  box.className = isError ? "error" : "";
  box.hidden = false;
  clearTimeout(flash.timer);
  flash.timer = setTimeout(() => { box.hidden = true; }, isError ? 12000 : 6000);
}

async function api(method, url, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && token()) headers["Authorization"] = "Bearer " + token();
  const response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await response.json(); } catch (e) { data = null; }
  if (!response.ok) {
    let detail = data && data.detail ? data.detail : response.statusText;
    if (response.status === 401 || response.status === 403) detail += " (enter the API token at the top right)";
    throw new Error(detail);
  }
  return data;
}

function tokenFromAddress() {
  // `loopctl up` prints the dashboard's address with its token after '#', which the browser never sends to the
  // server: keep the token in this browser, then take it out of the address bar and the history.
  const match = location.hash.match(/^#token=([^&]+)$/);
  if (!match) return;
  localStorage.setItem(TOKEN_KEY, decodeURIComponent(match[1]));
  history.replaceState(null, "", location.pathname + location.search);
}

function setupToken() {
  tokenFromAddress();
  const input = document.getElementById("token");
  const state = document.getElementById("token-state");
  const show = () => { state.textContent = token() ? "✓ set" : "not set"; };
  input.value = token();
  input.addEventListener("change", () => { localStorage.setItem(TOKEN_KEY, input.value.trim()); show(); });
  document.getElementById("token-form").addEventListener("submit", (e) => e.preventDefault());
  show();
}

// -- overview --------------------------------------------------------------------------------------------------

function fmt(value, digits) { return value === null || value === undefined ? "–" : Number(value).toFixed(digits); }

async function refreshOverview() {
  try {
    const o = await api("GET", "/api/overview");
    document.getElementById("rate-generated").textContent = fmt(o.throughput.generated_per_min, 1);
    document.getElementById("rate-verified").textContent = fmt(o.throughput.verified_per_min, 1);
    const rate = o.throughput.acceptance_rate;
    document.getElementById("rate-accepted").textContent = rate === null ? "–" : Math.round(100 * rate) + "%";
    document.getElementById("round").textContent = o.round === null ? "–" : o.round;
    document.getElementById("difficulty").textContent = o.difficulty === null ? "–" : o.difficulty;
    const totals = Object.entries(o.throughput.totals).sort().map(([s, n]) => n + " " + s).join(", ");
    document.getElementById("totals").textContent = totals || "none yet";
    document.getElementById("off-adapter").hidden = !o.off_adapter;
    document.getElementById("off-adapter-text").textContent = o.off_adapter;
    const current = document.getElementById("current-adapter");
    if ((current.textContent.trim() === "base model") !== (o.current_adapter.id === null)
        || (o.current_adapter.id && current.textContent.trim() !== o.current_adapter.id)) {
      current.textContent = o.current_adapter.id || "base model";
    }
  } catch (e) { /* the next refresh tries again */ }
}

async function refreshLag() {
  const body = document.querySelector("#lag tbody");
  let report;
  try { report = await api("GET", "/api/metrics/lag"); } catch (e) { return; }
  body.replaceChildren();
  if (!report.available) {
    const row = body.insertRow();
    const cell = row.insertCell();
    cell.colSpan = 3;
    cell.className = "muted";
    cell.textContent = "Kafka unavailable: " + (report.error || "unknown error");
    return;
  }
  for (const g of report.groups) {
    const row = body.insertRow();
    for (const value of [g.group, g.topic, g.lag === null ? "–" : g.lag]) row.insertCell().textContent = value;
  }
}

// -- adapters --------------------------------------------------------------------------------------------------

async function promote(button) {
  const id = button.dataset.adapter;
  let force = false;
  if (button.dataset.rejected === "yes") {
    if (!confirm("The promotion gate rejected " + id + ". Promote it anyway?")) return;
    force = true;
  } else if (!confirm("Promote " + id + "? The generators switch to it.")) return;
  try {
    const result = await api("POST", "/api/adapters/" + encodeURIComponent(id) + "/promote", { force });
    flash("Promoted " + result.current_after + " (was " + (result.current_before || "the base model") + "); refreshing…");
    setTimeout(() => location.reload(), 1500);
  } catch (e) { flash("Promote failed: " + e.message, true); }
}

async function rollback() {
  if (!confirm("Roll back the current adapter to its parent?")) return;
  try {
    const result = await api("POST", "/api/adapters/rollback", {});
    flash("Rolled back " + result.current_before + "; now " + (result.current_after || "the base model") + "; refreshing…");
    setTimeout(() => location.reload(), 1500);
  } catch (e) { flash("Roll back failed: " + e.message, true); }
}

// -- jobs ------------------------------------------------------------------------------------------------------

let watching = null;

function showJob(job) {
  document.getElementById("job-panel").hidden = false;
  document.getElementById("job-id").textContent = job.id;
  const progress = job.progress || 0;
  document.getElementById("job-progress").value = progress;
  document.getElementById("job-percent").textContent = Math.round(100 * progress) + "%";
  const state = document.getElementById("job-state");
  state.textContent = job.state;
  state.className = "status " + job.state;
  document.getElementById("job-message").textContent = job.message || "";
  document.getElementById("cancel-job").hidden = TERMINAL.has(job.state);
}

function watchJob(jobId) {
  clearInterval(watching);
  const poll = async () => {
    try {
      const job = await api("GET", "/api/jobs/" + encodeURIComponent(jobId));
      showJob(job);
      if (TERMINAL.has(job.state)) clearInterval(watching);
    } catch (e) { document.getElementById("job-message").textContent = e.message; }
  };
  document.getElementById("cancel-job").dataset.job = jobId;
  poll();
  watching = setInterval(poll, 500);
}

async function startRetrain(event) {
  event.preventDefault();
  const text = document.getElementById("overrides").value.trim();
  let overrides = {};
  if (text) {
    try { overrides = JSON.parse(text); } catch (e) { flash("Overrides are not valid JSON: " + e.message, true); return; }
    if (typeof overrides !== "object" || overrides === null || Array.isArray(overrides)) {
      flash("Overrides must be a JSON object, like {\"lora\": {\"steps\": 300}}", true);
      return;
    }
  }
  const button = document.getElementById("retrain");
  button.disabled = true;
  try {
    const accepted = await api("POST", "/api/jobs/retrain", { overrides });
    flash("Retraining queued as job " + accepted.job_id);
    showJob({ id: accepted.job_id, state: "queued", progress: 0, message: "" });
    watchJob(accepted.job_id);
  } catch (e) { flash("Could not start the retraining: " + e.message, true); }
  finally { button.disabled = false; }
}

async function cancelJob(button) {
  try {
    await api("POST", "/api/jobs/" + encodeURIComponent(button.dataset.job) + "/cancel");
    flash("Cancel requested; the job stops at its next progress report.");
  } catch (e) { flash("Cancel failed: " + e.message, true); }
}

// -- wiring ----------------------------------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  setupToken();
  const page = document.body.dataset.page;
  if (page === "overview") {
    refreshLag();
    setInterval(refreshOverview, 5000);
    setInterval(refreshLag, 10000);
  }
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    const action = button.dataset.action;
    if (action === "promote") promote(button);
    else if (action === "rollback") rollback();
    else if (action === "watch") watchJob(button.dataset.job);
  });
  const form = document.getElementById("retrain-form");
  if (form) form.addEventListener("submit", startRetrain);
  const cancel = document.getElementById("cancel-job");
  if (cancel) cancel.addEventListener("click", () => cancelJob(cancel));
});
