import { call, forget, key, remember } from "/ui/api.js";
import * as metrics from "/ui/metrics.js";
import * as entity from "/ui/entity.js";
import * as dlq from "/ui/dlq.js";
import * as reminders from "/ui/reminders.js";

const views = { metrics, entity, reminders, dlq };
const $ = (id) => document.getElementById(id);

function show(section) {
  for (const id of ["login", ...Object.keys(views)]) $(id).hidden = id !== section;
  $("nav").hidden = section === "login";
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.id === `nav-${section}`);
  }
}

function signIn(message) {
  for (const view of Object.values(views)) view.stop?.();
  $("login-error").textContent = message || "";
  show("login");
  $("key").focus();
}

async function route() {
  if (!key()) return signIn();
  // #/entity/application/ID opens that entity; anything else falls back to the pipeline.
  const [, name = "metrics", ...rest] = location.hash.split("/");
  const view = views[name] ? name : "metrics";
  for (const [other, module] of Object.entries(views)) if (other !== view) module.stop?.();
  show(view);
  const signedOut = (message) => signIn(`Signed out: ${message}`);
  await views[view].start(rest.map(decodeURIComponent), { signedOut });
}

$("login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  remember($("key").value.trim());
  $("key").value = "";
  try {
    // An admin-only read: a key of a lesser scope is refused here, not on the first view.
    await call("/v1/admin/api-keys");
  } catch (error) {
    forget();
    return signIn(`Refused: ${error.message}`);
  }
  $("login-error").textContent = "";
  if (!location.hash || location.hash === "#/") location.hash = "#/metrics";
  else route();
});

$("logout").addEventListener("click", () => {
  forget();
  signIn("Signed out.");
});

window.addEventListener("hashchange", route);
route();
