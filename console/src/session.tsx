import { createContext, useCallback, useContext, useEffect, useMemo, useRef, useState, type ReactNode } from "react";
import { ApiError, getJson, setCredential, whenUnauthorized, whoIs, type Me, type Role, type Verification } from "./api";

export interface VerifyState {
  running: boolean;
  result: Verification | null;
  at: Date | null;
  error: ApiError | null;
}

interface SessionValue {
  me: Me | null;
  /** Why the last session ended, shown on the sign-in page. */
  notice: string | null;
  signIn(token: string): Promise<void>;
  signOut(notice?: string): void;
  /** The chain's verification, run once per session and again on request (it walks every record). */
  verification: VerifyState;
  verify(): void;
}

const SessionContext = createContext<SessionValue | null>(null);

export function useSession(): SessionValue {
  const value = useContext(SessionContext);
  if (!value) throw new Error("useSession outside SessionProvider");
  return value;
}

/** Whether the signed-in credential holds one of the roles (admin holds them all), as the API decides. */
export function can(me: Me | null, roles: readonly Role[]): boolean {
  return !!me && (me.roles.includes("admin") || me.roles.some((r) => roles.includes(r)));
}

/** Who may open a page: the roles it names, and any signed-in human when it says so (as a route's `humans: true`). */
export function opens(me: Me | null, page: { roles: readonly Role[]; humans?: boolean }): boolean {
  return can(me, page.roles) || (!!page.humans && me?.kind === "human");
}

const idle: VerifyState = { running: false, result: null, at: null, error: null };

export function SessionProvider({ children }: { children: ReactNode }) {
  const [me, setMe] = useState<Me | null>(null);
  const [notice, setNotice] = useState<string | null>(null);
  const [verification, setVerification] = useState<VerifyState>(idle);
  // Bumped at sign-out, so that a verification still running for the last session is dropped.
  const generation = useRef(0);

  const signOut = useCallback((why?: string) => {
    setCredential(null);
    setMe(null);
    setVerification(idle);
    generation.current += 1;
    setNotice(why ?? null);
  }, []);

  useEffect(() => whenUnauthorized((problem) => signOut(`Signed out: ${problem.message} (${problem.code}).`)), [signOut]);

  const signIn = useCallback(async (token: string) => {
    const who = await whoIs(token);
    setCredential(token);
    setNotice(null);
    setMe(who);
  }, []);

  const verify = useCallback(() => {
    const started = generation.current;
    setVerification((v) => ({ ...v, running: true, error: null }));
    getJson<Verification>("/v1/chron/verify").then(
      (result) => started === generation.current && setVerification({ running: false, result, at: new Date(), error: null }),
      (error: ApiError) => started === generation.current && setVerification({ running: false, result: null, at: new Date(), error }),
    );
  }, []);

  const value = useMemo(() => ({ me, notice, signIn, signOut, verification, verify }), [me, notice, signIn, signOut, verification, verify]);
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}
