#!/usr/bin/env bash
# Regenerates the timer-versus-call comparison (docs/calls.md and its
# excerpt in README.md, between the `calls` markers): one `harness --all
# --quick` run of the `io` workload (a 1 ms timer on one frame in 20) and
# the `call` workload (the same 1 ms as a real call to the downstream
# responder the harness starts), so one load, one batch window and one SLO,
# and for each model the capacity under each, the change and whether it is
# beyond the noise (the intervals do not overlap). Never edit those parts
# by hand: run this instead (about 5 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
bin=target/release/harness
out=$(mktemp -d)
stamp="$(date -u +%Y-%m-%d), commit \`$(git rev-parse --short=12 HEAD)\`$(git status --porcelain --untracked-files=no | grep -q . && echo ' (dirty)' || true)"
window=2ms
"$bin" --all --quick --works io,call --seed 1 --batch-window "$window" \
  --results-dir "$out/results" --plots-dir "$out/plots" \
  --logs-dir "$out/logs" >"$out/run.txt" 2>&1 ||
  { tail -20 "$out/run.txt" >&2; echo "the run failed: nothing written" >&2; exit 1; }

python3 - "$out" "$stamp" "$window" <<'PY'
import json, pathlib, re, sys
out, stamp, window = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
(d,) = list((out / "results").glob("*/run.json"))
run = json.loads(d.read_text())
md = (d.parent / "summary.md").read_text()
caps = {(r["model"], r["workload"]): r for r in run["capacities"]}

sys.path.insert(0, "docs")
from capacity_cells import cell, disjoint

def stopper(r):
    """What ended the call search above its capacity: the server, or the
    generator (the fleet, or the downstream responder, fell behind)."""
    why = [p["why"] for p in r.get("probes", []) if p.get("why")]
    late = any("downstream late" in w for w in why)
    return {"server": "the server", "server_failed": "the server (failed)",
            "machine": "machine noise"}.get(r["limited_by"],
            "the responder (late)" if late else "the fleet (behind)")

def us(ns):
    return f"{ns / 1e3:.0f} us" if ns < 1e6 else f"{ns / 1e6:.2f} ms"

models = sorted({m for (m, w) in caps if w == "io"}, key=lambda m: -caps[(m, "io")]["clients"])
lines = ["| model | `io` (a 1 ms timer) | `call` (a 1 ms call) | change | p99 at capacity: timer / call | the call's search stopped by |",
         "|---|---:|---:|---:|---:|---|"]
moves = []
for m in models:
    a, b = caps[(m, "io")], caps.get((m, "call"))
    if b is None:
        lines.append(f"| `{m}` | {cell(a)} | - | - | - | - |")
        continue
    change = (b["clients"] - a["clients"]) / max(a["clients"], 1)
    txt = f"{change:+.0%}"
    if disjoint(a, b):
        txt = f"**{txt}**"
        moves.append((abs(change), m, change))
    lines.append(f"| `{m}` | {cell(a)} | {cell(b)} | {txt} | {us(a['p99_ns'])} / {us(b['p99_ns'])} | {stopper(b)} |")
lines.append("")
if moves:
    _, m, change = max(moves)
    lines.append(f"Moved most beyond the noise: `{m}` ({change:+.0%} from the timer to the call).")
else:
    lines.append("No model's capacity moved beyond the noise from the timer to the call.")
lines.append("")
rec = re.search(r"^## Recommendation.*?(?=^## )", md, re.S | re.M).group(0)
for m in re.finditer(r"^- \*\*(\w+)\*\*: .*$", rec, re.M):
    lines.append(f"- `{m.group(1)}`: {m.group(0)[2:]}")
lines.append("")
resp = re.search(r"^\*\*The downstream\.\*\* .*$", md, re.M)
if resp:
    lines.append(resp.group(0))
body = (f"Measured by `docs/calls.sh` ({stamp}): one `harness --all --quick --works io,call --seed 1 "
        f"--batch-window {window}` run on this machine, so both workloads have the same load, batch window "
        "and SLO: `io` is `io:1ms,every=20` (a 1 ms timer), `call` is `call:1ms,every=20` (the same 1 ms as "
        "a real call to a responder the harness starts; see docs/method.md#downstream-calls). Capacity in "
        "clients (interval); the change **bold** where the intervals do not overlap (beyond the noise).\n\n"
        + "\n".join(lines).strip())

sys.path.insert(0, "docs")
from splice import splice

splice("docs/calls.md", "calls", body, "docs/calls.sh")
splice("README.md", "calls", body, "docs/calls.sh")
print("calls written; run kept in", out)
PY
