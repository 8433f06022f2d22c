"""What the sync and async clients share: requests, answers and errors, without I/O."""

from __future__ import annotations

import base64
import json
import math
import random
import time
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union
from urllib.parse import quote, urlencode

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from .errors import (
    ApprovalExpiredError,
    ApprovalRejectedError,
    ApprovalRequiredError,
    ApprovalTimeoutError,
    AuthenticationError,
    ClaiimError,
    Decision,
    DeniedError,
    ProtocolError,
    Reason,
    RequestError,
    UnavailableError,
)

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
RETRYABLE_STATUS = frozenset({429, 502, 503, 504})

Skill = Union[str, Mapping[str, str]]


def skill_of(skill: Skill) -> Dict[str, str]:
    if isinstance(skill, str):
        name, sep, version = skill.rpartition("@")
        if not sep or not name or not version:
            raise RequestError(f'skill "{skill}" is not of the form name@version', "validation_failed")
        return {"name": name, "version": version}
    return {"name": skill["name"], "version": skill["version"]}


def decision_body(action: str, resource: str, purpose: str, skill: Skill, on_behalf_of: Optional[str], approval_id: Optional[str] = None) -> Dict[str, Any]:
    body: Dict[str, Any] = {"action": action, "resource": resource, "purpose": purpose, "skill": skill_of(skill)}
    if on_behalf_of is not None:
        body["on_behalf_of"] = {"subject": on_behalf_of}
    if approval_id is not None:
        body["approval_id"] = approval_id
    return body


def new_idempotency_key() -> str:
    return str(uuid.uuid4())


def idempotency_header(key: str) -> str:
    # An RFC 8941 string, as the Idempotency-Key draft has it.
    return '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _reasons(raw: Any, raw_codes: Any = None) -> Optional[List[Reason]]:
    """The reasons, each with its code: reason_codes[i] is the code of reasons[i]. Codes that do not
    line up with the reasons are left out rather than guessed."""
    if not isinstance(raw, list):
        return None
    codes = raw_codes if isinstance(raw_codes, list) and len(raw_codes) == len(raw) and all(isinstance(c, str) for c in raw_codes) else None
    out: List[Reason] = []
    for i, r in enumerate(raw):
        if isinstance(r, str):
            out.append(Reason(r, codes[i] if codes else None))
        elif isinstance(r, dict) and isinstance(r.get("message"), str):
            code = r.get("code")
            out.append(Reason(r["message"], code if isinstance(code, str) else None))
        else:
            return None
    return out


def parse_decision(body: Any, replayed: bool) -> Decision:
    """Reads a decision strictly: only ``decision == "allow"`` together with ``allow is True`` allows."""
    reasons = _reasons(body.get("reasons"), body.get("reason_codes")) if isinstance(body, dict) else None
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("decision_id"), str)
        or not isinstance(body.get("decision"), str)
        or not isinstance(body.get("allow"), bool)
        or reasons is None
    ):
        raise ProtocolError("CLAIIM's answer is not a decision (decision_id, decision, allow, reasons)")
    if (body["decision"] == "allow") != (body["allow"] is True):
        raise ProtocolError(f'CLAIIM\'s answer is inconsistent (decision "{body["decision"]}" with allow {body["allow"]}); it is not taken as an allow')
    approval = body.get("approval")
    if not (isinstance(approval, dict) and isinstance(approval.get("id"), str)):
        approval = None
    return Decision(
        decision_id=body["decision_id"],
        decision=body["decision"],
        allowed=body["decision"] == "allow" and body["allow"] is True,
        reasons=reasons,
        policy=body.get("policy"),
        timestamp=body.get("timestamp") if isinstance(body.get("timestamp"), str) else "",
        chron=body.get("chron"),
        approval=approval,
        replayed=replayed,
        raw=body,
    )


def not_allowed(decision: Decision) -> DeniedError:
    # A deny may name an approval too (used, rejected, expired): only approval_required waits for one.
    return ApprovalRequiredError(decision) if decision.decision == "approval_required" and decision.approval else DeniedError(decision)


def parse_approval(body: Any) -> Dict[str, Any]:
    """An approval (GET /v1/approvals/{id}), read strictly enough to act on its status."""
    if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not isinstance(body.get("status"), str):
        raise ProtocolError("CLAIIM's answer is not an approval (id, status)")
    return body


def approval_path(approval_id: str, wait: int) -> str:
    # WARNING: the path goes on the configured CLAIIM URL, never on the ``url`` an answer names, so
    # that the agent's token only ever goes to CLAIIM.
    return f"/v1/approvals/{quote(approval_id, safe='')}?wait={wait}"


#: Seconds CLAIIM is asked to hold each poll (it allows at most 60; 30 stays under common proxy idle timeouts).
POLL_SECONDS = 30
#: A poll that comes back pending much sooner than asked is followed by this pause, so that it never spins.
PAUSE_SECONDS = 1.0
#: Without an expiry to go by, a wait with no timeout gives up after this long.
DEFAULT_TIMEOUT_SECONDS = 15 * 60.0
#: A wait to the approval's expiry lasts this much longer, for CLAIIM to record the expiry.
EXPIRY_GRACE_SECONDS = 2.0


