// Emergency (应急): incident reports graded per Order 493 with the one-hour deadline and their
// follow-ups; early warnings with per-project acknowledgement; duty rosters.
import { useEffect, useState } from "preact/hooks";
import { all, errorText, get, post, put, ApiError, type Me } from "../api";
import { fmtTime, t, tv } from "../i18n";
import { Badge, Link, Section, Status, Table, navigate, useLoad } from "../ui";
import {
  EnumSelect,
  Field,
  Msg,
  ProjectSelect,
  Tabs,
  isoFromLocal,
  localInput,
  splitList,
  useProjects,
  val,
  type ProjectRef,
} from "../forms";

type Grade = "general" | "larger" | "major" | "especially_major";

interface GradeOut {
  grade: Grade;
  label: string;
  reason: string;
  deciding: string[];
  citation: string;
}

interface Incident {
  id: number;
  project_id: string;
  occurred_at: string;
  reported_at: string | null;
  place: string;
  summary: string;
  deaths: number;
  serious_injuries: number;
  direct_loss_yuan: number;
  measures: string;
  reporter: string;
  grade: Grade;
  grade_label: string;
  grade_reason: string;
  grade_citation?: string;
  revision: number;
  deadline: string;
  deadline_status: "on_time" | "late" | "awaiting" | "overdue";
  minutes_late: number | null;
}

interface Revision {
  revision: number;
  kind: string;
  at: string;
  by_name: string;
  by_role: string;
  reporter: string;
  place: string;
  summary: string;
  deaths: number;
  serious_injuries: number;
  direct_loss_yuan: number;
  measures: string;
  note: string;
  grade: Grade;
  grade_reason: string;
}

type IncidentDetail = Incident & { history: Revision[] };

const KINDS = ["strong_wind", "heavy_rain", "heat", "other"] as const;
const LEVELS = ["blue", "yellow", "orange", "red"] as const;
const TARGETS = ["district", "projects", "all"] as const;

interface Override {
  rule: string;
  warning: number | null;
  alarm: number | null;
}

interface WarningOut {
  id: number;
  kind: string;
  level: string;
  title: string;
  text: string;
  starts_at: string;
  ends_at: string;
  target: string;
  district_code: string | null;
  overrides: Override[];
  issued_by: string;
  issued_at: string;
  cancelled_at: string | null;
  cancel_reason: string | null;
  state: string;
  targets: number;
  acknowledged: number;
}

interface TargetState {
  project_id: string;
  project_name: string;
  acknowledged_at: string | null;
  acknowledged_by: string | null;
  note: string | null;
}

type WarningDetail = WarningOut & { projects: TargetState[] };

interface Awaiting {
  warning_id: number;
  kind: string;
  level: string;
  title: string;
  starts_at: string;
  ends_at: string;
  project_id: string;
  project_name: string;
}

const isManager = (me: Me) => me.role === "regulator" || me.role === "admin";
const isSite = (me: Me) => me.role === "officer" || me.role === "admin";

export function EmergencyPage(props: { me: Me; seg: string[] }) {
  const tab = props.seg[1] || "incidents";
  const id = props.seg[2];
  return (
    <div class="emergency" data-testid="emergency">
      <h1>{t("emergency")}</h1>
      <Tabs
        current={tab}
        tabs={[
          { id: "incidents", label: t("incidents"), href: "/emergency/incidents" },
          { id: "warnings", label: t("earlyWarnings"), href: "/emergency/warnings" },
          { id: "duty", label: t("duty"), href: "/emergency/duty" },
        ]}
      />
      {tab === "incidents" && (id ? <IncidentView id={Number(id)} me={props.me} /> : <Incidents me={props.me} />)}
      {tab === "warnings" && (id ? <WarningView id={Number(id)} me={props.me} /> : <Warnings me={props.me} />)}
      {tab === "duty" && <Duty me={props.me} />}
    </div>
  );
}

// --- incidents ------------------------------------------------------------------------------

export function GradeBox(props: { grade: Grade; label: string; reason: string; testid?: string }) {
  return (
    <div class={`grade-box grade-${props.grade}`} data-testid={props.testid ?? "grade"} data-grade={props.grade}>
      <b data-testid="grade-label">
        {props.label} · {tv("grade", props.grade)}
      </b>
      <div class="small" data-testid="grade-reason">
        {props.reason}
      </div>
    </div>
  );
}

function DeadlineBadge(props: { i: Incident }) {
  const s = props.i.deadline_status;
  const bad = s === "late" || s === "overdue";
  return (
    <span class={`badge ${bad ? "badge-alarm" : s === "awaiting" ? "badge-warning" : "badge-closed"}`} data-testid="deadline-status" data-status={s}>
      {tv("deadline", s)}
      {props.i.minutes_late != null && bad ? ` +${Math.round(props.i.minutes_late)} ${t("minutes")}` : ""}
    </span>
  );
}

