"""The decisions and errors of the CLAIIM SDK. None of these errors lets an action run."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional


@dataclass(frozen=True)
class Reason:
    """A reason CLAIIM gave, with its stable code when the policy gave one."""

    message: str
    code: Optional[str] = None


@dataclass(frozen=True)
class Decision:
    """A decision as CLAIIM answered it. ``allowed`` is true only for ``decision == "allow"`` with ``allow: true``."""

    decision_id: str
    decision: str
    allowed: bool
    reasons: List[Reason]
    policy: Optional[Dict[str, Any]]
    timestamp: str
    chron: Optional[Dict[str, Any]]
    #: Present when the decision waits for a human's approval: {id, expires_at, approvers, url}.
    approval: Optional[Dict[str, Any]] = None
    #: True when CLAIIM answered a retry with the decision it had already made under the same Idempotency-Key.
    replayed: bool = False
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)


class ClaiimError(Exception):
    """Every error of this SDK. ``code`` is CLAIIM's stable problem code when there is one."""

    def __init__(self, message: str, code: Optional[str] = None, status: Optional[int] = None, problem: Optional[Dict[str, Any]] = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.problem = problem


class DeniedError(ClaiimError):
    """CLAIIM did not allow the action: a deny, or any outcome other than allow."""

    def __init__(self, decision: Decision):
        why = "; ".join(r.message for r in decision.reasons) or "no reason given"
        super().__init__(f"CLAIIM did not allow this action ({decision.decision}, decision {decision.decision_id}): {why}", decision.decision, 200)
        self.decision = decision
        self.decision_id = decision.decision_id
        self.reasons = decision.reasons
        self.approval = decision.approval


class ApprovalRequiredError(DeniedError):
    """The decision needs a human's approval first (``decision == "approval_required"``); ``approval`` says which and where to poll it."""


class AuthenticationError(ClaiimError):
    """The agent could not authenticate: a revoked or unknown client, a bad secret or key, an agent that is not active."""


class RequestError(ClaiimError):
    """CLAIIM refused the request itself (a 4xx problem): fix it, do not retry it."""


class UnavailableError(ClaiimError):
    """CLAIIM could not be reached, or stayed unavailable through every retry. Nothing was allowed."""


class ProtocolError(ClaiimError):
    """CLAIIM's answer was not a decision this SDK understands. Nothing was allowed."""
