import { call, el, row, Unauthorized } from "/ui/api.js";

const $ = (id) => document.getElementById(id);
let wired = false;
let signedOutHandler = () => {};
// The ids of the last listing still to move, and the ids the last dry run covered: "Redrive
// for real" moves exactly what the dry run showed, and only after one.
let listed = [];
let dryRunOf = null;

function failed(error) {
  if (error instanceof Unauthorized) return signedOutHandler(error.message);
  $("dlq-error").textContent = error.message;
}

function resetRedrive() {
  dryRunOf = null;
  $("dlq-redrive").disabled = true;
  $("dlq-dry-run").disabled = listed.length === 0;
  $("dlq-summary").textContent = "";
  $("dlq-outcomes").tBodies[0].replaceChildren();
}

async function list() {
  $("dlq-error").textContent = "";
  $("dlq-detail-box").hidden = true;
  const query = new URLSearchParams({ topic: $("dlq-topic").value.trim(), limit: "100" });
  if ($("dlq-target").value) query.set("target", $("dlq-target").value);
  if ($("dlq-reason").value.trim()) query.set("reason", $("dlq-reason").value.trim());
  try {
    const answer = await call(`/v1/admin/dlq?${query}`);
    const body = $("dlq-table").tBodies[0];
    body.replaceChildren();
    for (const letter of answer.dead_letters) {
      const inspect = el("button", "Inspect");
      inspect.type = "button";
      inspect.addEventListener("click", () => show(letter.id));
      const cell = el("td");
      cell.append(inspect);
      const tr = row([letter.id, letter.reason ?? "", letter.attempts ?? "", letter.last_failure ?? "",
        letter.entity_id ?? "", letter.redriven ? "yes" : "no", cell]);
      tr.dataset.id = letter.id;
      body.append(tr);
    }
    listed = answer.dead_letters.filter((l) => !l.redriven).map((l) => l.id);
    $("dlq-count").textContent = `${answer.dead_letters.length} dead letter(s) on ${answer.topic}, ${listed.length} not redriven yet`;
    resetRedrive();
  } catch (error) {
    failed(error);
  }
}

async function show(id) {
  try {
    const letter = await call(`/v1/admin/dlq/${encodeURIComponent(id)}`);
    $("dlq-detail-id").textContent = id;
    $("dlq-detail").textContent = JSON.stringify(letter, null, 2);
    $("dlq-detail-box").hidden = false;
  } catch (error) {
    failed(error);
  }
}

async function redrive(dryRun) {
  const ids = dryRun ? listed : dryRunOf;
  if (!ids || ids.length === 0) return;
  $("dlq-error").textContent = "";
  $("dlq-dry-run").disabled = true;
  $("dlq-redrive").disabled = true;
  try {
    const report = await call("/v1/admin/dlq/redrive", { body: { ids, dry_run: dryRun } });
    const body = $("dlq-outcomes").tBodies[0];
    body.replaceChildren();
    for (const outcome of report.outcomes) {
      const tr = row([outcome.id, outcome.action, outcome.to ?? "", outcome.reason ?? ""]);
      tr.dataset.action = outcome.action;
      body.append(tr);
    }
    const verb = dryRun ? "would move" : "moved";
    $("dlq-summary").textContent = `${dryRun ? "Dry run" : "Redrive"}: ${report.moved} ${verb}, ${report.skipped} skipped (audit ${report.audit_id})`;
    if (dryRun) {
      dryRunOf = ids;
      $("dlq-redrive").disabled = report.moved === 0;
      $("dlq-dry-run").disabled = false;
    } else {
      dryRunOf = null;
      listed = [];
    }
  } catch (error) {
    $("dlq-dry-run").disabled = listed.length === 0;
    failed(error);
  }
}

export async function start(_args, { signedOut }) {
  signedOutHandler = signedOut;
  if (!wired) {
    wired = true;
    $("dlq-form").addEventListener("submit", (event) => {
      event.preventDefault();
      list();
    });
    $("dlq-dry-run").addEventListener("click", () => redrive(true));
    $("dlq-redrive").addEventListener("click", () => redrive(false));
  }
}