function ReportForm(props: { projects: ProjectRef[]; onDone: (d: IncidentDetail) => void; me: Me }) {
  const [f, setF] = useState({
    project_id: "",
    occurred_at: localInput(new Date()),
    place: "",
    summary: "",
    deaths: "0",
    serious_injuries: "0",
    direct_loss_yuan: "0",
    measures: "",
    reporter: props.me.name,
  });
  const [preview, setPreview] = useState<GradeOut | null>(null);
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const set = (k: keyof typeof f) => val((v) => setF((o) => ({ ...o, [k]: v })));
  const pid = f.project_id || props.projects[0]?.id || "";
  const figures = { deaths: Number(f.deaths) || 0, serious_injuries: Number(f.serious_injuries) || 0, direct_loss_yuan: Number(f.direct_loss_yuan) || 0 };
  useEffect(() => {
    let live = true;
    const h = setTimeout(() => {
      post<GradeOut>("/api/emergency/grade", figures).then(
        (g) => live && setPreview(g),
        () => live && setPreview(null),
      );
    }, 250);
    return () => {
      live = false;
      clearTimeout(h);
    };
  }, [f.deaths, f.serious_injuries, f.direct_loss_yuan]);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    try {
      const d = await post<IncidentDetail>("/api/emergency/incidents", {
        project_id: pid,
        occurred_at: isoFromLocal(f.occurred_at),
        place: f.place,
        summary: f.summary,
        measures: f.measures,
        reporter: f.reporter,
        ...figures,
      });
      setMsg({ ok: true, text: t("saved") });
      props.onDone(d);
    } catch (x) {
      setMsg({ ok: false, text: errorText(x) });
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="action-form" data-testid="incident-form" onSubmit={submit}>
      <h3>{t("reportIncident")}</h3>
      <Field label={t("project")}>
        <ProjectSelect testid="incident-project" projects={props.projects} value={pid} onChange={(v) => setF({ ...f, project_id: v })} />
      </Field>
      <Field label={t("occurredAt")}>
        <input data-testid="incident-occurred" type="datetime-local" required value={f.occurred_at} onInput={set("occurred_at")} />
      </Field>
      <Field label={t("place")}>
        <input data-testid="incident-place" required value={f.place} onInput={set("place")} />
      </Field>
      <Field label={t("summary")}>
        <textarea data-testid="incident-summary" required value={f.summary} onInput={set("summary")} />
      </Field>
      <div class="row3">
        <Field label={t("deaths")}>
          <input data-testid="incident-deaths" type="number" min={0} value={f.deaths} onInput={set("deaths")} />
        </Field>
        <Field label={t("seriousInjuries")}>
          <input data-testid="incident-injuries" type="number" min={0} value={f.serious_injuries} onInput={set("serious_injuries")} />
        </Field>
        <Field label={t("directLoss")}>
          <input data-testid="incident-loss" type="number" min={0} step="any" value={f.direct_loss_yuan} onInput={set("direct_loss_yuan")} />
        </Field>
      </div>
      {preview && (
        <div data-testid="grade-preview">
          <span class="muted small">{t("gradePreview")}</span>
          <GradeBox grade={preview.grade} label={preview.label} reason={preview.reason} testid="grade-preview-box" />
        </div>
      )}
      <Field label={t("measures")}>
        <textarea data-testid="incident-measures" value={f.measures} onInput={set("measures")} />
      </Field>
      <Field label={t("reporter")}>
        <input data-testid="incident-reporter" required value={f.reporter} onInput={set("reporter")} />
      </Field>
      <p class="muted small">{t("oneHourRule")}</p>
      <Msg msg={msg} testid="incident-msg" />
      <button class="primary" type="submit" data-testid="incident-submit" disabled={busy || !pid}>
        {t("submitReport")}
      </button>
    </form>
  );
}

