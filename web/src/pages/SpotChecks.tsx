// Random spot checks (双随机一公开): draws with their weights, exclusions and seed, verified and
// published; the public results; inspections with findings, photos and rectification orders.
import { useState } from "preact/hooks";
import { errorText, get, getExact, post, type Me } from "../api";
import { fmtTime, t, tv } from "../i18n";
import { AuthImage, Link, Modal, Section, Status, Table, navigate, useLoad } from "../ui";
import { EnumSelect, Field, Msg, Tabs, dateInput, isoFromLocal, localInput, val } from "../forms";

interface PublicInspector {
  id: string;
  name: string;
  badge_no: string | null;
}

interface DrawItem {
  id: number;
  title: string;
  district_code: string | null;
  seed: string; // 63-bit: kept exact as a string
  snapshot_sha256: string;
  drawn_by: string;
  drawn_at: string;
  published_at: string | null;
  projects: number;
}

interface SnapshotProject {
  project_id: string;
  district_code: string | null;
  risk_score: number;
  weight: number;
  factors: { factor: string; points: number }[];
  reason?: string;
}

interface Snapshot {
  seed: string;
  as_of: string;
  projects: SnapshotProject[];
  excluded_projects: SnapshotProject[];
  exclusions: { project_id: string; inspector_id: string; reasons: string[] }[];
}

type DrawOut = DrawItem & {
  params: Record<string, unknown>;
  results: { rank: number; project_id: string; project_name: string; district_code: string | null; inspectors: PublicInspector[] }[];
  snapshot: Snapshot | null;
};

interface Verification {
  ok: boolean;
  snapshot_sha256: string;
  recomputed_sha256: string;
  hash_matches: boolean;
  seed_matches: boolean;
  weights_consistent: boolean;
  result_matches: boolean;
  problems: string[];
}

interface PublishedResult {
  draw_id: number;
  title: string;
  drawn_at: string;
  published_at: string;
  project_id: string;
  project_name: string;
  inspectors: PublicInspector[];
  inspected_on: string | null;
}

interface Finding {
  id: number;
  category: string;
  severity: string;
  description: string;
  responsible_uscc: string | null;
  points: number;
  status: string;
  recorded_by: string;
  recorded_at: string;
  confirmed_by: string | null;
  confirmed_at: string | null;
  confirmation_note: string;
}

interface Order {
  id: number;
  inspection_id: number;
  project_id: string;
  finding_id: number | null;
  requirement: string;
  deadline: string;
  status: string;
  overdue: boolean;
  issued_by: string;
  issued_at: string;
}

interface Photo {
  id: number;
  finding_id: number | null;
  caption: string;
  uploaded_by: string;
  uploaded_at: string;
}

interface Inspection {
  id: number;
  draw_id: number;
  project_id: string;
  project_name: string;
  inspected_on: string;
  summary: string;
  inspectors: string[];
  findings: Finding[];
  rectification_orders: Order[];
  photos: Photo[];
}

interface InspectionItem {
  id: number;
  draw_id: number;
  project_id: string;
  project_name: string;
  inspected_on: string;
  findings: number;
  confirmed_findings: number;
  open_orders: number;
}

const manager = (me: Me) => me.role === "regulator" || me.role === "admin";
const names = (xs: PublicInspector[]) => xs.map((i) => `${i.name}${i.badge_no ? ` (${i.badge_no})` : ""}`).join(", ");

export function SpotChecksPage(props: { me: Me; seg: string[] }) {
  const m = manager(props.me);
  const tab = props.seg[1] || "published";
  const id = props.seg[2];
  const tabs = [
    { id: "published", label: t("publishedResults"), href: "/spot-checks/published" },
    ...(m ? [{ id: "draws", label: t("draws"), href: "/spot-checks/draws" }] : []),
    { id: "inspections", label: t("inspections"), href: "/spot-checks/inspections" },
    { id: "orders", label: t("rectificationOrders"), href: "/spot-checks/orders" },
  ];
  return (
    <div class="spot-checks" data-testid="spot-checks">
      <h1>{t("spotChecks")}</h1>
      <Tabs tabs={tabs} current={tab} />
      {tab === "published" && <Published />}
      {tab === "draws" && (id ? <DrawView id={Number(id)} me={props.me} /> : <Draws me={props.me} />)}
      {tab === "inspections" && (id ? <InspectionView id={Number(id)} me={props.me} /> : <Inspections />)}
      {tab === "orders" && <Orders />}
    </div>
  );
}

