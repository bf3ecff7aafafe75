// Small shared pieces: a router, data loading, tables, photos fetched with the token.
import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useState } from "preact/hooks";
import { blob, errorText } from "./api";
import { t, tStatus } from "./i18n";

// --- routing: history API; the server answers index.html for every non-API path ---------

const routeListeners = new Set<(p: string) => void>();

export function navigate(to: string, replace = false): void {
  if (replace) history.replaceState(null, "", to);
  else history.pushState(null, "", to);
  routeListeners.forEach((f) => f(location.pathname + location.search));
}

window.addEventListener("popstate", () => routeListeners.forEach((f) => f(location.pathname + location.search)));

export function useRoute(): string {
  const [p, set] = useState(location.pathname + location.search);
  useEffect(() => {
    routeListeners.add(set);
    return () => {
      routeListeners.delete(set);
    };
  }, []);
  return p;
}

export function Link(props: { href: string; children: ComponentChildren; testid?: string; class?: string }) {
  return (
    <a
      href={props.href}
      class={props.class}
      data-testid={props.testid}
      onClick={(e) => {
        if (e.ctrlKey || e.metaKey || e.shiftKey) return;
        e.preventDefault();
        navigate(props.href);
      }}
    >
      {props.children}
    </a>
  );
}

// --- data ---------------------------------------------------------------------------------

export interface Loaded<T> {
  data: T | undefined;
  error: string | null;
  loading: boolean;
  reload: () => void;
}

export function useLoad<T>(fn: () => Promise<T>, deps: unknown[]): Loaded<T> {
  const [state, set] = useState<{ data: T | undefined; error: string | null; loading: boolean }>({
    data: undefined,
    error: null,
    loading: true,
  });
  const [n, bump] = useState(0);
  useEffect(() => {
    let live = true;
    set((s) => ({ ...s, loading: true }));
    fn().then(
      (data) => live && set({ data, error: null, loading: false }),
      (e) => live && set({ data: undefined, error: errorText(e), loading: false }),
    );
    return () => {
      live = false;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [...deps, n]);
  const reload = useCallback(() => bump((x) => x + 1), []);
  return { ...state, reload };
}

export function Status<T>(props: { l: Loaded<T>; empty?: boolean }) {
  if (props.l.error) return <div class="error" data-testid="load-error">{props.l.error}</div>;
  if (props.l.loading && props.l.data === undefined) return <div class="muted">{t("loading")}</div>;
  if (props.empty) return <div class="muted">{t("nothing")}</div>;
  return null;
}

export function Section(props: { title: string; children: ComponentChildren; testid?: string; actions?: ComponentChildren }) {
  return (
    <section class="card" data-testid={props.testid}>
      <header class="card-head">
        <h2>{props.title}</h2>
        {props.actions}
      </header>
      {props.children}
    </section>
  );
}

// --- tables -------------------------------------------------------------------------------

export interface Col<T> {
  key: string;
  label: string;
  render?: (row: T) => ComponentChildren;
}

function cell(v: unknown): ComponentChildren {
  if (v === null || v === undefined) return "";
  if (typeof v === "boolean") return v ? t("yes") : t("no");
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

/** A table; without columns it shows the rows' own keys (simple scalar ones first). */
export function Table<T extends object>(props: { rows: T[]; cols?: Col<T>[]; testid?: string; rowTestid?: string; max?: number }) {
  const rows = props.rows;
  if (!rows.length) return <div class="muted">{t("nothing")}</div>;
  const cols: Col<T>[] =
    props.cols ??
    Object.keys(rows[0])
      .filter((k) => {
        const v = (rows[0] as Record<string, unknown>)[k];
        return v === null || typeof v !== "object";
      })
      .slice(0, 8)
      .map((k) => ({ key: k, label: k }));
  const shown = props.max ? rows.slice(0, props.max) : rows;
  return (
    <div class="table-wrap">
      <table data-testid={props.testid}>
        <thead>
          <tr>
            {cols.map((c) => (
              <th key={c.key}>{c.label}</th>
            ))}
          </tr>
        </thead>
        <tbody>
          {shown.map((r, i) => (
            <tr key={i} data-testid={props.rowTestid}>
              {cols.map((c) => (
                <td key={c.key} data-label={c.label}>
                  {c.render ? c.render(r) : cell((r as Record<string, unknown>)[c.key])}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

// --- photos -------------------------------------------------------------------------------

/** An image from the API (needs the token, so it is fetched and shown as a blob URL). */
export function AuthImage(props: { src: string; alt: string; class?: string; testid?: string; onClick?: () => void }) {
  const [url, setUrl] = useState<string | null>(null);
  const [err, setErr] = useState<string | null>(null);
  useEffect(() => {
    let u: string | null = null;
    let live = true;
    setUrl(null);
    blob(props.src).then(
      (b) => {
        if (!live) return;
        u = URL.createObjectURL(b);
        setUrl(u);
      },
      (e) => live && setErr(errorText(e)),
    );
    return () => {
      live = false;
      if (u) URL.revokeObjectURL(u);
    };
  }, [props.src]);
  if (err) return <span class="error small">{err}</span>;
  if (!url) return <span class="thumb placeholder" />;
  return <img src={url} alt={props.alt} class={props.class} data-testid={props.testid} onClick={props.onClick} />;
}

export function Modal(props: { onClose: () => void; children: ComponentChildren; testid?: string }) {
  useEffect(() => {
    const h = (e: KeyboardEvent) => e.key === "Escape" && props.onClose();
    window.addEventListener("keydown", h);
    return () => window.removeEventListener("keydown", h);
  }, [props.onClose]);
  return (
    <div class="modal-back" onClick={props.onClose}>
      <div class="modal" data-testid={props.testid} onClick={(e) => e.stopPropagation()}>
        <button class="modal-close" data-testid="modal-close" onClick={props.onClose}>
          ×
        </button>
        {props.children}
      </div>
    </div>
  );
}

export function Badge(props: { kind: string; text?: string }) {
  return <span class={`badge badge-${props.kind}`}>{props.text ?? tStatus(props.kind)}</span>;
}
