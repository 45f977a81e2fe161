// The page: status every 2 s, predictions as they arrive (Server-Sent Events),
// events every 10 s. No framework, no build step, nothing from elsewhere.
"use strict";

const $ = (id) => document.getElementById(id);
const text = (id, value) => { $(id).textContent = value; };
const firstName = (label) => String(label).split(",")[0].trim();
const ms = (v) => (v === null || v === undefined ? "-" : `${Number(v).toFixed(1)} ms`);
const base = (path) => String(path || "-").split("/").pop();

// Rows under this score are one "+N others" line: nine bars of 0.000 under a
// 99.6% top-1 tell a reader nothing (their labels stay in the line's tooltip).
const FLOOR = 0.01;
const percent = (score) => `${(score * 100).toFixed(1)}%`;

function barRow(p) {
  const li = document.createElement("li");
  const label = document.createElement("span");
  label.className = "label";
  label.textContent = firstName(p.label);
  label.title = p.label;
  const track = document.createElement("span");
  track.className = "track";
  const fill = document.createElement("span");
  fill.className = "fill";
  fill.style.display = "block";
  fill.style.width = `${Math.max(0, Math.min(1, p.score)) * 100}%`;
  track.appendChild(fill);
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = percent(p.score);
  li.append(label, track, score);
  return li;
}

function showPredictions(predictions) {
  const all = predictions || [];
  const top = all[0];
  text("top1", top ? `${firstName(top.label)} (${percent(top.score)})` : "-");
  $("top1").dataset.label = top ? top.label : "";
  const shown = all.filter((p, i) => i === 0 || p.score >= FLOOR);
  const rest = all.slice(shown.length);
  $("bars").replaceChildren(...shown.map(barRow));
  const others = $("others");
  others.hidden = rest.length === 0;
  others.textContent = rest.length
    ? `+${rest.length} other${rest.length > 1 ? "s" : ""}, each under ${percent(FLOOR)}`
    : "";
  others.title = rest.map((p) => `${firstName(p.label)} ${percent(p.score)}`).join(", ");
}

function showState(state, reason) {
  const badge = $("state");
  badge.textContent = state;
  badge.dataset.state = state;
  const line = $("reason");
  line.textContent = reason || "";
  line.hidden = !reason;
}

let streamed = false; // predictions from the event stream win over the status poll

async function pollStatus() {
  try {
    const response = await fetch("/api/status", { cache: "no-store" });
    if (!response.ok) {
      showState(response.status === 401 ? "locked" : "starting",
                response.status === 401 ? "Log in: open this page as /?token=YOUR_TOKEN" : "");
      return;
    }
    const s = await response.json();
    showState(s.state, s.reason);
    text("model", base(s.model));
    text("runtime", s.runtime || "-");
    text("delegate", s.delegate || "-");
    text("frames", s.frames);
    text("fps", Number(s.fps || 0).toFixed(1));
    const lat = s.latency_ms || {};
    text("inference", ms(lat.inference));
    text("latency", ms(lat.total));
    text("source", s.source || "-");
    text("last-error", s.last_error ? `${s.last_error} (${s.last_error_at})` : "none");
    if (!streamed) showPredictions(s.predictions);
  } catch (err) {
    showState("unreachable", "The daemon does not answer; is it running?");
  }
}

function listen() {
  const source = new EventSource("/api/predictions");
  source.onmessage = (event) => {
    const m = JSON.parse(event.data);
    streamed = true;
    showPredictions(m.predictions);
    text("frame-name", `frame ${m.frame}: ${m.name}`);
  };
  source.onerror = () => { streamed = false; };
}

async function pollEvents() {
  try {
    const response = await fetch("/api/events?limit=12", { cache: "no-store" });
    if (!response.ok) return;
    const events = await response.json();
    $("no-events").hidden = events.length > 0;
    $("events").replaceChildren(...events.map((e) => {
      const li = document.createElement("li");
      if (e.snapshot) {
        const img = document.createElement("img");
        img.loading = "lazy";
        img.alt = e.label;
        img.src = `/api/events/${encodeURIComponent(e.id)}/thumbnail.jpg`;
        li.appendChild(img);
      }
      const caption = document.createElement("div");
      const score = typeof e.score === "number" ? ` ${(e.score * 100).toFixed(0)}%` : "";
      const start = e.start ? new Date(e.start) : null;
      const when = start && !isNaN(start) ? start.toLocaleString() : "";
      caption.textContent = `${firstName(e.label)}${score} · ${when}`;
      caption.title = `${e.rule}: ${e.label}, ${e.start} to ${e.end || "now"}`;
      li.appendChild(caption);
      return li;
    }));
  } catch (err) { /* the status poll reports an unreachable daemon */ }
}

pollStatus();
pollEvents();
listen();
setInterval(pollStatus, 2000);
setInterval(pollEvents, 10000);
