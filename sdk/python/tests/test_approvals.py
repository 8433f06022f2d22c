"""The Python SDK waiting for a human's approval, sync and async, against a real CLAIIM (see
conftest.py); approvals are answered as a chat bridge relays the accountable human's answer.
And, on scripted answers, that nothing a poll says is ever taken for an allow."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest

from claiim import (
    ApprovalExpiredError,
    ApprovalRejectedError,
    ApprovalRequiredError,
    ApprovalTimeoutError,
    AsyncClaiim,
    Claiim,
    ClaiimError,
    DeniedError,
    ProtocolError,
)

from conftest import SHORT_TTL_SECONDS


def deploy(resource, purpose):
    return dict(action="deploy", resource=resource, purpose=purpose, skill="deploy@1.2.0")


def client(server, bot, url=None) -> Claiim:
    return Claiim(url or server.url, client_id=bot["client_id"], client_secret=bot["client_secret"], base_delay=0.02, max_delay=0.2)


def aclient(server, bot) -> AsyncClaiim:
    return AsyncClaiim(server.url, client_id=bot["client_id"], client_secret=bot["client_secret"], base_delay=0.02, max_delay=0.2)


def trail(server, bot, approval_id):
    """The decisions that name this approval, oldest first."""
    return [r for r in server.decision_records(bot["agent_id"]) if (r.get("approval") or {}).get("id") == approval_id]


def guarded_task(claiim, purpose, ran):
    """A task that deploys to production under the async guard, waiting up to 30 s for the approval."""

    async def guarded():
        async with claiim.guard(**deploy("production", purpose), wait_for_approval=30):
            ran.append(True)

    return asyncio.create_task(guarded())


def answer_when_pending(server, bot, answer, purpose, verdict, reason, after=0.3):
    """Answers, from another thread, the approval for this purpose once it is pending (and the SDK had time to start polling)."""
    done = {}

    def run():
        approval_id = server.pending_approval(bot["agent_id"], purpose)
        time.sleep(after)
        done["id"] = approval_id
        answer(approval_id, verdict, reason)

    t = threading.Thread(target=run)
    t.start()
    return t, done


def test_sync_guard_waits_while_the_human_approves_then_runs_once_on_claiims_allow(claiim_server, bot, answer):
    ran = []
    human, answered = answer_when_pending(claiim_server, bot, answer, "release 1.4.0", "approve", "CHG-1042 reviewed")
    with client(claiim_server, bot) as claiim:
        with claiim.guard(**deploy("production", "release 1.4.0"), wait_for_approval=30) as decision:
            ran.append(decision)
    human.join()
    approval_id = answered["id"]
    assert len(ran) == 1 and decision.allowed and decision.decision == "allow"
    assert decision.reasons[0].code == "approval_granted" and bot["owner_email"] in decision.reasons[0].message
    assert decision.approval["id"] == approval_id and decision.approval["status"] == "used"
    records = trail(claiim_server, bot, approval_id)
    assert [(r["decision"], r["reason_codes"]) for r in records] == [("approval_required", ["approval_required"]), ("allow", ["approval_granted"])]
    # The decision that used the approval is a new decision: a new Idempotency-Key.
    assert records[1]["decision_id"] == decision.decision_id and records[0]["idempotency_key"] != records[1]["idempotency_key"]
    assert claiim_server.approval_row(approval_id) == {"status": "used", "used_by_decision_id": decision.decision_id}


def test_sync_wait_for_approval_after_approval_required_and_a_second_use_is_claiims_deny(claiim_server, bot, answer):
    with client(claiim_server, bot) as claiim:
        with pytest.raises(ApprovalRequiredError) as caught:
            with claiim.guard(**deploy("production", "two steps")):
                pytest.fail("ran while an approval is pending")
        err = caught.value
        assert err.approval["status"] == "pending" and err.approval["approvers"]["accountable_human"]["email"] == bot["owner_email"]
        assert err.request == dict(deploy("production", "two steps"), on_behalf_of=None)
        answer(err.approval["id"], "approve", "Alice said yes in chat")
        allowed = claiim.wait_for_approval(err, timeout=10)
        assert allowed.allowed and allowed.approval["status"] == "used"
        again = claiim.wait_for_approval(err, timeout=10)
        assert again.decision == "deny" and not again.allowed and again.reasons[0].code == "approval_used"
        # decide(wait_for_approval=True) with an approval already approved uses it at once.
        asked = claiim.decide(**deploy("production", "decide and wait"))
        answer(asked.approval["id"], "approve", "ok")
        assert claiim.decide(**deploy("production", "decide and wait"), wait_for_approval=True).allowed
    assert [r["decision"] for r in trail(claiim_server, bot, err.approval["id"])] == ["approval_required", "allow", "deny"]


def test_sync_rejected_raises_approval_rejected_error_and_asks_nothing_more(claiim_server, bot, answer):
    human, answered = answer_when_pending(claiim_server, bot, answer, "freeze", "reject", "not during the freeze")
    with client(claiim_server, bot) as claiim:
        with pytest.raises(ApprovalRejectedError) as caught:
            with claiim.guard(**deploy("production", "freeze"), wait_for_approval=30):
                pytest.fail("ran on a rejected approval")
    human.join()
    err = caught.value
    assert isinstance(err, DeniedError) and err.code == "approval_rejected"
    assert err.approval["id"] == answered["id"] and err.approval["status"] == "rejected" and err.approval["decision_reason"] == "not during the freeze"
    assert [r.code for r in err.reasons] == ["approval_rejected"] and "not during the freeze" in err.reasons[0].message
    assert err.decision.decision == "approval_required"
    assert [r["decision"] for r in trail(claiim_server, bot, answered["id"])] == ["approval_required"]


def test_sync_timeout_keeps_the_approval_open_and_waiting_again_uses_it(claiim_server, bot, answer):
    with client(claiim_server, bot) as claiim:
        started = time.monotonic()
        with pytest.raises(ApprovalTimeoutError) as caught:
            claiim.decide(**deploy("production", "slow human"), wait_for_approval=1.5)
        took = time.monotonic() - started
        err = caught.value
        assert err.code == "approval_pending" and [r.code for r in err.reasons] == ["approval_pending"] and err.approval["status"] == "pending"
        assert 1.4 <= took < 2.5
        assert claiim_server.approval_row(err.approval["id"])["status"] == "pending"
        answer(err.approval["id"], "approve", "sorry, I was out")
        assert claiim.wait_for_approval(err, timeout=10).allowed


@pytest.mark.anyio
async def test_async_guard_waits_while_the_human_approves(claiim_server, bot, answer):
    ran = []
    human, answered = answer_when_pending(claiim_server, bot, answer, "async release", "approve", "fine")
    async with aclient(claiim_server, bot) as claiim:

        @claiim.guard(action="deploy", resource=lambda env: env, purpose="async release", skill="deploy@1.2.0", wait_for_approval=30)
        async def deploy_to(env):
            ran.append(env)
            return "deployed"

        assert await deploy_to("production") == "deployed"
    await asyncio.to_thread(human.join)
    assert ran == ["production"]
    assert [r["decision"] for r in trail(claiim_server, bot, answered["id"])] == ["approval_required", "allow"]
    assert claiim_server.approval_row(answered["id"])["status"] == "used"


@pytest.mark.anyio
async def test_async_expired_raises_approval_expired_error(claiim_server, bot, short_approvals):
    async with aclient(claiim_server, bot) as claiim:
        started = time.monotonic()
        with pytest.raises(ApprovalExpiredError) as caught:
            async with claiim.guard(**deploy("production/short", "nobody answers"), wait_for_approval=30):
                pytest.fail("ran on an expired approval")
        took = time.monotonic() - started
    err = caught.value
    assert err.code == "approval_expired" and err.approval["status"] == "expired" and [r.code for r in err.reasons] == ["approval_expired"]
    assert SHORT_TTL_SECONDS - 0.2 <= took < 15
    assert claiim_server.approval_row(err.approval["id"])["status"] == "expired"
    assert [r["decision"] for r in trail(claiim_server, bot, err.approval["id"])] == ["approval_required"]


def test_sync_expired_raises_approval_expired_error(claiim_server, bot, short_approvals):
    with client(claiim_server, bot) as claiim:
        with pytest.raises(ApprovalExpiredError) as caught:
            claiim.decide(**deploy("production/short", "nobody answers, sync"), wait_for_approval=30)
    assert caught.value.code == "approval_expired" and claiim_server.approval_row(caught.value.approval["id"])["status"] == "expired"


@pytest.mark.anyio
async def test_async_rejected_raises_approval_rejected_error(claiim_server, bot, answer):
    human, answered = answer_when_pending(claiim_server, bot, answer, "async freeze", "reject", "no")
    async with aclient(claiim_server, bot) as claiim:
        with pytest.raises(ApprovalRejectedError) as caught:
            await claiim.decide(**deploy("production", "async freeze"), wait_for_approval=30)
    await asyncio.to_thread(human.join)
    assert caught.value.approval["id"] == answered["id"] and caught.value.approval["status"] == "rejected"
    assert [r["decision"] for r in trail(claiim_server, bot, answered["id"])] == ["approval_required"]


@pytest.mark.anyio
async def test_async_cancellation_ends_the_wait_at_once_and_leaves_the_approval_unused(claiim_server, bot, answer):
    ran = []
    async with aclient(claiim_server, bot) as claiim:
        task = guarded_task(claiim, "cancelled", ran)
        approval_id = await asyncio.to_thread(claiim_server.pending_approval, bot["agent_id"], "cancelled")
        await asyncio.sleep(0.3)  # the SDK is in its long-poll by now
        assert not task.done()
        cancelled_at = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.monotonic() - cancelled_at < 0.5
        answer(approval_id, "approve", "approved after the agent gave up")
        assert claiim_server.approval_row(approval_id) == {"status": "approved", "used_by_decision_id": None}
        assert [r["decision"] for r in trail(claiim_server, bot, approval_id)] == ["approval_required"]
        # Asked again later, CLAIIM answers with the approved approval, and waiting uses it at once.
        again = await claiim.decide(**deploy("production", "cancelled"), wait_for_approval=5)
        assert again.allowed and again.approval["id"] == approval_id
    assert ran == []


@pytest.mark.anyio
async def test_async_two_waiters_share_one_approval_and_only_one_is_allowed(claiim_server, bot, answer):
    runs = []
    async with aclient(claiim_server, bot) as claiim:
        tasks = [guarded_task(claiim, "twice at once", runs) for _ in range(2)]
        approval_id = await asyncio.to_thread(claiim_server.pending_approval, bot["agent_id"], "twice at once")
        await asyncio.sleep(0.3)
        answer(approval_id, "approve", "once")
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    assert len(runs) == 1
    denied = [o for o in outcomes if isinstance(o, DeniedError)]
    assert len(denied) == 1 and not isinstance(denied[0], ApprovalRequiredError) and [r.code for r in denied[0].reasons] == ["approval_used"]
    assert [r["decision"] for r in trail(claiim_server, bot, approval_id)].count("allow") == 1


# Answers a real CLAIIM does not give, through httpx's MockTransport: only CLAIIM's allow for the
# decision asked with the approval lets the action run.

# The approval names another host as its URL: the SDK must not send the agent's token there.
PENDING = {"id": "ap-1", "status": "pending", "expires_at": "2030-01-01T00:00:00Z", "url": "http://collector.evil.test/v1/approvals/ap-1"}


def decision_body(decision, allow, code, **extra):
    return {"decision_id": "d-1", "decision": decision, "allow": allow, "reasons": [code], "reason_codes": [code], "policy": None, "timestamp": "t", "chron": {"seq": 1, "hash": "h"}, **extra}


def scripted(decisions, polls, asynchronous=False):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t", "token_type": "Bearer", "expires_in": 300})
        status, body = (polls if request.url.path.startswith("/v1/approvals/") else decisions).pop(0)
        return httpx.Response(status, json=body) if not isinstance(body, str) else httpx.Response(status, text=body)

    transport = httpx.MockTransport(handler)
    if asynchronous:
        return AsyncClaiim("http://claiim.test", client_id="c", client_secret="s", base_delay=0.001, http_client=httpx.AsyncClient(transport=transport)), calls
    return Claiim("http://claiim.test", client_id="c", client_secret="s", base_delay=0.001, http_client=httpx.Client(transport=transport)), calls


REQUIRED = (200, decision_body("approval_required", False, "approval_required", approval=PENDING))


def test_approved_asks_again_with_approval_id_and_a_new_key_and_only_that_allow_runs():
    claiim, calls = scripted([REQUIRED, (200, decision_body("allow", True, "approval_granted"))], [(200, dict(PENDING, status="approved"))])
    with claiim.guard(**deploy("production", "p"), wait_for_approval=5) as decision:
        assert decision.allowed
    first, second = [c for c in calls if c.url.path == "/v1/decisions"]
    assert json.loads(second.content) == dict(json.loads(first.content), approval_id="ap-1")
    assert first.headers["idempotency-key"] != second.headers["idempotency-key"]
    # The token goes only to the configured URL; the approval's own url is not followed.
    assert all(c.url.host == "claiim.test" for c in calls)
    poll = next(c for c in calls if c.url.path.startswith("/v1/approvals/"))
    assert poll.url.path == "/v1/approvals/ap-1" and poll.url.params["wait"] in ("4", "5")


@pytest.mark.parametrize(
    "poll, then",
    [
        ((200, dict(PENDING, status="escalated")), None),
        ((200, dict(PENDING, id="ap-2", status="approved")), None),
        ((200, {"status": "approved"}), None),
        ((200, "<html>approved</html>"), None),
        ((200, dict(PENDING, status="approved")), (200, decision_body("allow", False, "approval_granted"))),
    ],
)
def test_nothing_a_poll_says_is_an_allow(poll, then):
    claiim, calls = scripted([REQUIRED] + ([then] if then else []), [poll])
    with pytest.raises(ProtocolError):
        with claiim.guard(**deploy("production", "p"), wait_for_approval=5):
            pytest.fail("ran without CLAIIM's allow")
    assert len([c for c in calls if c.url.path == "/v1/decisions"]) == (2 if then else 1)


def test_approved_but_claiim_denies_the_decision_with_the_approval():
    claiim, _ = scripted([REQUIRED, (200, decision_body("deny", False, "approval_mismatch", approval=dict(PENDING, status="approved")))], [(200, dict(PENDING, status="approved"))])
    with pytest.raises(DeniedError) as caught:
        with claiim.guard(**deploy("production", "p"), wait_for_approval=5):
            pytest.fail("ran on a deny")
    assert not isinstance(caught.value, ApprovalRequiredError) and caught.value.reasons[0].code == "approval_mismatch"


@pytest.mark.anyio
async def test_async_polls_that_come_back_at_once_do_not_spin_and_the_timeout_holds():
    claiim, calls = scripted([REQUIRED], [(200, PENDING)] * 50, asynchronous=True)
    started = time.monotonic()
    with pytest.raises(ApprovalTimeoutError):
        await claiim.decide(**deploy("production", "p"), wait_for_approval=2.5)
    assert 2.4 <= time.monotonic() - started < 3.5
    assert len([c for c in calls if c.url.path.startswith("/v1/approvals/")]) <= 4


def test_wait_for_approval_needs_an_approval_required_decision():
    claiim, _ = scripted([(200, decision_body("deny", False, "no_rule_permits"))], [])
    with pytest.raises(ClaiimError):
        claiim.wait_for_approval(claiim.decide(**deploy("production", "p")))
