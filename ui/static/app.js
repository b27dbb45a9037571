// gotune web UI. Plain JavaScript, no framework: every action is one call
// to the JSON API documented in the ui package.
"use strict";

const csrf = document.querySelector('meta[name="gotune-csrf"]').content;
const $ = (id) => document.getElementById(id);
let session = { roots: [] };
let models = [];
let selectedRuns = new Set();
let openRun = "";

function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v);
  }
  for (const c of children) e.append(c instanceof Node ? c : String(c));
  return e;
}

function showError(msg) {
  const box = $("error");
  box.textContent = msg;
  box.hidden = !msg;
}

// api calls the server; state-changing requests carry the CSRF header.
async function api(method, path, body, signal) {
  const opt = { method, headers: {}, signal };
  if (body !== undefined) {
    opt.headers["Content-Type"] = "application/json";
    opt.body = JSON.stringify(body);
  }
  if (method !== "GET") opt.headers["X-Gotune-CSRF"] = csrf;
  const r = await fetch(path, opt);
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { msg = (await r.json()).error || msg; } catch (e) { /* not JSON */ }
    throw new Error(msg);
  }
  return r;
}

async function getJSON(path) { return (await api("GET", path)).json(); }

// stream reads an NDJSON response line by line.
async function stream(resp, onLine) {
  const reader = resp.body.getReader();
  const dec = new TextDecoder();
  let buf = "";
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    buf += dec.decode(value, { stream: true });
    let i;
    while ((i = buf.indexOf("\n")) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line.trim()) onLine(JSON.parse(line));
    }
  }
}

function guarded(fn) {
  return async (...args) => {
    showError("");
    try { await fn(...args); } catch (e) { showError(e.message); }
  };
}

// ---- tabs

function showTab(name) {
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.tab === name);
  for (const s of document.querySelectorAll("section.tab")) s.hidden = s.id !== "tab-" + name;
  if (name === "runs") refreshRuns();
  if (name === "chat" || name === "export" || name === "compare") loadModels();
}

// ---- pickers

async function loadModels() {
  models = await getJSON("/api/models");
  for (const sel of document.querySelectorAll(".model-select")) {
    const keep = sel.value;
    sel.replaceChildren(...models.filter(m => m.kind === "model").map(m => el("option", { value: m.path }, m.name)));
    if (keep) sel.value = keep;
  }
  for (const sel of document.querySelectorAll(".adapter-select")) {
    const keep = sel.value;
    sel.replaceChildren(el("option", { value: "" }, "none (base model)"),
      ...models.filter(m => m.kind === "adapter").map(m => el("option", { value: m.path }, m.name)));
    if (keep) sel.value = keep;
  }
}

async function loadDatasets() {
  const ds = await getJSON("/api/datasets");
  for (const sel of document.querySelectorAll(".dataset-select")) {
    sel.replaceChildren(...ds.map(d => {
      const o = el("option", { value: d.dataset }, d.name);
      o.dataset.dir = d.dataset_dir;
      if (d.file) o.dataset.file = d.file;
      return o;
    }));
  }
}

function datasetSettings(sel) {
  const picked = [...sel.selectedOptions];
  if (!picked.length) throw new Error("pick a dataset first");
  if (picked.length === 1) return { dataset: picked[0].value, dataset_dir: picked[0].dataset.dir };
  // Several datasets: names when they share a dataset_info.json folder,
  // otherwise their files (a config has one dataset_dir).
  const dir = picked[0].dataset.dir;
  if (picked.every(o => o.dataset.dir === dir)) return { dataset: picked.map(o => o.value), dataset_dir: dir };
  const files = picked.map(o => o.dataset.file);
  if (files.some(f => !f)) throw new Error("datasets from different folders can be mixed only when each is one file");
  return { dataset: files };
}

