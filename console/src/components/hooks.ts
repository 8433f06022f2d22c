import { useCallback, useEffect, useState } from "react";
import { ApiError, getJson } from "../api";

export interface Loaded<T> {
  data: T | null;
  error: ApiError | null;
  loading: boolean;
  reload(): void;
}

/** GETs `path` (nothing when null) and again whenever it changes; a newer request wins. */
export function useApi<T>(path: string | null): Loaded<T> {
  const [state, setState] = useState<{ data: T | null; error: ApiError | null; loading: boolean }>({ data: null, error: null, loading: path !== null });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (path === null) return void setState({ data: null, error: null, loading: false });
    const abort = new AbortController();
    setState((s) => ({ ...s, loading: true, error: null }));
    getJson<T>(path, abort.signal).then(
      (data) => !abort.signal.aborted && setState({ data, error: null, loading: false }),
      (error: unknown) => !abort.signal.aborted && setState({ data: null, error: error instanceof ApiError ? error : new ApiError(0, "client_error", String(error)), loading: false }),
    );
    return () => abort.abort();
  }, [path, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { ...state, reload };
}

/** Sets the document title, so that each page is announced and told apart in the history. */
export function useTitle(title: string): void {
  useEffect(() => {
    document.title = `${title} · CLAIIM console`;
  }, [title]);
}
