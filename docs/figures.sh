#!/usr/bin/env bash
# Regenerates the figures the docs quote from tests and small runs, each
# spliced between its markers with the commit and date it was measured at:
#   memory   docs/limits.md      peak RSS of every model under 1,000 hostile
#                                connections (harness/tests/memory.rs)
#   io-wait  docs/method.md      each model's 1 ms io wait (harness/tests/io_wait.rs)
#   netns    docs/deployment.md  the cell across network namespaces
#                                (harness/tests/netns.rs; needs root and `ip`)
#   ack-rtt  docs/deployment.md  one-way latency vs round trip on loopback
#                                (`async`, 4 clients, ack mode)
#   prefork  docs/models.md      a prefork child killed mid-cell
#   placement docs/models.md     prefork and percore (8 workers, io work):
#                                capacity with hash vs least-loaded placement
#   inline   docs/models.md      CPU per frame of `single` and of `async` with
#                                its cpu work on the blocking pool vs inline
#   coalesce docs/models.md      CPU per frame of `single` and of `pool` with
#                                each turn's frames handed over at once vs held back
#   hand-off docs/models.md      `pool` and `rayon` against `single` (none, cpu)
#                                and `threads` (io) at equal load: issue 23's targets
#   oneshot  docs/deployment.md  docker/oneshot.sh's summary (only with
#                                --docker: it builds the image; needs dockerd)
# Never edit those parts by hand: run this instead (about 3 minutes, plus
# the image build with --docker).
set -euo pipefail
cd "$(dirname "$0")/.."
docker=false
[ "${1:-}" != --docker ] || docker=true
cargo build --release -q
bin=target/release/harness
out=$(mktemp -d)
stamp="$(date -u +%Y-%m-%d), commit \`$(git rev-parse --short=12 HEAD)\`$(git status --porcelain --untracked-files=no | grep -q . && echo ' (dirty)' || true)"

# Tests print their measurements; run each alone (they load the machine).
for t in memory io_wait netns; do
  CI=true cargo test -q -p harness --test "$t" -- --nocapture >"$out/$t.txt" 2>&1 ||
    { cat "$out/$t.txt" >&2; echo "test $t failed: no figures written" >&2; exit 1; }
done

run() { # name, harness arguments...
  local name=$1; shift
  "$bin" "$@" --results-dir "$out/$name/results" --plots-dir "$out/$name/plots" \
    --logs-dir "$out/$name/logs" >"$out/$name.txt" 2>&1
}
run ack-rtt --model async --works none --clients 4 --duration 2s --warmup 500ms --ack
run prefork --model prefork --workers 2 --works none --clients 4 --rate 1000 \
  --duration 2s --warmup 200ms --kill-server-after 500ms --kill-target child
eq=(--work cpu:5us --clients 3 --batch-window 0 --repeat 2 --duration 2s --warmup 500ms)
run inline-single --model single "${eq[@]}"
run inline-pool --model async --inline-cpu 0 "${eq[@]}"
run inline-inline --model async "${eq[@]}"
# pool's hand-off with and without holding frames back, against single,
# each round the three side by side (the same minutes of this machine)
for r in 1 2 3; do
  for c in single:0 pool:0 pool:100us; do
    run "coalesce-${c%%:*}-${c##*:}-$r" --all --models "${c%%:*}" --works none --clients 100 \
      --batch-window 1ms --duration 3s --warmup 1s --coalesce "${c##*:}"
  done
