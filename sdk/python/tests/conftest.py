"""A real CLAIIM for the tests: the repository's compiled server (``make setup``) on a fresh SQLite
database, started by the test run, and a proxy in front of it that can lose answers."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List

import httpx
import pytest

ROOT = Path(os.environ.get("CLAIIM_ROOT", Path(__file__).resolve().parents[3]))
TOKEN_TTL_SECONDS = 2


class Server:
    def __init__(self, url: str, admin: str, db_file: Path):
        self.url = url
        self.admin = admin
        self.db_file = db_file
        self.http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {admin}"}, timeout=30)

    def decision_records(self, agent_id: str) -> List[dict]:
        return self.http.get("/v1/chron/records", params={"kind": "decision", "agent": agent_id, "limit": 1000}).raise_for_status().json()["records"]

    def token_events(self, agent_id: str) -> int:
        records = self.http.get("/v1/chron/records", params={"kind": "event", "agent": agent_id, "limit": 1000}).raise_for_status().json()["records"]
        return sum(1 for r in records if r["type"] == "token.issued")

    def fail_chron_writes(self) -> None:
        """Makes Chron's inserts fail, as a full disk would, from a second connection to the same database."""
        with sqlite3.connect(self.db_file) as db:
            db.execute("CREATE TRIGGER pytest_chron_fails BEFORE INSERT ON chron_records BEGIN SELECT RAISE(ABORT, 'simulated disk failure'); END")

    def heal_chron_writes(self) -> None:
        with sqlite3.connect(self.db_file) as db:
            db.execute("DROP TRIGGER IF EXISTS pytest_chron_fails")

    def approval_row(self, approval_id: str) -> Dict[str, Any]:
        """The approval as stored, read from the database itself."""
        with sqlite3.connect(self.db_file) as db:
            row = db.execute("SELECT status, used_by_decision_id FROM approvals WHERE id = ?", (approval_id,)).fetchone()
        return {"status": row[0], "used_by_decision_id": row[1]}

    def pending_approval(self, agent_id: str, purpose: str, timeout: float = 15.0) -> str:
        """The id of the approval pending for this agent's request with this purpose, once there is one."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            approvals = self.http.get("/v1/approvals", params={"agent": agent_id, "status": "pending"}).raise_for_status().json()["approvals"]
            found = [a["id"] for a in approvals if a["request"]["purpose"] == purpose]
            if found:
                return found[0]
            time.sleep(0.025)
        raise AssertionError(f"no approval pending for {purpose!r}")


@pytest.fixture(scope="session")
def claiim_server() -> Iterator[Server]:
    if not (ROOT / "dist/src/main.js").exists():
        pytest.fail(f"CLAIIM is not built in {ROOT}: run `make setup`")
    work = Path(tempfile.mkdtemp(prefix="claiim-pytest-"))
    db_file = work / "claiim.db"
    env = {
        **os.environ,
        "DATABASE_URL": f"file:{db_file}",
        "PORT": "0",
        "CLAIIM_DATA_DIR": str(work / "data"),
        "CLAIIM_BUNDLE_DIR": str(work / "bundles"),
        "CLAIIM_REGO_DIR": str(ROOT / "rego"),
        "CLAIIM_ACCESS_TOKEN_TTL_SECONDS": str(TOKEN_TTL_SECONDS),
        "LOG_LEVEL": "info",
    }
    env.setdefault("OPA_BIN", str(ROOT / ".tools/bin/opa"))
    subprocess.run([str(ROOT / "node_modules/.bin/prisma"), "migrate", "deploy"], cwd=ROOT, env=env, check=True, capture_output=True)
    proc = subprocess.Popen(["node", str(ROOT / "dist/src/main.js")], cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = None
    seen = []
    assert proc.stdout is not None
    for line in proc.stdout:
        seen.append(line)
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("message") == "CLAIIM listening":
            url = entry["url"]
            break
    if not url:
        proc.kill()
        pytest.fail("CLAIIM did not start:\n" + "".join(seen))
    # Keep reading its output so that it never blocks on a full pipe.
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()  # type: ignore[union-attr]
    admin = (work / "data/bootstrap-admin.token").read_text().strip()
    server = Server(url, admin, db_file)
    try:
        yield server
    finally:
        server.http.close()
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


@pytest.fixture()
def bot(claiim_server: Server) -> Dict[str, str]:
    """A new organisation with deploy-bot (skill deploy 1.2.0), its accountable human and a client_secret client."""
    http = claiim_server.http
    slug = f"py-{uuid.uuid4().hex[:10]}"
    http.post("/v1/organizations", json={"slug": slug, "name": slug}).raise_for_status()
    human = http.post("/v1/humans", json={"organization": slug, "name": "Alice Ops", "email": f"alice@{slug}.example"}).raise_for_status().json()
    agent = http.post("/v1/agents", json={"organization": slug, "name": "deploy-bot", "owner": human["id"], "skills": [{"name": "deploy", "version": "1.2.0"}]}).raise_for_status().json()
    client = http.post(f"/v1/agents/{agent['id']}/clients", json={"method": "client_secret"}).raise_for_status().json()
    return {"agent_id": agent["id"], "client_id": client["client_id"], "client_secret": client["client_secret"], "slug": slug, "owner_email": f"alice@{slug}.example"}


#: Production deploys need the accountable human's approval; production/short ones too, but it lapses after this many seconds.
SHORT_TTL_SECONDS = 2


@pytest.fixture(scope="session")
def short_approvals(claiim_server: Server) -> None:
    """Activates the reference policy with one more approval rule, for production/short, that expires after SHORT_TTL_SECONDS."""
    http = claiim_server.http
    files = http.get("/v1/policies/1").raise_for_status().json()["files"]
    data = json.loads(files["claiim/data.json"])
    data["skills"]["deploy"]["requires_approval"].insert(0, {"action": "deploy", "resources": ["production/short"], "reason": "a short-lived production change needs a human", "ttl_seconds": SHORT_TTL_SECONDS})
    # The reference tests assert the reference data, so they stay out of this version.
    files = {name: text for name, text in files.items() if not name.endswith("_test.rego")}
    files["claiim/data.json"] = json.dumps(data)
    http.post("/v1/policies", json={"files": files, "message": "short approvals for pytest", "activate": True}).raise_for_status()


@pytest.fixture()
def answer(claiim_server: Server, bot: Dict[str, str]) -> Iterator[Callable[[str, str, str], Dict[str, Any]]]:
    """Answers an approval as a chat bridge relays the accountable human's answer: an approver key of the organisation, on behalf of Alice."""
    key = claiim_server.http.post("/v1/api-keys", json={"name": "chat bridge", "role": "approver", "organization": bot["slug"]}).raise_for_status().json()["secret"]
    bridge = httpx.Client(base_url=claiim_server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)

    def answer(approval_id: str, verdict: str, reason: str) -> Dict[str, Any]:
        return bridge.post(f"/v1/approvals/{approval_id}/{verdict}", json={"reason": reason, "on_behalf_of": bot["owner_email"]}).raise_for_status().json()

    yield answer
    bridge.close()


