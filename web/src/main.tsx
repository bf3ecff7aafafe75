import { render } from "preact";
import { useEffect, useState } from "preact/hooks";
import { currentAuth, onAuth, setAuth, type Auth } from "./api";
import { setLang, t, useLang, type Lang } from "./i18n";
import { Link, navigate, useRoute } from "./ui";
import { LoginPage } from "./pages/Login";
import { OverviewPage } from "./pages/Overview";
import { ProjectPage } from "./pages/Project";
import { InboxPage } from "./pages/Inbox";
import { AdminPage } from "./pages/Admin";
import { EmergencyPage } from "./pages/Emergency";
import { SpotChecksPage } from "./pages/SpotChecks";
import { SharingPage } from "./pages/Sharing";
import "./styles.css";

function LangSwitch() {
  const lang = useLang();
  return (
    <select
      class="lang"
      aria-label={t("language")}
      data-testid="lang-switch"
      value={lang}
      onChange={(e) => setLang((e.target as HTMLSelectElement).value as Lang)}
    >
      <option value="en">English</option>
      <option value="zh">中文</option>
    </select>
  );
}

function home(a: Auth): string {
  return a.me.role === "regulator" || a.me.role === "admin" ? "/overview" : "/inbox";
}

function Shell(props: { auth: Auth; path: string }) {
  const { auth, path } = props;
  const role = auth.me.role;
  const [open, setOpen] = useState(false);
  const seg = path.split("?")[0].split("/").filter(Boolean);
  let page;
  if (seg[0] === "overview") page = <OverviewPage />;
  else if (seg[0] === "projects" && seg[1]) page = <ProjectPage id={decodeURIComponent(seg[1])} />;
  else if (seg[0] === "inbox") page = <InboxPage me={auth.me} />;
  else if (seg[0] === "admin") page = <AdminPage />;
  else if (seg[0] === "emergency" && role !== "enterprise") page = <EmergencyPage me={auth.me} seg={seg} />;
  else if (seg[0] === "spot-checks") page = <SpotChecksPage me={auth.me} seg={seg} />;
  else if (seg[0] === "sharing" && role !== "officer") page = <SharingPage me={auth.me} seg={seg} />;
  else page = <OverviewPage />;
  const nav = (href: string, label: string, id: string) => (
    <Link href={href} testid={`nav-${id}`} class={seg[0] === href.slice(1) ? "active" : ""}>
      {label}
    </Link>
  );
  return (
    <div class="shell">
      <header class="top">
        <button class="burger" aria-label="menu" onClick={() => setOpen(!open)}>
          ☰
        </button>
        <span class="brand" data-testid="brand">
          {t("app")}
        </span>
        <nav class={open ? "open" : ""} onClick={() => setOpen(false)}>
          {role !== "officer" && nav("/overview", t("overview"), "overview")}
          {nav("/inbox", t("inbox"), "inbox")}
          {role !== "enterprise" && nav("/emergency", t("emergency"), "emergency")}
          {nav("/spot-checks", t("spotChecks"), "spot-checks")}
          {(role === "admin" || role === "regulator" || role === "data_sharing") && nav("/sharing", t("dataSharing"), "sharing")}
          {role === "admin" && nav("/admin", t("admin"), "admin")}
        </nav>
        <span class="spacer" />
        <LangSwitch />
        <span class="who" data-testid="who">
          {auth.me.name} · {auth.me.role}
        </span>
        <button
          class="link"
          data-testid="sign-out"
          onClick={() => {
            setAuth(null);
            navigate("/login");
          }}
        >
          {t("signOut")}
        </button>
      </header>
      <main>{page}</main>
    </div>
  );
}

function App() {
  useLang();
  const path = useRoute();
  const [auth, set] = useState<Auth | null>(currentAuth());
  useEffect(() => onAuth(set), []);
  const onLogin = path.startsWith("/login");
  useEffect(() => {
    if (!auth && !onLogin) navigate("/login", true);
    else if (auth && (onLogin || path === "/" || path === "")) navigate(home(auth), true);
    else if (auth && auth.me.role === "officer" && path.startsWith("/overview")) navigate("/inbox", true);
  }, [auth, path]);
  if (!auth)
    return (
      <div class="login-shell">
        <div class="login-top">
          <LangSwitch />
        </div>
        <LoginPage />
      </div>
    );
  return <Shell auth={auth} path={path} />;
}

render(<App />, document.getElementById("app")!);
