// The API client: every call carries the signed-in token; errors carry
// the API's message.

const KEY = "gridata.token";

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

export function token() {
  return sessionStorage.getItem(KEY);
}

export function setToken(t) {
  if (t) sessionStorage.setItem(KEY, t);
  else sessionStorage.removeItem(KEY);
}

async function call(path, { method = "GET", body, accept = "application/json", tok } = {}) {
  const headers = { Accept: accept };
  const t = tok === undefined ? token() : tok;
  if (t) headers.Authorization = `Bearer ${t}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const resp = await fetch(path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!resp.ok) {
    let code = "error";
    let message = `${resp.status} ${resp.statusText}`;
    try {
      const e = await resp.json();
      code = e.code || code;
      message = e.message || message;
    } catch (_) {
      // not JSON
    }
    if (resp.status === 401) window.dispatchEvent(new CustomEvent("gridata:unauthorized"));
    throw new ApiError(resp.status, code, message);
  }
  return resp;
}

// Integers beyond 2^53 (Iceberg snapshot ids) are kept exact, as strings.
function keepBigInts(_key, value, context) {
  if (typeof value === "number" && !Number.isSafeInteger(value) && context && /^-?\d+$/.test(context.source)) {
    return context.source;
  }
  return value;
}

// A JSON value that serializes as a bare integer, for ids kept as strings.
export function int(id) {
  return typeof JSON.rawJSON === "function" ? JSON.rawJSON(String(id)) : Number(id);
}

// JSON from the API.
export async function api(path, opts) {
  const resp = await call(path, opts);
  if (resp.status === 204) return null;
  return JSON.parse(await resp.text(), keepBigInts);
}

// Text (SVG, DOT) from the API.
export async function apiText(path, opts = {}) {
  const resp = await call(path, { ...opts, accept: "*/*" });
  return resp.text();
}

// A query string from an object, skipping empty values.
export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== "") u.set(k, String(v));
  }
  const s = u.toString();
  return s ? `?${s}` : "";
}

export const enc = encodeURIComponent;
