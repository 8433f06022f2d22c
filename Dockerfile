# CLAIIM with the OPA CLI from OPA's own image. Used by docker-compose.yml.
FROM openpolicyagent/opa:1.22.3-static AS opa

# OPA's builtin implementations compiled to WebAssembly (src/policy/runtime/reference), as make setup builds them.
FROM golang:1.26-bookworm AS builtins
WORKDIR /src
COPY src/policy/runtime/reference/ ./
RUN GOOS=wasip1 GOARCH=wasm GOFLAGS=-mod=mod go build -buildmode=c-shared -trimpath -ldflags="-s -w" -o /opa-builtins.wasm . \
 && cat main.go go.mod go.sum | sha256sum | cut -d' ' -f1 > /opa-builtins.sum

FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=opa /opa /usr/local/bin/opa
ENV OPA_BIN=/usr/local/bin/opa HOST=0.0.0.0 PORT=8080
COPY . .
COPY --from=builtins /opa-builtins.wasm /opa-builtins.sum /app/.tools/
RUN bash scripts/setup.sh
EXPOSE 8080
CMD ["bash", "scripts/run.sh"]