// The folder browser only ever sees what /api/files returns: folders under
// the allowed roots.
async function browse(dir) {
  const q = dir ? "?dir=" + encodeURIComponent(dir) : "";
  const res = await getJSON("/api/files" + q);
  $("browser").hidden = false;
  $("browser-dir").textContent = res.dir;
  $("browser-up").disabled = !res.parent;
  $("browser-up").onclick = guarded(() => browse(res.parent));
  $("browser-list").replaceChildren(...res.entries.map(e => {
    const label = (e.dir ? "📁 " : "📄 ") + e.name + (e.kind ? "  [" + e.kind + "]" : "");
    const li = el("li", {}, el("a", { href: "#" }, label));
    li.firstChild.addEventListener("click", guarded(async (ev) => {
      ev.preventDefault();
      if (e.dir) return browse(e.path);
      if (e.kind === "dataset") {
        for (const sel of document.querySelectorAll(".dataset-select")) {
          let o = [...sel.options].find(x => x.value === e.path);
          if (!o) {
            o = el("option", { value: e.path }, e.name);
            o.dataset.dir = res.dir;
            o.dataset.file = e.path;
            sel.append(o);
          }
          sel.value = e.path;
        }
      }
    }));
    return li;
  }));
}

// ---- data

async function inspect() {
  const settings = { ...datasetSettings($("data-dataset")), cutoff_len: Number($("data-cutoff").value) };
  if ($("data-model").value) settings.model_name_or_path = $("data-model").value;
  if ($("data-template").value.trim()) settings.template = $("data-template").value.trim();
  const out = $("inspect-out");
  out.replaceChildren(el("p", { class: "muted" }, "reading…"));
  const rep = await (await api("POST", "/api/inspect", { settings, samples: Number($("data-samples").value) })).json();
  out.replaceChildren(renderReport(rep));
}

function renderReport(rep) {
  const frag = document.createDocumentFragment();
  const t = el("table", { id: "inspect-table" }, el("tr", {}, ...["source", "records", "bad", "filtered", "kept", "samples", rep.unit, "trained " + rep.unit].map(h => el("th", {}, h))));
  for (const s of rep.sources) {
    const filtered = Object.values(s.filtered || {}).reduce((a, b) => a + b, 0);
    t.append(el("tr", {}, ...[s.name, s.records, s.bad, filtered, s.kept, s.samples, s.tokens, s.trained_tokens].map(v => el("td", {}, v))));
  }
  frag.append(el("h3", {}, `Counts (${rep.train} train, ${rep.val} validation)`), t);
  const why = [];
  for (const s of rep.sources) {
    for (const [k, v] of Object.entries(s.filtered || {})) why.push(`${s.name}: ${v} removed by ${k}`);
    for (const [k, v] of Object.entries(s.bad_reasons || {})) why.push(`${s.name}: ${v} skipped: ${k}`);
    for (const [k, v] of Object.entries(s.dropped || {})) why.push(`${s.name}: ${v} dropped while encoding: ${k}`);
  }
  for (const r of (rep.removed || [])) why.push(`removed ${r.loc ? r.loc.file + ":" + r.loc.line : ""} ${r.reason || r.message || ""}`);
  for (const r of (rep.issues || [])) why.push(`issue ${r.loc ? r.loc.file + ":" + r.loc.line : ""} ${r.reason || r.message || ""}`);
  frag.append(el("h3", {}, "Filters"), el("ul", { id: "filters" }, ...(why.length ? why : ["nothing removed"]).map(w => el("li", {}, w))));
  frag.append(el("h3", {}, `Length histogram (${rep.unit})`), histogram(rep.length_histogram || []));
  frag.append(el("h3", {}, "Samples as the model sees them (trained text highlighted)"));
  const samples = el("div", { id: "samples" });
  for (const s of (rep.rendered || [])) {
    const pre = el("pre", { class: "sample" });
    for (const seg of s.segments) pre.append(seg.trained ? el("mark", { class: "trained" }, seg.text) : seg.text);
    samples.append(el("div", { class: "muted" }, `${s.source} ${s.loc ? s.loc.file + ":" + s.loc.line : ""} — ${s.tokens} tokens, ${s.trained} trained`), pre);
  }
  frag.append(samples);
  return frag;
}