function Incidents(props: { me: Me }) {
  const projects = useProjects();
  const [lateOnly, setLateOnly] = useState(false);
  const [project, setProject] = useState("");
  const list = useLoad(() => all<Incident>("/api/emergency/incidents", { late_only: lateOnly || undefined, project: project || undefined }, 500), [lateOnly, project]);
  const [showForm, setShowForm] = useState(false);
  return (
    <>
      {isSite(props.me) && (
        <Section
          title={t("reportIncident")}
          testid="incident-report"
          actions={
            <button data-testid="incident-new" onClick={() => setShowForm(!showForm)}>
              {showForm ? t("close") : t("reportIncident")}
            </button>
          }
        >
          {showForm && projects.data && (
            <ReportForm me={props.me} projects={projects.data} onDone={(d) => navigate(`/emergency/incidents/${d.id}?new=1`)} />
          )}
        </Section>
      )}
      <Section
        title={t("incidents")}
        testid="incident-list"
        actions={
          <div class="filters">
            <ProjectSelect any projects={projects.data ?? []} value={project} onChange={setProject} />
            <label class="inline">
              <input type="checkbox" data-testid="incident-late-only" checked={lateOnly} onChange={(e) => setLateOnly((e.target as HTMLInputElement).checked)} /> {t("lateOnly")}
            </label>
          </div>
        }
      >
        <Status l={list} />
        {list.data && (
          <ul class="alert-list">
            {list.data.length === 0 && <li class="muted">{t("nothing")}</li>}
            {list.data.map((i) => (
              <li
                key={i.id}
                class={`alert-row ${i.deadline_status === "late" || i.deadline_status === "overdue" ? "late" : ""}`}
                data-testid="incident-row"
                data-incident-id={i.id}
                data-deadline={i.deadline_status}
                onClick={() => navigate(`/emergency/incidents/${i.id}`)}
              >
                <div class="row1">
                  <span class={`badge grade-badge grade-${i.grade}`}>{i.grade_label}</span>
                  <span class="title">{i.summary}</span>
                  <DeadlineBadge i={i} />
                </div>
                <div class="row2 muted">
                  {i.project_id} · {i.place} · {fmtTime(i.occurred_at)} · {t("deaths")} {i.deaths} / {t("seriousInjuries")} {i.serious_injuries}
                </div>
              </li>
            ))}
          </ul>
        )}
      </Section>
    </>
  );
}

function IncidentView(props: { id: number; me: Me }) {
  const d = useLoad(() => get<IncidentDetail>(`/api/emergency/incidents/${props.id}`), [props.id]);
  const [f, setF] = useState({ deaths: "", serious_injuries: "", direct_loss_yuan: "", measures: "", note: "" });
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const set = (k: keyof typeof f) => val((v) => setF((o) => ({ ...o, [k]: v })));
  const num = (s: string) => (s.trim() === "" ? null : Number(s));
  const submit = async (e: Event) => {
    e.preventDefault();
    try {
      await post(`/api/emergency/incidents/${props.id}/follow-ups`, {
        deaths: num(f.deaths),
        serious_injuries: num(f.serious_injuries),
        direct_loss_yuan: num(f.direct_loss_yuan),
        measures: f.measures || null,
        note: f.note,
      });
      setMsg({ ok: true, text: t("saved") });
      setF({ deaths: "", serious_injuries: "", direct_loss_yuan: "", measures: "", note: "" });
      d.reload();
    } catch (x) {
      setMsg({ ok: false, text: errorText(x) });
    }
  };
  const i = d.data;
  return (
    <Section
      title={`${t("incident")} #${props.id}`}
      testid="incident-detail"
      actions={
        <Link href="/emergency/incidents" testid="incident-back">
          {t("back")}
        </Link>
      }
    >
      <Status l={d} />
      {i && (
        <>
          <GradeBox grade={i.grade} label={i.grade_label} reason={i.grade_reason} />
          <dl class="facts">
            <dt>{t("project")}</dt>
            <dd>{i.project_id}</dd>
            <dt>{t("occurredAt")}</dt>
            <dd>{fmtTime(i.occurred_at)}</dd>
            <dt>{t("reportedAt")}</dt>
            <dd>{fmtTime(i.reported_at)}</dd>
            <dt>{t("reportDeadline")}</dt>
            <dd>
              {fmtTime(i.deadline)} <DeadlineBadge i={i} />
            </dd>
            <dt>{t("place")}</dt>
            <dd>{i.place}</dd>
            <dt>{t("summary")}</dt>
            <dd>{i.summary}</dd>
            <dt>{t("figures")}</dt>
            <dd data-testid="incident-figures">
              {t("deaths")} {i.deaths} · {t("seriousInjuries")} {i.serious_injuries} · {t("directLoss")} {i.direct_loss_yuan.toLocaleString()}
            </dd>
            <dt>{t("measures")}</dt>
            <dd>{i.measures}</dd>
            <dt>{t("reporter")}</dt>
            <dd>{i.reporter}</dd>
          </dl>
          {i.grade_citation && <p class="muted small">{i.grade_citation}</p>}
          <h3>{t("history")}</h3>
          <ol class="history" data-testid="incident-history">
            {i.history.map((r) => (
              <li key={r.revision} data-testid="revision">
                <b>
                  #{r.revision} {tv("revision", r.kind)}
                </b>{" "}
                {fmtTime(r.at)} · {r.by_name} ({r.by_role}) · {tv("grade", r.grade)} · {t("deaths")} {r.deaths} / {t("seriousInjuries")} {r.serious_injuries} / {r.direct_loss_yuan.toLocaleString()}
                {r.note && <div class="note">{r.note}</div>}
              </li>
            ))}
          </ol>
          {props.me.role !== "data_sharing" && props.me.role !== "enterprise" && (
            <form class="action-form" data-testid="followup-form" onSubmit={submit}>
              <h3>{t("followUp")}</h3>
              <p class="muted small">{t("followUpHint")}</p>
              <div class="row3">
                <Field label={t("deaths")}>
                  <input data-testid="followup-deaths" type="number" min={0} value={f.deaths} onInput={set("deaths")} placeholder={String(i.deaths)} />
                </Field>
                <Field label={t("seriousInjuries")}>
                  <input type="number" min={0} value={f.serious_injuries} onInput={set("serious_injuries")} placeholder={String(i.serious_injuries)} />
                </Field>
                <Field label={t("directLoss")}>
                  <input type="number" min={0} step="any" value={f.direct_loss_yuan} onInput={set("direct_loss_yuan")} placeholder={String(i.direct_loss_yuan)} />
                </Field>
              </div>
              <Field label={t("measures")}>
                <input value={f.measures} onInput={set("measures")} />
              </Field>
              <Field label={t("note")}>
                <input data-testid="followup-note" value={f.note} onInput={set("note")} />
              </Field>
              <Msg msg={msg} testid="followup-msg" />
              <button class="primary" type="submit" data-testid="followup-submit">
                {t("submitReport")}
              </button>
            </form>
          )}
        </>
      )}
    </Section>
  );
}