function Published() {
  const l = useLoad(() => get<PublishedResult[]>("/api/spot-checks/published"), []);
  return (
    <Section title={t("publishedResults")} testid="published">
      <p class="muted small">{t("publishedHint")}</p>
      <Status l={l} />
      {l.data && (
        <Table
          rows={l.data}
          rowTestid="published-row"
          cols={[
            { key: "title", label: t("title"), render: (r) => <span data-draw={r.draw_id} data-project={r.project_id}>{r.title}</span> },
            { key: "project", label: t("project"), render: (r) => `${r.project_id} ${r.project_name}` },
            { key: "inspectors", label: t("inspectors"), render: (r) => names(r.inspectors) },
            { key: "published_at", label: t("publishedAt"), render: (r) => fmtTime(r.published_at) },
            { key: "inspected_on", label: t("inspectedOn"), render: (r) => r.inspected_on ?? t("notYet") },
          ]}
        />
      )}
    </Section>
  );
}

const STATUSES = ["planned", "under_construction", "suspended", "completed"] as const;

function DrawForm(props: { me: Me }) {
  const [f, setF] = useState({
    title: "",
    projects: "2",
    inspectors_per_project: "2",
    district: props.me.district ?? "",
    base_weight: "10",
    recent_days: "365",
    cooling_off_days: "1095",
    district_rule: "any",
  });
  const [statuses, setStatuses] = useState<string[]>(["under_construction"]);
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const [busy, setBusy] = useState(false);
  const set = (k: keyof typeof f) => val((v) => setF((o) => ({ ...o, [k]: v })));
  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    try {
      const d = await post<DrawOut>("/api/spot-checks/draws", {
        title: f.title,
        projects: Number(f.projects),
        inspectors_per_project: Number(f.inspectors_per_project),
        district: f.district || null,
        statuses,
        base_weight: Number(f.base_weight),
        recent_days: Number(f.recent_days),
        cooling_off_days: Number(f.cooling_off_days),
        district_rule: f.district_rule,
      });
      navigate(`/spot-checks/draws/${d.id}`);
    } catch (x) {
      setMsg({ ok: false, text: errorText(x) });
    } finally {
      setBusy(false);
    }
  };
  return (
    <form class="action-form" data-testid="draw-form" onSubmit={submit}>
      <Field label={t("title")}>
        <input data-testid="draw-title" required value={f.title} onInput={set("title")} placeholder="2026 Q2" />
      </Field>
      <div class="row3">
        <Field label={t("drawProjects")}>
          <input data-testid="draw-k" type="number" min={1} required value={f.projects} onInput={set("projects")} />
        </Field>
        <Field label={t("drawInspectors")}>
          <input data-testid="draw-m" type="number" min={1} max={20} required value={f.inspectors_per_project} onInput={set("inspectors_per_project")} />
        </Field>
        <Field label={t("district")}>
          <input data-testid="draw-district" value={f.district} onInput={set("district")} disabled={!!props.me.district} />
        </Field>
      </div>
      <div class="checks">
        <span class="small">{t("projectStatuses")}</span>
        {STATUSES.map((s) => (
          <label key={s} class="inline">
            <input
              type="checkbox"
              checked={statuses.includes(s)}
              onChange={() => setStatuses(statuses.includes(s) ? statuses.filter((x) => x !== s) : [...statuses, s])}
            />{" "}
            {tv("pstatus", s)}
          </label>
        ))}
      </div>
      <div class="row3">
        <Field label={t("baseWeight")}>
          <input type="number" min={1} value={f.base_weight} onInput={set("base_weight")} />
        </Field>
        <Field label={t("recentDays")}>
          <input type="number" min={0} value={f.recent_days} onInput={set("recent_days")} />
        </Field>
        <Field label={t("coolingOffDays")}>
          <input type="number" min={0} value={f.cooling_off_days} onInput={set("cooling_off_days")} />
        </Field>
      </div>
      <Field label={t("districtRule")}>
        <EnumSelect prefix="drule" values={["any", "same", "other"]} value={f.district_rule} onChange={(v) => setF({ ...f, district_rule: v })} />
      </Field>
      <p class="muted small">{t("seedHint")}</p>
      <Msg msg={msg} testid="draw-msg" />
      <button class="primary" type="submit" data-testid="draw-submit" disabled={busy || statuses.length === 0}>
        {t("draw")}
      </button>
    </form>
  );
}

