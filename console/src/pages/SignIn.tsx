import { useState, type FormEvent } from "react";
import { useLocation } from "wouter";
import { useSession } from "../session";
import { describeOidcError, startSignIn, type ConsoleConfig } from "../oidc";
import { Problem } from "../components/ui";
import { useTitle } from "../components/hooks";
import type { ApiError } from "../api";

export function SignIn({ config }: { config: ConsoleConfig }) {
  useTitle("Sign in");
  const { signIn, notice } = useSession();
  const [location] = useLocation();
  const [key, setKey] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | Error | null>(null);

  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    const value = key.trim();
    // The field is emptied at once: the key lives on only in the API client's memory.
    setKey("");
    try {
      await signIn(value);
    } catch (err) {
      setError(err as ApiError);
    } finally {
      setBusy(false);
    }
  };

  const oidc = async () => {
    setError(null);
    try {
      await startSignIn(config.oidc!, `${location}${window.location.search}`);
    } catch (err) {
      setError(new Error(describeOidcError(err)));
    }
  };

  return (
    <main id="main" className="signin">
      <h1>
        CLAIIM <span>console</span>
      </h1>
      <p className="muted">Agents, policies and the proof of every decision.</p>
      {notice ? (
        <div className="notice" role="status">
          {notice}
        </div>
      ) : null}
      <Problem error={error} what="Sign-in failed" />
      {config.oidc ? (
        <section className="card" aria-labelledby="h-oidc">
          <h2 id="h-oidc">With your organisation's identity provider</h2>
          <button type="button" onClick={oidc}>
            Sign in with {new URL(config.oidc.issuer).host}
          </button>
        </section>
      ) : config.oidc_error ? (
        <div className="notice error" role="alert">
          Single sign-on is configured but unavailable: {config.oidc_error}
        </div>
      ) : null}
      <section className="card" aria-labelledby="h-key">
        <h2 id="h-key">With an API key</h2>
        <form onSubmit={submit}>
          <label htmlFor="api-key">API key</label>
          <input id="api-key" type="password" autoComplete="off" spellCheck={false} placeholder="claiim_…" value={key} onChange={(e) => setKey(e.target.value)} required />
          <p className="hint">Kept in this tab's memory only: closing or reloading the tab signs you out.</p>
          <button type="submit" disabled={busy}>
            Sign in
          </button>
        </form>
      </section>
    </main>
  );
}
