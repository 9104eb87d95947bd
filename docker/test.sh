#!/usr/bin/env bash
# The container path, tested for real (`.ci/run` calls this): installs
# Docker, docker-compose and debootstrap when missing, starts dockerd (and
# stops it by its pid at the end), makes sure the Dockerfile's base images
# exist (pulled when a registry answers, else local stand-ins with the same
# tags), builds the image, runs one model in it writing to a mounted folder
# owned by a non-root uid, then runs the compose topology one-shot with two
# fleet containers and checks that the server and the merged fleets
# reconcile exactly, every report owned by that uid.
# Skipped, with a one-line reason, where Docker cannot run.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
started=$(date +%s)
# Under CI a skip is a failure: the container path must really run there.
skip() {
  if [ "${CI:-}" = true ]; then echo "docker test cannot run under CI: $*" >&2; exit 1; fi
  echo "docker test skipped: $*"; exit 0
}
step() { echo "== docker: $* ($(( $(date +%s) - started )) s)"; }

[ "$(uname -s)" = Linux ] || skip "not Linux"
[ "$(id -u)" = 0 ] || skip "needs root (to install packages and start dockerd)"
command -v apt-get >/dev/null || skip "no apt-get to install Docker with"

# --- packages ---------------------------------------------------------------
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  step "installing ${missing[*]}"
  apt-get update -qq >/dev/null || skip "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null \
    || skip "could not install ${missing[*]}"
fi

# --- the engine --------------------------------------------------------------
work=$(mktemp -d /tmp/ingest-docker.XXXXXX)
dockerd_pid=
cleanup() {
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$work"
}
trap cleanup EXIT
if ! docker info >/dev/null 2>&1; then
  step "starting dockerd"
  dockerd --pidfile "$work/dockerd.pid" >"$work/dockerd.log" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 0.5; done
  docker info >/dev/null 2>&1 \
    || skip "dockerd did not start: $(tail -1 "$work/dockerd.log")"
fi

# --- base images: real when a registry answers, else stand-ins --------------
# The apt source serving a suite, from the machine's apt configuration.
apt_uri() {
  local suite=$1
  {
    grep -hs -E "^deb " /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
      | awk -v s="$suite" '$3 == s { print $2; exit }'
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -f "$f" ] || continue
      awk -v s="$suite" '
        /^URIs:/ { uri = $2 } /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) hit = 1 }
        /^$/ { if (hit) { print uri; exit } hit = 0 }
        END { if (hit) print uri }' "$f"
    done
  } | head -1
}
origin() {
  docker image inspect -f '{{index .Config.Labels "ingest-bench.standin"}}' "$1" 2>/dev/null
}
ensure_base() {
  local tag=$1
  if docker image inspect "$tag" >/dev/null 2>&1; then
    return 0
  fi
  if timeout 60 docker pull -q "$tag" >/dev/null 2>&1; then
    return 0
  fi
  case "$tag" in
    debian:bookworm-slim)
      local mirror
      mirror=$(apt_uri bookworm)
      [ -n "$mirror" ] || skip "no registry and no bookworm apt source to debootstrap from"
      step "no registry: debootstrapping $tag from $mirror"
      debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
        || skip "debootstrap failed: $(tail -1 "$work/debootstrap.log")"
      tar -C "$work/rootfs" -c . | docker import \
        --change 'LABEL ingest-bench.standin=debootstrap' --change 'CMD ["bash"]' - "$tag" >/dev/null
      rm -rf "$work/rootfs"
      ;;
    rust:1-slim-bookworm)
      local security
      security=$(apt_uri bookworm-security)
      [ -n "$security" ] || skip "no registry and no bookworm-security apt source for rustc-web"
      step "no registry: building $tag from debian:bookworm-slim + rustc-web"
      mkdir -p "$work/rust/certs"
      # Trust what this machine trusts beyond the system bundle (e.g. a proxy's CA).
      cp /usr/local/share/ca-certificates/*.crt "$work/rust/certs/" 2>/dev/null || true
      docker build -q -t "$tag" --label ingest-bench.standin=rustc-web \
        --build-arg "SECURITY_MIRROR=$security" \
        -f docker/standin-rust.Dockerfile "$work/rust" >/dev/null
      ;;
  esac
}
step "base images"
ensure_base debian:bookworm-slim
ensure_base rust:1-slim-bookworm
for tag in debian:bookworm-slim rust:1-slim-bookworm; do
  case "$(origin "$tag")" in
    "") echo "   $tag: real (from a registry)" ;;
    *) echo "   $tag: local stand-in ($(origin "$tag"))" ;;
  esac
done

# --- the image -----------------------------------------------------------------
step "building ingest-bench:local"
t0=$(date +%s)
docker build -q -t ingest-bench:local . >/dev/null
echo "   built in $(( $(date +%s) - t0 )) s; $(docker image inspect -f '{{.Size}}' ingest-bench:local | awk '{printf "%.0f MB", $1/1e6}')"

# A folder owned by a uid that is not root: what a normal user's is.
owner=12345
check_owned() {
  local bad
  bad=$(find "$1" -type f ! -user "$owner" | head -3)
  [ -z "$bad" ] || { echo "not owned by $owner: $bad" >&2; exit 1; }
}

step "one model in the image (docker run)"
mkdir -p "$work/run/results"
chown "$owner:$owner" "$work/run/results"
docker run --rm -v "$work/run/results:/work/results" ingest-bench:local \
  --model single --clients 2 --duration 1s --warmup 200ms >"$work/run.log" 2>&1 \
  || { cat "$work/run.log" >&2; exit 1; }
python3 - "$work/run/results" <<'PY'
import json, pathlib, sys
runs = list(pathlib.Path(sys.argv[1]).glob("*/run.json"))
assert len(runs) == 1, runs
run = json.loads(runs[0].read_text())
cell = run["cells"][0]
assert cell["key"]["model"] == "single", cell["key"]
assert cell["verdict"]["status"] != "invalid", cell["verdict"]
print(f"   single, 2 clients: {cell['verdict']['status']}, "
      f"{cell['server']['packets']['measured']} frames received")
