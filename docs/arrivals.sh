#!/usr/bin/env bash
# Regenerates the arrivals comparison (docs/arrivals.md and its excerpt in
# README.md, between the `arrivals` markers): `harness --all --quick` under
# each arrival process and under connection churn, one after the other on
# this machine with one seed, one batch window and in one results folder
# (so one SLO: only the load setting differs), and for each model and
# workload the capacity under each, its change from `constant` and whether
# that change is beyond the noise (the intervals do not overlap). Never
# edit those parts by hand: run this instead (about 18 minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
bin=target/release/harness
out=$(mktemp -d)
works=${WORKS:-none,io}
stamp="$(date -u +%Y-%m-%d), commit \`$(git rev-parse --short=12 HEAD)\`$(git status --porcelain --untracked-files=no | grep -q . && echo ' (dirty)' || true)"
# One window for every run (a churn run's own calibration would pick
# another): the 2 ms that the calibration gives the plain runs here.
window=2ms
# name|options: each run differs from `constant` in one load setting.
runs=("constant|--arrival constant" "poisson|--arrival poisson"
  "burst|--arrival burst:on=25ms,off=75ms" "trace|--arrival trace:docs/traces/example.trace"
  "churn|--reconnect-every 5000")
for r in "${runs[@]}"; do
  name=${r%%|*}
  read -ra opts <<<"${r#*|}"
  "$bin" --all --quick --works "$works" "${opts[@]}" --seed 1 --batch-window "$window" \
    --results-dir "$out/results" --plots-dir "$out/plots" \
    --logs-dir "$out/logs" >"$out/$name.txt" 2>&1 ||
    { tail -20 "$out/$name.txt" >&2; echo "the $name run failed: nothing written" >&2; exit 1; }
done

python3 - "$out" "$stamp" "$works" "${runs[@]}" <<'PY'
import json, pathlib, re, sys
out, stamp, works, runs_asked = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4:]
names = [r.split("|")[0] for r in runs_asked]
arrivals = [r.split("|")[1].replace("--arrival ", "") for r in runs_asked]

def name_of(config):
    if config.get("reconnect_every"):
        return "churn"
    return config.get("arrival", "constant").split(":")[0]

by_name = {}
for f in (out / "results").glob("*/run.json"):
    run = json.loads(f.read_text())
    by_name[name_of(run["config"])] = f.parent
assert sorted(by_name) == sorted(names), f"runs found: {sorted(by_name)}"
windows = {json.loads((d / "run.json").read_text())["config"]["window"] for d in by_name.values()}
assert len(windows) == 1, f"the runs used different batch windows: {windows}"

def load(name):
    d = by_name[name]
    run = json.loads((d / "run.json").read_text())
    md = (d / "summary.md").read_text()
    rec = re.search(r"^## Recommendation.*?(?=^## )", md, re.S | re.M).group(0)
    bullets = {m.group(1): m.group(0) for m in re.finditer(r"^- \*\*(\w+)\*\*: .*$", rec, re.M)}
    return run, bullets

runs = {n: load(n) for n in names}
caps = {n: {(r["model"], r["workload"]): r for r in run["capacities"]} for n, (run, _) in runs.items()}

sys.path.insert(0, "docs")
from capacity_cells import cell, disjoint

lines = []
for w in works.split(","):
    models = sorted({m for (m, ww) in caps["constant"] if ww == w},
                    key=lambda m: -caps["constant"][(m, w)]["clients"])
    head = "| model | " + " | ".join(f"`{a}`" for a in arrivals) + " |"
    lines += [f"#### Workload `{w}`", "", "Capacity in clients (interval); change from `constant`, "
              "**bold** where the intervals do not overlap (beyond the noise):", "",
              head, "|---|" + "---:|" * len(arrivals)]
    moves = []
    for m in models:
        base = caps["constant"][(m, w)]
        row = [cell(base)]
        for n in names[1:]:
            r = caps[n].get((m, w))
            if r is None:
                row.append("-")
                continue
            change = (r["clients"] - base["clients"]) / max(base["clients"], 1)
            txt = f"{cell(r)}, {change:+.0%}"
            if disjoint(base, r):
                txt = f"**{txt}**"
                moves.append((abs(change), m, n, change))
            row.append(txt)
        lines.append(f"| `{m}` | " + " | ".join(row) + " |")
    lines.append("")
    if moves:
        _, m, n, change = max(moves)
        lines.append(f"Moved most beyond the noise: `{m}` under `{n}` ({change:+.0%} from `constant`).")
    else:
        lines.append("No model's capacity moved beyond the noise.")
    lines.append("")
    for a, n in zip(arrivals, names):
        b = runs[n][1].get(w)
        if b:
            lines.append(f"- `{a}`: {b[2:]}")
    lines.append("")
(window,) = windows
body = (f"Measured by `docs/arrivals.sh` ({stamp}): `harness --all --quick --works {works} --seed 1 --batch-window {window:g}ms` "
        "with each load setting (`--arrival A`, or `--reconnect-every 5000`), one after the other on this machine in one "
        f"results folder, so every run has the same batch window ({window:g} ms) and SLO, and the searches' bound comes from "
        "one fleet calibration (the churn run's from one with its reconnects) (bursts: 25 ms on at 4x the rate, 75 ms off, "
        "every client at once; the trace: docs/traces/example.trace, flushes of 80 frames over 1 ms every 10 ms over a "
        "Poisson background, each client from its own line; churn: constant arrivals, each client reconnecting after every "
        "5,000 frames, twice a second (with a reconnect every 1,000 or 2,000 frames one fleet core here paced only 48 clients at this window, below most capacities); see docs/method.md#arrival-processes and #connection-churn).\n\n" + "\n".join(lines).strip())

sys.path.insert(0, "docs")
from splice import splice

splice("docs/arrivals.md", "arrivals", body, "docs/arrivals.sh")
splice("README.md", "arrivals", body, "docs/arrivals.sh")
print("arrivals written; runs kept in", out)
PY
