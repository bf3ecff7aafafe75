// Administration: devices per project, thresholds and rules, user accounts.
import { useState } from "preact/hooks";
import { all, errorText, get, post, put } from "../api";
import { t } from "../i18n";
import { Section, Status, Table, useLoad } from "../ui";

interface Rule {
  id: number;
  key: string;
  device_kind: string;
  project_id: string | null;
  device_id: string | null;
  scope: string;
  enabled: boolean;
  spec: Record<string, unknown>;
  revision: number;
  updated_by: string;
  note: string;
}

function Devices() {
  const projects = useLoad(() => all<{ id: string; name: string }>("/api/projects"), []);
  const [pid, setPid] = useState("");
  const chosen = pid || projects.data?.[0]?.id || "";
  const devices = useLoad(
    () => (chosen ? get<Record<string, unknown>[]>(`/api/projects/${encodeURIComponent(chosen)}/devices`) : Promise.resolve([])),
    [chosen],
  );
  return (
    <Section
      title={t("devices")}
      testid="admin-devices"
      actions={
        <select data-testid="devices-project" value={chosen} onChange={(e) => setPid((e.target as HTMLSelectElement).value)}>
          {(projects.data ?? []).map((p) => (
            <option key={p.id} value={p.id}>
              {p.id} {p.name}
            </option>
          ))}
        </select>
      }
    >
      <Status l={devices} />
      {devices.data && <Table rows={devices.data} cols={["id", "kind", "name", "gateway_id", "active", "last_seen"].map((k) => ({ key: k, label: k }))} />}
    </Section>
  );
}

function Rules() {
  const rules = useLoad(() => all<Rule>("/api/rules"), []);
  const [edit, setEdit] = useState<Rule | null>(null);
  const [spec, setSpec] = useState("");
  const [scope, setScope] = useState({ device_kind: "", project_id: "", device_id: "", enabled: true, note: "" });
  const [msg, setMsg] = useState<string | null>(null);
  const start = (r: Rule) => {
    setEdit(r);
    setSpec(JSON.stringify(r.spec, null, 2));
    setScope({ device_kind: r.device_kind, project_id: r.project_id ?? "", device_id: r.device_id ?? "", enabled: r.enabled, note: "" });
    setMsg(null);
  };
  const save = async (e: Event) => {
    e.preventDefault();
    if (!edit) return;
    try {
      await put("/api/rules", {
        key: edit.key,
        device_kind: scope.device_kind,
        project_id: scope.project_id || null,
        device_id: scope.device_id || null,
        enabled: scope.enabled,
        spec: JSON.parse(spec),
        note: scope.note,
      });
      setMsg(t("saved"));
      rules.reload();
    } catch (x) {
      setMsg(errorText(x));
    }
  };
  return (
    <Section title={t("rules")} testid="admin-rules">
      <Status l={rules} />
      {rules.data && (
        <Table
          rows={rules.data}
          rowTestid="rule-row"
          cols={[
            { key: "key", label: "key", render: (r) => <button class="link" data-testid="rule-edit" onClick={() => start(r)}>{r.key}</button> },
            { key: "device_kind", label: t("kind") },
            { key: "scope", label: "scope", render: (r) => `${r.scope}${r.project_id ? " " + r.project_id : ""}${r.device_id ? " " + r.device_id : ""}` },
            { key: "enabled", label: "on" },
            { key: "levels", label: `${t("warning")} / ${t("alarm")}`, render: (r) => { const l = (r.spec.levels ?? {}) as Record<string, unknown>; return l.warning !== undefined ? `${JSON.stringify(l.warning)} / ${JSON.stringify(l.alarm)}` : ""; } },
            { key: "revision", label: "rev" },
          ]}
        />
      )}
      {edit && (
        <form class="action-form" data-testid="rule-form" onSubmit={save}>
          <h3>{edit.key}</h3>
          <label>
            {t("kind")}
            <input value={scope.device_kind} onInput={(e) => setScope({ ...scope, device_kind: (e.target as HTMLInputElement).value })} />
          </label>
          <label>
            {t("project")}
            <input data-testid="rule-project" value={scope.project_id} onInput={(e) => setScope({ ...scope, project_id: (e.target as HTMLInputElement).value })} />
          </label>
          <label>
            {t("device")}
            <input value={scope.device_id} onInput={(e) => setScope({ ...scope, device_id: (e.target as HTMLInputElement).value })} />
          </label>
          <label class="inline">
            <input type="checkbox" checked={scope.enabled} onChange={(e) => setScope({ ...scope, enabled: (e.target as HTMLInputElement).checked })} /> enabled
          </label>
          <label>
            spec (JSON)
            <textarea data-testid="rule-spec" rows={10} class="mono" value={spec} onInput={(e) => setSpec((e.target as HTMLTextAreaElement).value)} />
          </label>
          <label>
            {t("note")}
            <input value={scope.note} onInput={(e) => setScope({ ...scope, note: (e.target as HTMLInputElement).value })} />
          </label>
          {msg && <div data-testid="rule-msg">{msg}</div>}
          <div class="actions">
            <button class="primary" type="submit" data-testid="rule-save">
              {t("save")}
            </button>
            <button type="button" onClick={() => setEdit(null)}>
              {t("close")}
            </button>
          </div>
        </form>
      )}
    </Section>
  );
}