PY
check_owned "$work/run/results"

step "compose file, the prometheus profile included, as docker-compose reads it"
docker-compose --profile prometheus config -q

step "compose one-shot as a non-root user: server + 2 fleet containers"
# A real unprivileged user runs it: nobody, with the docker group (the
# socket's) for access, in a project folder it owns; its results/ is its own.
owner=$(id -u nobody)
docker_gid=$(getent group docker | cut -d: -f3)
[ -n "$docker_gid" ] || { echo "no docker group to give the unprivileged user" >&2; exit 1; }
project="$work/compose"
mkdir -p "$project/docker" "$project/home"
cp docker-compose.yml "$project/"
cp docker/oneshot.sh "$project/docker/"
chmod 755 "$work"
chown -R "$owner:$owner" "$project"
export COMPOSE_PROJECT_NAME=ingestbenchtest
(cd "$project" && HOME="$project/home" RUN=cell FLEETS=2 CLIENTS=4 DURATION=1s MODEL=async \
  setpriv --reuid="$owner" --regid="$owner" --groups="$docker_gid" -- \
  docker/oneshot.sh >"$work/compose.log" 2>&1) || { cat "$work/compose.log" >&2; exit 1; }
python3 - "$project/results/cell" <<'PY'
import json, pathlib, sys
d = pathlib.Path(sys.argv[1])
fleets = sorted(d.glob("fleet-*.json"))
assert len(fleets) == 2, fleets
server = json.loads((d / "server.json").read_text())
merged = json.loads((d / "merged.json").read_text())
sent = [json.loads(f.read_text())["sent"] for f in fleets]
rec = merged["reconciliation"]
assert rec["lost"] == 0 and rec["excess"] == 0 and rec["unread"] == 0, rec
assert not rec["mismatched"], rec["mismatched"]
assert merged["fleet"]["sent"]["measured"] == sum(s["measured"] for s in sent)
assert merged["fleet"]["sent"]["measured"] == server["packets"]["measured"], (merged["fleet"]["sent"], server["packets"])
assert merged["fleet"]["sent"]["warmup"] == server["packets"]["warmup"]
# 8 clients sent frames (the health check's probes are connections too),
# as the two shards of one fleet: ids 0..7, shard indices 0 and 1 of 2.
assert sorted(c["id"] for c in server["clients"]) == list(range(8)), server["clients"]
shards = sorted((json.loads(f.read_text())["config"]["shard"] or {}).get("index", -1) for f in fleets)
assert shards == [0, 1], shards
# Ack mode: every frame acknowledged exactly once, a round trip for each
# measured one.
acks = merged["fleet"]["acks"]
assert acks["acked"] == merged["fleet"]["sent"]["measured"] + merged["fleet"]["sent"]["warmup"], acks
assert acks["unacked"] == acks["duplicates"] == acks["unexpected"] == acks["bad_records"] == 0, acks
assert acks["round_trip_ns"]["count"] == merged["fleet"]["sent"]["measured"], acks["round_trip_ns"]
assert server["acks"]["dropped"] == 0, server["acks"]
assert merged["verdict"]["status"] != "invalid", merged["verdict"]
print(f"   2 fleet shards x 4 clients: {server['packets']['measured']} frames sent and received "
      f"exactly, every frame acked once, round trip p99 {acks['round_trip_ns']['p99'] / 1e3:.0f} us, "
      f"verdict {merged['verdict']['status']}")
PY
check_owned "$project/results/cell"
docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" | grep -q . \
  && { echo "compose left containers behind" >&2; exit 1; }
step "passed"