function histogram(bins) {
  const box = el("div", { id: "histogram", class: "histogram" });
  const maxCount = Math.max(1, ...bins.map(b => b.count));
  for (const b of bins) {
    const bar = el("div", { class: "bar", title: `${b.lo}–${b.hi}: ${b.count}` });
    bar.style.height = (100 * b.count / maxCount) + "%";
    const col = el("div", { class: "col" }, bar, el("span", {}, `${b.lo}–${b.hi}`));
    box.append(col);
  }
  return box;
}

// ---- curate

const templates = {
  alpaca: { instruction: "", input: "", output: "" },
  sharegpt: { conversations: [{ from: "human", value: "" }, { from: "gpt", value: "" }] },
  messages: { messages: [{ role: "user", content: "" }, { role: "assistant", content: "" }] },
  tools: {
    messages: [
      { role: "user", content: "" },
      { role: "assistant", content: "", tool_calls: [{ type: "function", function: { name: "", arguments: {} } }] },
      { role: "tool", content: "" },
      { role: "assistant", content: "" },
    ],
    tools: [{ type: "function", function: { name: "", description: "", parameters: { type: "object", properties: {} } } }],
  },
  reasoning: { messages: [{ role: "user", content: "" }, { role: "assistant", reasoning_content: "", content: "" }] },
};

function recordBox(rec, isNew) {
  const ta = el("textarea", { rows: "6", spellcheck: "false" });
  ta.value = JSON.stringify(rec, null, 2);
  const box = el("div", { class: "record", "data-verdict": "accepted" });
  const setVerdict = (v) => { box.dataset.verdict = v; };
  box.append(
    el("div", { class: "record-bar" },
      el("span", { class: "muted" }, isNew ? "new sample" : ""),
      el("button", { class: "secondary accept", onclick: () => setVerdict("accepted") }, "Accept"),
      el("button", { class: "secondary reject", onclick: () => setVerdict("rejected") }, "Reject")),
    ta);
  return box;
}

async function curateLoad() {
  const o = $("data-dataset").selectedOptions[0];
  if (!o || !o.dataset.file) throw new Error("this dataset is not one .json/.jsonl file the page can edit");
  const res = await getJSON("/api/records?limit=500&path=" + encodeURIComponent(o.dataset.file));
  $("curate").hidden = false;
  $("curate-info").textContent = `${res.path}: ${res.total} records` + (res.total > res.records.length ? ` (the first ${res.records.length} are shown and saved)` : "");
  $("curate-records").replaceChildren(...res.records.map(r => recordBox(r, false)));
  if (!$("curate-dir").value) $("curate-dir").value = session.roots[0];
}

function curateAdd() {
  const box = recordBox(templates[$("curate-kind").value], true);
  $("curate-records").append(box);
  box.querySelector("textarea").focus();
}

async function curateSave() {
  const records = [];
  const boxes = [...document.querySelectorAll("#curate-records .record")];
  boxes.forEach((b, i) => {
    if (b.dataset.verdict === "rejected") return;
    try { records.push(JSON.parse(b.querySelector("textarea").value)); }
    catch (e) { throw new Error(`sample ${i + 1}: ${e.message}`); }
  });
  const res = await (await api("POST", "/api/records/save", { dir: $("curate-dir").value.trim(), name: $("curate-name").value.trim(), records })).json();
  $("curate-msg").textContent = `saved ${res.records} records (${res.format}) to ${res.path} as dataset "${res.dataset}"`;
  await loadDatasets();
  for (const sel of document.querySelectorAll(".dataset-select")) {
    const match = [...sel.options].find(x => x.value === res.dataset && x.dataset.dir === res.dataset_dir);
    if (match) for (const o of sel.options) o.selected = o === match;
  }
}

// ---- train

