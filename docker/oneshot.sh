#!/usr/bin/env bash
# One cell on the compose topology, start to finish: the server comes up,
# FLEETS fleet containers (default 2, the shards of one fleet, in ack mode)
# run their cell and exit, the server is
# stopped (it writes its report on SIGTERM), `harness merge` adds the fleets
# up and reconciles them with the server, and everything lands in
# results/<RUN>/: server.json, fleet-*.json, merged.json, summary.txt.
# Settings as in docker-compose.yml (MODEL, CLIENTS, DURATION, WORK,
# BATCH_WINDOW).
# Exit status: 0 when the merged cell is valid or overloaded, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
fleets=${FLEETS:-2}
if command -v docker-compose >/dev/null 2>&1; then
  compose=(docker-compose)
else
  compose=(docker compose)
fi
export RUN=${RUN:-$(date -u +%Y%m%dT%H%M%SZ)-compose}
# Yours before Docker would create it as root; the containers make results/$RUN.
mkdir -p results
trap '"${compose[@]}" down --remove-orphans >/dev/null 2>&1 || true' EXIT

"${compose[@]}" up -d server
server=$("${compose[@]}" ps -q server)
for _ in $(seq 60); do
  [ "$(docker inspect -f '{{.State.Health.Status}}' "$server")" = healthy ] && break
  sleep 1
done
[ "$(docker inspect -f '{{.State.Health.Status}}' "$server")" = healthy ] \
  || { echo "the server never became healthy" >&2; "${compose[@]}" logs server >&2; exit 1; }

# The shards start together, far enough ahead for every container to start.
export FLEETS=$fleets START_AT=$(( $(date +%s) + 10 ))000000000
"${compose[@]}" up --no-deps --scale "fleet=$fleets" fleet
for c in $("${compose[@]}" ps -q fleet); do
  code=$(docker inspect -f '{{.State.ExitCode}}' "$c")
  [ "$code" = 0 ] || { echo "a fleet container exited with $code" >&2; exit 1; }
done
"${compose[@]}" stop server

status=0
"${compose[@]}" run --rm --no-deps --entrypoint sh fleet -c \
  "exec harness-entrypoint merge --server /work/results/$RUN/server.json \
     --out /work/results/$RUN/merged.json --summary /work/results/$RUN/summary.txt \
     /work/results/$RUN/fleet-*.json" || status=$?
echo "reports: results/$RUN/"
exit "$status"
