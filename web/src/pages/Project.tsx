// A project's dashboard: sensor charts with warning/alarm lines, open alerts with their
// photos, today's attendance, the BIM storey with the alert's place, permits, enterprises.
import type { ComponentType } from "preact";
import { useEffect, useMemo, useState } from "preact/hooks";
import { all, errorText, get } from "../api";
import { ACTIVE_STATUSES, type AlertDetail, type AlertItem, type BimContext, type EvidenceOut } from "../alerts";
import { Chart, type ChartOption } from "../charts";
import { fmtTime, t } from "../i18n";
import { AuthImage, Badge, Link, Modal, Section, Status, Table, useLoad } from "../ui";

interface ProjectOut {
  id: string;
  name: string;
  address: string;
  district_name: string | null;
  status: string;
}

interface Series {
  device_id: string;
  metric: string;
  unit?: string;
  kind?: string;
  name?: string;
}

interface Telemetry {
  since?: string;
  until?: string;
  points: { t: string; avg: number; min: number; max: number; count: number }[];
  warning?: number | null;
  alarm?: number | null;
  unit?: string;
}

function listOf<T>(x: unknown, ...keys: string[]): T[] {
  if (Array.isArray(x)) return x as T[];
  if (x && typeof x === "object") for (const k of ["items", ...keys]) {
    const v = (x as Record<string, unknown>)[k];
    if (Array.isArray(v)) return v as T[];
  }
  return [];
}

function normSeries(raw: unknown): Series[] {
  const out: Series[] = [];
  for (const s of listOf<Record<string, unknown>>(raw, "series", "devices")) {
    const dev = String(s.device_id ?? s.device ?? s.id ?? "");
    const metrics = s.metrics;
    if (Array.isArray(metrics)) {
      for (const m of metrics as unknown[]) {
        const mm = typeof m === "string" ? { metric: m } : (m as Record<string, unknown>);
        out.push({ device_id: dev, metric: String(mm.metric ?? mm.name), unit: mm.unit as string | undefined, kind: s.kind as string | undefined, name: s.name as string | undefined });
      }
    } else if (s.metric) out.push({ device_id: dev, metric: String(s.metric), unit: s.unit as string | undefined, kind: s.kind as string | undefined, name: (s.device_name || s.name || undefined) as string | undefined });
  }
  return out.filter((s) => s.device_id && s.metric);
}

function SensorChart(props: { s: Series }) {
  const since = useMemo(() => new Date(Date.now() - 24 * 3600e3).toISOString(), []);
  const l = useLoad(
    () => get<Telemetry>(`/api/devices/${encodeURIComponent(props.s.device_id)}/telemetry`, { metric: props.s.metric, bucket: "auto", since }),
    [props.s.device_id, props.s.metric],
  );
  const option = useMemo<ChartOption>(() => {
    const d = l.data;
    const pts = d?.points ?? [];
    const lines: { name: string; yAxis: number; lineStyle: { color: string } }[] = [];
    if (d?.warning != null) lines.push({ name: t("warning"), yAxis: d.warning, lineStyle: { color: "#f59f00" } });
    if (d?.alarm != null) lines.push({ name: t("alarm"), yAxis: d.alarm, lineStyle: { color: "#e03131" } });
    const values = [...pts.flatMap((p) => [p.min, p.max]), ...lines.map((l) => l.yAxis)];
    const lo = values.length ? Math.min(...values) : 0;
    const hi = values.length ? Math.max(...values) : 1;
    const pad = (hi - lo) * 0.08 || 1;
    return {
      tooltip: { trigger: "axis" },
      grid: { left: 45, right: 70, top: 24, bottom: 30 },
      xAxis: { type: "time", min: d?.since, max: d?.until },
      yAxis: { type: "value", min: Math.floor(lo - pad), max: Math.ceil(hi + pad), name: d?.unit ?? props.s.unit ?? "" },
      series: [
        {
          type: "line",
          showSymbol: pts.length < 40,
          data: pts.map((p) => [p.t, p.avg]),
          markLine: lines.length ? { symbol: "none", label: { formatter: "{b}: {c}" }, data: lines } : undefined,
        },
      ],
    } as ChartOption;
  }, [l.data]);
  return (
    <div class="sensor" data-testid="sensor-chart" data-device={props.s.device_id} data-metric={props.s.metric}>
      <div class="small">
        <b>{props.s.name ?? props.s.device_id}</b> · {props.s.metric}
      </div>
      {l.error ? <div class="error small">{l.error}</div> : <Chart option={option} height={180} />}
    </div>
  );
}

