"""Schemathesis hooks for fuzzing CLAIIM (loaded through SCHEMATHESIS_HOOKS by scripts/fuzz.sh).

- The run never revokes the key it runs with: a DELETE /v1/api-keys/{id} that names it is
  pointed at an id that does not exist (before_call applies to every phase, stateful included).
- `positive_data_is_accepted` replaces schemathesis' positive_data_acceptance. A request that
  the document says is valid must be accepted, except for the refusals that depend on what
  JSON Schema cannot say: the server's state (an owner that does not exist), relations between
  fields (from after to), or the content of a policy. Those are listed below by their problem
  code, and only those: a 400 `validation_failed`, `invalid_text` or `json_too_deep` to a request
  the document calls valid means the document is wrong, and fails the run.
"""
import os

import schemathesis

FUZZ_KEY_ID = os.environ.get("CLAIIM_FUZZ_KEY_ID", "")
ABSENT = "00000000-0000-4000-8000-000000000000"

# Refusals of schema-valid requests that no JSON Schema can foresee, each with why.
SEMANTIC = {
    "range_inverted": "from/from_seq after to/to_seq: a relation between two fields",
    "invalid_cursor": "a cursor is opaque: only one this server issued is valid",
    "owner_not_found": "the accountable human must exist in the organisation (server state)",
    "expiry_in_past": "expires_at must be later than now (the clock)",
    "not_a_checkpoint": "retention must end at a signed checkpoint (server state)",
    "policy_empty": "a policy set needs a Rego module that is not a test (file names)",
    "policy_path_invalid": "policy paths must be relative and end in .rego, .json or .yaml (file names)",
    "policy_no_parent": "a version without a parent needs `against` (server state)",
    "shadow_window_required": "an earlier shadow needs `from` (server state)",
    "duplicate_skill": "skill names must be distinct (a relation between array items)",
    "grant_type_unsupported": "OAuth: only client_credentials (RFC 6749 names the error)",
    "client_authentication_missing": "OAuth: the client authenticates by Basic, secret or assertion",
    "client_assertion_type_invalid": "OAuth: an assertion needs its type (RFC 7523), a relation between fields",
    "jwk_invalid": "the JWK must be a usable public key (its content)",
    "jwk_missing": "private_key_jwt needs a jwk (a relation between fields)",
    "jwk_unexpected": "client_secret takes no jwk (a relation between fields)",
    "on_behalf_of_mismatch": "the body's user must match the token's (the credential)",
    "approver_key_needs_organization": "an approver key must name its organisation (a relation between fields: role and organization)",
    "already_pruned": "retention below what is kept (server state)",
    "archive_invalid": "the upload must be a gzipped tar (binary content)",
    "archive_path_invalid": "archive entries must stay inside the set (binary content)",
    "archive_entry_refused": "archive entries must be UTF-8 text files (binary content)",
    "archive_entry_duplicate": "archive entries must have distinct names (binary content)",
}
# Statuses a valid request may get for reasons outside the request: credentials, absent or
# conflicting resources, size limits, rate limits, and content a gate refuses (422).
ACCEPTED = set(range(200, 400)) | {401, 403, 404, 409, 413, 422, 429}


@schemathesis.hook
def before_call(context, case, kwargs):
    if FUZZ_KEY_ID and case.path_parameters and case.path_parameters.get("id") == FUZZ_KEY_ID and case.method.upper() == "DELETE":
        case.path_parameters["id"] = ABSENT


@schemathesis.check
def positive_data_is_accepted(ctx, response, case):
    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive:
        return None
    status = response.status_code
    if status in ACCEPTED or status >= 500:  # 5xx is not_a_server_error's to report
        return None
    code = None
    try:
        code = response.json().get("code")
    except Exception:
        pass
    if status == 400 and code in SEMANTIC:
        return None
    raise AssertionError(f"a request the document calls valid was refused with {status} {code}: the document or the server is wrong")


# A policy archive is bytes; the generated ones are not gzipped tars, which the server refuses
# with archive_invalid (400), as it must.
schemathesis.serializer.alias("application/gzip", "application/octet-stream")
