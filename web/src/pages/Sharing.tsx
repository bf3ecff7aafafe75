// Data sharing: API keys with their grant (the key shown once), the access audit, bulk
// exports for a date range and the registries' data-quality report.
import { useState } from "preact/hooks";
import { all, errorText, get, post, send, type Me } from "../api";
import { fmtTime, t, tv } from "../i18n";
import { Section, Status, Table, useLoad } from "../ui";
import { Field, Msg, Tabs, dateInput, download, splitList, val } from "../forms";

const RESOURCES: Record<string, string[]> = {
  projects: ["id", "name", "address", "district_code", "status", "latitude", "longitude", "start_date", "planned_end_date", "completed_date", "created_at"],
  permits: ["number", "project_id", "issued_on", "expires_on", "status", "issuer"],
  enterprises: ["uscc", "name", "kind", "credit_score", "credit_grade", "blacklisted", "projects"],
  workers: ["person_id", "name", "id_number", "employer_uscc", "trade", "status", "project_id", "role", "joined_on", "left_on", "certificates"],
  attendance: ["time", "project_id", "device_id", "person_id", "direction", "similarity"],
  alerts: ["id", "created_at", "project_id", "device_id", "source", "rule", "severity", "status", "zone", "detail", "unpermitted_work"],
  credit: [],
  telemetry: [],
  devices: [],
};

interface KeyGrant {
  projects: string[] | null;
  district: string | null;
  resources: string[] | null;
  fields: Record<string, string[]>;
  personal_data: string;
}

interface KeyOut {
  id: string;
  name: string;
  role: string;
  grant: KeyGrant;
  created_by: string;
  created_at: string;
  expires_at: string | null;
  revoked_at: string | null;
  last_used_at: string | null;
}

export function SharingPage(props: { me: Me; seg: string[] }) {
  const admin = props.me.role === "admin";
  const tab = props.seg[1] || (admin ? "keys" : "exports");
  const tabs = [
    ...(admin
      ? [
          { id: "keys", label: t("apiKeys"), href: "/sharing/keys" },
          { id: "audit", label: t("audit"), href: "/sharing/audit" },
        ]
      : []),
    { id: "exports", label: t("exports"), href: "/sharing/exports" },
    { id: "quality", label: t("dataQuality"), href: "/sharing/quality" },
  ];
  return (
    <div class="sharing" data-testid="sharing">
      <h1>{t("dataSharing")}</h1>
      <Tabs tabs={tabs} current={tab} />
      {tab === "keys" && admin && <Keys />}
      {tab === "audit" && admin && <Audit />}
      {tab === "exports" && <Exports />}
      {tab === "quality" && <Quality />}
    </div>
  );
}

function grantText(g: KeyGrant): string {
  const parts = [
    g.resources ? g.resources.join(", ") : t("allDatasets"),
    g.projects ? `${t("projects")}: ${g.projects.join(", ")}` : "",
    g.district ? `${t("district")}: ${g.district}` : "",
    Object.keys(g.fields).length ? Object.entries(g.fields).map(([r, f]) => `${r}[${f.join(",")}]`).join(" ") : "",
    `${t("personalData")}: ${tv("pd", g.personal_data)}`,
  ];
  return parts.filter(Boolean).join(" · ");
}

