"""The sync and async CLAIIM clients, and guard (a decorator and a context manager)."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import threading
import time
from typing import Any, Callable, Dict, Optional, Union

import httpx

from ._common import (
    RETRYABLE_STATUS,
    ApprovalWait,
    Backoff,
    Credentials,
    Skill,
    Token,
    decision_body,
    final_error,
    idempotency_header,
    json_or_none,
    network_error,
    new_idempotency_key,
    not_allowed,
    parse_approval,
    approval_path,
    parse_decision,
    problem_error,
    request_args,
    retryable,
    token_from,
)
from .errors import ClaiimError, Decision, DeniedError

Field = Any  # a value, or a callable given the decorated function's arguments
#: wait_for_approval: None or False, do not wait; True, wait until the approval expires; a number, at most that many seconds.
Wait = Union[bool, float, None]
Pending = Union[Decision, DeniedError]


def _wait_timeout(wait: Wait) -> Optional[float]:
    return None if wait is True else float(wait)  # type: ignore[arg-type]


def _asked(action: str, resource: str, purpose: str, skill: Skill, on_behalf_of: Optional[str]) -> Dict[str, Any]:
    return {"action": action, "resource": resource, "purpose": purpose, "skill": skill, "on_behalf_of": on_behalf_of}


def _resolve(value: Field, args: tuple, kwargs: dict) -> Any:
    return value(*args, **kwargs) if callable(value) else value


class _Base:
    def __init__(self, url: str, client_id: str, client_secret: Optional[str], private_key: Any, assertion_audience: Optional[str], key_id: Optional[str], on_behalf_of: Optional[str], max_attempts: int, base_delay: float, max_delay: float, timeout: float):
        if not url:
            raise ClaiimError("url is required")
        self.base = url.rstrip("/")
        self.token_endpoint = f"{self.base}/oauth/token"
        self.credentials = Credentials(client_id, client_secret, private_key, assertion_audience, key_id, on_behalf_of)
        self.backoff = Backoff(max_attempts, base_delay, max_delay)
        self.timeout = timeout
        self._token: Optional[Token] = None
        self.token_fetches = 0


class Claiim(_Base):
    """A CLAIIM client for one agent (thread-safe).

    It keeps a valid access token (fetched with the agent's OAuth client, refreshed before expiry,
    one fetch at a time), asks for decisions with an Idempotency-Key, and retries with back-off on
    503s and network errors, never on a deny.

    >>> claiim = Claiim("http://127.0.0.1:8080", client_id=..., client_secret=...)
    >>> with claiim.guard(action="deploy", resource="staging", purpose="release 1.4.0", skill="deploy@1.2.0"):
    ...     deploy("staging")
    """

    def __init__(self, url: str, client_id: str, client_secret: Optional[str] = None, private_key: Any = None, *, assertion_audience: Optional[str] = None, key_id: Optional[str] = None, on_behalf_of: Optional[str] = None, max_attempts: int = 4, base_delay: float = 0.2, max_delay: float = 5.0, timeout: float = 10.0, http_client: Optional[httpx.Client] = None):
        super().__init__(url, client_id, client_secret, private_key, assertion_audience, key_id, on_behalf_of, max_attempts, base_delay, max_delay, timeout)
        self._http = http_client or httpx.Client(timeout=timeout)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Claiim":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def decide(self, action: str, resource: str, purpose: str, skill: Skill, on_behalf_of: Optional[str] = None, *, idempotency_key: Optional[str] = None, approval_id: Optional[str] = None, wait_for_approval: Wait = None) -> Decision:
        """Asks CLAIIM. A deny is a Decision with ``allowed == False``, not an error; guard() acts on it.

        ``approval_id`` uses an approval given for exactly this request. ``wait_for_approval`` (True,
        or a timeout in seconds) waits for the human when CLAIIM answers approval_required, and
        returns the decision made with the approval instead (see wait_for_approval).
        """
        body = decision_body(action, resource, purpose, skill, on_behalf_of, approval_id)
        # One key for every attempt of this call: a retry after a lost answer gets the first answer back.
        headers = {"Idempotency-Key": idempotency_header(idempotency_key or new_idempotency_key())}
        res = self._authorized("POST", "/v1/decisions", body, headers)
        if res.status_code != 200:
            raise problem_error(res.status_code, json_or_none(res.text), f"POST /v1/decisions answered {res.status_code}")
        decision = dataclasses.replace(parse_decision(json_or_none(res.text), res.headers.get("idempotent-replayed") == "true"), request=_asked(action, resource, purpose, skill, on_behalf_of))
        if wait_for_approval not in (None, False) and decision.decision == "approval_required" and decision.approval:
            return self.wait_for_approval(decision, timeout=_wait_timeout(wait_for_approval))
        return decision

    def wait_for_approval(self, pending: Pending, timeout: Optional[float] = None) -> Decision:
        """Waits for a human to answer the approval of an approval_required decision (the Decision, or
        the ApprovalRequiredError guard raised), then asks the same decision again with the approval,
        under a new Idempotency-Key, and returns CLAIIM's answer: the allow that spends the approval,
        or a recorded deny (such as approval_used when another call used it first).

        It long-polls GET /v1/approvals/{id}?wait=30 until the approval is approved, rejected or
        expired, or ``timeout`` seconds pass (by default, until the approval expires), and raises
        ApprovalRejectedError, ApprovalExpiredError or ApprovalTimeoutError (the approval still open).
        """
        wait = ApprovalWait(pending, timeout)
        while not wait.usable():
            seconds = wait.poll_seconds()
            started = time.monotonic()
            view = self._read_approval(wait.approval_id, seconds)
            pause = wait.polled(view, seconds, time.monotonic() - started)
            if pause:
                time.sleep(pause)
        # A new decision, so a new key: CLAIIM would answer the first key with its first answer again.
        return self.decide(**wait.ask_again())

    def _read_approval(self, approval_id: str, wait: int) -> Dict[str, Any]:
        res = self._authorized("GET", approval_path(approval_id, wait), timeout=wait + self.timeout)
        if res.status_code != 200:
            raise problem_error(res.status_code, json_or_none(res.text), f"GET /v1/approvals/{approval_id} answered {res.status_code}")
        return parse_approval(json_or_none(res.text))

    def guard(self, action: Field, resource: Field, purpose: Field, skill: Field, on_behalf_of: Field = None, *, wait_for_approval: Wait = None) -> "Guard":
        """A context manager and a decorator that let the action run only on an allow, and otherwise raise DeniedError.

        With ``wait_for_approval`` (True, or a timeout in seconds), an approval_required answer waits
        for the human, and the action runs only on the allow CLAIIM gives with the approval.
        """
        return Guard(self, action, resource, purpose, skill, on_behalf_of, wait_for_approval)

    def permissions(self) -> Dict[str, Any]:
        """What this agent may do now under the active policy: its skills and an allow/deny matrix (nothing is recorded)."""
        res = self._authorized("GET", "/v1/agent/permissions")
        if res.status_code != 200:
            raise problem_error(res.status_code, json_or_none(res.text), f"GET /v1/agent/permissions answered {res.status_code}")
        return res.json()

    def access_token(self) -> str:
        """A valid access token; concurrent callers share one fetch."""
        token = self._token
        if token and time.time() < token.refresh_at:
            return token.value
        with self._lock:
            token = self._token
            if token and time.time() < token.refresh_at:
                return token.value
            started = time.time()
            headers, _ = self.credentials.request(self.token_endpoint)
            res = self._send("POST", self.token_endpoint, headers, lambda: self.credentials.request(self.token_endpoint)[1])
            self._token = token_from(res.status_code, json_or_none(res.text), started)
            self.token_fetches += 1
            return self._token.value

    def _authorized(self, method: str, path: str, body: Any = None, headers: Optional[Dict[str, str]] = None, timeout: Optional[float] = None) -> httpx.Response:
        for attempt in (1, 2):
            token = self.access_token()
            h = {**(headers or {}), "Authorization": f"Bearer {token}"}
            res = self._send(method, f"{self.base}{path}", h, body, timeout)
            if res.status_code == 401 and attempt == 1:
                # A token CLAIIM refuses (expired early, its key rotated out): fetch a new one, once.
                with self._lock:
                    if self._token and self._token.value == token:
                        self._token = None
                continue
            return res
        raise AssertionError("unreachable")

    def _send(self, method: str, url: str, headers: Dict[str, str], body: Any, timeout: Optional[float] = None) -> httpx.Response:
        last: Optional[ClaiimError] = None
        for attempt in range(1, self.backoff.max_attempts + 1):
            retry_after = None
            try:
                res = self._http.request(method, url, **request_args(headers, body, timeout))
                if res.status_code not in RETRYABLE_STATUS:
                    return res
                last, retry_after = retryable(method, url, res)
            except httpx.TransportError as err:
                last = network_error(method, url, err)
            if attempt < self.backoff.max_attempts:
                time.sleep(self.backoff.delay(attempt, retry_after))
        raise final_error(last)


class AsyncClaiim(_Base):
    """The asyncio client: the same behaviour as Claiim, with ``await``."""

    def __init__(self, url: str, client_id: str, client_secret: Optional[str] = None, private_key: Any = None, *, assertion_audience: Optional[str] = None, key_id: Optional[str] = None, on_behalf_of: Optional[str] = None, max_attempts: int = 4, base_delay: float = 0.2, max_delay: float = 5.0, timeout: float = 10.0, http_client: Optional[httpx.AsyncClient] = None):
        super().__init__(url, client_id, client_secret, private_key, assertion_audience, key_id, on_behalf_of, max_attempts, base_delay, max_delay, timeout)
        self._http = http_client or httpx.AsyncClient(timeout=timeout)
        self._lock: Optional[asyncio.Lock] = None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> "AsyncClaiim":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.aclose()

    async def decide(self, action: str, resource: str, purpose: str, skill: Skill, on_behalf_of: Optional[str] = None, *, idempotency_key: Optional[str] = None, approval_id: Optional[str] = None, wait_for_approval: Wait = None) -> Decision:
        body = decision_body(action, resource, purpose, skill, on_behalf_of, approval_id)
        headers = {"Idempotency-Key": idempotency_header(idempotency_key or new_idempotency_key())}
        res = await self._authorized("POST", "/v1/decisions", body, headers)
        if res.status_code != 200:
            raise problem_error(res.status_code, json_or_none(res.text), f"POST /v1/decisions answered {res.status_code}")
        decision = dataclasses.replace(parse_decision(json_or_none(res.text), res.headers.get("idempotent-replayed") == "true"), request=_asked(action, resource, purpose, skill, on_behalf_of))
        if wait_for_approval not in (None, False) and decision.decision == "approval_required" and decision.approval:
            return await self.wait_for_approval(decision, timeout=_wait_timeout(wait_for_approval))
        return decision

    async def wait_for_approval(self, pending: Pending, timeout: Optional[float] = None) -> Decision:
        """Claiim.wait_for_approval, with ``await``. Cancelling the task cancels the wait (the poll in
        flight is closed, and CLAIIM stops holding it); cancelled before the approval is used, the
        approval stays unused. Cancelled while the decision with the approval is in flight, CLAIIM may
        have recorded the allow and spent it."""
        wait = ApprovalWait(pending, timeout)
        while not wait.usable():
            seconds = wait.poll_seconds()
            started = time.monotonic()
            view = await self._read_approval(wait.approval_id, seconds)
            pause = wait.polled(view, seconds, time.monotonic() - started)
            if pause:
                await asyncio.sleep(pause)
        return await self.decide(**wait.ask_again())

    async def _read_approval(self, approval_id: str, wait: int) -> Dict[str, Any]:
        res = await self._authorized("GET", approval_path(approval_id, wait), timeout=wait + self.timeout)
        if res.status_code != 200:
            raise problem_error(res.status_code, json_or_none(res.text), f"GET /v1/approvals/{approval_id} answered {res.status_code}")
        return parse_approval(json_or_none(res.text))

    def guard(self, action: Field, resource: Field, purpose: Field, skill: Field, on_behalf_of: Field = None, *, wait_for_approval: Wait = None) -> "AsyncGuard":
        return AsyncGuard(self, action, resource, purpose, skill, on_behalf_of, wait_for_approval)

    async def permissions(self) -> Dict[str, Any]:
        res = await self._authorized("GET", "/v1/agent/permissions")
        if res.status_code != 200:
            raise problem_error(res.status_code, json_or_none(res.text), f"GET /v1/agent/permissions answered {res.status_code}")
        return res.json()

    async def access_token(self) -> str:
        token = self._token
        if token and time.time() < token.refresh_at:
            return token.value
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            token = self._token
            if token and time.time() < token.refresh_at:
                return token.value
            started = time.time()
            headers, _ = self.credentials.request(self.token_endpoint)
            res = await self._send("POST", self.token_endpoint, headers, lambda: self.credentials.request(self.token_endpoint)[1])
            self._token = token_from(res.status_code, json_or_none(res.text), started)
            self.token_fetches += 1
            return self._token.value

    async def _authorized(self, method: str, path: str, body: Any = None, headers: Optional[Dict[str, str]] = None, timeout: Optional[float] = None) -> httpx.Response:
        for attempt in (1, 2):
            token = await self.access_token()
            res = await self._send(method, f"{self.base}{path}", {**(headers or {}), "Authorization": f"Bearer {token}"}, body, timeout)
            if res.status_code == 401 and attempt == 1:
                if self._token and self._token.value == token:
                    self._token = None
                continue
            return res
        raise AssertionError("unreachable")

    async def _send(self, method: str, url: str, headers: Dict[str, str], body: Any, timeout: Optional[float] = None) -> httpx.Response:
        last: Optional[ClaiimError] = None
        for attempt in range(1, self.backoff.max_attempts + 1):
            retry_after = None
            try:
                res = await self._http.request(method, url, **request_args(headers, body, timeout))
                if res.status_code not in RETRYABLE_STATUS:
                    return res
                last, retry_after = retryable(method, url, res)
            except httpx.TransportError as err:
                last = network_error(method, url, err)
            if attempt < self.backoff.max_attempts:
                await asyncio.sleep(self.backoff.delay(attempt, retry_after))
        raise final_error(last)


class Guard:
    """``with claiim.guard(...) as decision:`` runs the block only on an allow; ``@claiim.guard(...)`` does the same for a function.

    As a decorator, any field may be a callable: it receives the decorated function's arguments
    (e.g. ``resource=lambda environment, **_: environment``).
    """

    def __init__(self, client: Claiim, action: Field, resource: Field, purpose: Field, skill: Field, on_behalf_of: Field, wait_for_approval: Wait = None):
        self._client = client
        self._fields = (action, resource, purpose, skill, on_behalf_of)
        self._wait = wait_for_approval

    def _decide(self, args: tuple = (), kwargs: Optional[dict] = None) -> Decision:
        action, resource, purpose, skill, obo = (_resolve(f, args, kwargs or {}) for f in self._fields)
        decision = self._client.decide(action, resource, purpose, skill, obo, wait_for_approval=self._wait)
        if not decision.allowed:
            raise not_allowed(decision)
        return decision

    def __enter__(self) -> Decision:
        return self._decide()

    def __exit__(self, *exc: Any) -> None:
        return None

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(fn):
            raise TypeError("use AsyncClaiim.guard for coroutine functions")

        @functools.wraps(fn)
        def guarded(*args: Any, **kwargs: Any) -> Any:
            self._decide(args, kwargs)
            return fn(*args, **kwargs)

        return guarded


class AsyncGuard:
    """``async with aclaiim.guard(...) as decision:``, or ``@aclaiim.guard(...)`` on a coroutine function."""

    def __init__(self, client: AsyncClaiim, action: Field, resource: Field, purpose: Field, skill: Field, on_behalf_of: Field, wait_for_approval: Wait = None):
        self._client = client
        self._fields = (action, resource, purpose, skill, on_behalf_of)
        self._wait = wait_for_approval

    async def _decide(self, args: tuple = (), kwargs: Optional[dict] = None) -> Decision:
        action, resource, purpose, skill, obo = (_resolve(f, args, kwargs or {}) for f in self._fields)
        decision = await self._client.decide(action, resource, purpose, skill, obo, wait_for_approval=self._wait)
        if not decision.allowed:
            raise not_allowed(decision)
        return decision

    async def __aenter__(self) -> Decision:
        return await self._decide()

    async def __aexit__(self, *exc: Any) -> None:
        return None

    def __call__(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        if not inspect.iscoroutinefunction(fn):
            raise TypeError("AsyncClaiim.guard decorates coroutine functions; use Claiim.guard for plain ones")

        @functools.wraps(fn)
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            await self._decide(args, kwargs)
            return await fn(*args, **kwargs)

        return guarded
