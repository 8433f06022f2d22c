-- CreateTable
CREATE TABLE "organizations" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "slug" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "created_at" DATETIME NOT NULL
);

-- CreateTable
CREATE TABLE "humans" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "org_id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "email" TEXT NOT NULL,
    "status" TEXT NOT NULL,
    "created_at" DATETIME NOT NULL,
    CONSTRAINT "humans_org_id_fkey" FOREIGN KEY ("org_id") REFERENCES "organizations" ("id") ON DELETE RESTRICT ON UPDATE CASCADE
);

-- CreateTable
CREATE TABLE "agents" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "org_id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "description" TEXT NOT NULL,
    "owner_id" TEXT NOT NULL,
    "status" TEXT NOT NULL,
    "status_reason" TEXT,
    "created_at" DATETIME NOT NULL,
    "updated_at" DATETIME NOT NULL,
    CONSTRAINT "agents_org_id_fkey" FOREIGN KEY ("org_id") REFERENCES "organizations" ("id") ON DELETE RESTRICT ON UPDATE CASCADE,
    CONSTRAINT "agents_owner_id_fkey" FOREIGN KEY ("owner_id") REFERENCES "humans" ("id") ON DELETE RESTRICT ON UPDATE CASCADE
);

-- CreateTable
CREATE TABLE "agent_skills" (
    "agent_id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "version" TEXT NOT NULL,
    "registered_at" DATETIME NOT NULL,

    PRIMARY KEY ("agent_id", "name"),
    CONSTRAINT "agent_skills_agent_id_fkey" FOREIGN KEY ("agent_id") REFERENCES "agents" ("id") ON DELETE RESTRICT ON UPDATE CASCADE
);

-- CreateTable
CREATE TABLE "agent_credentials" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "agent_id" TEXT NOT NULL,
    "kid" TEXT NOT NULL,
    "created_at" DATETIME NOT NULL,
    "expires_at" DATETIME NOT NULL,
    "revoked_at" DATETIME,
    CONSTRAINT "agent_credentials_agent_id_fkey" FOREIGN KEY ("agent_id") REFERENCES "agents" ("id") ON DELETE RESTRICT ON UPDATE CASCADE
);

-- CreateTable
CREATE TABLE "api_keys" (
    "id" TEXT NOT NULL PRIMARY KEY,
    "name" TEXT NOT NULL,
    "prefix" TEXT NOT NULL,
    "secret_hash" TEXT NOT NULL,
    "role" TEXT NOT NULL,
    "org_id" TEXT,
    "created_at" DATETIME NOT NULL,
    "expires_at" DATETIME,
    "revoked_at" DATETIME
);

-- CreateTable
CREATE TABLE "signing_keys" (
    "kid" TEXT NOT NULL PRIMARY KEY,
    "purpose" TEXT NOT NULL,
    "alg" TEXT NOT NULL,
    "private_key_pem" TEXT NOT NULL,
    "public_jwk" TEXT NOT NULL,
    "created_at" DATETIME NOT NULL,
    "retired_at" DATETIME
);

-- CreateTable
CREATE TABLE "policy_bundles" (
    "version" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    "revision" TEXT NOT NULL,
    "digest" TEXT NOT NULL,
    "file_sha256" TEXT NOT NULL,
    "bundle" BLOB NOT NULL,
    "sources" TEXT NOT NULL,
    "message" TEXT NOT NULL,
    "created_by" TEXT NOT NULL,
    "created_at" DATETIME NOT NULL
);

-- CreateTable
CREATE TABLE "policy_state" (
    "name" TEXT NOT NULL PRIMARY KEY,
    "active_version" INTEGER,
    "activated_at" DATETIME,
    "activated_by" TEXT,
    "last_error" TEXT,
    "last_error_at" DATETIME
);

-- CreateTable
CREATE TABLE "chron_records" (
    "seq" BIGINT NOT NULL PRIMARY KEY,
    "id" TEXT NOT NULL,
    "kind" TEXT NOT NULL,
    "ts_ms" BIGINT NOT NULL,
    "org_id" TEXT,
    "agent_id" TEXT,
    "owner_id" TEXT,
    "action" TEXT,
    "decision" TEXT,
    "content" TEXT NOT NULL,
    "prev_hash" TEXT NOT NULL,
    "hash" TEXT NOT NULL
);

-- CreateIndex
CREATE UNIQUE INDEX "organizations_slug_key" ON "organizations"("slug");

-- CreateIndex
CREATE UNIQUE INDEX "humans_org_id_email_key" ON "humans"("org_id", "email");

-- CreateIndex
CREATE INDEX "agents_owner_id_idx" ON "agents"("owner_id");

-- CreateIndex
CREATE UNIQUE INDEX "agents_org_id_name_key" ON "agents"("org_id", "name");

-- CreateIndex
CREATE INDEX "agent_credentials_agent_id_idx" ON "agent_credentials"("agent_id");

-- CreateIndex
CREATE UNIQUE INDEX "api_keys_secret_hash_key" ON "api_keys"("secret_hash");

-- CreateIndex
CREATE INDEX "signing_keys_purpose_idx" ON "signing_keys"("purpose");

-- CreateIndex
CREATE UNIQUE INDEX "policy_bundles_revision_key" ON "policy_bundles"("revision");

-- CreateIndex
CREATE UNIQUE INDEX "chron_records_id_key" ON "chron_records"("id");

-- CreateIndex
CREATE INDEX "chron_records_agent_id_seq_idx" ON "chron_records"("agent_id", "seq");

-- CreateIndex
CREATE INDEX "chron_records_owner_id_seq_idx" ON "chron_records"("owner_id", "seq");

-- CreateIndex
CREATE INDEX "chron_records_org_id_seq_idx" ON "chron_records"("org_id", "seq");

-- CreateIndex
CREATE INDEX "chron_records_ts_ms_idx" ON "chron_records"("ts_ms");