done
# pool and rayon against the reference of each target, the same load, each
# round all side by side
for r in 1 2 3; do
  for c in single:0 pool:100us rayon:100us; do
    m=${c%%:*} h=${c##*:}
    run "handoff-none-$m-$h-$r" --all --models "$m" --works none --clients 100 \
      --batch-window 1ms --duration 3s --warmup 1s --coalesce "$h"
    run "handoff-cpu-$m-$h-$r" --model "$m" --work cpu:5us --clients 3 --batch-window 0 \
      --duration 2s --warmup 500ms --coalesce "$h"
  done
  for c in threads:0 pool:100us rayon:100us; do
    m=${c%%:*} h=${c##*:} w=()
    [ "$m" = threads ] || w=(--workers 64)
    run "handoff-io-$m-$h-$r" --model "$m" --work io:1ms,every=20 --clients 60 "${w[@]}" \
      --batch-window 1ms --duration 3s --warmup 1s --coalesce "$h"
  done
done
for m in prefork percore; do
  for p in hash least; do
    run "placement-$m-$p" capacity --model "$m" --work io:1ms,every=20 --workers 8 --quick --placement "$p"
  done
done

if $docker; then
  # The image of this build, so the one-shot measures this commit.
  docker build -q -t ingest-bench:local . >"$out/docker-build.txt" 2>&1 ||
    { cat "$out/docker-build.txt" >&2; exit 1; }
  rm -rf results/figures-oneshot
  # 2 x 5 clients: server and fleet containers share this machine's cores
  # unpinned, and 2 x 10 left the fleets behind their schedule here.
  CLIENTS=5 RUN=figures-oneshot bash docker/oneshot.sh >"$out/oneshot.txt" 2>&1 ||
    { tail -20 "$out/oneshot.txt" >&2; echo "the compose one-shot failed (output above): no figures written" >&2; exit 1; }
  cp results/figures-oneshot/summary.txt "$out/oneshot-summary.txt"
fi

python3 - "$out" "$stamp" <<'PY'
import json, pathlib, re, sys
out, stamp = pathlib.Path(sys.argv[1]), sys.argv[2]

sys.path.insert(0, "docs")
import splice as splice_mod

def splice(doc, name, body):
    splice_mod.splice(doc, name, body, "docs/figures.sh")

def cell(name):
    run = json.loads(next((out / name / "results").glob("*/run.json")).read_text())
    return run["cells"][0]

# memory: "<model>: peak RSS X MiB, bound Y MiB"
rows = re.findall(r"^(\w+): peak RSS (\d+) MiB, bound (\d+) MiB$", (out / "memory.txt").read_text(), re.M)
assert len(rows) == 8, rows
splice("docs/limits.md", "memory",
       f"  Measured by `docs/figures.sh` ({stamp}), peak RSS against the bound:\n\n"
       "  | model | peak RSS MiB | bound MiB |\n  |---|---:|---:|\n"
       + "\n".join(f"  | `{m}` | {k} | {b} |" for m, k, b in rows))

# io wait: "io waits of 1000 us: [\"single: 1034 us\", ...]"
waits = re.findall(r'"(\w+): (-?\d+) us"', (out / "io_wait.txt").read_text())
assert len(waits) == 8, waits
us = [int(w) for _, w in waits]
splice("docs/method.md", "io-wait",
       f"  Measured by `docs/figures.sh` ({stamp}): {min(us)}-{max(us)} us for a 1 ms wait ("
       + ", ".join(f"`{m}` {w}" for m, w in waits) + "), the spread being the shared machine's wake-up noise.")

# netns: "netns cell: N frames, round trip p50 X ns p99 Y ns, verdict V"
m = re.search(r"netns cell: (\d+) frames, round trip p50 (\d+) ns p99 (\d+) ns, verdict (\{.*\})$",
              (out / "netns.txt").read_text(), re.M)
assert m, "no netns figures"
splice("docs/deployment.md", "netns",
       f"Measured by `docs/figures.sh` ({stamp}): 9 clients, {int(m[1]):,} measured frames, round trip "
       f"p50 {int(m[2]) // 1000} us, p99 {int(m[3]) // 1000} us, verdict {json.loads(m[4])['status']}.")

# ack round trip against one-way latency, same cell
c = cell("ack-rtt")
d = c["derived"]
lat, rt = d["p50_ns"] / 1e3, d["round_trip_p50_ns"] / 1e3
splice("docs/deployment.md", "ack-rtt",
       f"Measured by `docs/figures.sh` ({stamp}): `async` at 4 clients in ack mode, latency p50 {lat:.1f} us, "
       f"round trip p50 {rt:.1f} us: the ack's way back took {rt - lat:.1f} us at the median ({c['verdict']['status']}).")

# prefork child killed mid-cell
c = cell("prefork")
s = c["server"]
deaths = s.get("deaths") or []
assert deaths, "no child died"
dead = deaths[0]
child = next((ch for ch in s["children"] if ch["pid"] == dead["pid"]), None)
assert child, "the dead child is not in the report"
replacement = dead.get("replaced_by")
splice("docs/models.md", "prefork",
       f"Measured by `docs/figures.sh` ({stamp}): 2 children, 4 clients at 1 kHz, one child SIGKILLed after 500 ms: "
       f"the dead child had processed {child['frames']} frames, all in the report (counts from its {child['counts_from']}); "
       f"{c['reconciliation']['lost']} frame(s) lost (in flight in its socket), "
       + (f"it died {dead['at_ms']} ms into serving ({dead['status']}) and was replaced by pid {replacement}; "
          if replacement is not None else f"it died {dead['at_ms']} ms into serving ({dead['status']}), not replaced; ")
       + f"verdict {c['verdict']['status']} ({'; '.join(c['verdict']['reasons']) or 'no reasons'}).")

# placement: the same search with the kernel's hash and with least-loaded placement
def capacity(name):
    run = json.loads(next((out / name / "results").glob("*/run.json")).read_text())
    (r,) = run["capacities"]
    point, low, high = r["clients"], r["interval"]["low"], r["interval"]["high"]
    # As the tool labels it (record::interval::Interval::label).
    if point == 0:
        label = "< 1"
    elif high is not None:
        label = f"{point}" if high == low == point else f"{point} ({low}-{high})"
    else:
        label = f">= {point}" if point == low else f">= {point} ({low}-)"
    return label, point
rows = []
for m in ("prefork", "percore"):
    (h, hn), (l, ln) = capacity(f"placement-{m}-hash"), capacity(f"placement-{m}-least")
    rows.append(f"| `{m}` | {h} | {l} |")
splice("docs/models.md", "placement",
       f"Measured by `docs/figures.sh` ({stamp}): `harness capacity --work io:1ms,every=20 --workers 8 --quick`, "
       "clients at 10 kHz (one in 20 frames waits 1 ms, so a worker serves about one client):\n\n"
       "| model | `--placement hash` (SO_REUSEPORT) | `--placement least` (default) |\n|---|---:|---:|\n"
       + "\n".join(rows))

# async's cpu work inline or on the blocking pool, against single, same load
def per_frame(name):
    run = json.loads(next((out / name / "results").glob("*/run.json")).read_text())
    cells = run["cells"]
    assert all(c["verdict"]["status"] == "valid" for c in cells), name
    return sorted(c["derived"]["cpu_us_per_packet"] for c in cells)
single, pool, inline = per_frame("inline-single"), per_frame("inline-pool"), per_frame("inline-inline")
rng = lambda v: f"{v[0]:.1f}-{v[-1]:.1f}"
ratio = lambda v: f"{v[0] / single[-1]:.2f}-{v[-1] / single[0]:.2f}x"
splice("docs/models.md", "inline",
       f"Measured by `docs/figures.sh` ({stamp}): `cpu:5us`, 3 clients, one frame per write (`--batch-window 0`), "
       "2 repeats of 2 s, CPU us per frame (and against `single`'s):\n\n"
       "| server | CPU us/frame | vs `single` |\n|---|---:|---:|\n"
       f"| `single` | {rng(single)} | 1 |\n"
       f"| `async --inline-cpu 0` (every batch on the blocking pool, as before) | {rng(pool)} | {ratio(pool)} |\n"
       f"| `async` (batches up to 100 us inline, the default) | {rng(inline)} | {ratio(inline)} |")

# pool's hand-off: each turn's frames at once, or held back while reads come fast
def rounds(prefix):
    v = []
    for r in (1, 2, 3):
        (c,) = json.loads(next((out / f"{prefix}-{r}" / "results").glob("*/run.json")).read_text())["cells"]
        k = c["derived"].get("counts") or {}
        v.append((c["derived"]["cpu_us_per_packet"], k.get("voluntary_ctxt", 0) + k.get("involuntary_ctxt", 0),
                  c["derived"]["p99_ns"] / 1e3, c["verdict"]["status"]))
    return v
base = rounds("coalesce-single-0")
rows = []
for name, label in (("coalesce-pool-0", "`pool --coalesce 0` (each turn's frames handed over at once)"),
                    ("coalesce-pool-100us", "`pool` (held back up to 100 us while reads come fast, the default)")):
    v = rounds(name)
    ratios = sorted(a[0] / b[0] for a, b in zip(v, base))
    cpu, sw, p99 = (sorted(x[i] for x in v) for i in range(3))
    rows.append(f"| {label} | {cpu[1]:.3f} ({cpu[0]:.3f}-{cpu[2]:.3f}) | {ratios[1]:.2f}x ({ratios[0]:.2f}-{ratios[2]:.2f}) "
                f"| {sw[1]:.3f} | {p99[1]:.0f} us | {', '.join(sorted({x[3] for x in v}))} |")
cpu, sw, p99 = (sorted(x[i] for x in base) for i in range(3))
splice("docs/models.md", "coalesce",
       f"Measured by `docs/figures.sh` ({stamp}): `none`, 100 clients at 10 kHz in 1 ms batches, 3 s cells, three rounds "
       "of the three side by side; CPU us per frame (median, range), its ratio to `single`'s in the same round "
       "(median, range), context switches per frame (median), p99:\n\n"
       "| server | CPU us/frame | vs `single` | switches/frame | p99 | verdicts |\n|---|---:|---:|---:|---:|---|\n"
       f"| `single` | {cpu[1]:.3f} ({cpu[0]:.3f}-{cpu[2]:.3f}) | 1 | {sw[1]:.3f} | {p99[1]:.0f} us | "
       f"{', '.join(sorted({x[3] for x in base}))} |\n" + "\n".join(rows))

# pool and rayon at equal load against single (none, cpu) and threads (io)
def one(name):
    (c,) = json.loads(next((out / name / "results").glob("*/run.json")).read_text())["cells"]
    assert c["verdict"]["status"] == "valid", (name, c["verdict"])
    return c["derived"]["cpu_us_per_packet"]
loads = (("none", "`none`, 100 clients, 1 ms batches", "single", 1.3),
         ("cpu", "`cpu:5us`, 3 clients, one frame per write", "single", 1.3),
         ("io", "`io:1ms,every=20`, 60 clients, 64 workers", "threads", 1.5))
rows = []
for w, label, ref, target in loads:
    base = [one(f"handoff-{w}-{ref}-0-{r}") for r in (1, 2, 3)]
    cols = []
    for m, h in (("pool", "100us"), ("rayon", "100us")):
        v = [one(f"handoff-{w}-{m}-{h}-{r}") for r in (1, 2, 3)]
        q = sorted(a / b for a, b in zip(v, base))
        cols.append(f"{sorted(v)[1]:.2f}: {q[1]:.2f}x ({q[0]:.2f}-{q[2]:.2f})")
    rows.append(f"| {label} | `{ref}` {sorted(base)[1]:.2f} | {target}x | " + " | ".join(cols) + " |")
splice("docs/models.md", "hand-off",
       f"Measured by `docs/figures.sh` ({stamp}): three rounds of all side by side; CPU us per frame (median) and "
       "its ratio to the reference's in the same round (median, range), with the issue's target:\n\n"
       "| load | reference | target | `pool` | `rayon` |\n"
       "|---|---:|---:|---:|---:|\n" + "\n".join(rows))

oneshot = out / "oneshot-summary.txt"
if oneshot.exists():
    splice("docs/deployment.md", "oneshot",
           f"  (measured by `docs/figures.sh --docker`, {stamp}, on this machine, server and fleets sharing its cores)\n\n"
           "  ```\n  $ CLIENTS=5 docker/oneshot.sh   # async, 2 fleet shards x 5 clients, 10 s, 2 ms batches\n"
           + "".join("  " + l + "\n" for l in oneshot.read_text().splitlines()) + "  ```")
print("figures written")
PY
echo "runs and test output kept in $out"
