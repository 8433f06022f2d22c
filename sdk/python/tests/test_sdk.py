"""The Python SDK against a real CLAIIM (see conftest.py), and on answers a real CLAIIM rarely gives."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from claiim import (
    ApprovalRequiredError,
    AsyncClaiim,
    AuthenticationError,
    Claiim,
    DeniedError,
    ProtocolError,
    Reason,
    RequestError,
    UnavailableError,
)

from conftest import TOKEN_TTL_SECONDS

STAGING = dict(action="deploy", resource="staging", purpose="release 1.4.0", skill="deploy@1.2.0")
# No rule of the deploy skill permits it: a plain deny (production asks for a human's approval; see test_approvals.py).
FORBIDDEN = dict(STAGING, resource="mainframe")
FORBIDDEN_REASON = Reason('no rule permits action "deploy" on resource "mainframe" under skill "deploy"', "no_rule_permits")


def client(server, bot, url=None, **kw) -> Claiim:
    return Claiim(url or server.url, client_id=bot["client_id"], client_secret=bot["client_secret"], base_delay=0.02, max_delay=0.2, **kw)


def aclient(server, bot, url=None, **kw) -> AsyncClaiim:
    return AsyncClaiim(url or server.url, client_id=bot["client_id"], client_secret=bot["client_secret"], base_delay=0.02, max_delay=0.2, **kw)


def test_allow_runs_the_guarded_block_and_function_and_is_recorded(claiim_server, bot):
    with client(claiim_server, bot) as claiim:
        with claiim.guard(**STAGING) as decision:
            ran = True
        assert ran and decision.allowed and decision.decision == "allow" and not decision.replayed
        assert decision.reasons == [Reason('skill "deploy" permits "deploy" on "staging"', "permitted_by_skill")]

        @claiim.guard(action="deploy", resource=lambda environment, **_: environment, purpose="release 1.4.0", skill="deploy@1.2.0")
        def deploy(environment, service):
            return f"deployed {service} to {environment}"

        assert deploy("staging", service="checkout") == "deployed checkout to staging"
    records = claiim_server.decision_records(bot["agent_id"])
    assert [r["decision"] for r in records] == ["allow", "allow"]
    assert records[0]["decision_id"] == decision.decision_id
    assert records[0]["seq"] == decision.chron["seq"]
    assert all(len(r["idempotency_key"]) == 36 for r in records)


def test_deny_raises_denied_error_with_reasons_and_decision_id_and_never_runs(claiim_server, bot):
    ran = []
    with client(claiim_server, bot) as claiim:
        with pytest.raises(DeniedError) as caught:
            with claiim.guard(**FORBIDDEN):
                ran.append("block")

        @claiim.guard(**FORBIDDEN)
        def deploy():
            ran.append("function")

        with pytest.raises(DeniedError):
            deploy()
        assert claiim.decide(**FORBIDDEN).allowed is False
    assert ran == []
    err = caught.value
    assert err.reasons == [FORBIDDEN_REASON] and err.approval is None and err.code == "deny"
    record = next(r for r in claiim_server.decision_records(bot["agent_id"]) if r["decision_id"] == err.decision_id)
    assert record["decision"] == "deny" and record["resource"] == "mainframe" and record["reason_codes"] == ["no_rule_permits"]


def test_the_token_is_refreshed_across_expiry_one_fetch_at_a_time(claiim_server, bot):
    before = claiim_server.token_events(bot["agent_id"])
    with client(claiim_server, bot) as claiim:
        with ThreadPoolExecutor(8) as pool:
            assert all(d.allowed for d in pool.map(lambda _: claiim.decide(**STAGING), range(8)))
        assert claiim.token_fetches == 1
        time.sleep(TOKEN_TTL_SECONDS + 0.3)
        assert claiim.decide(**STAGING).allowed
        assert claiim.token_fetches == 2
    assert claiim_server.token_events(bot["agent_id"]) == before + 2


@pytest.mark.parametrize("how", ["503", "reset"])
def test_a_lost_answer_is_retried_with_the_same_key_and_recorded_once(claiim_server, bot, proxy, how):
    with client(claiim_server, bot, url=proxy.url) as claiim:
        claiim.access_token()
        proxy.lose_next(2, how)
        decision = claiim.decide(**FORBIDDEN)
    assert decision.decision == "deny" and decision.replayed
    assert len(proxy.decision_keys) == 3 and len(set(proxy.decision_keys)) == 1
    key = json.loads(proxy.decision_keys[0])
    recorded = [r for r in claiim_server.decision_records(bot["agent_id"]) if r.get("idempotency_key") == key]
    assert [r["decision_id"] for r in recorded] == [decision.decision_id]


def test_claiims_own_503_is_retried_until_chron_records(claiim_server, bot):
    with client(claiim_server, bot, max_attempts=6) as claiim:
        claiim.access_token()
        claiim_server.fail_chron_writes()
        healer = threading.Timer(0.15, claiim_server.heal_chron_writes)
        healer.start()
        try:
            decision = claiim.decide(**STAGING)
        finally:
            healer.join()
            claiim_server.heal_chron_writes()
    assert decision.allowed
    assert sum(1 for r in claiim_server.decision_records(bot["agent_id"]) if r["decision_id"] == decision.decision_id) == 1


def test_unavailable_after_every_retry_is_an_error_not_an_allow(claiim_server, bot):
    with client(claiim_server, bot, max_attempts=2) as claiim:
        claiim.access_token()
        claiim_server.fail_chron_writes()
        try:
            with pytest.raises(UnavailableError) as caught:
                with claiim.guard(**STAGING):
                    pytest.fail("ran without an allow")
        finally:
            claiim_server.heal_chron_writes()
    assert caught.value.code == "chron_unavailable" and caught.value.status == 503


def test_a_revoked_client_fails_authentication_and_nothing_more_is_decided(claiim_server, bot):
    with client(claiim_server, bot) as claiim:
        assert claiim.decide(**STAGING).allowed
        count = len(claiim_server.decision_records(bot["agent_id"]))
        claiim_server.http.delete(f"/v1/agents/{bot['agent_id']}/clients/{bot['client_id']}").raise_for_status()
        with pytest.raises(AuthenticationError) as caught:
            with claiim.guard(**STAGING):
                pytest.fail("ran for a revoked client")
    assert caught.value.code == "client_revoked" and caught.value.status == 401
    assert len(claiim_server.decision_records(bot["agent_id"])) == count


def test_private_key_jwt_signs_here_and_sends_no_key(claiim_server, bot):
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    registered = claiim_server.http.post(f"/v1/agents/{bot['agent_id']}/clients", json={"method": "private_key_jwt", "jwk": jwk}).raise_for_status().json()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    sent = []
    http = httpx.Client(event_hooks={"request": [lambda r: sent.append(r.read().decode())]})
    with Claiim(claiim_server.url, client_id=registered["client_id"], private_key=pem, assertion_audience="claiim", http_client=http) as claiim:
        assert claiim.decide(**STAGING).allowed
    secret = json.loads(ECAlgorithm.to_jwk(key))["d"]
    assert "client_assertion=" in sent[0] and all(secret not in body and "PRIVATE KEY" not in body for body in sent)


@pytest.mark.anyio
async def test_async_client_allow_deny_guard_and_one_token_fetch(claiim_server, bot):
    async with aclient(claiim_server, bot) as claiim:
        decisions = await asyncio.gather(*(claiim.decide(**STAGING) for _ in range(8)))
        assert all(d.allowed for d in decisions) and claiim.token_fetches == 1
        async with claiim.guard(**STAGING) as decision:
            assert decision.allowed
        ran = []

        @claiim.guard(action="deploy", resource=lambda env: env, purpose="release", skill={"name": "deploy", "version": "1.2.0"})
        async def deploy(env):
            ran.append(env)

        await deploy("staging")
        with pytest.raises(DeniedError) as caught:
            await deploy("mainframe")
        assert ran == ["staging"] and caught.value.reasons == [FORBIDDEN_REASON]


@pytest.mark.anyio
async def test_async_lost_answer_is_recorded_once(claiim_server, bot, proxy):
    async with aclient(claiim_server, bot, url=proxy.url) as claiim:
        await claiim.access_token()
        proxy.lose_next(1, "reset")
        decision = await claiim.decide(**STAGING)
    assert decision.allowed and decision.replayed
    key = json.loads(proxy.decision_keys[0])
    assert [r["decision_id"] for r in claiim_server.decision_records(bot["agent_id"]) if r.get("idempotency_key") == key] == [decision.decision_id]


# Answers a real CLAIIM does not give today (a newer outcome, a broken proxy), through httpx's MockTransport.


def scripted(*answers):
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "t", "token_type": "Bearer", "expires_in": 300})
        status, body = answers[len([c for c in calls if c.url.path == "/v1/decisions"]) - 1]
        return httpx.Response(status, json=body) if not isinstance(body, str) else httpx.Response(status, text=body)

    return Claiim("http://claiim.test", client_id="c", client_secret="s", base_delay=0.001, max_delay=0.01, http_client=httpx.Client(transport=httpx.MockTransport(handler))), calls


def answer(decision, allow, **extra):
    return {"decision_id": "d-1", "decision": decision, "allow": allow, "reasons": ["why"], "policy": None, "timestamp": "t", "chron": {"seq": 1, "hash": "h"}, **extra}


def test_approval_required_is_not_an_allow_and_carries_the_approval():
    approval = {"id": "ap-1", "expires_at": "2030-01-01T00:00:00Z", "approvers": ["alice@acme.example"], "url": "/v1/approvals/ap-1"}
    claiim, _ = scripted((200, answer("approval_required", False, approval=approval)))
    with pytest.raises(ApprovalRequiredError) as caught:
        with claiim.guard(**STAGING):
            pytest.fail("ran while an approval is pending")
    assert isinstance(caught.value, DeniedError) and caught.value.approval == approval and caught.value.decision_id == "d-1"


def test_reason_codes_line_up_with_reasons_and_a_deny_naming_an_approval_is_a_plain_denied_error():
    used = {"id": "ap-1", "status": "used", "expires_at": "2030-01-01T00:00:00Z", "url": "/v1/approvals/ap-1"}
    claiim, _ = scripted((200, answer("deny", False, reasons=["a", "b"], reason_codes=["approval_used", "x"], approval=used)), (200, answer("deny", False, reasons=["a", "b"], reason_codes=["only_one"])))
    with pytest.raises(DeniedError) as caught:
        with claiim.guard(**STAGING):
            pytest.fail("ran on a deny")
    assert not isinstance(caught.value, ApprovalRequiredError)
    assert caught.value.reasons == [Reason("a", "approval_used"), Reason("b", "x")] and caught.value.approval == used
    # Codes that do not line up with the reasons are not guessed at.
    assert claiim.decide(**STAGING).reasons == [Reason("a"), Reason("b")]


@pytest.mark.parametrize("body", [answer("maybe", True), answer("allow", False), answer("allow", 1), {"decision": "allow", "allow": True}, "<html>ok</html>"])
def test_an_unknown_or_inconsistent_answer_is_never_an_allow(body):
    claiim, _ = scripted((200, body))
    with pytest.raises(ProtocolError):
        with claiim.guard(**STAGING):
            pytest.fail("ran on an answer that is not an allow")


def test_retries_keep_one_key_and_4xx_is_not_retried():
    claiim, calls = scripted((503, {"code": "chron_unavailable"}), (502, {}), (200, answer("deny", False)))
    assert claiim.decide(**STAGING).allowed is False
    keys = {c.headers["idempotency-key"] for c in calls if c.url.path == "/v1/decisions"}
    assert len(keys) == 1
    claiim, calls = scripted((409, {"code": "idempotency_key_reused", "detail": "used"}))
    with pytest.raises(RequestError) as caught:
        claiim.decide(**STAGING)
    assert caught.value.code == "idempotency_key_reused" and len([c for c in calls if c.url.path == "/v1/decisions"]) == 1
    with pytest.raises(RequestError):
        claiim.decide(**dict(STAGING, skill="deploy"))
