import { useState } from "preact/hooks";
import { errorText, login } from "../api";
import { t } from "../i18n";

export function LoginPage() {
  const [username, setUser] = useState("");
  const [password, setPass] = useState("");
  const [err, setErr] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  return (
    <form
      class="card login"
      data-testid="login-form"
      onSubmit={async (e) => {
        e.preventDefault();
        setBusy(true);
        setErr(null);
        try {
          await login(username, password);
        } catch (x) {
          setErr(errorText(x));
        } finally {
          setBusy(false);
        }
      }}
    >
      <h1 data-testid="login-title">{t("app")}</h1>
      <label>
        {t("username")}
        <input data-testid="login-username" autocomplete="username" value={username} onInput={(e) => setUser((e.target as HTMLInputElement).value)} />
      </label>
      <label>
        {t("password")}
        <input
          data-testid="login-password"
          type="password"
          autocomplete="current-password"
          value={password}
          onInput={(e) => setPass((e.target as HTMLInputElement).value)}
        />
      </label>
      {err && (
        <div class="error" data-testid="login-error">
          {err}
        </div>
      )}
      <button type="submit" class="primary" data-testid="login-submit" disabled={busy}>
        {t("signIn")}
      </button>
    </form>
  );
}
