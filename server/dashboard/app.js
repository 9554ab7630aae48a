// Linecrew dashboard: plain JavaScript, no external assets (works with no internet).
// Every value from the server is put in the page as text (DOM nodes), never as HTML.
"use strict";

const POLL_MS = Number(new URLSearchParams(location.search).get("poll")) || 2000;
const TOKEN_KEY = "linecrew.token";
const state = { token: null, me: null, view: null, timer: null, selectedRollout: null, history: [] };

// ------------------------------------------------------------------ helpers
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  for (const c of children.flat()) {
    if (c === null || c === undefined) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function ago(t) {
  if (!t) return "never";
  const d = Date.now() / 1000 - t;
  if (d < 60) return `${Math.max(0, Math.round(d))} s ago`;
  if (d < 3600) return `${Math.round(d / 60)} min ago`;
  if (d < 86400) return `${Math.round(d / 3600)} h ago`;
  return new Date(t * 1000).toISOString().slice(0, 16).replace("T", " ");
}
const hhmm = (m) => `${String(Math.floor(m / 60)).padStart(2, "0")}:${String(Math.round(m % 60)).padStart(2, "0")}`;
const fmt = (v, digits = 2) => (v === null || v === undefined ? "–" : Number(v).toFixed(digits));
const pct = (v) => (v === null || v === undefined ? "–" : `${(100 * v).toFixed(1)} %`);
const badge = (text) => h("span", { class: `badge ${text}` }, text);
const card = (k, v, id) => h("div", { class: "card", "data-testid": id }, h("div", { class: "k" }, k), h("div", { class: "v" }, v));

class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

async function api(path, options = {}) {
  const res = await fetch(path, {
    ...options,
    headers: { "Authorization": `Bearer ${state.token}`, "Content-Type": "application/json", ...(options.headers || {}) },
  });
  if (res.status === 401) { signOut("Your token was refused; sign in again."); throw new ApiError(401, "unauthorized"); }
  const body = res.headers.get("content-type")?.includes("json") ? await res.json() : await res.text();
  if (!res.ok) throw new ApiError(res.status, (body && body.detail) ? JSON.stringify(body.detail) : String(body));
  return body;
}
const post = (path, body) => api(path, { method: "POST", body: JSON.stringify(body || {}) });

function showError(e) {
  const el = document.getElementById("error");
  el.textContent = e ? `${e.message || e}` : "";
  el.hidden = !e;
}

function setLive(ok) {
  const el = document.getElementById("live");
  el.textContent = ok ? `live · updated ${new Date().toLocaleTimeString()}` : "server unreachable · retrying";
  el.classList.toggle("stale", !ok);
  el.dataset.updated = ok ? String(Date.now()) : "";
}

// ------------------------------------------------------------------ charts (SVG)
const COLORS = { healthy: "#2e9d5b", failed: "#d64545", timed_out: "#9b2c2c", pending: "#e0a526",
  rolling_back: "#7c5cc4", rolled_back: "#7c5cc4", cancelled: "#8896a8", waiting: "#f3cf73", todo: "#b9c1cc" };
const PENDING = ["scheduled", "offered", "installing"];

function legend(keys) {
  return h("div", { class: "legend" }, keys.map((k) => h("span", {},
    s("svg", { width: 10, height: 10, class: "swatch" }, s("rect", { width: 10, height: 10, fill: COLORS[k] })),
    " " + k.replace("_", " "))));
}

function waveChart(rollout) {
  const W = 640, rowH = 30, left = 90, right = 150, width = W - left - right;
  const waves = rollout.waves || [];
  const svg = s("svg", { width: W, height: rowH * waves.length + 10, "data-testid": "wave-chart", role: "img" });
  waves.forEach((w, i) => {
    const c = w.counts || {};
    const parts = [
      ["healthy", c.healthy || 0], ["failed", c.failed || 0], ["timed_out", c.timed_out || 0],
      ["pending", PENDING.reduce((a, k) => a + (c[k] || 0), 0)], ["waiting", c.waiting || 0],
      ["rolling_back", c.rolling_back || 0], ["rolled_back", c.rolled_back || 0], ["cancelled", c.cancelled || 0],
    ];
    const size = Math.max(w.size || 0, parts.reduce((a, [, n]) => a + n, 0), 1);
    const y = i * rowH + 4;
    svg.append(s("text", { x: 0, y: y + 16 }, `wave ${w.idx + 1}`));
    svg.append(s("rect", { x: left, y, width, height: rowH - 10, fill: COLORS.todo, rx: 3 }));
    let x = left;
    for (const [k, n] of parts) {
      if (!n) continue;
      const wpx = (width * n) / size;
      svg.append(s("rect", { x, y, width: wpx, height: rowH - 10, fill: COLORS[k], "data-state": k, "data-n": n },
        s("title", {}, `${k}: ${n}`)));
      x += wpx;
    }
    const healthy = c.healthy || 0;
    svg.append(s("text", { x: left + width + 8, y: y + 14, "data-testid": `wave-${w.idx + 1}-label` },
      `${healthy}/${w.size} healthy · ${w.state}`));
  });
  return svg;
}

function barChart(rows, { key, bars, unit = "", width = 640, id }) {
  // rows: [{label, values:{bar: number}}]; grouped horizontal bars
  const rowH = 16 * bars.length + 12, left = 170, right = 70, plotW = width - left - right;
  const max = Math.max(1e-9, ...rows.flatMap((r) => bars.map((b) => r.values[b] || 0)));
  const svg = s("svg", { width, height: rows.length * rowH + 8, "data-testid": id, role: "img" });
  const palette = ["#4f8fe6", "#e0a526", "#d64545", "#2e9d5b"];
  rows.forEach((r, i) => {
    const y0 = i * rowH + 4;
    svg.append(s("text", { x: 0, y: y0 + 12 }, r.label.length > 26 ? r.label.slice(0, 25) + "…" : r.label));
    bars.forEach((b, j) => {
      const v = r.values[b];
      if (v === null || v === undefined) return;
      const y = y0 + j * 16;
      svg.append(s("rect", { x: left, y, width: Math.max(1, (plotW * v) / max), height: 12, fill: palette[j % 4] },
        s("title", {}, `${b}: ${v}${unit}`)));
      svg.append(s("text", { x: left + (plotW * v) / max + 4, y: y + 10 }, `${b} ${Number.isInteger(v) ? v : fmt(v, v < 10 ? 2 : 0)}${unit}`));
    });
  });
  return svg;
}

function lineChart(points, { width = 640, height = 120, id, label }) {
  const svg = s("svg", { width, height, "data-testid": id, role: "img" });
  if (points.length < 2) { svg.append(s("text", { x: 0, y: 20 }, "collecting…")); return svg; }
  const t0 = points[0][0], t1 = points[points.length - 1][0];
  const max = Math.max(1, ...points.map((p) => p[1]));
  const X = (t) => 40 + ((width - 50) * (t - t0)) / Math.max(1, t1 - t0);
  const Y = (v) => height - 20 - ((height - 30) * v) / max;
  svg.append(s("line", { x1: 40, y1: height - 20, x2: width - 10, y2: height - 20, class: "axis" }));
  svg.append(s("text", { x: 0, y: 14 }, String(max)));
  svg.append(s("text", { x: 0, y: height - 22 }, "0"));
  svg.append(s("text", { x: 40, y: height - 4 }, label));
  svg.append(s("polyline", { fill: "none", stroke: "#4f8fe6", "stroke-width": 2,
    points: points.map(([t, v]) => `${X(t).toFixed(1)},${Y(v).toFixed(1)}`).join(" ") }));
  return svg;
}

// ------------------------------------------------------------------ views
const views = {};

views.fleet = {
  mount(root) {
    root.append(h("h1", {}, "Fleet"), h("div", { class: "cards", id: "fleet-cards" }),
      h("input", { class: "filter", id: "fleet-filter", placeholder: "filter by device, class, tag or version",
        oninput: () => views.fleet.refresh() }),
      h("table", { "data-testid": "fleet-table" },
        h("thead", {}, h("tr", {}, ["Device", "Class", "Online", "Model version", "Slots (A / B)", "Update",
          "Health", "Last seen", "Link", "Outbox (device)", "Outbox (server)", "Tags"].map((t) => h("th", {}, t)))),
        h("tbody", { id: "fleet-rows" })));
  },
  async refresh() {
    const devices = state.fleet = await api("/v1/devices");
    const q = (document.getElementById("fleet-filter")?.value || "").toLowerCase();
    const online = devices.filter((d) => d.online).length;
    const backlog = devices.reduce((a, d) => a + (d.telemetry.outbox_depth || 0), 0);
    document.getElementById("fleet-cards").replaceChildren(
      card("devices", devices.length, "card-devices"), card("online", online, "card-online"),
      card("offline", devices.length - online), card("unhealthy", devices.filter((d) => d.health && d.health !== "ok").length),
      card("device outbox total", backlog));
    const rows = devices.filter((d) => !q || [d.id, d.device_class, d.version, ...(d.tags || [])]
      .some((v) => String(v ?? "").toLowerCase().includes(q)));
    document.getElementById("fleet-rows").replaceChildren(...rows.map((d) => h("tr", { "data-device": d.id },
      h("td", {}, d.id), h("td", {}, d.device_class),
      h("td", {}, h("span", { class: d.online ? "dot on" : "dot" }), d.online ? "online" : "offline"),
      h("td", { "data-testid": "version" }, d.version ?? "–"),
      h("td", {}, `${d.slots?.a ?? "–"} / ${d.slots?.b ?? "–"}`),
      h("td", {}, d.update_state ? badge(d.update_state) : "–"),
      h("td", {}, d.health ? badge(d.health) : "–"),
      h("td", {}, ago(d.last_seen)),
      h("td", { class: "num" }, d.link_quality === null || d.link_quality === undefined ? "–" : fmt(d.link_quality)),
      h("td", { class: "num" }, d.telemetry.outbox_depth ?? "–"),
      h("td", { class: "num" }, d.server_outbox),
      h("td", {}, (d.tags || []).join(", ")))));
  },
};

views.rollouts = {
  mount(root) {
    const may = (a) => state.me.rollout_actions.includes(a);
    root.append(h("h1", {}, "Rollouts"));
    if (may("create")) {
      root.append(h("form", { class: "inline", id: "new-rollout", onsubmit: (e) => { e.preventDefault(); views.rollouts.create(); } },
        h("label", {}, "Release", h("select", { id: "ro-release", required: true })),
        h("label", {}, "Waves (% of target)", h("input", { id: "ro-waves", value: "1,10,50,100", size: 14 })),
        h("label", {}, "Soak per wave (s)", h("input", { id: "ro-soak", type: "number", value: "300", min: 0, class: "short" })),
        h("label", {}, "On failure", h("select", { id: "ro-failure" }, h("option", { value: "rollback" }, "roll back"),
          h("option", { value: "pause" }, "pause"))),
        h("label", {}, "Reason", h("input", { id: "ro-reason", placeholder: "why", size: 24 })),
        h("button", { type: "submit", id: "ro-create" }, "Create rollout")));
      api("/v1/releases").then((rels) => {
        document.getElementById("ro-release")?.replaceChildren(...rels.map((r) =>
          h("option", { value: `${r.name}@${r.version}` }, `${r.name} v${r.version} (${(r.device_classes || []).join(", ")})`)));
      }).catch(showError);
    }
    root.append(h("div", { class: "row" }, h("div", { class: "list", id: "rollout-list", "data-testid": "rollout-list" }),
      h("div", { class: "col", id: "rollout-detail" })));
  },
  async create() {
    const [release, version] = document.getElementById("ro-release").value.split("@");
    const percents = document.getElementById("ro-waves").value.split(",").map((x) => Number(x.trim())).filter((x) => x > 0);
    const soak = Number(document.getElementById("ro-soak").value || 0);
    const spec = { release, version: Number(version), waves: percents.map((p) => ({ percent: p, soak_s: soak })),
      on_failure: document.getElementById("ro-failure").value };
    try {
      const r = await post("/v1/rollouts", { spec, reason: document.getElementById("ro-reason").value });
      state.selectedRollout = r.id;
      showError(null);
      await views.rollouts.refresh();
    } catch (e) { showError(e); }
  },
  async act(id, action) {
    const reason = document.getElementById("ro-action-reason")?.value || "";
    try { await post(`/v1/rollouts/${encodeURIComponent(id)}/${action}`, { reason }); showError(null); } catch (e) { showError(e); }
    await views.rollouts.refresh();
  },
  async refresh() {
    const all = await api("/v1/rollouts");
    if (!state.selectedRollout && all.length) state.selectedRollout = all[0].id;
    document.getElementById("rollout-list").replaceChildren(...(all.length ? all.map((r) =>
      h("div", { class: `item${r.id === state.selectedRollout ? " selected" : ""}`, "data-rollout": r.id,
        onclick: () => { state.selectedRollout = r.id; views.rollouts.refresh(); } },
        h("div", {}, `${r.release} v${r.version} `, badge(r.state)),
        h("div", { class: "muted" }, `${r.id.slice(0, 13)}… · ${r.counts.healthy || 0}/${r.devices} healthy · by ${r.created_by}`)))
      : [h("div", { class: "item muted" }, "No rollouts yet.")]));
    const detail = document.getElementById("rollout-detail");
    if (!state.selectedRollout) { detail.replaceChildren(); return; }
    const r = await api(`/v1/rollouts/${encodeURIComponent(state.selectedRollout)}`);
    const keep = document.getElementById("ro-action-reason")?.value || "";
    const all_actions = ["approve", "start", "pause", "resume", "abort", "rollback"];
    detail.replaceChildren(
      h("h2", {}, `${r.release} v${r.version} `, h("span", { "data-testid": "rollout-state", class: `badge ${r.state}` }, r.state)),
      h("div", { class: "muted" }, `id ${r.id} · created ${ago(r.created)} by ${r.created_by} · on failure: ${r.spec.on_failure}`
        + (r.reason ? ` · ${r.reason}` : "")),
      h("div", { class: "cards" }, card("devices", r.devices), card("healthy", r.counts.healthy || 0, "ro-healthy"),
        card("failed", (r.counts.failed || 0) + (r.counts.timed_out || 0)),
        card("in progress", PENDING.reduce((a, k) => a + (r.counts[k] || 0), 0) + (r.counts.waiting || 0)),
        card("bytes sent", (r.bytes_sent / 1e6).toFixed(2) + " MB")),
      waveChart(r),
      legend(["healthy", "pending", "waiting", "failed", "timed_out", "rolled_back", "cancelled", "todo"]),
      h("div", { class: "actions" },
        h("input", { id: "ro-action-reason", placeholder: "reason (kept in the audit log)", value: keep }),
        all_actions.map((a) => h("button", { "data-action": a, class: ["abort", "rollback"].includes(a) ? "danger" : "",
          disabled: !r.actions.includes(a), title: r.actions.includes(a) ? "" : "not allowed for your role or in this state",
          onclick: () => views.rollouts.act(r.id, a) }, a))));
  },
};

views.planner = {
  mount(root) {
    root.append(h("h1", {}, "Planner"),
      h("div", { class: "actions" },
        h("button", { id: "replan", disabled: !state.me.can_replan, title: state.me.can_replan ? "" : "needs the planner role",
          onclick: () => views.planner.replan() }, "Re-plan now"),
        h("span", { id: "plan-meta", class: "muted" })),
      h("div", { id: "plan-notes" }), h("div", { id: "timeline" }), h("h2", {}, "Unassigned jobs"),
      h("div", { id: "unassigned" }), h("h2", {}, "Moved by the last re-plan"), h("div", { id: "moved" }));
  },
  async replan() {
    const b = document.getElementById("replan");
    b.disabled = true; b.textContent = "Planning…";
    try { await post("/v1/plans/replan", { reason: "dashboard re-plan" }); showError(null); } catch (e) { showError(e); }
    b.disabled = false; b.textContent = "Re-plan now";
    await views.planner.refresh();
  },
  async refresh() {
    const p = await api("/v1/plans/latest");
    document.getElementById("plan-meta").textContent = p.version === null ? "no plan yet"
      : `plan v${p.version} · made ${ago(p.created)} · travel ${fmt(p.travel, 1)}`;
    document.getElementById("plan-meta").dataset.version = p.version ?? "";
    const techs = p.technicians;
    const lo = Math.min(...techs.map((t) => t.shift[0]), 8 * 60), hi = Math.max(...techs.map((t) => t.shift[1]), 17 * 60);
    const W = 900, left = 110, plotW = W - left - 20, rowH = 34;
    const X = (m) => left + (plotW * (m - lo)) / (hi - lo);
    const svg = s("svg", { width: W, height: techs.length * rowH + 30, "data-testid": "timeline", role: "img" });
    for (let m = Math.ceil(lo / 60) * 60; m <= hi; m += 60) {
      svg.append(s("line", { x1: X(m), y1: 0, x2: X(m), y2: techs.length * rowH + 4, class: "axis" }));
      svg.append(s("text", { x: X(m) - 14, y: techs.length * rowH + 20 }, hhmm(m)));
    }
    const prio = ["", "#d64545", "#e07b39", "#4f8fe6", "#7aa6e8", "#a9c1e6"];
    techs.forEach((t, i) => {
      const y = i * rowH + 4;
      svg.append(s("text", { x: 0, y: y + 17 }, t.id + (t.available ? "" : " (off)")));
      svg.append(s("rect", { x: X(t.shift[0]), y, width: X(t.shift[1]) - X(t.shift[0]), height: rowH - 8,
        fill: "#e9edf2", rx: 3 }, s("title", {}, `shift ${hhmm(t.shift[0])}–${hhmm(t.shift[1])}`)));
      for (const [b0, b1] of t.breaks || []) {
        svg.append(s("rect", { x: X(b0), y: y + 2, width: Math.max(3, X(b1) - X(b0)), height: rowH - 12,
          class: "break", "data-break": t.id }, s("title", {}, `break ${hhmm(b0)}–${hhmm(b1)}`)));
      }
      for (const j of t.route) {
        const role = j.role && j.role !== "lead" ? ` as ${j.role}` : "";
        svg.append(s("rect", { x: X(j.start), y: y + 2, width: Math.max(3, X(j.end) - X(j.start)), height: rowH - 12,
          fill: prio[j.priority] || "#4f8fe6", rx: 3, "data-job": j.job_id, "data-role": j.role || "lead",
          opacity: role ? 0.7 : 1 },
          s("title", {}, `${j.job_id} ${j.title || ""} ${hhmm(j.start)}–${hhmm(j.end)} (${j.status})${role}` +
            (j.why ? `\nwhy: ${j.why}` : ""))));
        svg.append(s("text", { x: X(j.start) + 3, y: y + 17, fill: "#fff" }, j.job_id));
      }
    });
    document.getElementById("timeline").replaceChildren(svg);
    document.getElementById("plan-notes").replaceChildren(...(p.notes || []).map((n) => h("p", { class: "notice" }, n)));
    const un = [...p.unassigned, ...p.not_yet_planned.map((j) => ({ ...j, reason: "not planned yet: re-plan" }))];
    document.getElementById("unassigned").replaceChildren(un.length ? h("table", { "data-testid": "unassigned" },
      h("thead", {}, h("tr", {}, ["Job", "Title", "Priority", "Window", "Why", "To place it"].map((x) => h("th", {}, x)))),
      h("tbody", {}, un.map((j) => h("tr", { "data-job": j.job_id }, h("td", {}, j.job_id), h("td", {}, j.title || ""),
        h("td", {}, j.priority ?? "–"), h("td", {}, j.window ? `${hhmm(j.window[0])}–${hhmm(j.window[1])}` : "–"),
        h("td", {}, j.reason), h("td", { class: "fix" }, j.fix || "")))))
      : h("p", { class: "muted", "data-testid": "unassigned" }, "Every open job is assigned."));
    const moved = p.moved || [];
    document.getElementById("moved").replaceChildren(moved.length ? h("table", { "data-testid": "moved" },
      h("thead", {}, h("tr", {}, ["Job", "From", "To", "Why"].map((x) => h("th", {}, x)))),
      h("tbody", {}, moved.map((m) => h("tr", { "data-job": m.job_id }, h("td", {}, m.job_id),
        h("td", {}, m.from_technician), h("td", {}, m.to_technician || "left out"), h("td", {}, m.reason)))))
      : h("p", { class: "muted", "data-testid": "moved" }, "Nothing moved."));
  },
};

views.escalations = {
  mount(root) {
    root.append(h("h1", {}, "Escalations"));
    if (!state.me.can_read_escalations) {
      root.append(h("p", { class: "muted" }, "Escalations carry technicians' words: they need the expert or admin role."));
      return;
    }
    root.append(h("div", { id: "esc-open", "data-testid": "esc-open" }), h("h2", {}, "Answered"),
      h("table", {}, h("thead", {}, h("tr", {}, ["When", "Device", "Question", "Answer", "Expert"].map((x) => h("th", {}, x)))),
        h("tbody", { id: "esc-done" })));
  },
  async answer(id) {
    const text = document.getElementById(`answer-${id}`).value.trim();
    if (!text) return;
    try {
      await post(`/v1/escalations/${encodeURIComponent(id)}/answer`, { answer: text });
      showError(null);
    } catch (e) { showError(e); }
    await views.escalations.refresh();
  },
  async refresh() {
    if (!state.me.can_read_escalations) return;
    const all = await api("/v1/escalations?status=all");
    const open = all.filter((e) => e.status === "open");
    const box = document.getElementById("esc-open");
    // keep cards (and what an expert is typing) across refreshes: add new ones, drop answered ones
    const ids = new Set(open.map((e) => e.id));
    for (const el of [...box.querySelectorAll(".esc")]) if (!ids.has(el.dataset.escalation)) el.remove();
    for (const e of open) {
      if (box.querySelector(`[data-escalation="${CSS.escape(e.id)}"]`)) continue;
      box.append(h("div", { class: "esc", "data-escalation": e.id },
        h("div", { class: "muted" }, `${e.device_id} · ${e.intent} · ${e.reason} · ${e.job_id ? "job " + e.job_id + " · " : ""}${ago(e.created)}`),
        h("div", { class: "q" }, e.question),
        h("textarea", { id: `answer-${e.id}`, placeholder: state.me.can_answer ? "Your answer reaches the technician's device" : "needs the expert role",
          disabled: !state.me.can_answer }),
        h("div", { class: "actions" }, h("button", { disabled: !state.me.can_answer, "data-answer": e.id,
          onclick: () => views.escalations.answer(e.id) }, "Send answer"))));
    }
    const empty = box.querySelector(".empty");
    if (open.length && empty) empty.remove();
    if (!open.length && !empty) box.append(h("p", { class: "muted empty" }, "No open escalations."));
    const done = all.filter((e) => e.status !== "open").reverse().slice(0, 30);
    document.getElementById("esc-done").replaceChildren(...done.map((e) => h("tr", { "data-escalation": e.id },
      h("td", {}, ago(e.answered_at)), h("td", {}, e.device_id), h("td", {}, e.question), h("td", {}, e.answer || ""),
      h("td", {}, e.expert || ""))));
  },
};

views.metrics = {
  mount(root) {
    root.append(h("h1", {}, "Metrics"), h("p", { class: "muted" }, "Fleet totals from device reports; Prometheus: ",
      h("a", { href: "/metrics" }, "/metrics")), h("div", { class: "cards", id: "m-cards" }),
    h("h2", {}, "Request latency per model (s)"), h("div", { id: "m-latency" }),
    h("h2", {}, "Per model"), h("div", { id: "m-models" }),
    h("h2", {}, "Deferred-task backlog (this session)"), h("div", { id: "m-backlog" }),
    h("h2", {}, "Outbox depth per device (top 20)"), h("div", { id: "m-outbox" }));
  },
  async refresh() {
    const m = await api("/v1/metrics/summary");
    state.history.push([m.at, m.backlog.tasks]);
    if (state.history.length > 300) state.history.shift();
    const t = m.total;
    document.getElementById("m-cards").replaceChildren(
      card("devices online", `${m.devices.online}/${m.devices.total}`), card("requests", t.requests, "m-requests"),
      card("p50 / p95 / p99 (s)", `${fmt(t.p50_s)} / ${fmt(t.p95_s)} / ${fmt(t.p99_s)}`),
      card("model error rate", pct(t.error_rate)), card("manual intervention", pct(t.manual_intervention_rate)),
      card("cost per resolved task", t.cost_per_resolved_task === null ? "–" : fmt(t.cost_per_resolved_task, 3)),
      card("deferred backlog", m.backlog.tasks), card("open escalations", m.escalations_open));
    const models = Object.entries(m.models);
    document.getElementById("m-latency").replaceChildren(models.length
      ? barChart(models.map(([k, v]) => ({ label: k, values: { p50: v.p50_s, p95: v.p95_s, p99: v.p99_s } })),
        { bars: ["p50", "p95", "p99"], unit: " s", id: "latency-chart" })
      : h("p", { class: "muted" }, "No requests reported yet."));
    document.getElementById("m-models").replaceChildren(h("table", { "data-testid": "model-table" },
      h("thead", {}, h("tr", {}, ["Model", "Requests", "Tokens/request", "Tokens/s", "Error rate", "Manual", "Resolved",
        "Cost/resolved"].map((x) => h("th", {}, x)))),
      h("tbody", {}, models.map(([k, v]) => h("tr", {}, h("td", {}, k), h("td", { class: "num" }, v.requests),
        h("td", { class: "num" }, fmt(v.tokens_per_request, 1)), h("td", { class: "num" }, fmt(v.tokens_per_s, 1)),
        h("td", { class: "num" }, pct(v.error_rate)), h("td", { class: "num" }, pct(v.manual_intervention_rate)),
        h("td", { class: "num" }, v.resolved), h("td", { class: "num" }, fmt(v.cost_per_resolved_task, 3)))))));
    document.getElementById("m-backlog").replaceChildren(lineChart(state.history, { id: "backlog-chart",
      label: `tasks waiting; oldest ${fmt(m.backlog.oldest_age_s, 0)} s` }));
    const top = [...m.outboxes].sort((a, b) => (b.device_outbox + b.server_outbox) - (a.device_outbox + a.server_outbox)).slice(0, 20);
    document.getElementById("m-outbox").replaceChildren(top.length
      ? barChart(top.map((o) => ({ label: o.device_id, values: { device: o.device_outbox, server: o.server_outbox } })),
        { bars: ["device", "server"], id: "outbox-chart" })
      : h("p", { class: "muted" }, "No devices."));
  },
};

// ------------------------------------------------------------------ shell
function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = null; state.me = null;
  clearTimeout(state.timer);
  document.getElementById("view").replaceChildren();
  document.getElementById("login").hidden = false;
  document.getElementById("logout").hidden = true;
  document.getElementById("who").textContent = "";
  document.getElementById("login-error").textContent = message || "";
}

