#include "agent/app/status_page.hpp"

namespace berth::agent {

std::string_view status_page_html() {
  static constexpr std::string_view kPage = R"HTML(<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>berth</title>
<style>
  :root { --fg: #1d2733; --muted: #66707a; --line: #d8dde3; --free: #2e7d32; --held: #1565c0;
          --warn: #b26a00; --bad: #c62828; --bg: #f7f8fa; }
  * { box-sizing: border-box; }
  body { margin: 0; font: 14px/1.4 system-ui, sans-serif; color: var(--fg); background: var(--bg); }
  header { display: flex; align-items: baseline; gap: 1em; padding: .8em 1.2em; background: #fff;
           border-bottom: 1px solid var(--line); }
  header h1 { margin: 0; font-size: 18px; }
  #live { font-size: 12px; padding: .1em .6em; border-radius: 1em; background: #e8f5e9; color: var(--free); }
  body.stale #live { background: #fff3e0; color: var(--warn); }
  #stale { display: none; padding: .5em 1.2em; background: #fff3e0; color: var(--warn); }
  body.stale #stale { display: block; }
  main { padding: 1em 1.2em; display: grid; gap: 1em; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); }
  section { background: #fff; border: 1px solid var(--line); border-radius: 6px; padding: .8em 1em; }
  section.wide { grid-column: 1 / -1; }
  h2 { margin: 0 0 .5em; font-size: 15px; }
  table { width: 100%; border-collapse: collapse; }
  th, td { text-align: left; padding: .25em .5em; border-bottom: 1px solid var(--line); vertical-align: top; }
  th { color: var(--muted); font-weight: 600; font-size: 12px; }
  .free { color: var(--free); } .held { color: var(--held); }
  .s-degraded, .s-failed { color: var(--bad); font-weight: 600; } .s-attached { color: var(--held); }
  .mono { font-family: ui-monospace, monospace; font-size: 12px; }
  .muted { color: var(--muted); }
  #events { max-height: 16em; overflow-y: auto; margin: 0; padding: 0; list-style: none; }
  #events li { padding: .15em 0; border-bottom: 1px dotted var(--line); }
</style>
</head>
<body>
<header><h1>berth <span id="host" class="muted"></span></h1><span id="live">live</span>
  <span id="summary" class="muted"></span></header>
<div id="stale">The event stream dropped: what you see may be stale. Reconnecting&hellip;</div>
<main>
  <section><h2>NUMA nodes</h2><table id="numa"><thead><tr><th>node</th><th>CPUs</th><th>free CPUs</th><th>memory node</th></tr></thead><tbody></tbody></table></section>
  <section><h2>GPUs</h2><p id="nvml" class="muted"></p><table id="gpus"><thead><tr><th>GPU</th><th>PCI</th><th>NUMA</th><th>holder</th><th>use</th></tr></thead><tbody></tbody></table></section>
  <section><h2>Virtual functions</h2><table id="vfs"><thead><tr><th>VF</th><th>netdev</th><th>NUMA</th><th>holder</th></tr></thead><tbody></tbody></table></section>
  <section class="wide"><h2>Berths</h2><table id="berths"><thead><tr><th>owner</th><th>state</th><th>GPUs</th><th>VFs</th><th>CPUs</th><th>held for</th><th>CPU time</th><th>memory</th><th>driver</th></tr></thead><tbody></tbody></table></section>
  <section class="wide"><h2>Recent events</h2><ul id="events"></ul></section>
</main>
<script>
"use strict";
const state = { inventory: null, berths: [], usage: {} };
const $ = (id) => document.getElementById(id);
const esc = (v) => String(v ?? "").replace(/[&<>"']/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;"}[c]));
const cell = (v, cls) => `<td${cls ? ` class="${cls}"` : ""}>${v}</td>`;
const bytes = (n) => n == null ? "" : n > 1 << 30 ? (n / (1 << 30)).toFixed(1) + " GiB" : (n / (1 << 20)).toFixed(1) + " MiB";
const ago = (t) => { if (!t) return ""; const s = Math.max(0, Date.now() / 1000 - t);
  return s < 90 ? Math.round(s) + " s" : s < 5400 ? Math.round(s / 60) + " min" : (s / 3600).toFixed(1) + " h"; };
const holders = (h) => (Array.isArray(h) ? h : h ? [h] : []);
function fill(id, rows) { $(id).querySelector("tbody").innerHTML = rows.join(""); }
function render() {
  const inv = state.inventory;
  if (!inv) return;
  fill("numa", inv.numa_nodes.map((n) => "<tr>" + cell(n.id) + cell(esc(n.cpus), "mono") + cell(esc(n.free_cpus) || "none", "mono") + cell(n.memory_node) + "</tr>"));
  const gpu = state.usage.gpus || {};
  fill("gpus", inv.gpus.map((g) => { const h = holders(g.held_by); const u = gpu[g.pci];
    return `<tr data-pci="${esc(g.pci)}">` + cell("nvidia" + g.index) + cell(esc(g.pci), "mono") + cell(g.numa) +
      cell(h.length ? h.map(esc).join("<br>") : "free", h.length ? "held" : "free") +
      cell(u ? `${u.utilization_percent}% · ${bytes(u.memory_used)} / ${bytes(u.memory_total)}` : "") + "</tr>"; }));
  fill("vfs", inv.vfs.map((v) => { const h = holders(v.held_by);
    return "<tr>" + cell(esc(v.pci), "mono") + cell(esc(v.netdev), "mono") + cell(v.numa) +
      cell(h.length ? h.map(esc).join("<br>") : "free", h.length ? "held" : "free") + "</tr>"; }));
  const live = state.berths.filter((b) => b.state !== "released");
  const use = state.usage.berths || {};
  fill("berths", live.map((b) => { const u = use[b.owner] || {};
    return `<tr data-owner="${esc(b.owner)}">` + cell(esc(b.owner), "mono") + cell(esc(b.state) + (b.reason ? `<br><span class="muted">${esc(b.reason)}</span>` : ""), "s-" + esc(b.state)) +
      cell(b.gpus.map((g) => "nvidia" + g.index).join(" ")) + cell(b.vfs.map((v) => esc(v.ifname) + " " + esc((v.addresses || []).join(" "))).join("<br>")) +
      cell(esc(b.cpus), "mono") + cell(ago(u.since)) + cell(u.cpu_seconds == null ? "" : u.cpu_seconds.toFixed(1) + " s") +
      cell(bytes(u.memory_bytes)) + cell(esc(b.target && b.target.driver ? b.target.driver : ""),
        b.target && b.target.driver && !b.target.driver.startsWith("match") ? "s-degraded" : "") + "</tr>"; }));
  const gpusHeld = inv.gpus.filter((g) => holders(g.held_by).length).length;
  $("summary").textContent = `${live.length} berths · ${gpusHeld}/${inv.gpus.length} GPUs held · ${inv.vfs.filter((v) => v.held_by).length}/${inv.vfs.length} VFs held`;
  $("nvml").textContent = state.usage.nvml && !state.usage.nvml.available ? state.usage.nvml.message : "";
}
async function get(path) { const r = await fetch(path, {cache: "no-store"}); if (!r.ok) throw new Error(path + ": " + r.status); return r.json(); }
async function refresh() {
  try {
    const [inv, berths, usage] = await Promise.all([get("/v1/inventory"), get("/v1/berths"), get("/v1/usage")]);
    state.inventory = inv; state.berths = berths.berths; state.usage = usage;
    $("host").textContent = usage.node || "";
    render();
  } catch (e) { document.body.classList.add("stale"); }
}
let pending = null;
function soon() { if (!pending) pending = setTimeout(() => { pending = null; refresh(); }, 100); }
let lastSeq = 0;
function line(ev) {
  if (ev.seq && ev.seq <= lastSeq) return;  // replayed after a reconnect
  lastSeq = ev.seq || lastSeq;
  let text = ev.type;
  if (ev.owner) text += " " + ev.owner;
  if (ev.state) text += " " + ev.state;
  if (ev.name) text += " " + ev.name;
  if (ev.change) text += " " + ev.change;
  if (ev.message) text += ": " + ev.message;
  const li = document.createElement("li");
  li.innerHTML = `<span class="muted">${new Date((ev.time || 0) * 1000).toLocaleTimeString()}</span> ${esc(text)}`;
  const list = $("events"); list.prepend(li);
  while (list.children.length > 100) list.lastChild.remove();
}
function connect() {
  const es = new EventSource("/v1/events?since=0");
  es.onopen = () => { document.body.classList.remove("stale"); $("live").textContent = "live"; refresh(); };
  es.onmessage = (m) => { try { line(JSON.parse(m.data)); } catch (e) {} soon(); };
  for (const t of ["berth", "inventory", "link", "udev", "warning", "reload"])
    es.addEventListener(t, (m) => { try { line(JSON.parse(m.data)); } catch (e) {} soon(); });
  es.onerror = () => { document.body.classList.add("stale"); $("live").textContent = "stale"; };
}
connect();
refresh();
setInterval(refresh, 5000);
</script>
</body>
</html>
)HTML";
  return kPage;
}

}  // namespace berth::agent
