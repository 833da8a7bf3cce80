import { call, el, row, Unauthorized } from "/ui/api.js";

const $ = (id) => document.getElementById(id);
const PAGE = 100;
let wired = false;
let signedOutHandler = () => {};
// The cursor of each page shown, so "Previous" goes back without the server keeping state.
let cursors = [null];

function failed(error) {
  if (error instanceof Unauthorized) return signedOutHandler(error.message);
  $("reminders-error").textContent = error.message;
}

function link(applicationId) {
  const a = el("a", applicationId);
  a.href = `#/entity/application/${encodeURIComponent(applicationId)}`;
  const td = el("td");
  td.append(a);
  return td;
}

// The due time, flagged when the scheduler should have sent it already.
function due(reminder) {
  if (!reminder.next_due_at) return el("td", "—", "missing");
  const td = el("td", reminder.next_due_at);
  if (reminder.overdue) {
    td.append(" ", el("span", "overdue", "badge warn"));
  }
  return td;
}

// The last attempt: when it went out, and the error of the last failed or refused send.
function lastAttempt(reminder) {
  const parts = [reminder.last_sent_at ?? "never sent"];
  if (reminder.failures > 0) parts.push(`${reminder.failures} failed send(s) since`);
  if (reminder.last_error) parts.push(`last error: ${reminder.last_error}`);
  return el("td", parts.join("; "));
}

function lease(reminder) {
  const l = reminder.lease;
  if (!l) return el("td", "free", "missing");
  const who = l.owner ? `${l.owner} ` : "";
  return el("td", `${l.state}: ${who}until ${l.until}`, l.state === "expired" ? "error" : undefined);
}

async function list(page) {
  $("reminders-error").textContent = "";
  const query = new URLSearchParams({ limit: String(PAGE) });
  if ($("reminders-state").value) query.set("state", $("reminders-state").value);
  if (cursors[page]) query.set("after", cursors[page]);
  try {
    const answer = await call(`/v1/admin/reminders?${query}`);
    const body = $("reminders-table").tBodies[0];
    body.replaceChildren();
    for (const reminder of answer.reminders) {
      const tr = row([link(reminder.application_id), reminder.status, reminder.attempts, due(reminder),
        lastAttempt(reminder), lease(reminder), reminder.broker ? `${reminder.broker.name} <${reminder.broker.email}>` : ""]);
      tr.dataset.applicationId = reminder.application_id;
      tr.dataset.status = reminder.status;
      body.append(tr);
    }
    cursors = cursors.slice(0, page + 1);
    if (answer.next_after) cursors.push(answer.next_after);
    $("reminders-next").disabled = !answer.next_after;
    $("reminders-previous").disabled = page === 0;
    $("reminders-next").dataset.page = String(page + 1);
    $("reminders-previous").dataset.page = String(page - 1);
    $("reminders-count").textContent = `Page ${page + 1}: ${answer.reminders.length} reminder(s), as of ${answer.now}`;
  } catch (error) {
    failed(error);
  }
}

export async function start(_args, { signedOut }) {
  signedOutHandler = signedOut;
  if (!wired) {
    wired = true;
    $("reminders-form").addEventListener("submit", (event) => {
      event.preventDefault();
      cursors = [null];
      list(0);
    });
    for (const id of ["reminders-next", "reminders-previous"]) {
      $(id).addEventListener("click", () => list(Number($(id).dataset.page)));
    }
  }
  cursors = [null];
  await list(0);
}