function Keys() {
  const keys = useLoad(() => all<KeyOut>("/api/keys"), []);
  const [f, setF] = useState({ name: "", role: "data_sharing", projects: "", district: "", personal_data: "masked", expires: "" });
  const [resources, setResources] = useState<string[]>([]);
  const [fields, setFields] = useState<Record<string, string>>({});
  const [created, setCreated] = useState<{ id: string; key: string } | null>(null);
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const set = (k: keyof typeof f) => val((v) => setF((o) => ({ ...o, [k]: v })));
  const submit = async (e: Event) => {
    e.preventDefault();
    const flds: Record<string, string[]> = {};
    for (const r of resources) {
      const l = splitList(fields[r] ?? "");
      if (l.length) flds[r] = l;
    }
    try {
      const k = await post<KeyOut & { key: string }>("/api/keys", {
        name: f.name,
        role: f.role,
        expires_at: f.expires ? new Date(f.expires + "T23:59:59").toISOString() : null,
        grant: {
          projects: f.projects.trim() ? splitList(f.projects) : null,
          district: f.district.trim() || null,
          resources: resources.length ? resources : null,
          fields: flds,
          personal_data: f.personal_data,
        },
      });
      setCreated({ id: k.id, key: k.key });
      setMsg(null);
      setF({ ...f, name: "" });
      keys.reload();
    } catch (x) {
      setMsg({ ok: false, text: errorText(x) });
    }
  };
  const revoke = async (id: string) => {
    try {
      await send("DELETE", `/api/keys/${encodeURIComponent(id)}`);
      keys.reload();
    } catch (x) {
      setMsg({ ok: false, text: errorText(x) });
    }
  };
  return (
    <>
      <Section title={t("apiKeys")} testid="keys">
        <Status l={keys} />
        {keys.data && (
          <Table
            rows={keys.data}
            rowTestid="key-row"
            cols={[
              { key: "id", label: "id", render: (r) => <span class="mono" data-key-id={r.id}>{r.id}</span> },
              { key: "name", label: t("name") },
              { key: "role", label: t("role") },
              { key: "grant", label: t("grant"), render: (r) => <span class="small">{grantText(r.grant)}</span> },
              { key: "created_at", label: t("created"), render: (r) => `${fmtTime(r.created_at)} ${r.created_by}` },
              { key: "last_used_at", label: t("lastUsed"), render: (r) => fmtTime(r.last_used_at) },
              {
                key: "state",
                label: t("status"),
                render: (r) =>
                  r.revoked_at ? (
                    `${t("revoked")} ${fmtTime(r.revoked_at)}`
                  ) : (
                    <button class="link" data-testid="key-revoke" onClick={() => revoke(r.id)}>
                      {t("revoke")}
                    </button>
                  ),
              },
            ]}
          />
        )}
      </Section>
      <Section title={t("newKey")} testid="key-new">
        {created && (
          <div class="once" data-testid="key-created">
            <b>{t("keyShownOnce")}</b>
            <code class="mono break" data-testid="key-secret">
              {created.key}
            </code>
            <button type="button" onClick={() => navigator.clipboard?.writeText(created.key)}>
              {t("copy")}
            </button>
          </div>
        )}
        <form class="action-form" data-testid="key-form" onSubmit={submit}>
          <div class="row3">
            <Field label={t("name")}>
              <input data-testid="key-name" required value={f.name} onInput={set("name")} />
            </Field>
            <Field label={t("role")}>
              <select value={f.role} onChange={set("role")} data-testid="key-role">
                <option value="data_sharing">data_sharing</option>
                <option value="integration">integration</option>
              </select>
            </Field>
          </div>
          <div class="row3">
            <Field label={t("projectsComma")}>
              <input data-testid="key-projects" value={f.projects} onInput={set("projects")} />
            </Field>
            <Field label={t("district")}>
              <input data-testid="key-district" value={f.district} onInput={set("district")} />
            </Field>
            <Field label={t("expires")}>
              <input type="date" value={f.expires} onInput={set("expires")} />
            </Field>
          </div>
          <div class="checks" data-testid="key-resources">
            <span class="small">{t("datasets")}</span>
            {Object.keys(RESOURCES).map((r) => (
              <label key={r} class="inline">
                <input
                  type="checkbox"
                  data-testid={`key-resource-${r}`}
                  checked={resources.includes(r)}
                  onChange={() => setResources(resources.includes(r) ? resources.filter((x) => x !== r) : [...resources, r])}
                />{" "}
                {r}
              </label>
            ))}
          </div>
          {resources
            .filter((r) => RESOURCES[r].length)
            .map((r) => (
              <Field key={r} label={`${r}: ${t("onlyFields")}`}>
                <input data-testid={`key-fields-${r}`} value={fields[r] ?? ""} placeholder={RESOURCES[r].join(", ")} onInput={val((v) => setFields({ ...fields, [r]: v }))} />
              </Field>
            ))}
          <Field label={t("personalData")}>
            <select value={f.personal_data} onChange={set("personal_data")} data-testid="key-personal">
              <option value="masked">{tv("pd", "masked")}</option>
              <option value="clear">{tv("pd", "clear")}</option>
            </select>
          </Field>
          <Msg msg={msg} testid="key-msg" />
          <button class="primary" type="submit" data-testid="key-create">
            {t("create")}
          </button>
        </form>
      </Section>
    </>
  );
}

interface AuditRow {
  id: number;
  at: string;
  principal: string;
  role: string;
  method: string;
  path: string;
  resource: string;
  records: number;
  query: string;
  fields: string[] | null;
  status: number | null;
  personal_data: string | null;
}

