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
  // `of` is the path the state answers; while it is not the current path, the data is the previous one's.
  const [state, setState] = useState<{ of: string | null; data: T | null; error: ApiError | null; loading: boolean }>({ of: null, data: null, error: null, loading: false });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    if (path === null) return void setState({ of: null, data: null, error: null, loading: false });
    const abort = new AbortController();
    setState((s) => ({ ...s, loading: true, error: null }));
    getJson<T>(path, abort.signal).then(
      (data) => !abort.signal.aborted && setState({ of: path, data, error: null, loading: false }),
      (error: unknown) =>
        !abort.signal.aborted && setState({ of: path, data: null, error: error instanceof ApiError ? error : new ApiError(0, "client_error", String(error)), loading: false }),
    );
    return () => abort.abort();
  }, [path, tick]);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  return { data: state.data, error: state.error, loading: path !== null && (state.loading || state.of !== path), reload };
}

/** Sets the document title, so that each page is announced and told apart in the history. */
export function useTitle(title: string): void {
  useEffect(() => {
    document.title = `${title} · CLAIIM console`;
  }, [title]);
}