function Draws(props: { me: Me }) {
  const l = useLoad(() => getExact<{ items: DrawItem[] }>("/api/spot-checks/draws", ["seed"], { limit: 500 }).then((p) => p.items), []);
  const [show, setShow] = useState(false);
  return (
    <>
      <Section
        title={t("newDraw")}
        testid="draw-new"
        actions={
          <button data-testid="draw-open" onClick={() => setShow(!show)}>
            {show ? t("close") : t("newDraw")}
          </button>
        }
      >
        {show && <DrawForm me={props.me} />}
      </Section>
      <Section title={t("draws")} testid="draw-list">
        <Status l={l} />
        {l.data && (
          <Table
            rows={l.data}
            rowTestid="draw-row"
            cols={[
              { key: "title", label: t("title"), render: (r) => <Link href={`/spot-checks/draws/${r.id}`}>{r.title}</Link> },
              { key: "district_code", label: t("district") },
              { key: "projects", label: t("count") },
              { key: "seed", label: t("seed") },
              { key: "drawn_at", label: t("drawnAt"), render: (r) => `${fmtTime(r.drawn_at)} ${r.drawn_by}` },
              { key: "published_at", label: t("publishedAt"), render: (r) => (r.published_at ? fmtTime(r.published_at) : t("notYet")) },
            ]}
          />
        )}
      </Section>
    </>
  );
}

function Check(props: { ok: boolean; label: string }) {
  return (
    <li class={props.ok ? "ok" : "alarm-text"}>
      {props.ok ? "✔" : "✘"} {props.label}
    </li>
  );
}