async function signIn(token) {
  state.token = token;
  try {
    state.me = await api("/v1/whoami");
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) document.getElementById("login-error").textContent = String(e.message || e);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  document.getElementById("login").hidden = true;
  document.getElementById("logout").hidden = false;
  document.getElementById("who").textContent = `${state.me.name} (${state.me.roles.join(", ")})`;
  route();
}

async function tick() {
  clearTimeout(state.timer);
  const v = views[state.view];
  if (!v || !state.token) return;
  try { await v.refresh(); setLive(true); } catch (e) { setLive(false); if (!(e instanceof ApiError)) console.warn(e); }
  state.timer = setTimeout(tick, POLL_MS);
}

function route() {
  if (!state.token) return;
  const name = (location.hash.slice(1) || "fleet").split("&")[0];
  state.view = views[name] ? name : "fleet";
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("active", a.dataset.view === state.view);
  const root = document.getElementById("view");
  root.replaceChildren();
  root.dataset.view = state.view;
  views[state.view].mount(root);
  tick();
}

window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", () => {
  document.getElementById("login-form").addEventListener("submit", (e) => {
    e.preventDefault();
    signIn(document.getElementById("token").value.trim());
  });
  document.getElementById("logout").addEventListener("click", () => signOut(""));
  // a login link carries the token in the fragment (never sent to the server, never in its logs)
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    history.replaceState(null, "", location.pathname + location.search + "#fleet");
    signIn(decodeURIComponent(m[1]));
  } else if (sessionStorage.getItem(TOKEN_KEY)) {
    signIn(sessionStorage.getItem(TOKEN_KEY));
  } else {
    signOut("");
  }
});
