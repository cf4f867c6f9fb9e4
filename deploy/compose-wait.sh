#!/usr/bin/env bash
# Waits until every container of a compose project reports healthy (deploy/compose.yaml: its
# healthcheck is `gregor admin ready`, so healthy = serving clients; Compose v1 has no
# `up --wait`), bounded in time. Usage: deploy/compose-wait.sh PROJECT FILE [SECONDS]
set -euo pipefail
project="$1" file="$2" limit="${3:-120}"
if docker compose version >/dev/null 2>&1; then compose=(docker compose); else compose=(docker-compose); fi
deadline=$(( $(date +%s) + limit ))
while :; do
  ids=$("${compose[@]}" -p "$project" -f "$file" ps -q)
  statuses=""
  [[ -n "$ids" ]] && statuses=$(docker inspect -f '{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' $ids)
  if [[ -n "$statuses" ]] && ! grep -qv ' healthy$' <<<"$statuses"; then
    echo "compose-wait: all healthy" >&2
    exit 0
  fi
  if (( $(date +%s) >= deadline )); then
    echo "compose-wait: not healthy within ${limit}s:" >&2
    echo "$statuses" >&2
    exit 1
  fi
  sleep 1 # polling the engine's health state; the deadline bounds it
done