def _seconds_until(iso: Any) -> Optional[float]:
    if not isinstance(iso, str):
        return None
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() - time.time()
    except ValueError:
        return None


def _who(a: Dict[str, Any]) -> str:
    d = a.get("decided_by")
    if not isinstance(d, dict):
        return "an approver"
    h = d.get("human")
    if isinstance(h, dict):
        return h.get("email", "?") if d.get("type") == "human" else f"{h.get('email', '?')} (through {d.get('name', '?')})"
    return f"{d.get('type', '?')} {d.get('name', '?')}"


class ApprovalWait:
    """One wait for the approval of an approval_required decision, without I/O: the clients poll as
    it says and tell it what each poll answered.

    WARNING: this only decides when to ask again; it never allows anything. The allow can only come
    from CLAIIM's answer to the decision asked with the approval.
    """

    def __init__(self, pending: Union[Decision, DeniedError], timeout: Optional[float]):
        decision = pending.decision if isinstance(pending, DeniedError) else pending
        if not isinstance(decision, Decision) or not decision.approval or not decision.request:
            raise ClaiimError("wait_for_approval takes an approval_required decision from decide() (or the ApprovalRequiredError from guard), which names the approval and the request")
        self.decision = decision
        self.view: Dict[str, Any] = decision.approval
        if timeout is None:
            left = _seconds_until(self.view.get("expires_at"))
            timeout = max(0.0, left) + EXPIRY_GRACE_SECONDS if left is not None else DEFAULT_TIMEOUT_SECONDS
        if not timeout >= 0:
            raise ValueError("timeout must be a number of seconds, 0 or more")
        self.timeout = float(timeout)
        self.deadline = time.monotonic() + self.timeout

    @property
    def approval_id(self) -> str:
        return self.view["id"]

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def usable(self) -> bool:
        """True when the approval can be used (approved; or used, which CLAIIM then refuses with its own
        recorded reason); False to poll again; raises when the wait is over without one."""
        status = self.view.get("status", "pending")
        a, aid = self.view, self.view["id"]
        if status in ("approved", "used"):
            return True
        if status == "rejected":
            raise ApprovalRejectedError(self.decision, a, "approval_rejected", f"approval {aid} was rejected by {_who(a)}: {a.get('decision_reason') or 'no reason given'}")
        if status == "expired":
            raise ApprovalExpiredError(self.decision, a, "approval_expired", f"approval {aid} expired at {a.get('expires_at', 'its expiry')}")
        if status != "pending":
            raise ProtocolError(f"approval {aid} has a status this SDK does not know ({status}); it is not taken as approved")
        if self.remaining() <= 0:
            raise ApprovalTimeoutError(self.decision, a, "approval_pending", f"approval {aid} was still pending after {self.timeout:g} s of waiting; it stays open until {a.get('expires_at', 'it expires')}")
        return False

    def poll_seconds(self) -> int:
        """How long the next poll asks CLAIIM to wait: never past the deadline, so that the timeout holds."""
        return max(0, min(POLL_SECONDS, math.floor(self.remaining())))

    def polled(self, view: Dict[str, Any], asked: int, took: float) -> float:
        """Takes a poll's answer; returns how long to pause before the next poll."""
        if view.get("id") != self.view["id"]:
            raise ProtocolError(f"asked for approval {self.view['id']}, CLAIIM answered about {view.get('id')}")
        self.view = view
        if view.get("status") == "pending" and took < max(asked, 1) / 2:
            return min(PAUSE_SECONDS, max(0.0, self.remaining()))
        return 0.0

    def ask_again(self) -> Dict[str, Any]:
        """The arguments of decide() that use the approval: the same request, with approval_id."""
        return {**(self.decision.request or {}), "approval_id": self.view["id"]}


def json_or_none(text: str) -> Any:
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def problem_error(status: int, body: Any, fallback: str) -> ClaiimError:
    p = body if isinstance(body, dict) else {}
    code = p.get("code") if isinstance(p.get("code"), str) else p.get("error") if isinstance(p.get("error"), str) else None
    detail = p.get("detail") if isinstance(p.get("detail"), str) else p.get("error_description") if isinstance(p.get("error_description"), str) else fallback
    message = f"{detail} ({code})" if code else detail
    if status == 401 or p.get("error") in ("invalid_client", "invalid_grant"):
        return AuthenticationError(message, code, status, p)
    if status == 429 or status >= 500:
        return UnavailableError(message, code, status, p)
    return RequestError(message, code, status, p)


@dataclass
class Token:
    value: str
    refresh_at: float
    expires_at: float


