import { useEffect, useState } from "react";
import { Link, Redirect, Route, Router, Switch, useLocation } from "wouter";
import { opens, SessionProvider, useSession } from "./session";
import { PAGES } from "./pages";
import { SignIn } from "./pages/SignIn";
import { Callback } from "./pages/Callback";
import { loadConsoleConfig, type ConsoleConfig } from "./oidc";
import { Problem } from "./components/ui";

export function App() {
  const [config, setConfig] = useState<ConsoleConfig | null>(null);
  const [error, setError] = useState<Error | null>(null);
  useEffect(() => {
    loadConsoleConfig().then(setConfig, setError);
  }, []);
  return (
    <SessionProvider>
      <Router base="/console">
        {error ? <Problem error={error} what="The console could not start" /> : config ? <Shell config={config} /> : null}
      </Router>
    </SessionProvider>
  );
}

function Shell({ config }: { config: ConsoleConfig }) {
  const { me } = useSession();
  const [location] = useLocation();
  if (location === "/callback") return <Callback config={config} />;
  if (!me) return <SignIn config={config} />;
  return <Layout />;
}

function Layout() {
  const { me, signOut } = useSession();
  const [location] = useLocation();
  const visible = PAGES.filter((p) => opens(me, p));
  const nav = visible.filter((p) => p.label);
  const active = (path: string) => (path === "/" ? location === "/" : location === path || location.startsWith(`${path}/`));
  return (
    <>
      <a className="skip" href="#main">
        Skip to content
      </a>
      <header className="top">
        <div className="brand">
          CLAIIM <span>console</span>
        </div>
        <nav aria-label="Console">
          <ul>
            {nav.map((p) => (
              <li key={p.path}>
                <Link href={p.path} aria-current={active(p.path) ? "page" : undefined}>
                  {p.label}
                </Link>
              </li>
            ))}
          </ul>
        </nav>
        <div className="who">
          <span>
            {me!.name} · {me!.roles.join(", ") || "no role"} · {me!.organization ? <>organisation <strong>{me!.organization}</strong></> : "all organisations"}
          </span>
          <button type="button" className="secondary" onClick={() => signOut("You signed out.")}>
            Sign out
          </button>
        </div>
      </header>
      <main id="main" tabIndex={-1}>
        <Switch>
          {visible.map((p) => (
            <Route key={p.path} path={p.path} component={p.component} />
          ))}
          <Route path="/">{nav[0] ? <Redirect to={nav[0].path} replace /> : <NoAccess />}</Route>
          <Route>
            <NotHere />
          </Route>
        </Switch>
      </main>
    </>
  );
}

function NoAccess() {
  return (
    <div className="card">
      <h1>Nothing to show</h1>
      <p>This credential holds no role the console has pages for.</p>
    </div>
  );
}

function NotHere() {
  return (
    <div className="card">
      <h1>Not available</h1>
      <p>This page does not exist, or your role does not open it.</p>
    </div>
  );
}
