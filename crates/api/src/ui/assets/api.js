// The admin key lives in this tab's sessionStorage only: closing the tab forgets it, and no
// cookie means no request can carry it without this code choosing to.
const KEY = "enrollstream.adminKey";

export class Unauthorized extends Error {}

export function key() {
  return sessionStorage.getItem(KEY);
}

export function remember(value) {
  sessionStorage.setItem(KEY, value);
}

export function forget() {
  sessionStorage.removeItem(KEY);
}

// Every data call: the key as bearer; a 401 or 403 ends the session so the login form shows.
// A `body` is sent as JSON with POST.
export async function call(path, { accept = "application/json", body } = {}) {
  const secret = key();
  if (!secret) throw new Unauthorized("not signed in");
  const headers = { Authorization: `Bearer ${secret}`, Accept: accept };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method: body === undefined ? "GET" : "POST",
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    cache: "no-store",
    credentials: "omit",
  });
  if (response.status === 401 || response.status === 403) {
    forget();
    throw new Unauthorized(await problemDetail(response));
  }
  if (!response.ok) throw new Error(await problemDetail(response));
  return accept === "application/json" ? response.json() : response.text();
}

async function problemDetail(response) {
  try {
    const problem = await response.json();
    return problem.detail || problem.title || `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}

// Small DOM helpers: text only, never markup from data.
export function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

export function row(cells) {
  const tr = document.createElement("tr");
  for (const cell of cells) tr.append(cell instanceof Node ? cell : el("td", cell));
  return tr;
}