function DrawView(props: { id: number; me: Me }) {
  const d = useLoad(() => getExact<DrawOut>(`/api/spot-checks/draws/${props.id}`, ["seed"]), [props.id]);
  const [ver, setVer] = useState<Verification | null>(null);
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const verify = async () => {
    try {
      setVer(await get<Verification>(`/api/spot-checks/draws/${props.id}/verify`));
    } catch (x) {
      setMsg({ ok: false, text: errorText(x) });
    }
  };
  const publish = async () => {
    try {
      await post(`/api/spot-checks/draws/${props.id}/publish`);
      setMsg({ ok: true, text: t("published") });
      d.reload();
    } catch (x) {
      setMsg({ ok: false, text: errorText(x) });
    }
  };
  const inspect = async (project_id: string) => {
    try {
      const ins = await post<Inspection>("/api/inspections", { draw_id: props.id, project_id, inspected_on: dateInput(new Date()) });
      navigate(`/spot-checks/inspections/${ins.id}`);
    } catch (x) {
      setMsg({ ok: false, text: errorText(x) });
    }
  };
  const x = d.data;
  return (
    <Section
      title={x ? x.title : `#${props.id}`}
      testid="draw-detail"
      actions={
        <Link href="/spot-checks/draws" testid="draw-back">
          {t("back")}
        </Link>
      }
    >
      <Status l={d} />
      {x && (
        <div data-testid="draw-loaded" data-published={x.published_at ? "1" : "0"}>
          <dl class="facts">
            <dt>{t("seed")}</dt>
            <dd data-testid="draw-seed" class="mono">
              {x.seed}
            </dd>
            <dt>{t("snapshotHash")}</dt>
            <dd class="mono small break">{x.snapshot_sha256}</dd>
            <dt>{t("drawnAt")}</dt>
            <dd>
              {fmtTime(x.drawn_at)} · {x.drawn_by}
            </dd>
            <dt>{t("district")}</dt>
            <dd>{x.district_code ?? t("city")}</dd>
            <dt>{t("publishedAt")}</dt>
            <dd data-testid="draw-published">{x.published_at ? fmtTime(x.published_at) : t("notYet")}</dd>
            <dt>{t("parameters")}</dt>
            <dd class="mono small">{Object.entries(x.params).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join("  ")}</dd>
          </dl>
          <h3>{t("result")}</h3>
          <Table
            rows={x.results}
            rowTestid="draw-result"
            cols={[
              { key: "rank", label: "#" },
              { key: "project", label: t("project"), render: (r) => <span data-project={r.project_id}>{r.project_id} {r.project_name}</span> },
              { key: "inspectors", label: t("inspectors"), render: (r) => names(r.inspectors) },
              ...(manager(props.me)
                ? [
                    {
                      key: "act",
                      label: "",
                      render: (r: DrawOut["results"][number]) => (
                        <button class="link" data-testid={`inspect-${r.project_id}`} onClick={() => inspect(r.project_id)}>
                          {t("recordInspection")}
                        </button>
                      ),
                    },
                  ]
                : []),
            ]}
          />
          {x.snapshot && (
            <>
              <h3>{t("candidates")}</h3>
              <Table
                rows={x.snapshot.projects}
                rowTestid="draw-candidate"
                cols={[
                  { key: "project_id", label: t("project") },
                  { key: "risk_score", label: t("riskScore") },
                  { key: "weight", label: t("weight") },
                  { key: "factors", label: t("factors"), render: (r) => r.factors.map((f) => `${f.factor} +${f.points}`).join(", ") },
                ]}
              />
              {x.snapshot.excluded_projects.length > 0 && (
                <>
                  <h3>{t("excludedProjects")}</h3>
                  <Table rows={x.snapshot.excluded_projects} cols={[{ key: "project_id", label: t("project") }, { key: "reason", label: t("reason") }]} />
                </>
              )}
              <h3>{t("exclusions")}</h3>
              <Table
                rows={x.snapshot.exclusions}
                rowTestid="draw-exclusion"
                max={200}
                cols={[
                  { key: "project_id", label: t("project") },
                  { key: "inspector_id", label: t("inspector") },
                  { key: "reasons", label: t("reason"), render: (r) => r.reasons.join("; ") },
                ]}
              />
            </>
          )}
          <div class="actions">
            <button data-testid="draw-verify" onClick={verify}>
              {t("verify2")}
            </button>
            {manager(props.me) && !x.published_at && (
              <button class="primary" data-testid="draw-publish" onClick={publish}>
                {t("publish")}
              </button>
            )}
          </div>
          {ver && (
            <ul class="verify" data-testid="draw-verification" data-ok={ver.ok ? "1" : "0"}>
              <Check ok={ver.ok} label={ver.ok ? t("verifiedOk") : t("verifyFailed")} />
              <Check ok={ver.hash_matches} label={t("hashMatches")} />
              <Check ok={ver.seed_matches} label={t("seedMatches")} />
              <Check ok={ver.weights_consistent} label={t("weightsConsistent")} />
              <Check ok={ver.result_matches} label={t("resultMatches")} />
              {ver.problems.map((p, n) => (
                <li key={n} class="alarm-text">
                  {p}
                </li>
              ))}
            </ul>
          )}
          <Msg msg={msg} testid="draw-detail-msg" />
        </div>
      )}
    </Section>
  );
}

