// The regulator's overview: projects on a plain lon/lat plane, risk ranking, alert trends.
import { useMemo, useState } from "preact/hooks";
import { all, get } from "../api";
import { Chart, type ChartOption } from "../charts";
import { t } from "../i18n";
import { Link, navigate, Section, Status, Table, useLoad } from "../ui";

interface Project {
  id: string;
  name: string;
  address: string;
  district_code: string | null;
  district_name: string | null;
  latitude: number | null;
  longitude: number | null;
  status: string;
}

interface Risk {
  project_id: string;
  name: string;
  district_code: string | null;
  open_alarms: number;
  open_warnings: number;
  overdue_rectifications: number;
  lowest_credit_grade: string | null;
  permit_state: string;
  score: number;
}

interface Trends {
  series: { day: string; warning: number; alarm: number }[];
}

export function OverviewPage() {
  const [district, setDistrict] = useState("");
  const allProjects = useLoad(() => all<Project>("/api/projects"), []);
  const q = { district: district || undefined };
  const risk = useLoad(() => get<Risk[]>("/api/stats/risk-ranking", q), [district]);
  const trends = useLoad(() => get<Trends>("/api/stats/alert-trends", { days: 30, ...q }), [district]);

  const districts = useMemo(() => {
    const m = new Map<string, string>();
    for (const p of allProjects.data ?? []) if (p.district_code) m.set(p.district_code, p.district_name ?? p.district_code);
    return [...m.entries()].sort();
  }, [allProjects.data]);
  const projects = (allProjects.data ?? []).filter((p) => !district || p.district_code === district);
  const scoreOf = new Map((risk.data ?? []).map((r) => [r.project_id, r.score]));

  const mapOption = useMemo<ChartOption>(() => {
    const pts = projects.filter((p) => p.latitude != null && p.longitude != null);
    return {
      tooltip: { formatter: (x: unknown) => { const d = (x as { data: { name: string; id: string } }).data; return `${d.id}<br/>${d.name}`; } },
      grid: { left: 50, right: 20, top: 20, bottom: 40 },
      xAxis: { type: "value", name: "lon", scale: true, boundaryGap: ["20%", "20%"], axisLabel: { formatter: (v: number) => v.toFixed(3) } },
      yAxis: { type: "value", name: "lat", scale: true, boundaryGap: ["20%", "20%"], axisLabel: { formatter: (v: number) => v.toFixed(3) } },
      series: [
        {
          type: "scatter",
          symbolSize: (v: number[]) => 10 + Math.min(30, v[2] ?? 0),
          data: pts.map((p) => ({ id: p.id, name: p.name, value: [p.longitude!, p.latitude!, scoreOf.get(p.id) ?? 0] })),
          itemStyle: { color: "#d9480f" },
        },
      ],
    } as ChartOption;
  }, [allProjects.data, district, risk.data]);

  const trendOption = useMemo<ChartOption>(() => {
    const s = trends.data?.series ?? [];
    return {
      tooltip: { trigger: "axis" },
      legend: { top: 0, data: [t("warning"), t("alarm")] },
      grid: { left: 40, right: 20, top: 30, bottom: 30 },
      xAxis: { type: "category", data: s.map((d) => d.day.slice(5)) },
      yAxis: { type: "value", minInterval: 1 },
      series: [
        { name: t("warning"), type: "bar", stack: "n", data: s.map((d) => d.warning), itemStyle: { color: "#f59f00" } },
        { name: t("alarm"), type: "bar", stack: "n", data: s.map((d) => d.alarm), itemStyle: { color: "#e03131" } },
      ],
    } as ChartOption;
  }, [trends.data]);

  return (
    <div class="overview" data-testid="overview">
      <div class="toolbar">
        <label>
          {t("district")}{" "}
          <select data-testid="district-filter" value={district} onChange={(e) => setDistrict((e.target as HTMLSelectElement).value)}>
            <option value="">{t("allDistricts")}</option>
            {districts.map(([code, name]) => (
              <option key={code} value={code}>
                {name}
              </option>
            ))}
          </select>
        </label>
      </div>
      <div class="grid2">
        <Section title={t("map")} testid="project-map">
          <Chart option={mapOption} height={300} onClick={(p) => { const d = p.data as { id?: string } | undefined; if (d?.id) navigate(`/projects/${encodeURIComponent(d.id)}`); }} />
        </Section>
        <Section title={t("alertTrends")} testid="alert-trends">
          <Status l={trends} />
          <Chart option={trendOption} height={300} />
        </Section>
      </div>
      <Section title={t("riskRanking")} testid="risk-ranking">
        <Status l={risk} />
        {risk.data && (
          <Table
            rows={risk.data}
            rowTestid="risk-row"
            cols={[
              { key: "name", label: t("project"), render: (r) => <Link href={`/projects/${encodeURIComponent(r.project_id)}`}>{r.name}</Link> },
              { key: "score", label: t("score") },
              { key: "open_alarms", label: t("openAlarms") },
              { key: "open_warnings", label: t("openWarnings") },
              { key: "overdue_rectifications", label: t("overdue") },
              { key: "lowest_credit_grade", label: t("creditGrade") },
              { key: "permit_state", label: t("permit") },
            ]}
          />
        )}
      </Section>
      <Section title={t("projects")} testid="project-list">
        <Status l={allProjects} />
        <Table
          rows={projects}
          rowTestid="project-row"
          cols={[
            { key: "id", label: "ID", render: (p) => <Link href={`/projects/${encodeURIComponent(p.id)}`} testid="project-link">{p.id}</Link> },
            { key: "name", label: t("name") },
            { key: "district_name", label: t("district") },
            { key: "address", label: t("address") },
            { key: "status", label: t("status") },
          ]}
        />
      </Section>
    </div>
  );
}