// --- early warnings -------------------------------------------------------------------------

function LevelBadge(props: { level: string }) {
  return <span class={`badge level-${props.level}`}>{tv("level", props.level)}</span>;
}

function IssueForm(props: { me: Me; projects: ProjectRef[]; onDone: (w: WarningDetail) => void }) {
  const now = new Date();
  const [f, setF] = useState({
    kind: "strong_wind",
    level: "orange",
    title: "",
    text: "",
    starts_at: localInput(now),
    ends_at: localInput(new Date(now.getTime() + 6 * 3600_000)),
    target: "projects",
    district: props.me.district ?? "",
  });
  const [picked, setPicked] = useState<string[]>([]);
  const [overrides, setOverrides] = useState<{ rule: string; warning: string; alarm: string }[]>([]);
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const rules = useLoad(() => all<{ key: string; spec: Record<string, unknown> }>("/api/rules"), []);
  const ruleKeys = [...new Set((rules.data ?? []).filter((r) => r.spec && r.spec.levels).map((r) => r.key))].sort();
  const set = (k: keyof typeof f) => val((v) => setF((o) => ({ ...o, [k]: v })));
  const toggle = (id: string) => setPicked((p) => (p.includes(id) ? p.filter((x) => x !== id) : [...p, id]));
  const submit = async (e: Event) => {
    e.preventDefault();
    try {
      const w = await post<WarningDetail>("/api/emergency/warnings", {
        kind: f.kind,
        level: f.level,
        title: f.title || `${tv("kind", f.kind)} ${tv("level", f.level)}`,
        text: f.text,
        starts_at: isoFromLocal(f.starts_at),
        ends_at: isoFromLocal(f.ends_at),
        target: f.target,
        district: f.target === "district" ? f.district || null : null,
        projects: f.target === "projects" ? picked : null,
        overrides: overrides
          .filter((o) => o.rule.trim())
          .map((o) => ({ rule: o.rule.trim(), warning: o.warning === "" ? null : Number(o.warning), alarm: o.alarm === "" ? null : Number(o.alarm) })),
      });
      setMsg({ ok: true, text: t("saved") });
      props.onDone(w);
    } catch (x) {
      setMsg({ ok: false, text: errorText(x) });
    }
  };
  return (
    <form class="action-form" data-testid="warning-form" onSubmit={submit}>
      <div class="row3">
        <Field label={t("kind")}>
          <EnumSelect testid="warning-kind" prefix="kind" values={KINDS} value={f.kind} onChange={(v) => setF({ ...f, kind: v })} />
        </Field>
        <Field label={t("level")}>
          <EnumSelect testid="warning-level" prefix="level" values={LEVELS} value={f.level} onChange={(v) => setF({ ...f, level: v })} />
        </Field>
      </div>
      <Field label={t("title")}>
        <input data-testid="warning-title" value={f.title} onInput={set("title")} placeholder={`${tv("kind", f.kind)} ${tv("level", f.level)}`} />
      </Field>
      <Field label={t("text")}>
        <textarea data-testid="warning-text" value={f.text} onInput={set("text")} />
      </Field>
      <div class="row3">
        <Field label={t("startsAt")}>
          <input data-testid="warning-starts" type="datetime-local" required value={f.starts_at} onInput={set("starts_at")} />
        </Field>
        <Field label={t("endsAt")}>
          <input data-testid="warning-ends" type="datetime-local" required value={f.ends_at} onInput={set("ends_at")} />
        </Field>
      </div>
      <Field label={t("target")}>
        <EnumSelect testid="warning-target" prefix="target" values={TARGETS} value={f.target} onChange={(v) => setF({ ...f, target: v })} />
      </Field>
      {f.target === "district" && (
        <Field label={t("district")}>
          <input data-testid="warning-district" value={f.district} onInput={set("district")} />
        </Field>
      )}
      {f.target === "projects" && (
        <div class="checks" data-testid="warning-projects">
          {props.projects.map((p) => (
            <label key={p.id} class="inline">
              <input type="checkbox" data-testid={`warning-project-${p.id}`} checked={picked.includes(p.id)} onChange={() => toggle(p.id)} /> {p.id} {p.name}
            </label>
          ))}
        </div>
      )}
      <div>
        <span class="small">{t("overrides")}</span>
        {overrides.map((o, n) => (
          <div class="row3" key={n} data-testid="override-row">
            <input placeholder={t("rule")} list="override-rules" value={o.rule} onInput={val((v) => setOverrides(overrides.map((x, m) => (m === n ? { ...x, rule: v } : x))))} />
            <input type="number" step="any" placeholder={t("warning")} value={o.warning} onInput={val((v) => setOverrides(overrides.map((x, m) => (m === n ? { ...x, warning: v } : x))))} />
            <input type="number" step="any" placeholder={t("alarm")} value={o.alarm} onInput={val((v) => setOverrides(overrides.map((x, m) => (m === n ? { ...x, alarm: v } : x))))} />
          </div>
        ))}
        <datalist id="override-rules">
          {ruleKeys.map((k) => (
            <option key={k} value={k} />
          ))}
        </datalist>
        <button type="button" class="link" data-testid="override-add" onClick={() => setOverrides([...overrides, { rule: "", warning: "", alarm: "" }])}>
          + {t("addOverride")}
        </button>
      </div>
      <Msg msg={msg} testid="warning-msg" />
      <button class="primary" type="submit" data-testid="warning-submit">
        {t("issueWarning")}
      </button>
    </form>
  );
}

