import type { OnKeyCreated } from "../keys/signing-keys";
import type { Recorder } from "./chron-store";
import { newEvent } from "./record";
import { SYSTEM } from "../shared/principal";

/** A new signing key, stored in the same transaction as its `signing_key.created` record. */
export function recordKeyCreation(record: Recorder): OnKeyCreated {
  return (key, save) =>
    record(
      [
        newEvent({
          type: "signing_key.created",
          actor: SYSTEM,
          subject: { type: "signing_key", id: key.kid, name: key.purpose },
          before: null,
          after: { kid: key.kid, alg: key.alg, purpose: key.purpose },
        }),
      ],
      save,
    );
}
