// Small form pieces shared by the platform pages: labelled fields, tabs, the project list,
// local date-time inputs sent as ISO times with a zone, downloads with the token.
import type { ComponentChildren } from "preact";
import { all, blob, withQuery, type Query } from "./api";
import { t, tv } from "./i18n";
import { Link, useLoad, type Loaded } from "./ui";

export interface ProjectRef {
  id: string;
  name: string;
  district_code?: string | null;
}

export function useProjects(): Loaded<ProjectRef[]> {
  return useLoad(() => all<ProjectRef>("/api/projects"), []);
}

export function Field(props: { label: string; children: ComponentChildren; inline?: boolean }) {
  return (
    <label class={props.inline ? "inline" : undefined}>
      {props.inline ? (
        <>
          {props.children} {props.label}
        </>
      ) : (
        <>
          <span>{props.label}</span>
          {props.children}
        </>
      )}
    </label>
  );
}

/** `(e) => set(value)` for inputs, selects and text areas. */
export const val = (set: (v: string) => void) => (e: Event) => set((e.target as HTMLInputElement).value);

export function Tabs(props: { tabs: { id: string; label: string; href: string }[]; current: string }) {
  return (
    <nav class="tabs" data-testid="tabs">
      {props.tabs.map((x) => (
        <Link key={x.id} href={x.href} testid={`tab-${x.id}`} class={x.id === props.current ? "active" : ""}>
          {x.label}
        </Link>
      ))}
    </nav>
  );
}

export function ProjectSelect(props: {
  projects: ProjectRef[];
  value: string;
  onChange: (v: string) => void;
  testid?: string;
  any?: boolean;
}) {
  return (
    <select data-testid={props.testid} value={props.value} onChange={val(props.onChange)}>
      {props.any && <option value="">{t("allProjects")}</option>}
      {props.projects.map((p) => (
        <option key={p.id} value={p.id}>
          {p.id} {p.name}
        </option>
      ))}
    </select>
  );
}

/** An enum value as a select, labelled through `tv(prefix, value)`. */
export function EnumSelect(props: { prefix: string; values: readonly string[]; value: string; onChange: (v: string) => void; testid?: string }) {
  return (
    <select data-testid={props.testid} value={props.value} onChange={val(props.onChange)}>
      {props.values.map((v) => (
        <option key={v} value={v}>
          {tv(props.prefix, v)}
        </option>
      ))}
    </select>
  );
}

function pad(n: number): string {
  return String(n).padStart(2, "0");
}

/** A Date as the value of an <input type="datetime-local"> (local time). */
export function localInput(d: Date): string {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function dateInput(d: Date): string {
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
}

/** A datetime-local value as an ISO time with its zone (the browser's). */
export function isoFromLocal(v: string): string {
  return new Date(v).toISOString();
}

export function splitList(s: string): string[] {
  return s
    .split(/[,，\s]+/)
    .map((x) => x.trim())
    .filter(Boolean);
}

/** Fetch a file with the token and hand it to the browser as a download. */
export async function download(path: string, q: Query, name: string): Promise<number> {
  const b = await blob(withQuery(path, q));
  const url = URL.createObjectURL(b);
  const a = document.createElement("a");
  a.href = url;
  a.download = name;
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  return b.size;
}

export function Msg(props: { msg: { ok: boolean; text: string } | null; testid: string }) {
  if (!props.msg) return null;
  return (
    <div class={props.msg.ok ? "ok-msg" : "error"} data-testid={props.testid} data-ok={props.msg.ok ? "1" : "0"}>
      {props.msg.text}
    </div>
  );
}