function Inspections() {
  const l = useLoad(() => get<InspectionItem[]>("/api/inspections"), []);
  return (
    <Section title={t("inspections")} testid="inspection-list">
      <Status l={l} />
      {l.data && (
        <Table
          rows={l.data}
          rowTestid="inspection-row"
          cols={[
            { key: "id", label: "#", render: (r) => <Link href={`/spot-checks/inspections/${r.id}`}>#{r.id}</Link> },
            { key: "project", label: t("project"), render: (r) => `${r.project_id} ${r.project_name}` },
            { key: "inspected_on", label: t("inspectedOn") },
            { key: "findings", label: t("findings"), render: (r) => `${r.confirmed_findings} / ${r.findings}` },
            { key: "open_orders", label: t("openOrders") },
          ]}
        />
      )}
    </Section>
  );
}

function FindingForm(props: { id: number; onDone: () => void }) {
  const [f, setF] = useState({ category: "", severity: "minor", description: "", responsible_uscc: "", requirement: "", deadline: localInput(new Date(Date.now() + 7 * 86400_000)) });
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const set = (k: keyof typeof f) => val((v) => setF((o) => ({ ...o, [k]: v })));
  const submit = async (e: Event) => {
    e.preventDefault();
    try {
      await post(`/api/inspections/${props.id}/findings`, {
        category: f.category,
        severity: f.severity,
        description: f.description,
        responsible_uscc: f.responsible_uscc || null,
        rectification: f.requirement ? { requirement: f.requirement, deadline: isoFromLocal(f.deadline) } : null,
      });
      setF({ ...f, category: "", description: "", requirement: "" });
      setMsg({ ok: true, text: t("saved") });
      props.onDone();
    } catch (x) {
      setMsg({ ok: false, text: errorText(x) });
    }
  };
  return (
    <form class="action-form" data-testid="finding-form" onSubmit={submit}>
      <h3>{t("addFinding")}</h3>
      <div class="row3">
        <Field label={t("category")}>
          <input data-testid="finding-category" required value={f.category} onInput={set("category")} />
        </Field>
        <Field label={t("severity")}>
          <EnumSelect testid="finding-severity" prefix="severity" values={["minor", "major", "serious"]} value={f.severity} onChange={(v) => setF({ ...f, severity: v })} />
        </Field>
      </div>
      <Field label={t("description")}>
        <textarea data-testid="finding-description" required value={f.description} onInput={set("description")} />
      </Field>
      <Field label={t("responsibleUscc")}>
        <input data-testid="finding-uscc" value={f.responsible_uscc} onInput={set("responsible_uscc")} />
      </Field>
      <div class="row3">
        <Field label={t("rectificationRequirement")}>
          <input data-testid="finding-requirement" value={f.requirement} onInput={set("requirement")} />
        </Field>
        <Field label={t("deadline")}>
          <input type="datetime-local" value={f.deadline} onInput={set("deadline")} />
        </Field>
      </div>
      <Msg msg={msg} testid="finding-msg" />
      <button class="primary" type="submit" data-testid="finding-submit">
        {t("save")}
      </button>
    </form>
  );
}

function PhotoForm(props: { id: number; findings: Finding[]; onDone: () => void }) {
  const [file, setFile] = useState<File | null>(null);
  const [caption, setCaption] = useState("");
  const [finding, setFinding] = useState("");
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const submit = async (e: Event) => {
    e.preventDefault();
    if (!file) return;
    const fd = new FormData();
    fd.append("photo", file);
    fd.append("caption", caption);
    if (finding) fd.append("finding_id", finding);
    try {
      await post(`/api/inspections/${props.id}/photos`, fd);
      setMsg({ ok: true, text: t("saved") });
      setCaption("");
      props.onDone();
    } catch (x) {
      setMsg({ ok: false, text: errorText(x) });
    }
  };
  return (
    <form class="action-form" data-testid="photo-form" onSubmit={submit}>
      <h3>{t("uploadPhoto")}</h3>
      <input type="file" accept="image/*" capture="environment" data-testid="photo-file" onChange={(e) => setFile((e.target as HTMLInputElement).files?.[0] ?? null)} />
      <Field label={t("caption")}>
        <input data-testid="photo-caption" value={caption} onInput={val(setCaption)} />
      </Field>
      <Field label={t("finding")}>
        <select value={finding} onChange={val(setFinding)}>
          <option value="">–</option>
          {props.findings.map((f) => (
            <option key={f.id} value={String(f.id)}>
              #{f.id} {f.category}
            </option>
          ))}
        </select>
      </Field>
      <Msg msg={msg} testid="photo-msg" />
      <button class="primary" type="submit" data-testid="photo-submit" disabled={!file}>
        {t("upload")}
      </button>
    </form>
  );
}

function InspectionView(props: { id: number; me: Me }) {
  const l = useLoad(() => get<Inspection>(`/api/inspections/${props.id}`), [props.id]);
  const [big, setBig] = useState<number | null>(null);
  const [msg, setMsg] = useState<{ ok: boolean; text: string } | null>(null);
  const m = manager(props.me);
  const confirm = async (fid: number) => {
    try {
      await post(`/api/inspections/${props.id}/findings/${fid}/confirm`, { note: "" });
      setMsg({ ok: true, text: t("confirmed") });
      l.reload();
    } catch (x) {
      setMsg({ ok: false, text: errorText(x) });
    }
  };
  const x = l.data;
  return (
    <Section
      title={`${t("inspection")} #${props.id}`}
      testid="inspection-detail"
      actions={
        <Link href="/spot-checks/inspections" testid="inspection-back">
          {t("back")}
        </Link>
      }
    >
      <Status l={l} />
      {x && (
        <>
          <dl class="facts">
            <dt>{t("project")}</dt>
            <dd>
              {x.project_id} {x.project_name}
            </dd>
            <dt>{t("inspectedOn")}</dt>
            <dd>{x.inspected_on}</dd>
            <dt>{t("inspectors")}</dt>
            <dd>{x.inspectors.join(", ")}</dd>
            <dt>{t("draw")}</dt>
            <dd>
              <Link href={`/spot-checks/draws/${x.draw_id}`}>#{x.draw_id}</Link>
            </dd>
            {x.summary && (
              <>
                <dt>{t("summary")}</dt>
                <dd>{x.summary}</dd>
              </>
            )}
          </dl>
          <h3>{t("findings")}</h3>
          <Table
            rows={x.findings}
            rowTestid="finding-row"
            cols={[
              { key: "category", label: t("category") },
              { key: "severity", label: t("severity"), render: (r) => tv("severity", r.severity) },
              { key: "description", label: t("description") },
              { key: "responsible_uscc", label: t("responsibleUscc") },
              { key: "points", label: t("points") },
              {
                key: "status",
                label: t("status"),
                render: (r) =>
                  r.status === "confirmed" ? (
                    <span data-testid="finding-confirmed">
                      {tv("fstatus", "confirmed")} {r.confirmed_by}
                    </span>
                  ) : m ? (
                    <button class="primary" data-testid={`finding-confirm-${r.id}`} onClick={() => confirm(r.id)}>
                      {t("confirm")}
                    </button>
                  ) : (
                    tv("fstatus", r.status)
                  ),
              },
            ]}
          />
          <h3>{t("rectificationOrders")}</h3>
          <OrderTable rows={x.rectification_orders} />
          <h3>{t("photos")}</h3>
          <div class="thumbs" data-testid="inspection-photos">
            {x.photos.length === 0 && <span class="muted">{t("nothing")}</span>}
            {x.photos.map((p) => (
              <button key={p.id} class="thumb-btn" data-testid="inspection-photo" onClick={() => setBig(p.id)}>
                <AuthImage src={`/api/inspections/${x.id}/photos/${p.id}`} alt={p.caption} class="thumb" />
                <span class="small">{p.caption}</span>
              </button>
            ))}
          </div>
          {big !== null && (
            <Modal onClose={() => setBig(null)} testid="photo-modal">
              <AuthImage src={`/api/inspections/${x.id}/photos/${big}`} alt="" class="full" />
            </Modal>
          )}
          <Msg msg={msg} testid="inspection-msg" />
          {m && <FindingForm id={x.id} onDone={l.reload} />}
          {m && <PhotoForm id={x.id} findings={x.findings} onDone={l.reload} />}
        </>
      )}
    </Section>
  );
}

function OrderTable(props: { rows: Order[] }) {
  return (
    <Table
      rows={props.rows}
      rowTestid="order-row"
      cols={[
        { key: "project_id", label: t("project") },
        { key: "requirement", label: t("rectificationRequirement") },
        {
          key: "deadline",
          label: t("deadline"),
          render: (r) => (
            <span class={r.overdue ? "alarm-text" : ""} data-overdue={r.overdue ? "1" : "0"}>
              {fmtTime(r.deadline)} {r.overdue ? `(${t("overdue")})` : ""}
            </span>
          ),
        },
        { key: "status", label: t("status") },
        { key: "inspection", label: t("inspection"), render: (r) => <Link href={`/spot-checks/inspections/${r.inspection_id}`}>#{r.inspection_id}</Link> },
      ]}
    />
  );
}

function Orders() {
  const [openOnly, setOpenOnly] = useState(true);
  const l = useLoad(() => get<Order[]>("/api/rectification-orders", { open_only: openOnly }), [openOnly]);
  return (
    <Section
      title={t("rectificationOrders")}
      testid="orders"
      actions={
        <label class="inline">
          <input type="checkbox" checked={openOnly} onChange={(e) => setOpenOnly((e.target as HTMLInputElement).checked)} /> {t("openOnly")}
        </label>
      }
    >
      <Status l={l} />
      {l.data && <OrderTable rows={l.data} />}
    </Section>
  );
}