function AwaitingList(props: { tick: number }) {
  const l = useLoad(() => get<Awaiting[]>("/api/emergency/warnings/awaiting-acknowledgement"), [props.tick]);
  return (
    <Section title={t("awaitingAck")} testid="awaiting">
      <Status l={l} />
      {l.data && (
        <Table
          rows={l.data}
          rowTestid="awaiting-row"
          cols={[
            { key: "title", label: t("title"), render: (r) => <Link href={`/emergency/warnings/${r.warning_id}`}>{r.title}</Link> },
            { key: "level", label: t("level"), render: (r) => <LevelBadge level={r.level} /> },
            { key: "project_id", label: t("project"), render: (r) => <span data-project={r.project_id} data-warning={r.warning_id}>{r.project_id} {r.project_name}</span> },
            { key: "ends_at", label: t("endsAt"), render: (r) => fmtTime(r.ends_at) },
          ]}
        />
      )}
    </Section>
  );
}

function Warnings(props: { me: Me }) {
  const projects = useProjects();
  const [tick, setTick] = useState(0);
  const [state, setState] = useState("");
  const list = useLoad(() => all<WarningOut>("/api/emergency/warnings", { state: state || undefined }, 500), [tick, state]);
  const [showForm, setShowForm] = useState(false);
  return (
    <>
      {isManager(props.me) && (
        <Section
          title={t("issueWarning")}
          testid="warning-issue"
          actions={
            <button data-testid="warning-new" onClick={() => setShowForm(!showForm)}>
              {showForm ? t("close") : t("issueWarning")}
            </button>
          }
        >
          {showForm && projects.data && (
            <IssueForm me={props.me} projects={projects.data} onDone={(w) => navigate(`/emergency/warnings/${w.id}`)} />
          )}
        </Section>
      )}
      <AwaitingList tick={tick} />
      <Section
        title={t("earlyWarnings")}
        testid="warning-list"
        actions={
          <div class="filters">
            <select value={state} onChange={val(setState)} data-testid="warning-state">
              <option value="">{t("allStatuses")}</option>
              {["scheduled", "in_force", "ended", "cancelled"].map((s) => (
                <option key={s} value={s}>
                  {tv("state", s)}
                </option>
              ))}
            </select>
            <button onClick={() => setTick(tick + 1)}>{t("refresh")}</button>
          </div>
        }
      >
        <Status l={list} />
        {list.data && (
          <Table
            rows={list.data}
            rowTestid="warning-row"
            cols={[
              { key: "title", label: t("title"), render: (r) => <Link href={`/emergency/warnings/${r.id}`} testid="warning-link">{r.title}</Link> },
              { key: "kind", label: t("kind"), render: (r) => tv("kind", r.kind) },
              { key: "level", label: t("level"), render: (r) => <LevelBadge level={r.level} /> },
              { key: "state", label: t("status"), render: (r) => tv("state", r.state) },
              { key: "period", label: t("period"), render: (r) => `${fmtTime(r.starts_at)} – ${fmtTime(r.ends_at)}` },
              { key: "ack", label: t("acknowledged"), render: (r) => <span data-testid="warning-acks" data-acked={r.acknowledged} data-targets={r.targets}>{r.acknowledged} / {r.targets}</span> },
            ]}
          />
        )}
      </Section>
    </>
  );
}