// three.js is loaded only when a BIM view is shown.
function LazyBim(props: { url: string; highlight: string[] }) {
  const [C, setC] = useState<ComponentType<{ url: string; highlight: string[] }> | null>(null);
  const [err, setErr] = useState<string | null>(null);
  useEffect(() => {
    import("../bim").then((m) => setC(() => m.BimView), (e) => setErr(errorText(e)));
  }, []);
  if (err) return <div class="error">{err}</div>;
  if (!C) return <div class="muted">{t("loading")}</div>;
  return <C {...props} />;
}

interface TreeNode {
  global_id: string;
  kind: string;
  name?: string | null;
  elevation?: number | null;
  children?: TreeNode[];
}

function storeysOf(raw: unknown): TreeNode[] {
  const out: TreeNode[] = [];
  const walk = (n: TreeNode) => {
    if (n.kind === "storey") out.push(n);
    (n.children ?? []).forEach(walk);
  };
  const r = raw as { roots?: TreeNode[]; tree?: TreeNode[] | { roots?: TreeNode[] } } | null;
  const roots = r?.roots ?? (Array.isArray(r?.tree) ? r?.tree : r?.tree?.roots) ?? [];
  roots.forEach(walk);
  return out;
}

function BimSection(props: { id: string; focus: AlertDetail | null }) {
  const model = useLoad(() => get<unknown>(`/api/projects/${encodeURIComponent(props.id)}/bim`), [props.id]);
  const storeys = storeysOf(model.data);
  const bim: BimContext | null | undefined = props.focus?.correlation?.bim;
  const [storey, setStorey] = useState<string>("");
  const chosen = storey || bim?.storey?.global_id || storeys[0]?.global_id || "";
  const highlight = bim && bim.storey?.global_id === chosen ? ([bim.element?.global_id, bim.space?.global_id].filter(Boolean) as string[]) : [];
  return (
    <Section
      title={t("bim")}
      testid="bim-section"
      actions={
        storeys.length > 0 && (
          <select data-testid="storey-select" value={chosen} onChange={(e) => setStorey((e.target as HTMLSelectElement).value)}>
            {storeys.map((s) => (
              <option key={s.global_id} value={s.global_id}>
                {s.name || s.global_id}
              </option>
            ))}
          </select>
        )
      }
    >
      {model.error ? (
        <div class="muted" data-testid="bim-none">
          {t("noModel")}
        </div>
      ) : (
        <Status l={model} />
      )}
      {props.focus && bim?.storey && (
        <div class="small" data-testid="bim-focus">
          {props.focus.title}: {[bim.storey?.name, bim.space?.name, bim.element?.name].filter(Boolean).join(" / ")}
        </div>
      )}
      {chosen && <LazyBim url={`/api/projects/${encodeURIComponent(props.id)}/bim/storeys/${encodeURIComponent(chosen)}.glb`} highlight={highlight} />}
    </Section>
  );
}

function AlertThumb(props: { a: AlertItem }) {
  const ev = useLoad(() => get<EvidenceOut[]>(`/api/alerts/${props.a.id}/evidence`), [props.a.id]);
  const [open, setOpen] = useState<EvidenceOut | null>(null);
  const first = (ev.data ?? [])[0];
  return (
    <>
      {first ? (
        <button class="thumb-btn" data-testid="evidence-thumb" onClick={() => setOpen(first)}>
          <AuthImage src={first.url} alt="evidence" class="thumb" />
        </button>
      ) : (
        <span class="thumb placeholder" />
      )}
      {open && (
        <Modal onClose={() => setOpen(null)} testid="evidence-modal">
          <AuthImage src={open.url} alt="evidence" class="full" testid="evidence-full" />
        </Modal>
      )}
    </>
  );
}