def token_from(status: int, body: Any, started: float) -> Token:
    if status != 200:
        raise problem_error(status, body, f"the token endpoint answered {status}")
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str) or not isinstance(body.get("expires_in"), (int, float)) or body["expires_in"] <= 0:
        raise ProtocolError("the token endpoint's answer has no access_token and expires_in")
    lifetime = float(body["expires_in"])
    # Refresh a fifth of the lifetime before expiry, at most a minute before.
    margin = min(60.0, lifetime / 5)
    return Token(body["access_token"], started + lifetime - margin, started + lifetime)


class Credentials:
    """The agent's OAuth client: a secret, or a private key that signs assertions here and is never sent."""

    def __init__(self, client_id: str, client_secret: Optional[str], private_key: Any, assertion_audience: Optional[str], key_id: Optional[str], on_behalf_of: Optional[str]):
        if not client_id:
            raise ClaiimError("client_id is required")
        if (client_secret is None) == (private_key is None):
            raise ClaiimError("give either client_secret or private_key (private_key_jwt)")
        self.client_id = client_id
        self.client_secret = client_secret
        self.assertion_audience = assertion_audience
        self.key_id = key_id
        self.on_behalf_of = on_behalf_of
        self.key = None
        self.alg = None
        if private_key is not None:
            key = private_key
            if isinstance(key, (str, bytes)):
                key = serialization.load_pem_private_key(key.encode() if isinstance(key, str) else key, password=None)
            if isinstance(key, ec.EllipticCurvePrivateKey):
                self.alg = {"secp256r1": "ES256", "secp384r1": "ES384"}.get(key.curve.name)
                if not self.alg:
                    raise ClaiimError(f"EC curve {key.curve.name} is not accepted by CLAIIM; use P-256 or P-384")
            elif isinstance(key, rsa.RSAPrivateKey):
                self.alg = "RS256"
            else:
                raise ClaiimError("private_key must be an EC (P-256, P-384) or RSA private key")
            self.key = key

    def request(self, token_endpoint: str) -> Tuple[Dict[str, str], str]:
        """Headers and form body of one token request; a fresh assertion each time (CLAIIM takes each jti once)."""
        form = {"grant_type": "client_credentials"}
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
        if self.on_behalf_of:
            form["on_behalf_of"] = self.on_behalf_of
        if self.key is not None:
            now = int(time.time())
            claims = {"iss": self.client_id, "sub": self.client_id, "aud": self.assertion_audience or token_endpoint, "jti": str(uuid.uuid4()), "iat": now, "exp": now + 60}
            form.update(client_id=self.client_id, client_assertion_type=JWT_BEARER, client_assertion=jwt.encode(claims, self.key, algorithm=self.alg, headers={"kid": self.key_id} if self.key_id else None))
        else:
            # RFC 6749 2.3.1: each part is form-urlencoded before the Basic encoding.
            basic = f"{quote(self.client_id, safe='')}:{quote(self.client_secret or '', safe='')}"
            headers["Authorization"] = "Basic " + base64.b64encode(basic.encode()).decode()
        return headers, urlencode(form)


class Backoff:
    def __init__(self, max_attempts: int, base_delay: float, max_delay: float):
        if max_attempts < 1:
            raise ClaiimError("max_attempts must be at least 1")
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay

    def delay(self, attempt: int, retry_after: Optional[str]) -> float:
        """Exponential with jitter; Retry-After (seconds) when CLAIIM sent one; never more than max_delay."""
        if retry_after is not None:
            try:
                return min(self.max_delay, max(0.0, float(retry_after)))
            except ValueError:
                pass
        backoff = self.base_delay * 2 ** (attempt - 1)
        return min(self.max_delay, backoff / 2 + random.random() * backoff / 2)


def request_args(headers: Mapping[str, str], body: Any, timeout: Optional[float] = None) -> Dict[str, Any]:
    """httpx arguments of one attempt; ``body`` may be a callable, for a fresh client assertion each time."""
    content = body() if callable(body) else body
    args: Dict[str, Any] = {"headers": {"Accept": "application/json", **headers}}
    if timeout is not None:
        args["timeout"] = timeout
    if isinstance(content, str):
        args["content"] = content
    elif content is not None:
        args["json"] = content
    return args


def retryable(method: str, url: str, res: Any) -> Tuple[ClaiimError, Optional[str]]:
    """The error of an answer worth retrying (429, 502-504), and its Retry-After."""
    return problem_error(res.status_code, json_or_none(res.text), f"{method} {url} answered {res.status_code}"), res.headers.get("retry-after")


def network_error(method: str, url: str, err: Exception) -> UnavailableError:
    return UnavailableError(f"{method} {url} failed: {type(err).__name__}: {err}", "network_error")


def final_error(last: Optional[ClaiimError]) -> UnavailableError:
    if isinstance(last, UnavailableError):
        return last
    return UnavailableError(last.message if last else "CLAIIM is unavailable", last.code if last else None, last.status if last else None, last.problem if last else None)
