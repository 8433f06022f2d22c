# CLAIIM in a container, on the current Node.js LTS line (24). Used by docker-compose.yml.
# WARNING: pinned to 24.18.0. From 24.19 on, better-sqlite3 12 aborts the process when the garbage
# collector frees a statement outside JavaScript (docs/operations.md, "Node.js versions"); a later
# 24.x needs better-sqlite3 13, which does not run on Node.js 20 (`make test-lts` shows both).
# Three build stages, and a runtime image without compilers or sources that runs as the
# unprivileged user `node` and reports its health from /readyz.
FROM openpolicyagent/opa:1.22.3-static AS opa

# OPA's builtin implementations compiled to WebAssembly (src/policy/runtime/reference), as make setup builds them.
FROM golang:1.26-bookworm AS builtins
WORKDIR /src
COPY src/policy/runtime/reference/ ./
RUN GOOS=wasip1 GOARCH=wasm GOFLAGS=-mod=mod go build -buildmode=c-shared -trimpath -ldflags="-s -w" -o /opa-builtins.wasm . \
 && cat main.go go.mod go.sum | sha256sum | cut -d' ' -f1 > /opa-builtins.sum

# npm packages (better-sqlite3 compiled for this Node.js), Prisma clients, compiled TypeScript, the console.
FROM node:24.18.0-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=opa /opa /usr/local/bin/opa
ENV OPA_BIN=/usr/local/bin/opa
COPY . .
COPY --from=builtins /opa-builtins.wasm /opa-builtins.sum /app/.tools/
RUN bash scripts/setup.sh

FROM node:24.18.0-bookworm-slim
WORKDIR /app
COPY --from=opa /opa /usr/local/bin/opa
# What CLAIIM runs on, and nothing it was built with: the compiled code, the packages (the Prisma
# CLI among them, for migrations), the schemas and migrations, the reference policies, the scripts.
COPY --from=build /app/package.json /app/package-lock.json /app/prisma.config.ts ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY --from=build /app/sdk ./sdk
COPY --from=build /app/.tools/opa-builtins.wasm ./.tools/
COPY --from=build /app/prisma ./prisma
COPY --from=build /app/rego ./rego
COPY --from=build /app/scripts ./scripts
COPY --from=build /app/bin ./bin
# WARNING: CLAIIM writes only data/ (SQLite, the bootstrap credential, the Chron key, archives),
# bundles/ and witness/ (a replica's own witness log when data/ is shared, as in compose); the code
# stays owned by root, so a compromised process cannot change what runs next time.
RUN mkdir -p data bundles witness && chown node:node data bundles witness
USER node
ENV NODE_ENV=production OPA_BIN=/usr/local/bin/opa HOST=0.0.0.0 PORT=8080
EXPOSE 8080
# Healthy means ready: a policy active, the database answering, Chron's writer and checkpointer working.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/readyz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Migrates (SQLite, or a PostgreSQL role allowed to), then serves. Compose runs the migrations
# as the database's owner and CLAIIM as a limited role instead: see docker-compose.yml.
CMD ["bash", "scripts/run.sh"]
