import { call, el, row, Unauthorized } from "/ui/api.js";

const $ = (id) => document.getElementById(id);
const KINDS = ["application", "quote"];
let wired = false;

// A quote or an application by id: its current state and the events that made it.
async function load(kind, id, signedOut) {
  $("entity-error").textContent = "";
  $("entity-view").hidden = true;
  const base = `/v1/${kind}s/${encodeURIComponent(id)}`;
  try {
    const [state, log] = await Promise.all([call(base), call(`${base}/events`)]);
    $("entity-status").textContent = state.status ?? "";
    $("entity-state").textContent = JSON.stringify(state, null, 2);
    const body = $("timeline").tBodies[0];
    body.replaceChildren();
    for (const event of log.events) {
      const tr = row([event.version, event.time, event.type, event.source ?? "", event.position ?? ""]);
      tr.dataset.eventId = event.event_id;
      tr.title = JSON.stringify(event.data);
      body.append(tr);
    }
    $("entity-view").hidden = false;
    await deliveries(id);
  } catch (error) {
    if (error instanceof Unauthorized) return signedOut(error.message);
    $("entity-error").textContent = `${kind} ${id}: ${error.message}`;
  }
}

// What the delivery runners journaled for this entity, newest first. A log that cannot be
// read says so under the table; the state and timeline above stay.
async function deliveries(id) {
  const body = $("deliveries").tBodies[0];
  body.replaceChildren();
  $("deliveries-note").textContent = "";
  let answer;
  try {
    answer = await call(`/v1/admin/deliveries?entity_id=${encodeURIComponent(id)}&limit=100`);
  } catch (error) {
    if (error instanceof Unauthorized) throw error;
    $("deliveries-note").textContent = `Deliveries: ${error.message}`;
    return;
  }
  for (const d of answer.deliveries) {
    const answerCell = [d.status ?? "", d.error ?? ""].filter((x) => x !== "").join(" ");
    const outcome = el("td", d.outcome, d.outcome === "dead_lettered" ? "error" : undefined);
    const tr = row([d.at, d.target, outcome, d.attempts, answerCell, d.notification_id, d.event_id ?? "", d.dlq_topic ?? ""]);
    tr.dataset.outcome = d.outcome;
    tr.dataset.target = d.target;
    body.append(tr);
  }
  if (answer.deliveries.length === 0) {
    $("deliveries-note").textContent = "No delivery recorded for this entity (the log keeps 30 days).";
  }
}

export async function start([kind, id], { signedOut }) {
  if (!wired) {
    wired = true;
    $("entity-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const id = $("entity-id").value.trim();
      location.hash = `#/entity/${$("entity-kind").value}/${encodeURIComponent(id)}`;
    });
  }
  if (!KINDS.includes(kind) || !id) {
    $("entity-view").hidden = true;
    return;
  }
  $("entity-kind").value = kind;
  $("entity-id").value = id;
  await load(kind, id, signedOut);
}
