// Windows of time and of sequence numbers, as every report and export takes them: `from`
// inclusive, `to` exclusive (time) or inclusive (sequence numbers). One check, one code.
import { InputError } from "../lib/errors";

export interface TimeWindow {
  fromMs?: number;
  toMs?: number;
}

/** RFC 3339 bounds, parsed; a lower bound above the upper one is range_inverted. */
export function timeWindow(from: string | undefined, to: string | undefined): TimeWindow {
  const window = { fromMs: from === undefined ? undefined : Date.parse(from), toMs: to === undefined ? undefined : Date.parse(to) };
  checkWindow(window.fromMs, window.toMs, "from", "to");
  return window;
}

/** A window of sequence numbers; a lower bound above the upper one is range_inverted. */
export function seqWindow(fromSeq: number | undefined, toSeq: number | undefined): { fromSeq?: number; toSeq?: number } {
  checkWindow(fromSeq, toSeq, "from_seq", "to_seq");
  return { fromSeq, toSeq };
}

export function checkWindow(lower: number | undefined, upper: number | undefined, lowerName: string, upperName: string): void {
  if (lower !== undefined && upper !== undefined && lower > upper) {
    throw new InputError("range_inverted", `${lowerName} must not be later than ${upperName}`, [{ path: lowerName, message: `later than ${upperName}` }]);
  }
}
