"""CLAIIM for agents.

    from claiim import Claiim
    claiim = Claiim("http://127.0.0.1:8080", client_id=os.environ["CLAIIM_CLIENT_ID"], client_secret=os.environ["CLAIIM_CLIENT_SECRET"])
    with claiim.guard(action="deploy", resource="staging", purpose="release 1.4.0", skill="deploy@1.2.0"):
        deploy("staging")

The block (or a function decorated with ``@claiim.guard(...)``) runs only on an allow; anything
else raises DeniedError with the reasons and the decision_id. With ``wait_for_approval=600``, an
approval_required answer waits (up to 600 s) for the human and asks again with the approval. Nothing here ever turns a deny, an
error or an unknown answer into an allow.
"""

from ._client import AsyncClaiim, AsyncGuard, Claiim, Guard
from ._common import parse_decision
from .errors import (
    ApprovalExpiredError,
    ApprovalRejectedError,
    ApprovalRequiredError,
    ApprovalTimeoutError,
    ApprovalWaitError,
    AuthenticationError,
    ClaiimError,
    Decision,
    DeniedError,
    ProtocolError,
    Reason,
    RequestError,
    UnavailableError,
)

__all__ = [
    "Claiim",
    "AsyncClaiim",
    "Guard",
    "AsyncGuard",
    "Decision",
    "Reason",
    "parse_decision",
    "ClaiimError",
    "DeniedError",
    "ApprovalRequiredError",
    "ApprovalWaitError",
    "ApprovalRejectedError",
    "ApprovalExpiredError",
    "ApprovalTimeoutError",
    "AuthenticationError",
    "RequestError",
    "UnavailableError",
    "ProtocolError",
]