export function ProjectPage(props: { id: string }) {
  const id = props.id;
  const enc = encodeURIComponent(id);
  const focusId = new URLSearchParams(location.search).get("alert");
  const project = useLoad(() => get<ProjectOut>(`/api/projects/${enc}`), [id]);
  const catalog = useLoad(() => get<unknown>(`/api/projects/${enc}/series-catalog`), [id]);
  const alerts = useLoad(() => all<AlertItem>("/api/alerts", { project: id }, 300), [id]);
  const attendance = useLoad(() => get<{ people: number; total: number; items: Record<string, unknown>[] }>(`/api/projects/${enc}/attendance`, { limit: 50 }), [id]);
  const permits = useLoad(() => get<Record<string, unknown>[]>(`/api/projects/${enc}/permits`), [id]);
  const enterprises = useLoad(
    () => get<{ uscc: string; name: string; role: string; credit_score: number | null; credit_grade: string | null; blacklisted: boolean | null }[]>(`/api/projects/${enc}/enterprises`),
    [id],
  );
  const focus = useLoad(() => (focusId ? get<AlertDetail>(`/api/alerts/${focusId}`) : Promise.resolve(null)), [focusId]);
  const dash = useLoad(
    () =>
      get<{ devices: { total: number; online: number; offline: number }; alerts: { open: number; warning: number; alarm: number; overdue: number }; attendance: { workers_today: number } }>(
        `/api/projects/${enc}/dashboard`,
      ),
    [id],
  );
  const series = normSeries(catalog.data).slice(0, 8);
  const open = (alerts.data ?? []).filter((a) => ACTIVE_STATUSES.includes(a.status));

  return (
    <div class="project" data-testid="project-page" data-project-id={id}>
      <h1>
        {project.data?.name ?? id} <span class="muted small">{project.data?.address}</span>
      </h1>
      <Status l={project} />
      {dash.data && (
        <div class="stats" data-testid="dashboard-stats">
          <div><b>{dash.data.devices.online}</b>/{dash.data.devices.total} <span class="muted">{t("devicesOnline")}</span></div>
          <div><b>{dash.data.alerts.open}</b> <span class="muted">{t("openAlerts")}</span></div>
          <div><b class="alarm-text">{dash.data.alerts.alarm}</b> <span class="muted">{t("alarm")}</span></div>
          <div><b>{dash.data.alerts.overdue}</b> <span class="muted">{t("overdue")}</span></div>
          <div><b>{dash.data.attendance.workers_today}</b> <span class="muted">{t("attendanceToday")}</span></div>
        </div>
      )}
      <div class="grid2">
        <Section title={t("sensors")} testid="sensors">
          {catalog.error ? <div class="muted">{t("nothing")}</div> : <Status l={catalog} empty={!catalog.loading && series.length === 0} />}
          <div class="sensor-grid">
            {series.map((s) => (
              <SensorChart key={s.device_id + s.metric} s={s} />
            ))}
          </div>
        </Section>
        <Section title={t("openAlerts")} testid="project-alerts">
          <Status l={alerts} empty={!alerts.loading && open.length === 0} />
          <ul class="alert-list">
            {open.slice(0, 30).map((a) => (
              <li key={a.id} class="alert-row with-thumb" data-testid="project-alert" data-alert-id={a.id}>
                <AlertThumb a={a} />
                <div>
                  <div class="row1">
                    <Badge kind={a.level} text={a.level === "alarm" ? t("alarm") : t("warning")} />
                    <Link href={`/inbox?alert=${a.id}`}>{a.title}</Link>
                  </div>
                  <div class="row2 muted">
                    {a.device_id} · {fmtTime(a.created_at)} <Badge kind={a.status} />{" "}
                    <Link href={`/projects/${enc}?alert=${a.id}`}>{t("showBim")}</Link>
                  </div>
                </div>
              </li>
            ))}
          </ul>
        </Section>
      </div>
      <BimSection id={id} focus={focus.data ?? null} />
      <div class="grid2">
        <Section title={t("attendanceToday")} testid="attendance">
          <Status l={attendance} />
          {attendance.data && (
            <>
              <div class="big-number" data-testid="attendance-people">
                {attendance.data.people} <span class="small muted">{t("workers")}</span>
              </div>
              <Table
                rows={attendance.data.items}
                max={20}
                cols={[
                  { key: "time", label: t("opened"), render: (r) => fmtTime(r.time as string) },
                  { key: "person_name", label: t("name"), render: (r) => String(r.person_name ?? r.person_id) },
                  { key: "direction", label: "↔", render: (r) => (r.direction === "in" ? t("in") : r.direction === "out" ? t("out") : String(r.direction)) },
                ]}
              />
            </>
          )}
        </Section>
        <Section title={t("permits")} testid="permits">
          <Status l={permits} />
          {permits.data && <Table rows={permits.data} />}
          <h3>{t("enterprises")}</h3>
          <Status l={enterprises} />
          {enterprises.data && (
            <Table
              rows={enterprises.data}
              testid="enterprises"
              cols={[
                { key: "name", label: t("name") },
                { key: "role", label: t("role") },
                { key: "credit_score", label: t("creditScore") },
                { key: "credit_grade", label: t("creditGrade") },
                { key: "blacklisted", label: t("blacklisted"), render: (e) => (e.blacklisted ? <Badge kind="alarm" text={t("blacklisted")} /> : e.blacklisted === false ? t("no") : "") },
              ]}
            />
          )}
        </Section>
      </div>
    </div>
  );
}