function Audit() {
  const [principal, setPrincipal] = useState("");
  const [resource, setResource] = useState("");
  const l = useLoad(() => get<{ items: AuditRow[]; total: number }>("/api/audit", { principal: principal || undefined, resource: resource || undefined, limit: 200 }), [principal, resource]);
  return (
    <Section
      title={t("audit")}
      testid="audit"
      actions={
        <div class="filters">
          <input placeholder={t("principal")} value={principal} onChange={val(setPrincipal)} data-testid="audit-principal" />
          <select value={resource} onChange={val(setResource)} data-testid="audit-resource">
            <option value="">{t("allDatasets")}</option>
            {[...Object.keys(RESOURCES), "data-quality"].map((r) => (
              <option key={r} value={r}>
                {r}
              </option>
            ))}
          </select>
        </div>
      }
    >
      <Status l={l} />
      {l.data && (
        <>
          <div class="muted small">
            {t("total")}: {l.data.total}
          </div>
          <Table
            rows={l.data.items}
            rowTestid="audit-row"
            cols={[
              { key: "at", label: t("time"), render: (r) => fmtTime(r.at) },
              { key: "principal", label: t("principal") },
              { key: "resource", label: t("dataset") },
              { key: "records", label: t("records") },
              { key: "path", label: "path", render: (r) => <span class="mono small">{r.method} {r.path}{r.query ? "?" + r.query : ""}</span> },
              { key: "fields", label: t("fields"), render: (r) => (r.fields ?? []).join(", ") },
              { key: "personal_data", label: t("personalData"), render: (r) => (r.personal_data ? tv("pd", r.personal_data) : "") },
              { key: "status", label: "HTTP" },
            ]}
          />
        </>
      )}
    </Section>
  );
}

function Exports() {
  const today = new Date();
  const [f, setF] = useState({ dataset: "alerts", format: "csv", since: dateInput(new Date(today.getTime() - 30 * 86400_000)), until: dateInput(today) });
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const set = (k: keyof typeof f) => val((v) => setF((o) => ({ ...o, [k]: v })));
  const go = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    try {
      const since = f.since ? new Date(f.since + "T00:00:00").toISOString() : undefined;
      const until = f.until ? new Date(new Date(f.until + "T00:00:00").getTime() + 86400_000).toISOString() : undefined;
      const size = await download(`/api/exports/${f.dataset}`, { format: f.format, since, until }, `${f.dataset}_${f.since}_${f.until}.${f.format}`);
      setMsg({ ok: true, text: `${t("downloaded")} (${size.toLocaleString()} B)` });
    } catch (x) {
      setMsg({ ok: false, text: errorText(x) });
    } finally {
      setBusy(false);
    }
  };
  return (
    <Section title={t("exports")} testid="exports">
      <form class="action-form" onSubmit={go} data-testid="export-form">
        <div class="row3">
          <Field label={t("dataset")}>
            <select value={f.dataset} onChange={set("dataset")} data-testid="export-dataset">
              {["projects", "permits", "alerts", "credit"].map((d) => (
                <option key={d} value={d}>
                  {tv("ds", d)}
                </option>
              ))}
            </select>
          </Field>
          <Field label={t("format")}>
            <select value={f.format} onChange={set("format")} data-testid="export-format">
              <option value="csv">CSV</option>
              <option value="parquet">Parquet</option>
            </select>
          </Field>
        </div>
        <div class="row3">
          <Field label={t("since")}>
            <input type="date" value={f.since} onInput={set("since")} data-testid="export-since" />
          </Field>
          <Field label={t("until")}>
            <input type="date" value={f.until} onInput={set("until")} data-testid="export-until" />
          </Field>
        </div>
        <Msg msg={msg} testid="export-msg" />
        <button class="primary" type="submit" disabled={busy} data-testid="export-download">
          {t("download")}
        </button>
      </form>
    </Section>
  );
}

interface QualityReport {
  generated_at: string;
  summary: Record<string, number>;
  [k: string]: unknown;
}

const QUALITY = [
  "projects_without_valid_permit",
  "enterprises_with_invalid_codes",
  "persons_with_invalid_id_numbers",
  "silent_devices",
  "projects_without_bim",
  "workers_missing_certificates",
] as const;

function Quality() {
  const l = useLoad(() => get<QualityReport>("/api/data-quality"), []);
  const r = l.data;
  return (
    <Section title={t("dataQuality")} testid="quality" actions={<button onClick={l.reload}>{t("refresh")}</button>}>
      <Status l={l} />
      {r && (
        <>
          <div class="stats" data-testid="quality-summary">
            {QUALITY.map((k) => (
              <span key={k} data-testid={`quality-${k}`} data-count={r.summary[k]}>
                <b class={r.summary[k] ? "alarm-text" : ""}>{r.summary[k]}</b> {tv("dq", k)}
              </span>
            ))}
          </div>
          <div class="muted small">
            {t("generated")} {fmtTime(r.generated_at)}
          </div>
          {QUALITY.filter((k) => (r[k] as unknown[]).length > 0).map((k) => (
            <div key={k}>
              <h3>{tv("dq", k)}</h3>
              <Table rows={r[k] as Record<string, unknown>[]} max={100} />
            </div>
          ))}
        </>
      )}
    </Section>
  );
}