function trainSettings() {
  const method = $("train-method").value;
  const root = session.roots[0];
  const name = $("train-name").value.trim();
  if (!name || name.includes("/")) throw new Error("run name: a plain folder name");
  const s = {
    model_name_or_path: $("train-model").value,
    stage: "sft",
    finetuning_type: method,
    ...datasetSettings($("train-dataset")),
    cutoff_len: Number($("train-cutoff").value),
    per_device_train_batch_size: Number($("train-batch").value),
    gradient_accumulation_steps: Number($("train-ga").value),
    learning_rate: Number($("train-lr").value),
    num_train_epochs: Number($("train-epochs").value),
    lr_scheduler_type: $("train-sched").value,
    logging_steps: Number($("train-logging").value),
    save_steps: Number($("train-save").value),
    output_dir: root + "/runs/" + name,
  };
  if ($("train-tensorboard").checked) s.report_to = "tensorboard";
  if (Array.isArray(s.dataset)) {
    s.mix_strategy = $("train-mix").value;
    const probs = $("train-probs").value.trim();
    if (probs) s.interleave_probs = probs.split(",").map(Number);
  }
  if (method === "lora") {
    s.lora_rank = Number($("train-rank").value);
    s.lora_target = "all";
  }
  return s;
}

// The planner's estimate follows the form: asked again (debounced) on
// every change of model, data, batch, length, rank or method.
let planTimer = null;
let planSeq = 0;
function schedulePlan() {
  clearTimeout(planTimer);
  planTimer = setTimeout(guarded(updatePlan), 300);
}

const mib = (b) => (b / (1 << 20)).toFixed(0) + " MiB";
const planName = { lora: "lora", full: "full", freeze: "freeze", ia3: "ia3", prompt_tuning: "prompt-tuning" };

async function updatePlan() {
  const model = $("train-model").value;
  if (!model) return;
  const o = $("train-dataset").selectedOptions[0];
  const seq = ++planSeq;
  const res = await (await api("POST", "/api/plan", {
    model, dataset_file: (o && o.dataset.file) || "",
    batch: Number($("train-batch").value), seq: Number($("train-cutoff").value), lora_rank: Number($("train-rank").value),
  })).json();
  if (seq !== planSeq) return; // a newer answer is on its way
  const chosen = planName[$("train-method").value];
  const rows = res.Methods.map(m => {
    const fits = m.fits ? "fits" : m.fits_checkpoint ? "fits with checkpointing" : "does not fit";
    const tr = el("tr", { class: (m.method === chosen ? "chosen " : "") + (m.fits || m.fits_checkpoint ? "" : "nofit") },
      el("td", {}, m.method + (m.method === res.recommended ? " ★" : "")), el("td", {}, m.trainable_params.toLocaleString()),
      el("td", {}, mib(m.memory.total)), el("td", {}, mib(m.memory_checkpoint.total)), el("td", {}, fits),
      el("td", {}, m.step_seconds ? m.step_seconds.toFixed(3) + " s" : ""));
    return tr;
  });
  $("plan-out").replaceChildren(
    el("p", { id: "plan-recommended" }, res.recommended ? `Recommended: ${res.recommended}` + (res.suggested_lora_rank ? ` (rank ${res.suggested_lora_rank})` : "") : "Nothing fits in this machine's memory"),
    el("ul", {}, ...(res.reasons || []).map(r => el("li", {}, r))),
    el("table", { id: "plan-table" }, el("tr", {}, ...["method", "trainable", "peak memory", "with checkpointing", "", "step time"].map(h => el("th", {}, h))), ...rows),
    el("p", { class: "muted" }, `${res.samples >= 0 ? res.samples + " samples" : "dataset size unknown"}, ${mib(res.budget_bytes)} usable of ${mib(res.ram_bytes)}`));
}

async function previewYAML() {
  const res = await (await api("POST", "/api/config", { settings: trainSettings() })).json();
  $("yaml-preview").hidden = false;
  $("yaml-preview").textContent = res.yaml;
}

async function startRun() {
  const st = await (await api("POST", "/api/run/start", { settings: trainSettings() })).json();
  $("train-msg").textContent = `started ${st.name}`;
  selectedRuns = new Set([st.dir]);
  openRun = st.dir;
  showTab("runs");
}

// ---- runs

let runsTimer = null;

