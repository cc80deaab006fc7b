"""The `/stats` page a browser gets: the same numbers as the JSON, refreshed every second.

One self-contained page (no build step, no external assets), so it works wherever the balancer
runs. It starts from the snapshot embedded in the page and then polls `stats?format=json`;
without JavaScript it reloads itself instead.
"""

from __future__ import annotations

import json
from typing import Any

REFRESH_MS = 1000

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Chatterbox balancer</title>
<noscript><meta http-equiv="refresh" content="2"></noscript>
<style>
  :root { color-scheme: light dark; --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e;
          --muted: #6e7781; --line: rgba(127,127,127,.25); }
  body { font: 14px/1.45 system-ui, sans-serif; margin: 24px; }
  h1 { font-size: 20px; margin: 0 0 4px; }
  .sub { color: var(--muted); margin-bottom: 16px; }
  .cards { display: flex; gap: 12px; flex-wrap: wrap; margin-bottom: 20px; }
  .card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; min-width: 110px; }
  .card b { display: block; font-size: 22px; font-variant-numeric: tabular-nums; }
  .card span { color: var(--muted); font-size: 12px; }
  table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
  th, td { text-align: right; padding: 6px 10px; border-bottom: 1px solid var(--line);
           white-space: nowrap; }
  th { font-size: 12px; color: var(--muted); font-weight: 600; }
  th:first-child, td:first-child, td.l { text-align: left; }
  .badge { padding: 1px 8px; border-radius: 10px; color: #fff; font-size: 12px; }
  .ready, .closed { background: var(--ok); }
  .loading, .draining, .retiring, .half_open { background: var(--warn); }
  .failed, .unreachable, .open, .unknown { background: var(--bad); }
  .bar { display: inline-block; width: 80px; height: 8px; background: var(--line);
         border-radius: 4px; vertical-align: middle; margin-right: 6px; overflow: hidden; }
  .bar i { display: block; height: 100%; background: var(--ok); }
  .scroll { overflow-x: auto; }
  td.err { color: var(--bad); font-size: 12px; max-width: 220px; overflow: hidden;
           text-overflow: ellipsis; }
  #status { color: var(--muted); font-size: 12px; margin-top: 12px; }
</style>
</head>
<body>
<h1>Chatterbox streaming balancer</h1>
<div class="sub" id="sub"></div>
<div class="cards" id="cards"></div>
<div class="scroll"><table>
  <thead><tr>
    <th>worker</th><th>health</th><th>breaker</th><th>in flight / capacity</th>
    <th>requests</th><th>completed</th><th>errors</th><th>503s</th><th>failovers</th>
    <th>lost</th><th>disconnects</th><th>sockets open / opened</th><th>TTFC p50</th>
    <th>TTFC p95</th><th>checked</th>
    <th>last error</th>
  </tr></thead>
  <tbody id="rows"></tbody>
</table></div>
<div id="status"></div>
<script id="initial" type="application/json">__SNAPSHOT__</script>
<script>
"use strict";
const REFRESH_MS = __REFRESH_MS__;
const ms = (s) => (s === null || s === undefined) ? "–" : (s * 1000).toFixed(0) + " ms";
function cell(tr, text, cls) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  td.textContent = text;
  tr.appendChild(td);
  return td;
}
function badge(td, text) {
  td.textContent = "";
  const span = document.createElement("span");
  span.className = "badge " + text;
  span.textContent = text.replace("_", " ");
  td.appendChild(span);
}
function render(s) {
  const b = s.balancer, t = s.totals;
  document.getElementById("sub").textContent =
    `policy ${b.policy} · up ${Math.round(b.uptime_s)} s · ` +
    `${b.workers_in_rotation} of ${b.workers} workers in rotation` +
    (b.workers_retiring ? ` · ${b.workers_retiring} retiring` : "");
  const cards = [["in flight", b.in_flight], ["capacity", b.capacity],
    ["requests", t.requests], ["completed", t.completed], ["failovers", t.failovers],
    ["lost mid-stream", t.lost], ["client disconnects", t.client_disconnects],
    ["all busy (worker 503)", t.rejected], ["no worker (503)", t.no_worker],
    ["open sockets", t.sockets.open], ["sockets opened", t.sockets.opened],
    ["socket failovers", t.sockets.failovers], ["sockets lost", t.sockets.lost],
    ["open contexts", t.sockets.contexts_open]];
  const box = document.getElementById("cards");
  box.textContent = "";
  for (const [label, value] of cards) {
    const div = document.createElement("div");
    div.className = "card";
    const strong = document.createElement("b");
    strong.textContent = value;
    const span = document.createElement("span");
    span.textContent = label;
    div.append(strong, span);
    box.appendChild(div);
  }
  const rows = document.getElementById("rows");
  rows.textContent = "";
  for (const w of s.workers) {
    const tr = document.createElement("tr");
    cell(tr, w.url);
    const health = cell(tr, "");
    badge(health, w.health);
    if (w.retiring) {  // no longer discovered: finishing its streams, then it leaves
      const span = document.createElement("span");
      span.className = "badge retiring";
      span.textContent = "retiring";
      health.append(" ", span);
    }
    badge(cell(tr, ""), w.breaker);
    const load = cell(tr, "");
    const bar = document.createElement("span");
    bar.className = "bar";
    const fill = document.createElement("i");
    fill.style.width = Math.min(100, 100 * w.load) + "%";
    bar.appendChild(fill);
    load.append(bar, `${w.in_flight} / ${w.capacity}`);
    for (const k of ["requests", "completed", "errors", "rejected", "failovers",
                     "lost_mid_stream", "client_disconnects"]) cell(tr, w[k]);
    cell(tr, `${w.sockets.open} / ${w.sockets.opened}`);
    cell(tr, ms(w.ttfc_p50_s));
    cell(tr, ms(w.ttfc_p95_s));
    cell(tr, w.last_health_check_age_s === null ? "never" : w.last_health_check_age_s + " s ago");
    cell(tr, w.last_error || "", "l err").title = w.last_error || "";
    rows.appendChild(tr);
  }
}
async function poll() {
  const status = document.getElementById("status");
  try {
    const r = await fetch("stats?format=json", {headers: {Accept: "application/json"},
                                                 cache: "no-store"});
    render(await r.json());
    status.textContent = "live · updated " + new Date().toLocaleTimeString();
  } catch (e) {
    status.textContent = "balancer unreachable: " + e;
  }
}
render(JSON.parse(document.getElementById("initial").textContent));
setInterval(poll, REFRESH_MS);
</script>
</body>
</html>
"""


def dashboard_html(snapshot: dict[str, Any]) -> str:
    # "<" escaped so no value can close the <script> element the snapshot sits in.
    embedded = json.dumps(snapshot).replace("<", "\\u003c")
    return _PAGE.replace("__REFRESH_MS__", str(REFRESH_MS)).replace("__SNAPSHOT__", embedded)
