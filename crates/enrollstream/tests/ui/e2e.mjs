// Drives the dashboard at /ui in headless chromium, as an operator would: a refused key, the
// admin key, the pipeline view, one application's timeline and deliveries, the reminder
// schedule, the dead-letter browser, sign-out. Run by tests/it/ui.rs, which
// passes what the page must show; any failed check or browser error exits non-zero.
import { createRequire } from "node:module";
import { mkdirSync } from "node:fs";
import assert from "node:assert/strict";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env("UI_BASE_URL");
const artifacts = env("UI_ARTIFACTS");
const expected = JSON.parse(env("UI_EXPECTED"));
const require = createRequire(`${env("ENROLLSTREAM_PLAYWRIGHT")}/`);
const { chromium } = require("playwright-core");

mkdirSync(artifacts, { recursive: true });
const browser = await chromium.launch({
  executablePath: env("ENROLLSTREAM_CHROMIUM"),
  headless: true,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
const problems = [];
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  // A CSP violation or a script error shows up here: the page must run clean under its policy.
  // (The refused key and the unknown id are answered 401/403/404 on purpose.)
  page.on("console", (m) => m.type() === "error" && !/status of 40[134] /.test(m.text()) && problems.push(`console: ${m.text()}`));
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  const step = async (name, fn) => {
    try {
      await fn();
      console.log(`ok: ${name}`);
    } catch (error) {
      await page.screenshot({ path: `${artifacts}/failed-${name.replace(/\W+/g, "-")}.png`, fullPage: true });
      throw new Error(`${name}: ${error.message}`);
    }
  };

  await step("the shell loads without a credential, under a strict policy", async () => {
    const response = await page.goto(`${base}/ui`);
    assert.equal(response.status(), 200);
    const csp = response.headers()["content-security-policy"];
    assert.match(csp, /default-src 'none'/);
    assert.match(csp, /script-src 'self'/);
    await page.locator("#login").waitFor({ state: "visible" });
    await page.screenshot({ path: `${artifacts}/login.png` });
  });

  await step("a key without the admin scope is refused", async () => {
    await page.fill("#key", expected.read_key);
    await page.click("#sign-in");
    await page.locator("#login-error", { hasText: "Refused" }).waitFor();
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  });

  await step("the admin key opens the pipeline view", async () => {
    await page.fill("#key", expected.admin_key);
    await page.click("#sign-in");
    await page.locator("#metrics").waitFor({ state: "visible" });
    const published = page.locator('#rates tr[data-metric="enrollstream_events_published_total"] td').nth(1);
    await published.waitFor();
    assert.ok(Number(await published.textContent()) >= expected.events_published, "events published total");
    // Rates need two scrapes: the second one (5 s later) fills the per-second column.
    // Each refresh rebuilds the rows, so look the cell up afresh on every poll.
    await page.waitForFunction(() => {
      const cell = document.querySelector('#rates tr[data-metric="enrollstream_http_requests_total"] td:nth-child(3)');
      return cell && !cell.classList.contains("missing");
    }, null, { timeout: 15000 });
    for (const name of expected.lag_metrics) {
      assert.equal(await page.locator(`#lag tr[data-metric="${name}"]`).count() > 0, true, `lag row for ${name}`);
    }
    // Each target's one state (healthy, retrying, paused, circuit_open) has a column.
    assert.equal(await page.locator("#targets thead th", { hasText: "State" }).count(), 1, "target state column");
    await page.screenshot({ path: `${artifacts}/pipeline.png`, fullPage: true });
  });

  await step("the entity view shows the application and its timeline", async () => {
    await page.click("#nav-entity");
    await page.selectOption("#entity-kind", "application");
    await page.fill("#entity-id", expected.application_id);
    await page.click("#entity-show");
    await page.locator("#entity-view").waitFor({ state: "visible" });
    assert.equal(await page.textContent("#entity-status"), expected.status);
    const rows = page.locator("#timeline tbody tr");
    assert.equal(await rows.count(), expected.event_types.length);
    for (const [i, type] of expected.event_types.entries()) {
      assert.equal(await rows.nth(i).locator("td").nth(2).textContent(), type);
    }
    const deliveries = page.locator("#deliveries tbody tr");
    await deliveries.first().waitFor();
    assert.equal(await deliveries.count(), expected.deliveries, "one row per journaled delivery");
    for (let i = 0; i < expected.deliveries; i++) {
      const cells = deliveries.nth(i).locator("td");
      assert.equal(await cells.nth(1).textContent(), expected.delivery_target);
      assert.equal(await cells.nth(2).textContent(), "delivered");
      assert.match(await cells.nth(4).textContent(), /^2\d\d/, "the target's accepting status");
    }
    await page.screenshot({ path: `${artifacts}/entity.png`, fullPage: true });
  });

  await step("the reminder schedule lists the broker-submitted application", async () => {
    await page.click("#nav-reminders");
    await page.locator("#reminders").waitFor({ state: "visible" });
    await page.selectOption("#reminders-state", "AWAITING_SIGNATURE");
    await page.click("#reminders-list");
    const reminder = page.locator(`#reminders-table tbody tr[data-application-id="${expected.application_id}"]`);
    await reminder.waitFor();
    const cells = reminder.locator("td");
    assert.equal(await cells.nth(1).textContent(), "AWAITING_SIGNATURE");
    assert.equal(await cells.nth(2).textContent(), "0", "no reminder sent yet");
    assert.match(await cells.nth(3).textContent(), /^\d{4}-\d\d-\d\dT/, "its next due time");
    assert.match(await cells.nth(4).textContent(), /never sent/);
    assert.equal(await cells.nth(5).textContent(), "free", "no scheduler holds it");
    assert.match(await cells.nth(6).textContent(), /Acme Brokers/);
    for (const row of await page.locator("#reminders-table tbody tr").all()) {
      assert.equal(await row.getAttribute("data-status"), "AWAITING_SIGNATURE", "the state filter");
    }
    await page.screenshot({ path: `${artifacts}/reminders.png`, fullPage: true });
    // The application id leads to its entity view.
    await cells.nth(0).locator("a").click();
    await page.locator("#entity-view").waitFor({ state: "visible" });
    assert.equal(await page.inputValue("#entity-id"), expected.application_id);
  });

  await step("the dead-letter browser lists, inspects, dry-runs, then redrives", async () => {
    await page.click("#nav-dlq");
    await page.locator("#dlq").waitFor({ state: "visible" });
    await page.fill("#dlq-topic", expected.dlq_topic);
    await page.click("#dlq-list");
    const rows = page.locator("#dlq-table tbody tr");
    await rows.first().waitFor();
    assert.equal(await rows.count(), 1);
    const letter = rows.first();
    assert.equal(await letter.locator("td").nth(1).textContent(), "invalid_transition");
    assert.equal(await letter.locator("td").nth(4).textContent(), expected.dead_letter_entity);
    assert.equal(await letter.locator("td").nth(5).textContent(), "no");
    assert.equal(await page.isDisabled("#dlq-redrive"), true, "no real redrive before a dry run");
    await letter.locator("button", { hasText: "Inspect" }).click();
    await page.locator("#dlq-detail-box").waitFor({ state: "visible" });
    const detail = JSON.parse(await page.textContent("#dlq-detail"));
    assert.equal(detail.payload.signed_by, "Jane");
    assert.equal(detail.consumer_group, "read-model-service");
    await page.screenshot({ path: `${artifacts}/dlq.png`, fullPage: true });

    await page.click("#dlq-dry-run");
    await page.locator('#dlq-outcomes tbody tr[data-action="would_move"]').waitFor();
    assert.match(await page.textContent("#dlq-summary"), /Dry run: 1 would move, 0 skipped/);
    await page.screenshot({ path: `${artifacts}/dlq-dry-run.png`, fullPage: true });
    await page.locator("#dlq-redrive:not([disabled])").click();
    await page.locator('#dlq-outcomes tbody tr[data-action="moved"]').waitFor();
    assert.match(await page.textContent("#dlq-summary"), /Redrive: 1 moved, 0 skipped/);
    assert.equal(await page.isDisabled("#dlq-redrive"), true, "a redrive is not repeated by a second click");
    await page.screenshot({ path: `${artifacts}/dlq-redriven.png`, fullPage: true });

    await page.click("#dlq-list");
    await page.locator("#dlq-table tbody tr td:nth-child(6)", { hasText: "yes" }).waitFor();
  });

  await step("an unknown id says so", async () => {
    await page.goto(`${base}/ui#/entity/quote/Q-does-not-exist`);
    await page.locator("#entity-error", { hasText: "Q-does-not-exist" }).waitFor();
  });

  await step("signing out forgets the key", async () => {
    await page.click("#logout");
    await page.locator("#login").waitFor({ state: "visible" });
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  });

  assert.deepEqual(problems, [], "the browser reported errors");
} finally {
  await browser.close();
}