async function refreshRuns() {
  clearTimeout(runsTimer);
  try {
    const runs = await getJSON("/api/runs");
    renderRuns(runs);
    await drawCharts();
    if (openRun) await showRunDetail(openRun, false);
  } catch (e) {
    showError(e.message);
  }
  // Poll while the tab is open; the log is the source of truth, so every
  // page watching a run sees the same numbers.
  if (!$("tab-runs").hidden) runsTimer = setTimeout(refreshRuns, 1000);
}

function fmtETA(s) {
  if (s == null) return "";
  if (s < 60) return Math.round(s) + " s";
  if (s < 3600) return Math.round(s / 60) + " min";
  return (s / 3600).toFixed(1) + " h";
}

function renderRuns(runs) {
  runCharts = new Map(runs.map(r => [r.dir, r.charts || []]));
  const body = $("runs-table").tBodies[0];
  body.replaceChildren(...runs.map(r => {
    const cb = el("input", { type: "checkbox" });
    cb.checked = selectedRuns.has(r.dir);
    cb.addEventListener("change", () => { cb.checked ? selectedRuns.add(r.dir) : selectedRuns.delete(r.dir); drawCharts(); });
    const bar = el("div", { class: "progress" }, el("div", { class: "fill" }));
    bar.firstChild.style.width = Math.round(100 * r.progress) + "%";
    const actions = el("td", {});
    if (r.state === "running") actions.append(el("button", { class: "stop", onclick: guarded(() => stopRun(r.dir)) }, "Stop"));
    if ((r.state === "stopped" || r.state === "failed") && r.resumable && r.has_config) actions.append(el("button", { class: "resume", onclick: guarded(() => resumeRun(r.dir)) }, "Resume"));
    actions.append(el("button", { class: "secondary details", onclick: guarded(() => showRunDetail(r.dir, true)) }, "Details"));
    const tr = el("tr", { "data-dir": r.dir, "data-state": r.state },
      el("td", {}, cb), el("td", { class: "name" }, r.name), el("td", { class: "state " + r.state }, r.state + (r.error ? ": " + r.error : "")),
      el("td", {}, bar), el("td", { class: "step" }, r.total_steps ? `${r.step}/${r.total_steps}` : String(r.step)),
      el("td", { class: "loss" }, r.loss != null ? r.loss.toFixed(4) : ""), el("td", {}, fmtETA(r.eta_s)), actions);
    return tr;
  }));
  // Nothing ticked yet: show the most recent run so the charts are not empty.
  if (selectedRuns.size === 0 && runs.length) selectedRuns.add(runs[runs.length - 1].dir);
  for (const d of [...selectedRuns]) if (!runs.some(r => r.dir === d)) selectedRuns.delete(d);
}