class LossyProxy:
    """Forwards to CLAIIM, but can lose the answer of the next POST /v1/decisions (after CLAIIM decided
    and recorded it): a 503 instead, or a connection closed without an answer."""

    def __init__(self, target: str):
        self.target = target.rstrip("/")
        self.losses: List[str] = []
        self.decision_keys: List[str] = []
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                is_decision = self.command == "POST" and self.path == "/v1/decisions"
                loss = None
                with proxy.lock:
                    if is_decision:
                        proxy.decision_keys.append(self.headers.get("Idempotency-Key", ""))
                        loss = proxy.losses.pop(0) if proxy.losses else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length", "connection")}
                answer = httpx.request(self.command, proxy.target + self.path, headers=headers, content=body, timeout=30)
                if loss == "reset":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                status, content = (503, b'{"status":503,"code":"upstream_timeout"}') if loss == "503" else (answer.status_code, answer.content)
                self.send_response(status)
                for k, v in answer.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding") and loss is None:
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_DELETE = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def lose_next(self, n: int, how: str) -> None:
        with self.lock:
            self.losses = [how] * n

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def proxy(claiim_server: Server) -> Iterator[LossyProxy]:
    p = LossyProxy(claiim_server.url)
    try:
        yield p
    finally:
        p.close()


@pytest.fixture()
def anyio_backend() -> str:
    return "asyncio"
