#!/usr/bin/env bash
# Regenerates the README's example: runs `harness --all --quick` (or the
# harness arguments given, e.g. `--all` for the full capacity search) on this
# machine, then copies the io plots to docs/example/ and splices the summary's
# recommendation and io sections into README.md between the example markers.
# Never edit that part of the README by hand: run this instead.
#
# `--from DIR ARGS...` renders an earlier run of this script again instead
# (DIR: the folder holding its results/ and plots/, printed at the end; ARGS:
# the harness arguments it ran with): for a change to the report alone, the
# measurements stay those of the run.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = --from ]; then
  out=$2
  shift 2
  cargo build --release -q
  run=$(basename "$(dirname "$(ls "$out"/results/*/run.json)")")
  target/release/harness report "$out/results/$run" --plots-dir "$out/plots" >/dev/null
else
  out=$(mktemp -d)
fi
args=("$@")
[ ${#args[@]} -gt 0 ] || args=(--all --quick)
if [ -z "${run:-}" ]; then
  cargo run --release -q -- "${args[@]}" \
    --results-dir "$out/results" --plots-dir "$out/plots" --logs-dir "$out/logs" >/dev/null
  run=$(basename "$(dirname "$(ls "$out"/results/*/run.json)")")
fi
mkdir -p docs/example
for p in capacity-io load-io workers-io stages-io cost-io; do rm -f "docs/example/$p.png"; done
for p in capacity-io load-io workers-io stages-io cost-io; do
  [ ! -f "$out/plots/$run/$p.png" ] || cp "$out/plots/$run/$p.png" "docs/example/$p.png"
done
python3 - "$out/results/$run" "${args[*]}" <<'PY'
import json, pathlib, re, sys
run_dir = pathlib.Path(sys.argv[1])
run = json.loads((run_dir / "run.json").read_text())
md = (run_dir / "summary.md").read_text()
env = run["environment"]
def section(title):
    m = re.search(r"^## " + re.escape(title) + r".*?(?=^## |\Z)", md, re.S | re.M)
    return m.group(0).strip() if m else ""
io = section("Workload `io`")
io = re.sub(r"^!\[.*$\n?", "", io, flags=re.M)
io = re.sub(r"<details>.*?</details>\n?", "", io, flags=re.S).strip()
io = re.sub(r"^\*\*Where the time went\*\*.*?(?=^\*\*What this shows)", "", io, flags=re.S | re.M)
# Where the time went, for every workload: the rule once, then each
# workload's table and sentences.
stages, rule = [], "(not recorded in this run)"
for w in re.findall(r"^## Workload `([^`]+)`", md, re.M):
    m = re.search(r"^\*\*Where the time went\*\*.*?(?=^\*\*What this shows)", section(f"Workload `{w}`"), re.S | re.M)
    if m:
        block = m.group(0).strip()
        rule = block[:block.index("| model |")].strip()
        stages.append(f"#### Workload `{w}`\n\n" + block[block.index("| model |"):])
excerpt = "\n".join([
    "<!-- example:start -->",
    f"From `harness {sys.argv[2]}` on `{env['hostname']}` ({env['cpu_model']}, {env['logical_cpus']} CPUs), "
    f"{run['started'][:10]}, commit `{(env['git_commit'] or 'unknown')[:12]}`"
    + (" (dirty)" if env.get("git_dirty") else "") + ". Regenerate with `docs/regenerate-example.sh " + sys.argv[2] + "`.",
    "",
    "#" + section("Recommendation"),
    "",
    "#" + io,
    "",
    "![io capacity](docs/example/capacity-io.png)",
    "",
    "![io latency against load](docs/example/load-io.png)",
    "",
    "![io capacity against workers](docs/example/workers-io.png)",
    "",
    "### Where the time went, per workload",
    "",
    rule,
    "",
    "\n\n".join(stages),
    "",
    "![io: where the time went](docs/example/stages-io.png)",
    "",
    "![io: CPU per frame against load, and the bare loop](docs/example/cost-io.png)",
    "<!-- example:end -->",
])
readme = pathlib.Path("README.md")
text = readme.read_text()
text = re.sub(r"<!-- example:start -->.*?<!-- example:end -->", lambda _: excerpt, text, flags=re.S)
readme.write_text(text)
print("README example updated from run", run["run_id"], "in", run_dir.parent.parent)
PY