function Users() {
  const users = useLoad(() => all<Record<string, unknown>>("/api/users"), []);
  const [f, setF] = useState({ username: "", password: "", display_name: "", role: "officer", district_code: "", projects: "" });
  const [msg, setMsg] = useState<string | null>(null);
  const set = (k: keyof typeof f) => (e: Event) => setF({ ...f, [k]: (e.target as HTMLInputElement).value });
  const submit = async (e: Event) => {
    e.preventDefault();
    try {
      await post("/api/users", {
        username: f.username,
        password: f.password,
        display_name: f.display_name,
        role: f.role,
        district_code: f.role === "regulator" && f.district_code ? f.district_code : null,
        projects: ["officer", "data_sharing"].includes(f.role) ? f.projects.split(",").map((s) => s.trim()).filter(Boolean) : [],
      });
      setMsg(t("saved"));
      setF({ ...f, username: "", password: "" });
      users.reload();
    } catch (x) {
      setMsg(errorText(x));
    }
  };
  return (
    <Section title={t("users")} testid="admin-users">
      <Status l={users} />
      {users.data && <Table rows={users.data} rowTestid="user-row" cols={["username", "display_name", "role", "district_code", "active", "projects"].map((k) => ({ key: k, label: k, render: k === "projects" ? (r: Record<string, unknown>) => ((r.projects as string[]) ?? []).join(", ") : undefined }))} />}
      <form class="action-form" data-testid="user-form" onSubmit={submit}>
        <h3>{t("newUser")}</h3>
        <label>
          {t("username")}
          <input data-testid="user-username" required value={f.username} onInput={set("username")} />
        </label>
        <label>
          {t("password")}
          <input data-testid="user-password" type="password" required minLength={8} value={f.password} onInput={set("password")} />
        </label>
        <label>
          {t("displayName")}
          <input value={f.display_name} onInput={set("display_name")} />
        </label>
        <label>
          {t("role")}
          <select data-testid="user-role" value={f.role} onChange={set("role")}>
            {["officer", "regulator", "enterprise", "data_sharing", "admin"].map((r) => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
        </label>
        {f.role === "regulator" && (
          <label>
            {t("district")}
            <input value={f.district_code} onInput={set("district_code")} />
          </label>
        )}
        {(f.role === "officer" || f.role === "data_sharing") && (
          <label>
            {t("projectsComma")}
            <input data-testid="user-projects" value={f.projects} onInput={set("projects")} />
          </label>
        )}
        {msg && <div data-testid="user-msg">{msg}</div>}
        <button class="primary" type="submit" data-testid="user-create">
          {t("create")}
        </button>
      </form>
    </Section>
  );
}

export function AdminPage() {
  return (
    <div class="admin" data-testid="admin">
      <Devices />
      <Rules />
      <Users />
    </div>
  );
}
