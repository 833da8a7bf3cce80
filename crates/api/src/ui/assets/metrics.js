import { call, el, row, Unauthorized } from "/ui/api.js";

const REFRESH_MS = 5000;
const $ = (id) => document.getElementById(id);
let timer = null;
let previous = null;

// Counters whose rate is the pipeline's pulse, in the order an event passes them.
const STAGES = [
  ["HTTP requests", "enrollstream_http_requests_total"],
  ["Events published by the API", "enrollstream_events_published_total"],
  ["Messages consumed", "enrollstream_consumer_messages_total"],
  ["Events projected", "enrollstream_events_projected_total"],
  ["Outbox messages relayed", "enrollstream_outbox_published_total"],
  ["Deliveries (all outcomes)", "enrollstream_deliveries_total"],
  ["Dead letters", "enrollstream_dead_letters_total"],
  ["Reminders sent", "enrollstream_reminders_sent_total"],
];

// Gauges an operator reads as "how far behind": some are recent additions, so a process that
// does not report one shows "not reported" rather than a zero it never measured.
const LAGS = [
  ["Consumer lag (messages)", "enrollstream_consumer_lag_messages"],
  ["Consumer lag (seconds)", "enrollstream_consumer_lag_seconds"],
  ["Outbox oldest age (seconds)", "enrollstream_outbox_oldest_age_seconds"],
  ["Dead-letter depth", "enrollstream_dlq_depth"],
  ["Reminders due", "enrollstream_reminders_due_backlog"],
  ["Reminders scheduled", "enrollstream_reminders_scheduled"],
  ["Next reminder due in (seconds)", "enrollstream_reminder_next_due_seconds"],
];

const CIRCUIT = { 0: "closed", 1: "half-open", 2: "open" };

// The Prometheus text format, as far as this page needs it: `name{labels} value` lines.
export function parse(text) {
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)/.exec(line);
    if (!match) continue;
    const labels = {};
    for (const pair of (match[3] || "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[pair[1]] = pair[2].replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    samples.push({ name: match[1], labels, value: Number(match[4]) });
  }
  return samples;
}

const series = (samples, name) => samples.filter((s) => s.name === name);
const total = (samples, name) => {
  const found = series(samples, name);
  return found.length ? found.reduce((sum, s) => sum + s.value, 0) : null;
};
const fmt = (n) => (Number.isInteger(n) ? String(n) : n.toFixed(2));
const missing = () => el("td", "not reported", "missing");
// NaN is how a gauge says "nothing to measure" (no reminder scheduled, say).
const num = (n) => el("td", Number.isNaN(n) ? "none" : fmt(n), "num");
const labelText = (labels) =>
  Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(", ") || "—";

function render(samples, at) {
  const seconds = previous ? (at - previous.at) / 1000 : 0;
  const rates = $("rates").tBodies[0];
  rates.replaceChildren();
  for (const [label, name] of STAGES) {
    const now = total(samples, name);
    const before = previous && total(previous.samples, name);
    const rate = now !== null && before !== null && seconds > 0 ? Math.max(0, now - before) / seconds : null;
    const tr = row([label, now === null ? missing() : num(now), rate === null ? missing() : num(rate)]);
    tr.dataset.metric = name;
    rates.append(tr);
  }

  const lag = $("lag").tBodies[0];
  lag.replaceChildren();
  for (const [label, name] of LAGS) {
    const found = series(samples, name);
    const rows = found.length
      ? found.map((s) => row([label, labelText(s.labels), num(s.value)]))
      : [row([label, "—", missing()])];
    for (const tr of rows) {
      tr.dataset.metric = name;
      lag.append(tr);
    }
  }

  const targets = new Map();
  const target = (name) => {
    if (!targets.has(name)) targets.set(name, { outcomes: {} });
    return targets.get(name);
  };
  for (const s of series(samples, "enrollstream_delivery_target_state")) if (s.value === 1) target(s.labels.target).state = s.labels.state;
  for (const s of series(samples, "enrollstream_delivery_circuit_state")) target(s.labels.target).circuit = CIRCUIT[s.value] ?? fmt(s.value);
  for (const s of series(samples, "enrollstream_delivery_paused")) target(s.labels.target).paused = s.value ? "paused" : "no";
  for (const s of series(samples, "enrollstream_deliveries_in_flight")) target(s.labels.target).inFlight = s.value;
  for (const s of series(samples, "enrollstream_deliveries_total")) target(s.labels.target).outcomes[s.labels.outcome] = s.value;
  const body = $("targets").tBodies[0];
  body.replaceChildren();
  if (!targets.size) body.append(row([missing(), "", "", "", "", ""]));
  for (const [name, t] of [...targets].sort(([a], [b]) => a.localeCompare(b))) {
    const outcomes = Object.entries(t.outcomes).map(([o, n]) => `${o}=${fmt(n)}`).join(", ");
    const tr = row([
      name,
      t.state ?? missing(),
      t.circuit ?? missing(),
      t.paused ?? missing(),
      t.inFlight === undefined ? missing() : num(t.inFlight),
      outcomes || missing(),
    ]);
    tr.dataset.target = name;
    body.append(tr);
  }
  $("metrics-updated").textContent = `Updated ${new Date(at).toLocaleTimeString()}.`;
}

async function refresh(signedOut) {
  try {
    const text = await call("/metrics", { accept: "text/plain" });
    const at = Date.now();
    const samples = parse(text);
    render(samples, at);
    previous = { samples, at };
    $("metrics-error").textContent = "";
  } catch (error) {
    if (error instanceof Unauthorized) {
      stop();
      signedOut(error.message);
    } else {
      // A failed scrape (process restarting, store down) keeps the page and tries again.
      $("metrics-error").textContent = `Could not read /metrics: ${error.message}`;
    }
  }
}

export async function start(_args, { signedOut }) {
  stop();
  previous = null;
  await refresh(signedOut);
  timer = setInterval(() => refresh(signedOut), REFRESH_MS);
}

export function stop() {
  if (timer) clearInterval(timer);
  timer = null;
}
