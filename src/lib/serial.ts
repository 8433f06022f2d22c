/**
 * Runs work one piece at a time, in the order it arrives; a piece that fails does not stop the
 * ones after it. Changes that read state, record it in Chron and then apply it go through one, so
 * that each change's "before" is exact.
 */
export class Serial {
  private queue: Promise<unknown> = Promise.resolve();

  run<T>(work: () => Promise<T>): Promise<T> {
    const next = this.queue.then(work, work);
    this.queue = next.catch(() => undefined);
    return next;
  }
}
