// The API client: bearer token from the login, errors as ApiError with the server's code.

export interface Me {
  name: string;
  kind?: string;
  role: string;
  district: string | null;
  enterprise?: string | null;
  projects: string[] | null;
}

export interface Auth {
  token: string;
  expires_at: string;
  me: Me;
}

export interface Page<T> {
  items: T[];
  total: number;
  limit: number;
  offset: number;
}

export class ApiError extends Error {
  constructor(
    public status: number,
    public code: string,
    message: string,
    public detail?: unknown,
  ) {
    super(message);
  }
}

const AUTH_KEY = "smartsite.auth";
type Listener = (a: Auth | null) => void;
const listeners = new Set<Listener>();

export function loadAuth(): Auth | null {
  try {
    const raw = localStorage.getItem(AUTH_KEY);
    if (!raw) return null;
    const a = JSON.parse(raw) as Auth;
    if (new Date(a.expires_at).getTime() < Date.now()) return null;
    return a;
  } catch {
    return null;
  }
}

let auth: Auth | null = loadAuth();

export function currentAuth(): Auth | null {
  return auth;
}

export function setAuth(a: Auth | null): void {
  auth = a;
  if (a) localStorage.setItem(AUTH_KEY, JSON.stringify(a));
  else localStorage.removeItem(AUTH_KEY);
  listeners.forEach((l) => l(a));
}

export function onAuth(l: Listener): () => void {
  listeners.add(l);
  return () => listeners.delete(l);
}

async function failure(r: Response): Promise<ApiError> {
  let code = "http_" + r.status;
  let message = r.statusText || "request failed";
  let detail: unknown;
  try {
    const body = await r.json();
    if (body && body.error) {
      code = body.error.code ?? code;
      message = body.error.message ?? message;
      detail = body.error.detail;
    }
  } catch {
    /* not JSON */
  }
  if (r.status === 401) setAuth(null);
  return new ApiError(r.status, code, message, detail);
}

function headers(extra?: Record<string, string>): Record<string, string> {
  const h: Record<string, string> = { ...(extra ?? {}) };
  if (auth) h["Authorization"] = `Bearer ${auth.token}`;
  return h;
}

export type Query = Record<string, string | number | boolean | null | undefined>;

export function withQuery(path: string, q?: Query): string {
  if (!q) return path;
  const s = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) {
    if (v !== undefined && v !== null && v !== "") s.set(k, String(v));
  }
  const qs = s.toString();
  return qs ? `${path}?${qs}` : path;
}

export async function get<T>(path: string, q?: Query): Promise<T> {
  const r = await fetch(withQuery(path, q), { headers: headers() });
  if (!r.ok) throw await failure(r);
  return (await r.json()) as T;
}

/** GET JSON whose named integer fields may exceed 2^53 (e.g. a draw's 63-bit seed): those
 * come back as strings, exactly as sent, instead of rounded numbers. */
export async function getExact<T>(path: string, keys: string[], q?: Query): Promise<T> {
  const r = await fetch(withQuery(path, q), { headers: headers() });
  if (!r.ok) throw await failure(r);
  const text = await r.text();
  const re = new RegExp(`"(${keys.join("|")})"\\s*:\\s*(-?\\d{16,})`, "g");
  return JSON.parse(text.replace(re, '"$1":"$2"')) as T;
}

export async function send<T>(method: string, path: string, body?: unknown): Promise<T> {
  const isForm = body instanceof FormData;
  const r = await fetch(path, {
    method,
    headers: headers(isForm || body === undefined ? {} : { "Content-Type": "application/json" }),
    body: body === undefined ? undefined : isForm ? body : JSON.stringify(body),
  });
  if (!r.ok) throw await failure(r);
  if (r.status === 204) return undefined as T;
  const text = await r.text();
  return (text ? JSON.parse(text) : undefined) as T;
}

export const post = <T>(path: string, body?: unknown) => send<T>("POST", path, body);
export const put = <T>(path: string, body?: unknown) => send<T>("PUT", path, body);

/** A binary resource (evidence photo, GLB) fetched with the token. */
export async function blob(path: string): Promise<Blob> {
  const r = await fetch(path, { headers: headers() });
  if (!r.ok) throw await failure(r);
  return await r.blob();
}

export async function login(username: string, password: string): Promise<Auth> {
  const r = await send<{ access_token: string; expires_at: string; me: Me }>(
    "POST",
    "/api/auth/login",
    { username, password },
  );
  const a = { token: r.access_token, expires_at: r.expires_at, me: r.me };
  setAuth(a);
  return a;
}

/** Every item of a paged list (up to `max`). */
export async function all<T>(path: string, q?: Query, max = 1000): Promise<T[]> {
  const out: T[] = [];
  let offset = 0;
  const limit = 100;
  for (;;) {
    const page = await get<Page<T> | T[]>(path, { ...(q ?? {}), limit, offset });
    if (Array.isArray(page)) return page;
    out.push(...page.items);
    offset += page.items.length;
    if (page.items.length === 0 || offset >= page.total || out.length >= max) return out;
  }
}

export function errorText(e: unknown): string {
  if (e instanceof ApiError) return `${e.message} (${e.code})`;
  if (e instanceof Error) return e.message;
  return String(e);
}

export function liveUrl(): string {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}/api/alerts/live?token=${encodeURIComponent(auth?.token ?? "")}`;
}
