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
    #: The approval the decision concerns: {id, status, expires_at, approvers, url} (approval_required), or the one used or refused.
    approval: Optional[Dict[str, Any]] = None
    #: True when CLAIIM answered a retry with the decision it had already made under the same Idempotency-Key.
    replayed: bool = False
    raw: Dict[str, Any] = field(default_factory=dict, repr=False)
    #: What was asked ({action, resource, purpose, skill, on_behalf_of}, without approval_id): wait_for_approval asks it again.
    request: Optional[Dict[str, Any]] = field(default=None, repr=False)


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

    def __init__(self, decision: Decision, code: Optional[str] = None, reasons: Optional[List[Reason]] = None, approval: Optional[Dict[str, Any]] = None):
        # code, reasons and approval replace the decision's own at the end of a wait for an approval.
        reasons = decision.reasons if reasons is None else reasons
        code = code or decision.decision
        why = "; ".join(r.message for r in reasons) or "no reason given"
        super().__init__(f"CLAIIM did not allow this action ({code}, decision {decision.decision_id}): {why}", code, 200)
        self.decision = decision
        self.decision_id = decision.decision_id
        self.reasons = reasons
        self.approval = approval if approval is not None else decision.approval

    @property
    def request(self) -> Optional[Dict[str, Any]]:
        """What was asked (wait_for_approval asks it again with the approval)."""
        return self.decision.request


class ApprovalRequiredError(DeniedError):
    """The decision needs a human's approval first (``decision == "approval_required"``); ``approval`` says which and where to poll it.

    Pass it to ``claiim.wait_for_approval()`` to wait for the human and ask again with the approval.
    """


class ApprovalWaitError(DeniedError):
    """A wait for an approval ended without one to use. ``approval`` is the approval as last read from
    CLAIIM, ``decision`` the approval_required decision, ``reasons`` why the wait ended (with the code
    CLAIIM itself gives when asked with that approval). Nothing was allowed."""

    def __init__(self, decision: Decision, approval: Dict[str, Any], code: str, message: str):
        super().__init__(decision, code, [Reason(message, code)], approval)


class ApprovalRejectedError(ApprovalWaitError):
    """A human rejected the approval (``approval["decided_by"]``, ``approval["decision_reason"]``). Code ``approval_rejected``."""


class ApprovalExpiredError(ApprovalWaitError):
    """The approval expired before anyone answered it, or before it was used. Code ``approval_expired``."""


class ApprovalTimeoutError(ApprovalWaitError):
    """The wait's timeout passed with the approval still pending (code ``approval_pending``). The approval
    stays open: wait again with this error, or ask again later with the same request."""


class AuthenticationError(ClaiimError):
    """The agent could not authenticate: a revoked or unknown client, a bad secret or key, an agent that is not active."""


class RequestError(ClaiimError):
    """CLAIIM refused the request itself (a 4xx problem): fix it, do not retry it."""


class UnavailableError(ClaiimError):
    """CLAIIM could not be reached, or stayed unavailable through every retry. Nothing was allowed."""


class ProtocolError(ClaiimError):
    """CLAIIM's answer was not a decision this SDK understands. Nothing was allowed."""
