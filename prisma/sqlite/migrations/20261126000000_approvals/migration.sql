-- CreateTable
CREATE TABLE "approvals" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "org_id" TEXT NOT NULL,
    "agent_id" TEXT NOT NULL,
    "owner_id" TEXT,
    "credential_id" TEXT NOT NULL,
    "decision_id" TEXT NOT NULL,
    "request" TEXT NOT NULL,
    "reasons" TEXT NOT NULL,
    "approvers" TEXT NOT NULL,
    "status" TEXT NOT NULL,
    "policy_version" INTEGER,
    "created_at" DATETIME NOT NULL,
    "expires_at" DATETIME NOT NULL,
    "decided_at" DATETIME,
    "decided_by" TEXT,
    "decision_reason" TEXT,
    "used_at" DATETIME,
    "used_by_decision_id" TEXT,
    "webhook_state" TEXT NOT NULL,
    "webhook_attempts" INTEGER NOT NULL,
    "webhook_last_attempt_at" DATETIME,
    "webhook_next_attempt_at" DATETIME,
    "webhook_last_error" TEXT,
    "webhook_delivered_at" DATETIME,
    CONSTRAINT "approvals_agent_id_fkey" FOREIGN KEY ("agent_id") REFERENCES "agents" ("id") ON DELETE RESTRICT ON UPDATE CASCADE
);

-- CreateIndex
CREATE UNIQUE INDEX "approvals_decision_id_key" ON "approvals"("decision_id");

-- CreateIndex
CREATE UNIQUE INDEX "approvals_used_by_decision_id_key" ON "approvals"("used_by_decision_id");

-- CreateIndex
CREATE INDEX "approvals_status_expires_at_idx" ON "approvals"("status", "expires_at");

-- CreateIndex
CREATE INDEX "approvals_expires_at_idx" ON "approvals"("expires_at");

-- CreateIndex
CREATE INDEX "approvals_agent_id_idx" ON "approvals"("agent_id");

