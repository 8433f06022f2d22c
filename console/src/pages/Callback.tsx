import { useEffect, useRef, useState } from "react";
import { useLocation } from "wouter";
import { useSession } from "../session";
import { describeOidcError, finishSignIn, type ConsoleConfig } from "../oidc";
import { Problem } from "../components/ui";
import { useTitle } from "../components/hooks";

/** /console/callback: the identity provider sends the browser back here with a code. */
export function Callback({ config }: { config: ConsoleConfig }) {
  useTitle("Signing in");
  const { signIn } = useSession();
  const [, navigate] = useLocation();
  const [error, setError] = useState<Error | null>(null);
  const started = useRef(false);
  useEffect(() => {
    if (started.current) return;
    started.current = true;
    (async () => {
      if (!config.oidc) throw new Error("single sign-on is not configured");
      const { token, returnTo } = await finishSignIn(config.oidc);
      await signIn(token);
      // The code leaves the address bar and the history.
      navigate(returnTo.startsWith("/") && !returnTo.startsWith("/callback") ? returnTo : "/", { replace: true });
    })().catch((err) => {
      window.history.replaceState(null, "", "/console/callback");
      setError(new Error(describeOidcError(err)));
    });
  }, [config, signIn, navigate]);
  return (
    <main id="main" className="signin">
      <h1>Signing in</h1>
      {error ? (
        <>
          <Problem error={error} what="Sign-in failed" />
          <p>
            <a href="/console/">Back to sign-in</a>
          </p>
        </>
      ) : (
        <p role="status">Checking the identity provider's answer…</p>
      )}
    </main>
  );
}