function WarningView(props: { id: number; me: Me }) {
  const w = useLoad(() => get<WarningDetail>(`/api/emergency/warnings/${props.id}`), [props.id]);
  const [note, setNote] = useState("");
  const [reason, setReason] = useState("");
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const ack = async (project_id: string) => {
    try {
      await post(`/api/emergency/warnings/${props.id}/acknowledge`, { project_id, note });
      setMsg({ ok: true, text: t("acknowledged") });
      w.reload();
    } catch (x) {
      setMsg({ ok: false, text: errorText(x) });
    }
  };
  const cancel = async () => {
    try {
      await post(`/api/emergency/warnings/${props.id}/cancel`, { reason });
      w.reload();
    } catch (x) {
      setMsg({ ok: false, text: errorText(x) });
    }
  };
  const d = w.data;
  const over = d && (d.state === "ended" || d.state === "cancelled");
  return (
    <Section
      title={d ? d.title : `#${props.id}`}
      testid="warning-detail"
      actions={
        <Link href="/emergency/warnings" testid="warning-back">
          {t("back")}
        </Link>
      }
    >
      <Status l={w} />
      {d && (
        <>
          <dl class="facts">
            <dt>{t("kind")}</dt>
            <dd>{tv("kind", d.kind)}</dd>
            <dt>{t("level")}</dt>
            <dd>
              <LevelBadge level={d.level} />
            </dd>
            <dt>{t("status")}</dt>
            <dd data-testid="warning-state-value">{tv("state", d.state)}</dd>
            <dt>{t("period")}</dt>
            <dd>
              {fmtTime(d.starts_at)} – {fmtTime(d.ends_at)}
            </dd>
            <dt>{t("target")}</dt>
            <dd>
              {tv("target", d.target)} {d.district_code ?? ""}
            </dd>
            <dt>{t("text")}</dt>
            <dd>{d.text}</dd>
            <dt>{t("issuedBy")}</dt>
            <dd>
              {d.issued_by} · {fmtTime(d.issued_at)}
            </dd>
            {d.overrides.length > 0 && (
              <>
                <dt>{t("overrides")}</dt>
                <dd>{d.overrides.map((o) => `${o.rule}: ${o.warning ?? "–"} / ${o.alarm ?? "–"}`).join("; ")}</dd>
              </>
            )}
            {d.cancelled_at && (
              <>
                <dt>{t("cancelled")}</dt>
                <dd>
                  {fmtTime(d.cancelled_at)} {d.cancel_reason}
                </dd>
              </>
            )}
          </dl>
          <h3>
            {t("acknowledgements")} ({d.acknowledged} / {d.targets})
          </h3>
          {isSite(props.me) && !over && d.projects.some((p) => !p.acknowledged_at) && (
            <Field label={t("measuresTaken")}>
              <input data-testid="ack-note" value={note} onInput={val(setNote)} />
            </Field>
          )}
          <Table
            rows={d.projects}
            rowTestid="warning-target"
            cols={[
              { key: "project", label: t("project"), render: (r) => <span data-project={r.project_id} data-acked={r.acknowledged_at ? "1" : "0"}>{r.project_id} {r.project_name}</span> },
              {
                key: "ack",
                label: t("acknowledged"),
                render: (r) =>
                  r.acknowledged_at ? (
                    <span data-testid="ack-done">
                      <Badge kind="closed" text={t("acknowledged")} /> {fmtTime(r.acknowledged_at)} {r.acknowledged_by}
                    </span>
                  ) : isSite(props.me) && !over ? (
                    <button class="primary" data-testid={`ack-${r.project_id}`} onClick={() => ack(r.project_id)}>
                      {t("acknowledge")}
                    </button>
                  ) : (
                    <Badge kind="open" text={t("awaiting")} />
                  ),
              },
              { key: "note", label: t("note"), render: (r) => r.note ?? "" },
            ]}
          />
          <Msg msg={msg} testid="warning-detail-msg" />
          {isManager(props.me) && !over && (
            <div class="actions">
              <input placeholder={t("cancelReason")} value={reason} onInput={val(setReason)} data-testid="cancel-reason" />
              <button data-testid="warning-cancel" disabled={!reason.trim()} onClick={cancel}>
                {t("cancelWarning")}
              </button>
            </div>
          )}
        </>
      )}
    </Section>
  );
}

