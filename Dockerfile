# CLAIIM with the OPA CLI from OPA's own image. Used by docker-compose.yml.
FROM openpolicyagent/opa:1.22.3-static AS opa

FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY --from=opa /opa /usr/local/bin/opa
ENV OPA_BIN=/usr/local/bin/opa HOST=0.0.0.0 PORT=8080
COPY . .
RUN bash scripts/setup.sh
EXPOSE 8080
CMD ["bash", "scripts/run.sh"]
