-- CreateTable
CREATE TABLE "agent_clients" (
    "id" TEXT NOT NULL,
    "agent_id" TEXT NOT NULL,
    "method" TEXT NOT NULL,
    "secret_hash" TEXT,
    "public_jwk" TEXT,
    "created_at" TIMESTAMP(3) NOT NULL,
    "revoked_at" TIMESTAMP(3),

    CONSTRAINT "agent_clients_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "used_assertions" (
    "key" TEXT NOT NULL,
    "expires_at" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "used_assertions_pkey" PRIMARY KEY ("key")
);

-- CreateIndex
CREATE INDEX "agent_clients_agent_id_idx" ON "agent_clients"("agent_id");

-- CreateIndex
CREATE INDEX "used_assertions_expires_at_idx" ON "used_assertions"("expires_at");

-- AddForeignKey
ALTER TABLE "agent_clients" ADD CONSTRAINT "agent_clients_agent_id_fkey" FOREIGN KEY ("agent_id") REFERENCES "agents"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