// --- duty -----------------------------------------------------------------------------------

interface OnDuty {
  name: string;
  title: string;
  phone: string;
  role: string;
  starts_at: string;
  ends_at: string;
}

interface OnDutyOut {
  office: string;
  phone: string;
  at: string;
  on_duty: OnDuty[];
}

interface ShiftRow {
  contact: string;
  role: string;
  on_date: string;
  weekdays: string;
  start: string;
  end: string;
}

function OnDutyCard(props: { title: string; d: OnDutyOut | null; testid: string }) {
  return (
    <div class="card duty-card" data-testid={props.testid}>
      <h3>{props.title}</h3>
      {!props.d ? (
        <div class="muted">{t("noRoster")}</div>
      ) : (
        <>
          <div>
            <b>{props.d.office}</b> {props.d.phone && <a href={`tel:${props.d.phone}`}>{props.d.phone}</a>}
          </div>
          {props.d.on_duty.length === 0 && <div class="muted">{t("nobodyOnDuty")}</div>}
          <ul class="history">
            {props.d.on_duty.map((o, n) => (
              <li key={n} data-testid="on-duty">
                {tv("shift", o.role)}: <b>{o.name}</b> {o.title} {o.phone && <a href={`tel:${o.phone}`}>{o.phone}</a>}{" "}
                <span class="muted small">
                  {fmtTime(o.starts_at)} – {fmtTime(o.ends_at)}
                </span>
              </li>
            ))}
          </ul>
        </>
      )}
    </div>
  );
}

function Duty(props: { me: Me }) {
  const projects = useProjects();
  const [mode, setMode] = useState<"project" | "district">(props.me.role === "officer" ? "project" : "project");
  const [pid, setPid] = useState("");
  const [district, setDistrict] = useState(props.me.district ?? "city");
  const chosen = pid || projects.data?.[0]?.id || "";
  const [tick, setTick] = useState(0);
  const now = useLoad<{ project: OnDutyOut | null; regulator: OnDutyOut | null }>(async () => {
    if (mode === "project") {
      if (!chosen) return { project: null, regulator: null };
      return get(`/api/emergency/duty/projects/${encodeURIComponent(chosen)}/now`);
    }
    try {
      return { project: null, regulator: await get<OnDutyOut>(`/api/emergency/duty/districts/${encodeURIComponent(district || "city")}/now`) };
    } catch (e) {
      if (e instanceof ApiError && e.status === 404) return { project: null, regulator: null };
      throw e;
    }
  }, [mode, chosen, district, tick]);
  const canEdit = mode === "project" ? isSite(props.me) : isManager(props.me);
  return (
    <>
      <Section
        title={t("onDutyNow")}
        testid="duty-now"
        actions={
          <div class="filters">
            <select data-testid="duty-mode" value={mode} onChange={val((v) => setMode(v as "project" | "district"))}>
              <option value="project">{t("project")}</option>
              <option value="district">{t("district")}</option>
            </select>
            {mode === "project" ? (
              <ProjectSelect testid="duty-project" projects={projects.data ?? []} value={chosen} onChange={setPid} />
            ) : (
              <input data-testid="duty-district" value={district} onInput={val(setDistrict)} placeholder="city / 110105" />
            )}
          </div>
        }
      >
        <Status l={now} />
        {now.data && (
          <div class="grid2">
            {mode === "project" && <OnDutyCard title={t("projectOffice")} d={now.data.project} testid="duty-project-office" />}
            <OnDutyCard title={t("regulatorOffice")} d={now.data.regulator} testid="duty-regulator-office" />
          </div>
        )}
      </Section>
      {canEdit && (mode === "district" || chosen) && (
        <RosterEditor
          key={mode + chosen + district}
          path={mode === "project" ? `/api/emergency/duty/projects/${encodeURIComponent(chosen)}` : `/api/emergency/duty/districts/${encodeURIComponent(district || "city")}`}
          onSaved={() => setTick(tick + 1)}
        />
      )}
    </>
  );
}

