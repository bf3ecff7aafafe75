// Administration: devices per project, thresholds and rules, user accounts.
import { useState } from "preact/hooks";
import { all, errorText, get, post, put, send } from "../api";
import { fmtTime, t } from "../i18n";
import { Section, Status, Table, useLoad } from "../ui";
import { Field, Msg, ProjectSelect, isoFromLocal, localInput, useProjects, val } from "../forms";

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
      <Workers />
      <Users />
    </div>
  );
}

// --- workers: face enrolment with the worker's recorded consent (never the embeddings) ---------

interface WorkerRow {
  person_id: string;
  name: string;
  id_number_masked: string;
  employer_name: string | null;
  trade: string;
  role: string;
  status: string;
}

interface FaceEnrolment {
  person_id: string;
  enrolled: boolean;
  enrolled_at?: string | null;
  photo_count?: number | null;
  model_sha256?: string | null;
  consent?: { given_by: string; given_at: string; method: string; document: string; recorded_by: string } | null;
}

function FacePanel(props: { worker: WorkerRow; onChange: () => void }) {
  const w = props.worker;
  const face = useLoad(() => get<FaceEnrolment>(`/api/workers/${encodeURIComponent(w.person_id)}/face`), [w.person_id]);
  const [files, setFiles] = useState<File[]>([]);
  const [f, setF] = useState({ given_by: w.name, given_at: localInput(new Date()), method: "written", document: "" });
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const set = (k: keyof typeof f) => val((v) => setF((o) => ({ ...o, [k]: v })));
  const enrol = async (e: Event) => {
    e.preventDefault();
    const fd = new FormData();
    files.forEach((x) => fd.append("photos", x));
    fd.append("consent_given_by", f.given_by);
    fd.append("consent_given_at", isoFromLocal(f.given_at));
    fd.append("consent_method", f.method);
    fd.append("consent_document", f.document);
    setBusy(true);
    try {
      await post(`/api/workers/${encodeURIComponent(w.person_id)}/face`, fd);
      setMsg({ ok: true, text: t("faceEnrolled") });
      face.reload();
      props.onChange();
    } catch (x) {
      setMsg({ ok: false, text: errorText(x) });
    } finally {
      setBusy(false);
    }
  };
  const [confirming, setConfirming] = useState(false);
  const remove = async () => {
    setConfirming(false);
    try {
      await send("DELETE", `/api/workers/${encodeURIComponent(w.person_id)}/face`);
      setMsg({ ok: true, text: t("faceRemoved") });
      face.reload();
      props.onChange();
    } catch (x) {
      setMsg({ ok: false, text: errorText(x) });
    }
  };
  const d = face.data;
  return (
    <div class="face-panel" data-testid="face-panel" data-person={w.person_id}>
      <h3>
        {w.name} <span class="muted small">{w.id_number_masked}</span>
      </h3>
      <Status l={face} />
      {d && (
        <div data-testid="face-state" data-enrolled={d.enrolled ? "1" : "0"}>
          {d.enrolled ? (
            <dl class="facts">
              <dt>{t("faceStatus")}</dt>
              <dd>
                <span class="badge badge-closed">{t("enrolled")}</span> {fmtTime(d.enrolled_at)}
              </dd>
              <dt>{t("photos")}</dt>
              <dd data-testid="face-photo-count">{d.photo_count}</dd>
              <dt>{t("consentBy")}</dt>
              <dd>
                {d.consent?.given_by} · {fmtTime(d.consent?.given_at)} · {d.consent ? t(d.consent.method === "written" ? "consentWritten" : "consentElectronic") : ""}
              </dd>
              <dt>{t("consentDocument")}</dt>
              <dd data-testid="face-consent-doc">{d.consent?.document}</dd>
              <dt>{t("recordedBy")}</dt>
              <dd>{d.consent?.recorded_by}</dd>
              <dt>{t("model")}</dt>
              <dd class="mono small">{d.model_sha256?.slice(0, 12)}</dd>
            </dl>
          ) : (
            <div class="muted">{t("notEnrolled")}</div>
          )}
          {d.enrolled && !confirming && (
            <button data-testid="face-remove" onClick={() => setConfirming(true)}>
              {t("removeFace")}
            </button>
          )}
          {d.enrolled && confirming && (
            <div class="actions">
              <span>{t("removeFaceConfirm")}</span>
              <button class="primary" data-testid="face-remove-confirm" onClick={remove}>
                {t("removeFace")}
              </button>
              <button onClick={() => setConfirming(false)}>{t("close")}</button>
            </div>
          )}
        </div>
      )}
      <form class="action-form" data-testid="face-form" onSubmit={enrol}>
        <h4>{d?.enrolled ? t("reEnrolFace") : t("enrolFace")}</h4>
        <Field label={t("facePhotos")}>
          <input type="file" accept="image/*" multiple data-testid="face-photos" onChange={(e) => setFiles(Array.from((e.target as HTMLInputElement).files ?? []).slice(0, 5))} />
        </Field>
        <p class="muted small">{t("consentHint")}</p>
        <Field label={t("consentBy")}>
          <input data-testid="face-consent-by" required value={f.given_by} onInput={set("given_by")} />
        </Field>
        <Field label={t("consentAt")}>
          <input type="datetime-local" data-testid="face-consent-at" required value={f.given_at} onInput={set("given_at")} />
        </Field>
        <Field label={t("consentMethod")}>
          <select data-testid="face-consent-method" value={f.method} onChange={set("method")}>
            <option value="written">{t("consentWritten")}</option>
            <option value="electronic">{t("consentElectronic")}</option>
          </select>
        </Field>
        <Field label={t("consentDocument")}>
          <input data-testid="face-consent-doc-input" required value={f.document} onInput={set("document")} />
        </Field>
        <Msg msg={msg} testid="face-msg" />
        <button class="primary" type="submit" data-testid="face-enrol" disabled={busy || files.length === 0}>
          {busy ? t("loading") : t("enrolFace")}
        </button>
      </form>
    </div>
  );
}

function Workers() {
  const projects = useProjects();
  const [pid, setPid] = useState("");
  const [q, setQ] = useState("");
  const chosen = pid || projects.data?.[0]?.id || "";
  const workers = useLoad(
    () => (chosen ? all<WorkerRow>(`/api/projects/${encodeURIComponent(chosen)}/workers`, { q: q || undefined }, 500) : Promise.resolve([])),
    [chosen, q],
  );
  const [sel, setSel] = useState<string | null>(null);
  const picked = workers.data?.find((w) => w.person_id === sel) ?? null;
  return (
    <Section
      title={t("workersFaces")}
      testid="admin-workers"
      actions={
        <div class="filters">
          <ProjectSelect testid="workers-project" projects={projects.data ?? []} value={chosen} onChange={(v) => { setPid(v); setSel(null); }} />
          <input placeholder={t("search")} value={q} onChange={val(setQ)} data-testid="workers-q" />
        </div>
      }
    >
      <Status l={workers} />
      {workers.data && (
        <Table
          rows={workers.data}
          rowTestid="worker-row"
          cols={[
            { key: "name", label: t("name"), render: (r) => <button class="link" data-testid={`worker-${r.person_id}`} onClick={() => setSel(r.person_id)}>{r.name}</button> },
            { key: "id_number_masked", label: t("idNumber") },
            { key: "employer_name", label: t("employer") },
            { key: "trade", label: t("trade") },
            { key: "status", label: t("status") },
          ]}
        />
      )}
      {picked && <FacePanel key={picked.person_id} worker={picked} onChange={() => undefined} />}
    </Section>
  );
}
