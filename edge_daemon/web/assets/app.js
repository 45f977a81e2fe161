// The page: status every 2 s (1 s with the change gate on), predictions as they arrive (SSE),
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

// The change gate's tuner: the change value on a log scale from 1e-4 to 1,
// against its threshold; the region and where in it the change is, over the view.
const logPos = (v) => Math.max(0, Math.min(1, (Math.log10(Math.max(v, 1e-4)) + 4) / 4));
let gateInfo = null;
let regionBox = null;

function showGate(gate, region) {
  regionBox = region || null;
  const on = gate && gate.mode && gate.mode !== "off";
  gateInfo = on ? gate : null;
  $("gate").hidden = !on;
  drawOverlay();
  if (!on) return;
  const badge = $("gate-state");
  badge.textContent = gate.state;
  badge.dataset.state = gate.state;
  text("gate-why", gate.reason ? `last classified: ${gate.reason}` : "");
  const change = Number(gate.peak_ratio ?? gate.change_ratio ?? 0);
  const threshold = Number(gate.area_threshold || 0);
  $("gate-level").style.width = `${logPos(change) * 100}%`;
  $("gate-mark").style.left = `${logPos(threshold) * 100}%`;
  text("gate-change", `change ${change.toFixed(4)} (motion at ${threshold}; `
    + `lighting at ${gate.lighting_threshold}), pixels past ${gate.pixel_threshold} levels`);
  const skipped = (Number(gate.skipped_share || 0) * 100).toFixed(1);
  text("gate-frames", `${gate.frames_classified} of ${gate.frames_seen} frames (${skipped}% skipped)`);
  text("gate-via", gate.via === "luma" ? "the camera's luma plane"
    : gate.via === "software" ? "in software (RGB sample)" : "-");
}

function drawOverlay() {
  const img = $("live");
  const canvas = $("overlay");
  const w = img.clientWidth;
  const h = img.clientHeight;
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  ctx.clearRect(0, 0, w, h);
  text("gate-region", regionBox ? `x ${regionBox.x}, y ${regionBox.y}, `
    + `${regionBox.width} x ${regionBox.height} of the frame` : "the whole frame");
  if (!img.naturalWidth || (!regionBox && !gateInfo)) return;
  // The picture is fitted inside the element (object-fit: contain).
  const scale = Math.min(w / img.naturalWidth, h / img.naturalHeight);
  const pw = img.naturalWidth * scale;
  const ph = img.naturalHeight * scale;
  const r = regionBox || { x: 0, y: 0, width: 1, height: 1 };
  const x0 = (w - pw) / 2 + r.x * pw;
  const y0 = (h - ph) / 2 + r.y * ph;
  const rw = r.width * pw;
  const rh = r.height * ph;
  const grid = gateInfo && gateInfo.grid;
  if (grid && grid.length) {
    const rows = grid.length;
    grid.forEach((row, i) => row.forEach((share, j) => {
      const cols = row.length;
      const strength = Math.min(1, Number(share) / Math.max(gateInfo.area_threshold * 4, 1e-3));
      if (strength <= 0) return;
      ctx.fillStyle = `rgba(229, 62, 62, ${0.15 + 0.45 * strength})`;
      ctx.fillRect(x0 + (j * rw) / cols, y0 + (i * rh) / rows, rw / cols, rh / rows);
    }));
  }
  ctx.strokeStyle = "#f6e05e";
  ctx.lineWidth = 2;
  ctx.strokeRect(x0, y0, rw, rh);
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
    showGate(s.gate, s.region);
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
window.addEventListener("resize", drawOverlay);
$("live").addEventListener("load", drawOverlay);
// Every 2 s; every second while the gate is on (tuning it means watching the value).
(function statusLoop() {
  setTimeout(() => { pollStatus().finally(statusLoop); }, gateInfo ? 1000 : 2000);
})();
setInterval(pollEvents, 10000);
