// The console's only script: times in the viewer's zone (UTC stays on hover), and the
// overview's figures kept live without reloading. Everything works without it.
"use strict";

function localTimes(root) {
  for (const t of root.querySelectorAll("time[datetime]")) {
    const d = new Date(t.getAttribute("datetime"));
    if (!isNaN(d)) {
      t.textContent = d.toLocaleString(undefined, {
        year: "numeric", month: "short", day: "numeric",
        hour: "2-digit", minute: "2-digit", second: "2-digit",
      });
    }
  }
}

function format(value, how) {
  if (value === null || value === undefined) return "—";
  if (how === "seconds") return value < 1 ? Math.round(value * 1000) + " ms" : value.toFixed(1) + " s";
  return String(value);
}

function pick(data, path) {
  return path.split(".").reduce((v, k) => (v == null ? undefined : v[k]), data);
}

function drawBars(root, perMinute) {
  const max = Math.max(1, ...perMinute);
  for (const bar of root.querySelectorAll("[data-live-bar]")) {
    const n = perMinute[Number(bar.dataset.liveBar)] || 0;
    bar.style.height = Math.max(1, Math.round((n / max) * 48)) + "px";
    bar.title = n + " leads";
  }
}

async function refresh(section) {
  try {
    const r = await fetch(section.dataset.liveSrc, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (r.status === 401) { location.reload(); return; }
    if (!r.ok) return;
    const data = await r.json();
    for (const el of section.querySelectorAll("[data-live]")) {
      const v = pick(data, el.dataset.live);
      el.textContent = format(v === undefined ? 0 : v, el.dataset.format);
    }
    const hour = section.querySelector('[data-live="intakes_last_hour"]');
    if (hour && data.capped) hour.textContent += "+";
    drawBars(section, data.per_minute || []);
    const at = document.querySelector("[data-live-at]");
    if (at) at.textContent = new Date(data.at).toLocaleTimeString();
  } catch (_) {
    // A missed refresh is retried at the next tick.
  }
}

document.addEventListener("DOMContentLoaded", () => {
  localTimes(document);
  const live = document.querySelector("[data-live-src]");
  if (live) {
    const bars = [...live.querySelectorAll("[data-live-bar]")].map((b) => Number(b.dataset.n) || 0);
    drawBars(live, bars);
    setInterval(() => refresh(live), 5000);
  }
});