const metrics = ["loss", "eval_loss", "lr", "grad_norm", "tokens_per_s", "mem_rss_mb"];
// Stage-specific charts, drawn when a selected run's log holds them (the
// server lists each run's in its status as "charts").
const optionalMetrics = ["reward", "eval_reward", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"];
let runCharts = new Map(); // run folder → chart keys its log holds

async function drawCharts() {
  const box = $("charts");
  if (selectedRuns.size === 0) { box.replaceChildren(); return; }
  const q = [...selectedRuns].map(d => "dir=" + encodeURIComponent(d)).join("&");
  const present = new Set([...selectedRuns].flatMap(d => runCharts.get(d) || []));
  const shown = metrics.concat(optionalMetrics.filter(m => present.has(m)));
  for (const div of [...box.children]) if (!shown.includes(div.dataset.metric)) div.remove();
  for (const m of shown) {
    let div = $("chart-" + m);
    if (!div) { div = el("div", { id: "chart-" + m, class: "chart", "data-metric": m }); box.append(div); }
    const svg = await (await api("GET", `/api/chart.svg?metric=${encodeURIComponent(m)}&${q}`)).text();
    // The SVG is our own server's output, built from numbers and escaped names.
    if (div.innerHTML !== svg) div.innerHTML = svg;
  }
}

async function stopRun(dir) { await api("POST", "/api/run/stop", { dir }); await refreshRuns(); }
async function resumeRun(dir) { await api("POST", "/api/run/resume", { dir }); await refreshRuns(); }

async function showRunDetail(dir, fresh) {
  openRun = dir;
  const st = await getJSON("/api/run?dir=" + encodeURIComponent(dir));
  $("run-detail").hidden = false;
  $("run-detail-name").textContent = st.name;
  const out = $("run-output");
  const atEnd = out.scrollTop + out.clientHeight >= out.scrollHeight - 4;
  out.textContent = st.output || "";
  // Follow the newest lines unless the reader scrolled up to read.
  if (atEnd || fresh) out.scrollTop = out.scrollHeight;
  const link = $("run-yaml-download");
  link.href = "/api/run/yaml?download=1&dir=" + encodeURIComponent(dir);
  link.hidden = !st.has_config;
  if (fresh || !$("run-yaml").textContent) {
    $("run-yaml").textContent = st.has_config ? await (await api("GET", "/api/run/yaml?dir=" + encodeURIComponent(dir))).text() : "(started outside the UI: no train.yaml)";
  }
}

// ---- chat

let conversation = [];

async function sendChat() {
  const text = $("chat-input").value.trim();
  if (!text) return;
  $("chat-input").value = "";
  conversation.push({ role: "user", content: text });
  const log = $("chat-log");
  log.append(el("div", { class: "msg user" }, text));
  const reply = el("div", { class: "msg assistant" });
  log.append(reply);
  const stats = el("div", { class: "muted stats" });
  log.append(stats);
  $("chat-send").disabled = true;
  // Stop aborts the request; the server sees the connection close and
  // ends the generation.
  const abort = new AbortController();
  $("chat-stop").hidden = false;
  $("chat-stop").onclick = () => abort.abort();
  const system = $("chat-system").value.trim();
  const messages = system ? [{ role: "system", content: system }, ...conversation] : conversation;
  let full = "";
  try {
    const resp = await api("POST", "/api/chat", {
      model: $("chat-model").value, adapter: $("chat-adapter").value, messages,
      max_new_tokens: Number($("chat-max").value), temperature: Number($("chat-temp").value),
    }, abort.signal);
    await stream(resp, (m) => {
      if (m.text) { full += m.text; reply.textContent = full; }
      if (m.error) throw new Error(m.error);
      if (m.done) stats.textContent = `${m.tokens} tokens, ${m.tokens_per_s.toFixed(1)} tokens/s, ${m.finish_reason}`;
    });
  } catch (e) {
    if (e.name !== "AbortError") {
      conversation.pop(); // the message got no answer: leave it out of the history
      throw e;
    }
    stats.textContent = "stopped";
  } finally {
    $("chat-send").disabled = false;
    $("chat-stop").hidden = true;
  }
  reply.dataset.done = "1";
  conversation.push({ role: "assistant", content: full });
}

// ---- compare

async function evaluate() {
  const sel = $("cmp-datasets");
  const datasets = [...sel.selectedOptions].map(o => ({ dataset: o.value, dataset_dir: o.dataset.dir }));
  if (!datasets.length) throw new Error("pick one or more datasets");
  const out = $("eval-out");
  out.replaceChildren(el("p", { class: "muted" }, "scoring…"));
  const rows = await (await api("POST", "/api/eval", {
    settings: { model_name_or_path: $("cmp-model").value, cutoff_len: Number($("cmp-cutoff").value) },
    datasets, adapter: $("cmp-adapter").value,
  })).json();
  const t = el("table", { id: "eval-table" }, el("tr", {}, ...["dataset", "samples", "tokens", "loss (base)", "ppl (base)", "loss (fine-tune)", "ppl (fine-tune)", "Δ loss"].map(h => el("th", {}, h))));
  for (const r of rows) {
    r.base.forEach((b, i) => {
      if (r.base.length > 1 && b.dataset === "all") return; // one dataset per request: "all" repeats it
      const a = r.adapter ? r.adapter[i] : null;
      const d = a ? a.loss - b.loss : null;
      t.append(el("tr", {}, el("td", {}, b.dataset), el("td", {}, b.samples), el("td", {}, b.tokens),
        el("td", {}, b.loss.toFixed(4)), el("td", {}, b.perplexity.toFixed(3)),
        el("td", {}, a ? a.loss.toFixed(4) : ""), el("td", {}, a ? a.perplexity.toFixed(3) : ""),
        el("td", { class: d == null ? "" : d > 0 ? "worse" : "better" }, d == null ? "" : (d > 0 ? "+" : "") + d.toFixed(4))));
    });
  }
  out.replaceChildren(t);
}

async function askBoth() {
  const text = $("cmp-input").value.trim();
  if (!text) return;
  const messages = [{ role: "user", content: text }];
  const one = async (adapter, box) => {
    box.textContent = "";
    delete box.dataset.done;
    const resp = await api("POST", "/api/chat", { model: $("cmp-model").value, adapter, messages, max_new_tokens: 128, temperature: 0 });
    await stream(resp, (m) => {
      if (m.text) box.textContent += m.text;
      if (m.error) throw new Error(m.error);
    });
    box.dataset.done = "1";
  };
  $("cmp-send").disabled = true;
  try {
    await one("", $("cmp-base"));
    await one($("cmp-adapter").value, $("cmp-ft"));
  } finally {
    $("cmp-send").disabled = false;
  }
}

// ---- export

async function doExport() {
  const out = $("export-out").value.trim();
  const body = {
    model: $("export-model").value, adapter: $("export-adapter").value,
    out: out.startsWith("/") ? out : session.roots[0] + "/" + out,
    format: $("export-format").value, gguf_type: $("export-gguf-type").value,
    modelfile: $("export-modelfile").checked && $("export-format").value === "gguf", force: $("export-force").checked,
  };
  const prog = $("export-progress");
  prog.hidden = false;
  prog.value = 0;
  const res = $("export-result");
  res.replaceChildren(el("p", { class: "muted" }, "exporting…"));
  const resp = await api("POST", "/api/export", body);
  await stream(resp, (m) => {
    if (m.total) prog.value = m.written / m.total;
    if (m.error) throw new Error(m.error);
    if (m.result) {
      prog.value = 1;
      res.replaceChildren(el("p", { id: "export-done" }, `wrote ${m.result.out}` + (m.result.merged ? ` (${m.result.merged} merged)` : "")),
        el("ul", {}, ...m.result.files.map(f => el("li", {}, f))));
    }
  });
}

// ---- start

document.addEventListener("DOMContentLoaded", guarded(async () => {
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => showTab(b.dataset.tab));
  $("inspect-btn").addEventListener("click", guarded(inspect));
  $("browse-btn").addEventListener("click", guarded(() => browse("")));
  $("curate-load").addEventListener("click", guarded(curateLoad));
  $("curate-add").addEventListener("click", curateAdd);
  $("curate-save").addEventListener("click", guarded(curateSave));
  $("yaml-btn").addEventListener("click", guarded(previewYAML));
  $("start-btn").addEventListener("click", guarded(startRun));
  $("chat-send").addEventListener("click", guarded(sendChat));
  $("chat-input").addEventListener("keydown", (e) => { if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); guarded(sendChat)(); } });
  $("chat-reset").addEventListener("click", () => { conversation = []; $("chat-log").replaceChildren(); });
  $("export-btn").addEventListener("click", guarded(doExport));
  $("eval-btn").addEventListener("click", guarded(evaluate));
  $("cmp-send").addEventListener("click", guarded(askBoth));
  session = await getJSON("/api/session");
  $("roots").textContent = "folders: " + session.roots.join(", ");
  await Promise.all([loadModels(), loadDatasets()]);
  for (const id of ["train-model", "train-dataset", "train-method", "train-batch", "train-cutoff", "train-rank"]) { $(id).addEventListener("change", schedulePlan); $(id).addEventListener("input", schedulePlan); }
  schedulePlan();
  document.body.dataset.ready = "1";
}));