function RosterEditor(props: { path: string; onSaved: () => void }) {
  const [name, setName] = useState("");
  const [phone, setPhone] = useState("");
  const [contacts, setContacts] = useState<{ name: string; title: string; phone: string }[]>([]);
  const [shifts, setShifts] = useState<ShiftRow[]>([]);
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  useEffect(() => {
    get<{ name: string; phone: string; contacts: { name: string; title: string; phone: string }[]; shifts: { contact: string; role: string; on_date: string | null; weekdays: number[] | null; start: string; end: string }[] }>(props.path).then(
      (r) => {
        setName(r.name);
        setPhone(r.phone);
        setContacts(r.contacts.map((c) => ({ name: c.name, title: c.title ?? "", phone: c.phone ?? "" })));
        setShifts(
          r.shifts.map((s) => ({ contact: s.contact, role: s.role, on_date: s.on_date ?? "", weekdays: (s.weekdays ?? []).join(","), start: s.start.slice(0, 5), end: s.end.slice(0, 5) })),
        );
      },
      () => undefined,
    );
  }, [props.path]);
  const save = async (e: Event) => {
    e.preventDefault();
    try {
      await put(props.path, {
        name,
        phone,
        contacts: contacts.filter((c) => c.name.trim()),
        shifts: shifts
          .filter((s) => s.contact.trim())
          .map((s) => ({
            contact: s.contact,
            role: s.role,
            on_date: s.on_date || null,
            weekdays: s.on_date ? null : splitList(s.weekdays).map(Number),
            start: s.start,
            end: s.end,
          })),
      });
      setMsg({ ok: true, text: t("saved") });
      props.onSaved();
    } catch (x) {
      setMsg({ ok: false, text: errorText(x) });
    }
  };
  const editC = (n: number, k: "name" | "title" | "phone") => val((v) => setContacts(contacts.map((c, m) => (m === n ? { ...c, [k]: v } : c))));
  const editS = (n: number, k: keyof ShiftRow) => val((v) => setShifts(shifts.map((s, m) => (m === n ? { ...s, [k]: v } : s))));
  return (
    <Section title={t("editRoster")} testid="roster-editor">
      <form class="action-form wide" onSubmit={save} data-testid="roster-form">
        <div class="row3">
          <Field label={t("office")}>
            <input data-testid="roster-name" required value={name} onInput={val(setName)} />
          </Field>
          <Field label={t("phone")}>
            <input data-testid="roster-phone" value={phone} onInput={val(setPhone)} />
          </Field>
        </div>
        <h3>{t("contacts")}</h3>
        {contacts.map((c, n) => (
          <div class="row3" key={n} data-testid="contact-row">
            <input placeholder={t("name")} value={c.name} onInput={editC(n, "name")} data-testid="contact-name" />
            <input placeholder={t("position")} value={c.title} onInput={editC(n, "title")} />
            <input placeholder={t("phone")} value={c.phone} onInput={editC(n, "phone")} data-testid="contact-phone" />
          </div>
        ))}
        <button type="button" class="link" data-testid="contact-add" onClick={() => setContacts([...contacts, { name: "", title: "", phone: "" }])}>
          + {t("addContact")}
        </button>
        <h3>{t("shifts")}</h3>
        <p class="muted small">{t("shiftHint")}</p>
        {shifts.map((s, n) => (
          <div class="row6" key={n} data-testid="shift-row">
            <select value={s.contact} onChange={editS(n, "contact")} data-testid="shift-contact">
              <option value="">–</option>
              {contacts.filter((c) => c.name).map((c) => (
                <option key={c.name} value={c.name}>
                  {c.name}
                </option>
              ))}
            </select>
            <select value={s.role} onChange={editS(n, "role")}>
              <option value="duty">{tv("shift", "duty")}</option>
              <option value="leader">{tv("shift", "leader")}</option>
            </select>
            <input placeholder={t("weekdays")} value={s.weekdays} onInput={editS(n, "weekdays")} data-testid="shift-weekdays" />
            <input type="date" value={s.on_date} onInput={editS(n, "on_date")} />
            <input type="time" value={s.start} onInput={editS(n, "start")} data-testid="shift-start" />
            <input type="time" value={s.end} onInput={editS(n, "end")} data-testid="shift-end" />
          </div>
        ))}
        <button
          type="button"
          class="link"
          data-testid="shift-add"
          onClick={() => setShifts([...shifts, { contact: contacts[0]?.name ?? "", role: "duty", on_date: "", weekdays: "1,2,3,4,5,6,7", start: "08:00", end: "08:00" }])}
        >
          + {t("addShift")}
        </button>
        <Msg msg={msg} testid="roster-msg" />
        <button class="primary" type="submit" data-testid="roster-save">
          {t("save")}
        </button>
      </form>
    </Section>
  );
}
