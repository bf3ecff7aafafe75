// The officer inbox (and the regulator's): alerts arrive live, each one can be acknowledged,
// assigned, resolved with a note and a photo; the regulator verifies (closes) or reopens.
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { all, errorText, get, post, type Me } from "../api";
import { ACTIVE_STATUSES, connectLive, type AlertDetail, type AlertEvent, type AlertItem, type EvidenceOut } from "../alerts";
import { fmtTime, t, tStatus } from "../i18n";
import { AuthImage, Badge, Link, Modal } from "../ui";

type Row = AlertItem & { fresh?: boolean };

export function InboxPage(props: { me: Me }) {
  const [rows, setRows] = useState<Row[]>([]);
  const [err, setErr] = useState<string | null>(null);
  const [loading, setLoading] = useState(true);
  const [live, setLive] = useState(false);
  const [status, setStatus] = useState<string>("");
  const [project, setProject] = useState<string>("");
  const [selected, setSelected] = useState<string | null>(new URLSearchParams(location.search).get("alert"));
  const [detailTick, setDetailTick] = useState(0);
  const selectedRef = useRef(selected);
  selectedRef.current = selected;

  const load = useCallback(async () => {
    setLoading(true);
    try {
      const items = await all<AlertItem>("/api/alerts", {
        project: project || undefined,
        ...(status ? { status } : {}),
      }, 500);
      const shown = status ? items : items.filter((a) => ACTIVE_STATUSES.includes(a.status));
      setRows(shown);
      setErr(null);
    } catch (e) {
      setErr(errorText(e));
    } finally {
      setLoading(false);
    }
  }, [status, project]);

  useEffect(() => {
    load();
  }, [load]);

  // After a reconnect, reload: events sent while the stream was down are not replayed.
  const connectedBefore = useRef(false);
  useEffect(() => {
    if (!live) return;
    if (connectedBefore.current) load();
    connectedBefore.current = true;
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [live]);

  // Live: put the event's alert at the top at once, then replace it with the stored alert.
  useEffect(() => {
    const onEvent = async (e: AlertEvent) => {
      const p = e.payload ?? {};
      setRows((rs) => {
        const old = rs.find((r) => r.id === e.alert_id);
        const placeholder: Row = {
          ...(old ?? {
            id: e.alert_id,
            project_id: e.project_id,
            device_id: String(p.device_id ?? ""),
            rule: String(p.rule ?? ""),
            title: String(p.title ?? p.rule ?? e.action),
            level: String(p.level ?? "warning"),
            status: "open",
            created_at: e.created_at,
          }),
          ...(typeof p.to === "string" ? { status: p.to } : {}),
          fresh: true,
        };
        return [placeholder, ...rs.filter((r) => r.id !== e.alert_id)];
      });
      try {
        const a = await get<AlertDetail>(`/api/alerts/${e.alert_id}`);
        setRows((rs) => rs.map((r) => (r.id === a.id ? { ...a, fresh: true } : r)));
      } catch {
        /* it stays as the event said */
      }
      if (selectedRef.current === e.alert_id) setDetailTick((n) => n + 1);
    };
    return connectLive(onEvent, setLive);
  }, []);

  const select = (id: string | null) => {
    setSelected(id);
    setRows((rs) => rs.map((r) => (r.id === id ? { ...r, fresh: false } : r)));
    const u = new URL(location.href);
    if (id) u.searchParams.set("alert", id);
    else u.searchParams.delete("alert");
    history.replaceState(null, "", u.pathname + u.search);
  };

  const projects = props.me.projects ?? Array.from(new Set(rows.map((r) => r.project_id))).sort();
  return (
    <div class={`inbox ${selected ? "has-detail" : ""}`} data-testid="inbox">
      <div class="inbox-list card">
        <header class="card-head">
          <h2>{t("inbox")}</h2>
          <span class={`live ${live ? "on" : "off"}`} data-testid="live-status" data-state={live ? "open" : "closed"}>
            ● {live ? t("live") : t("offline")}
          </span>
        </header>
        <div class="filters">
          <select data-testid="filter-status" value={status} onChange={(e) => setStatus((e.target as HTMLSelectElement).value)}>
            <option value="">{t("allStatuses")}</option>
            {[...ACTIVE_STATUSES, "closed"].map((s) => (
              <option value={s} key={s}>
                {tStatus(s)}
              </option>
            ))}
          </select>
          {projects.length > 1 && (
            <select data-testid="filter-project" value={project} onChange={(e) => setProject((e.target as HTMLSelectElement).value)}>
              <option value="">{t("projects")}</option>
              {projects.map((p) => (
                <option key={p} value={p}>
                  {p}
                </option>
              ))}
            </select>
          )}
        </div>
        {err && <div class="error">{err}</div>}
        {loading && !rows.length && <div class="muted">{t("loading")}</div>}
        {!loading && !rows.length && !err && (
          <div class="muted" data-testid="inbox-empty">
            {t("nothing")}
          </div>
        )}
        <ul class="alert-list" data-testid="alert-list">
          {rows.map((a) => (
            <li
              key={a.id}
              data-testid="alert-item"
              data-alert-id={a.id}
              data-status={a.status}
              data-rule={a.rule}
              class={`alert-row ${a.id === selected ? "selected" : ""} ${a.fresh ? "fresh" : ""}`}
              onClick={() => select(a.id)}
            >
              <div class="row1">
                <Badge kind={a.level} text={a.level === "alarm" ? t("alarm") : t("warning")} />
                <span class="title">{a.title}</span>
                {a.fresh && <span class="new-dot">{t("new")}</span>}
              </div>
              <div class="row2 muted">
                <span>{a.project_id}</span> · <span>{a.device_id}</span> · <span>{fmtTime(a.created_at)}</span>
                <Badge kind={a.status} />
              </div>
            </li>
          ))}
        </ul>
      </div>
      {selected ? (
        <AlertPanel
          key={selected}
          id={selected}
          me={props.me}
          tick={detailTick}
          onBack={() => select(null)}
          onChanged={(a) => setRows((rs) => rs.map((r) => (r.id === a.id ? { ...r, ...a } : r)))}
        />
      ) : (
        <div class="card inbox-detail placeholder-panel muted">{t("selectAlert")}</div>
      )}
    </div>
  );
}

type Verb = "acknowledge" | "assign" | "resolve" | "close" | "reopen";

function verbs(status: string, role: string): Verb[] {
  const site = ["officer", "enterprise", "admin", "regulator"].includes(role);
  const reg = role === "regulator" || role === "admin";
  const out: Verb[] = [];
  if (status === "open" && site) out.push("acknowledge");
  if ((status === "acknowledged" || status === "reopened") && site) out.push("assign");
  if (status === "rectifying" && role !== "regulator" && site) out.push("resolve");
  if (status === "resolved" && reg) out.push("close");
  if ((status === "resolved" || status === "closed") && reg) out.push("reopen");
  return out;
}

const LABEL: Record<Verb, Parameters<typeof t>[0]> = {
  acknowledge: "acknowledge",
  assign: "assign",
  resolve: "resolve",
  close: "verify",
  reopen: "reopen",
};

function AlertPanel(props: { id: string; me: Me; tick: number; onBack: () => void; onChanged: (a: AlertDetail) => void }) {
  const [a, setA] = useState<AlertDetail | null>(null);
  const [ev, setEv] = useState<EvidenceOut[]>([]);
  const [err, setErr] = useState<string | null>(null);
  const [photo, setPhoto] = useState<EvidenceOut | null>(null);
  const [verb, setVerb] = useState<Verb | null>(null);
  const [n, reload] = useState(0);

  useEffect(() => {
    let live = true;
    Promise.all([get<AlertDetail>(`/api/alerts/${props.id}`), get<EvidenceOut[]>(`/api/alerts/${props.id}/evidence`).catch(() => [])]).then(
      ([d, e]) => {
        if (!live) return;
        setA(d);
        setEv(e);
        setErr(null);
      },
      (e) => live && setErr(errorText(e)),
    );
    return () => {
      live = false;
    };
  }, [props.id, props.tick, n]);

  if (err)
    return (
      <div class="card inbox-detail" data-testid="alert-detail">
        <button class="link back" onClick={props.onBack}>
          ← {t("back")}
        </button>
        <div class="error">{err}</div>
      </div>
    );
  if (!a) return <div class="card inbox-detail muted">{t("loading")}</div>;
  const bim = a.correlation?.bim;
  return (
    <div class="card inbox-detail" data-testid="alert-detail" data-alert-id={a.id} data-status={a.status}>
      <button class="link back" data-testid="detail-back" onClick={props.onBack}>
        ← {t("back")}
      </button>
      <h2>
        <Badge kind={a.level} text={a.level === "alarm" ? t("alarm") : t("warning")} /> {a.title}
      </h2>
      <dl class="facts">
        <dt>{t("status")}</dt>
        <dd data-testid="detail-status">
          <Badge kind={a.status} />
        </dd>
        <dt>{t("project")}</dt>
        <dd>
          <Link href={`/projects/${encodeURIComponent(a.project_id)}?alert=${a.id}`} testid="detail-project">
            {a.project_id}
          </Link>
        </dd>
        <dt>{t("device")}</dt>
        <dd>{a.device_id}</dd>
        <dt>{t("rule")}</dt>
        <dd>{a.rule}</dd>
        <dt>{t("opened")}</dt>
        <dd>{fmtTime(a.created_at)}</dd>
        {a.value != null && (
          <>
            <dt>{t("value")}</dt>
            <dd>
              {a.value} {a.unit} {a.threshold != null && `(≥ ${a.threshold})`}
            </dd>
          </>
        )}
        {a.responsible && (
          <>
            <dt>{t("responsible")}</dt>
            <dd data-testid="detail-responsible">{a.responsible}</dd>
          </>
        )}
        {a.deadline && (
          <>
            <dt>{t("deadline")}</dt>
            <dd>{fmtTime(a.deadline)}</dd>
          </>
        )}
        {bim?.storey && (
          <>
            <dt>BIM</dt>
            <dd>
              {[bim.storey?.name, bim.space?.name, bim.element?.name].filter(Boolean).join(" / ")}{" "}
              <Link href={`/projects/${encodeURIComponent(a.project_id)}?alert=${a.id}`}>{t("showBim")}</Link>
            </dd>
          </>
        )}
      </dl>
      {a.detail && <p class="detail-text">{a.detail}</p>}
      <h3>{t("evidence")}</h3>
      <div class="thumbs" data-testid="evidence-list">
        {ev.length === 0 && <span class="muted">{t("nothing")}</span>}
        {ev.map((e) => (
          <button key={e.id} class="thumb-btn" data-testid="evidence-thumb" data-kind={e.kind} onClick={() => setPhoto(e)} title={t("openPhoto")}>
            <AuthImage src={e.url} alt={e.kind} class="thumb" />
            <span class="small muted">{e.kind}</span>
          </button>
        ))}
      </div>
      {photo && (
        <Modal onClose={() => setPhoto(null)} testid="evidence-modal">
          <AuthImage src={photo.url} alt={photo.kind} class="full" testid="evidence-full" />
          <div class="small muted">
            {photo.kind} · {photo.content_type} · {fmtTime(photo.received_at)}
          </div>
        </Modal>
      )}
      <div class="actions" data-testid="actions">
        {verbs(a.status, props.me.role).map((v) => (
          <button key={v} class={v === "close" || v === "resolve" ? "primary" : ""} data-testid={`action-${v}`} onClick={() => setVerb(v)}>
            {t(LABEL[v])}
          </button>
        ))}
      </div>
      {verb && (
        <ActionForm
          verb={verb}
          id={a.id}
          onCancel={() => setVerb(null)}
          onDone={(d) => {
            setVerb(null);
            setA(d);
            props.onChanged(d);
            reload((x) => x + 1);
          }}
        />
      )}
      <h3>{t("history")}</h3>
      <ol class="history" data-testid="history">
        {a.transitions.map((tr, i) => (
          <li key={i}>
            <span class="muted">{fmtTime(tr.at)}</span> {tr.actor} ({tr.actor_role}): {tr.from_status ? `${tStatus(tr.from_status)} → ` : ""}
            {tStatus(tr.to_status)}
            {tr.responsible && ` · ${tr.responsible}`}
            {tr.note && <div class="note">{tr.note}</div>}
          </li>
        ))}
      </ol>
    </div>
  );
}

function ActionForm(props: { verb: Verb; id: string; onCancel: () => void; onDone: (a: AlertDetail) => void }) {
  const { verb } = props;
  const [note, setNote] = useState("");
  const [responsible, setResponsible] = useState("");
  const [deadline, setDeadline] = useState(() => {
    const d = new Date(Date.now() + 3 * 86400e3 - new Date().getTimezoneOffset() * 60e3);
    return d.toISOString().slice(0, 16);
  });
  const [file, setFile] = useState<File | null>(null);
  const [err, setErr] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setErr(null);
    try {
      let d: AlertDetail;
      const path = `/api/alerts/${props.id}/${verb}`;
      if (verb === "assign") d = await post(path, { responsible, deadline: new Date(deadline).toISOString(), note });
      else if (verb === "resolve") {
        const f = new FormData();
        f.set("note", note);
        if (file) f.set("photo", file);
        d = await post(path, f);
      } else d = await post(path, { note });
      props.onDone(d);
    } catch (x) {
      setErr(errorText(x));
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="action-form" data-testid={`form-${verb}`} onSubmit={submit}>
      {verb === "assign" && (
        <>
          <label>
            {t("responsible")}
            <input data-testid="action-responsible" required value={responsible} onInput={(e) => setResponsible((e.target as HTMLInputElement).value)} />
          </label>
          <label>
            {t("deadline")}
            <input type="datetime-local" data-testid="action-deadline" required value={deadline} onInput={(e) => setDeadline((e.target as HTMLInputElement).value)} />
          </label>
        </>
      )}
      <label>
        {t("note")}
        <textarea data-testid="action-note" required={verb === "resolve"} value={note} onInput={(e) => setNote((e.target as HTMLTextAreaElement).value)} />
      </label>
      {verb === "resolve" && (
        <label>
          {t("photo")}
          <input
            type="file"
            accept="image/jpeg,image/png,image/webp"
            capture="environment"
            required
            data-testid="action-photo"
            onChange={(e) => setFile((e.target as HTMLInputElement).files?.[0] ?? null)}
          />
        </label>
      )}
      {err && (
        <div class="error" data-testid="action-error">
          {err}
        </div>
      )}
      <div class="actions">
        <button type="submit" class="primary" data-testid="action-submit" disabled={busy}>
          {t(LABEL[verb])}
        </button>
        <button type="button" onClick={props.onCancel}>
          {t("close")}
        </button>
      </div>
    </form>
  );
}
