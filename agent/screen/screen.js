// The device screen: polls the resident agent's state once a second and renders it with textContent only
// (the technician's words and expert answers are never parsed as markup). No external assets.
"use strict";
const token = document.querySelector('meta[name="linecrew-token"]').content;
const $ = (id) => document.getElementById(id);

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined) e.textContent = text;
  if (cls) e.className = cls;
  return e;
}

async function post(path, body) {
  const r = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json",
    "X-Linecrew-Token": token }, body: JSON.stringify(body) });
  await refresh();
  return r.json();
}

function render(s) {
  $("device").textContent = "Linecrew · " + s.device_id;
  const online = s.link && s.link.online;
  $("link").textContent = online ? "online" : "offline";
  $("link").className = "badge " + (online ? "online" : "offline");
  $("battery").textContent = s.battery === null ? "mains" : "battery " + s.battery + "%";
  $("job").textContent = s.job ? [s.job.job_id, s.job.title, s.job.location].filter(Boolean).join(" · ")
    : "No job set";

  $("confirm").hidden = !s.pending;
  $("readback").textContent = s.pending ? s.pending.readback : "";

  const box = $("procedure-box");
  box.hidden = !s.walkthrough;
  $("steps").replaceChildren();
  if (s.walkthrough) {
    $("procedure-title").textContent = s.walkthrough.title;
    for (const st of s.walkthrough.steps) {
      const li = el("li", undefined, st.current ? "current" : st.done ? "done" : "");
      li.dataset.step = st.n;
      for (const w of st.warnings) li.append(el("span", w, "warning"));
      li.append(document.createTextNode(st.text));
      $("steps").append(li);
    }
  }

  $("answers").replaceChildren(...s.answers.slice(0, 3).map((a) => {
    const d = el("div", undefined, "answer" + (a.abstained ? " abstained" : ""));
    d.append(el("div", a.question, "q"), el("div", a.answer));
    for (const c of a.citations) d.append(el("div", c, "cite"));
    return d;
  }));

  $("partial").textContent = s.partial || "";
  $("transcript").replaceChildren(...s.transcript.slice(0, 5).map((t) => el("li", t)));
  const waiting = Object.entries(s.outbox.by_type).map(([k, n]) => n + " " + k.replace("_", " "));
  $("outbox").textContent = waiting.length ? waiting.join(", ") : "nothing";
  $("experts").replaceChildren(...s.expert_answers.map((a) => el("li", (a.source || "expert") + ": " + a.text)));
}

async function refresh() {
  try {
    const r = await fetch("/api/state", { cache: "no-store" });
    if (r.ok) render(await r.json());
  } catch (e) { /* the agent restarts: keep the last picture until it answers again */ }
}

$("yes").addEventListener("click", () => post("/api/confirm", { yes: true }));
$("no").addEventListener("click", () => post("/api/confirm", { yes: false }));
for (const b of document.querySelectorAll("button[data-say]")) {
  b.addEventListener("click", () => post("/api/ask", { text: b.dataset.say }));
}
$("ask-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const text = $("ask").value.trim();
  if (text) { $("ask").value = ""; post("/api/ask", { text }); }
});
refresh();
setInterval(refresh, 1000);
