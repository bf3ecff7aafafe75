// A small dictionary: English and Chinese. The choice is kept in localStorage; the default
// follows the browser's language.
import { useEffect, useState } from "preact/hooks";

export type Lang = "en" | "zh";
const KEY = "smartsite.lang";

const en = {
  app: "Site supervision",
  signIn: "Sign in",
  username: "User name",
  password: "Password",
  signOut: "Sign out",
  language: "Language",
  overview: "Overview",
  inbox: "Alert inbox",
  admin: "Admin",
  projects: "Projects",
  project: "Project",
  map: "Project map",
  riskRanking: "Risk ranking",
  alertTrends: "Alert trends (30 days)",
  district: "District",
  allDistricts: "All districts",
  name: "Name",
  address: "Address",
  status: "Status",
  score: "Score",
  openAlarms: "Open alarms",
  openWarnings: "Open warnings",
  overdue: "Overdue",
  creditGrade: "Lowest credit",
  permit: "Permit",
  permits: "Permits",
  enterprises: "Enterprises",
  creditScore: "Credit score",
  blacklisted: "Blacklisted",
  yes: "yes",
  no: "no",
  warning: "Warning",
  alarm: "Alarm",
  sensors: "Sensors",
  openAlerts: "Open alerts",
  attendanceToday: "Attendance today",
  bim: "BIM model",
  storey: "Storey",
  noModel: "No BIM model",
  loading: "Loading…",
  nothing: "Nothing here",
  alerts: "Alerts",
  live: "live",
  offline: "offline",
  activeOnly: "Active only",
  allStatuses: "All statuses",
  level: "Level",
  device: "Device",
  rule: "Rule",
  opened: "Opened",
  deadline: "Deadline",
  responsible: "Responsible",
  note: "Note",
  photo: "Photo",
  evidence: "Evidence",
  openPhoto: "Open photo",
  close: "Close",
  acknowledge: "Acknowledge",
  assign: "Assign",
  resolve: "Resolve",
  verify: "Verify (close)",
  reopen: "Reopen",
  history: "History",
  selectAlert: "Select an alert",
  back: "Back",
  devices: "Devices",
  rules: "Thresholds and rules",
  users: "Users",
  role: "Role",
  save: "Save",
  create: "Create",
  kind: "Kind",
  value: "Value",
  newUser: "New user",
  displayName: "Display name",
  projectsComma: "Projects (comma separated)",
  saved: "Saved",
  new: "new",
  dashboard: "Dashboard",
  showBim: "Show on model",
  workers: "Workers",
  in: "in",
  out: "out",
  count: "Count",
  total: "Total",
  showing: "Showing",
  devicesOnline: "devices online",
} as const;

export type Key = keyof typeof en;

const zh: Record<Key, string> = {
  app: "智慧工地监管",
  signIn: "登录",
  username: "用户名",
  password: "密码",
  signOut: "退出登录",
  language: "语言",
  overview: "监管总览",
  inbox: "预警处置",
  admin: "系统管理",
  projects: "项目",
  project: "项目",
  map: "项目分布",
  riskRanking: "风险排名",
  alertTrends: "预警趋势（30天）",
  district: "区县",
  allDistricts: "全部区县",
  name: "名称",
  address: "地址",
  status: "状态",
  score: "风险分",
  openAlarms: "未销号报警",
  openWarnings: "未销号预警",
  overdue: "逾期整改",
  creditGrade: "最低信用等级",
  permit: "施工许可",
  permits: "施工许可",
  enterprises: "参建企业",
  creditScore: "信用分",
  blacklisted: "黑名单",
  yes: "是",
  no: "否",
  warning: "预警",
  alarm: "报警",
  sensors: "传感器监测",
  openAlerts: "未处理预警",
  attendanceToday: "今日考勤",
  bim: "BIM 模型",
  storey: "楼层",
  noModel: "暂无 BIM 模型",
  loading: "加载中…",
  nothing: "暂无数据",
  alerts: "预警",
  live: "实时",
  offline: "离线",
  activeOnly: "仅未解除",
  allStatuses: "全部状态",
  level: "级别",
  device: "设备",
  rule: "规则",
  opened: "发生时间",
  deadline: "整改期限",
  responsible: "责任人",
  note: "说明",
  photo: "照片",
  evidence: "证据",
  openPhoto: "查看照片",
  close: "关闭",
  acknowledge: "确认接收",
  assign: "指派整改",
  resolve: "提交整改",
  verify: "复核销号",
  reopen: "退回重办",
  history: "处置记录",
  selectAlert: "请选择一条预警",
  back: "返回",
  devices: "设备",
  rules: "阈值与规则",
  users: "用户",
  role: "角色",
  save: "保存",
  create: "新建",
  kind: "类型",
  value: "数值",
  newUser: "新建用户",
  displayName: "显示名",
  projectsComma: "项目（逗号分隔）",
  saved: "已保存",
  new: "新",
  dashboard: "项目看板",
  showBim: "在模型中定位",
  workers: "人员",
  in: "进",
  out: "出",
  count: "数量",
  total: "合计",
  showing: "显示",
  devicesOnline: "设备在线",
};

const statusZh: Record<string, string> = {
  open: "待确认",
  acknowledged: "已确认",
  rectifying: "整改中",
  resolved: "待复核",
  closed: "已销号",
  reopened: "已退回",
};

function initial(): Lang {
  const saved = localStorage.getItem(KEY);
  if (saved === "en" || saved === "zh") return saved;
  return (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
}

let lang: Lang = initial();
const listeners = new Set<(l: Lang) => void>();
document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";

export function getLang(): Lang {
  return lang;
}

export function setLang(l: Lang): void {
  lang = l;
  localStorage.setItem(KEY, l);
  document.documentElement.lang = l === "zh" ? "zh-CN" : "en";
  listeners.forEach((f) => f(l));
}

export function t(k: Key): string {
  return lang === "zh" ? zh[k] : en[k];
}

/** A status value in the current language. */
export function tStatus(s: string): string {
  return lang === "zh" ? (statusZh[s] ?? s) : s;
}

/** Re-render a component when the language changes; returns the language. */
export function useLang(): Lang {
  const [l, set] = useState(lang);
  useEffect(() => {
    listeners.add(set);
    return () => {
      listeners.delete(set);
    };
  }, []);
  return l;
}

export function fmtTime(s: string | null | undefined): string {
  if (!s) return "";
  const d = new Date(s);
  return d.toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", {
    month: "2-digit",
    day: "2-digit",
    hour: "2-digit",
    minute: "2-digit",
  });
}
