#!/usr/bin/env bash
# The GPU check (docs/gpu.md): one command for a bare CUDA machine that has Python and PyTorch
# but no network and none of our other dependencies. It installs the wheels that
# scripts/gpu_wheels.sh downloaded into a fresh virtual environment over the machine's own
# packages, builds the random full-size Turbo checkpoint, runs the model tests on the device,
# then scripts/bench_streaming.py and scripts/bench_concurrency.py (1, 4, 8 and 16 streams) in
# bf16 and fp32, and writes gpu_check.json (every step, the figures, the issue's goals met or
# not), gpu_check.log and the tests' pytest*.xml to $OUT (default ./gpu-check-out). Each step
# has a time budget; a failed step is recorded and the next one runs. The whole run stays under
# 8 minutes.
#
#   scripts/gpu_check.sh [--device cuda|cpu] [--quick] [--python PY]
#                        [--wheels DIR | --no-install] [--out DIR]
#
#   --device   where the model runs (default cuda)
#   --quick    a few model tests and tiny benchmarks, in bf16 only: what CI runs on the CPU
#              so that this script cannot rot (tests/scripts/test_gpu_check.py)
#   --python   the interpreter that has PyTorch (default python3)
#   --wheels   the folder of wheels to install (default gpu-wheels)
#   --no-install  run with --python as it is: it has our dependencies already (.venv/bin/python)
#   --out      where the results go (default $OUT, else gpu-check-out)
#
# Exit status 0 when every step that ran passed, 1 when one failed or ran out of time.
set -uo pipefail # no -e: a step that fails is recorded, and the next one runs
cd "$(dirname "$0")/.." || exit 1
REPO=$PWD

device=cuda
quick=0
base_python=python3
wheels=gpu-wheels
install=1
out=${OUT:-gpu-check-out}
while (($#)); do
    case "$1" in
        --device) device="$2"; shift 2 ;;
        --quick) quick=1; shift ;;
        --python) base_python="$2"; shift 2 ;;
        --wheels) wheels="$2"; shift 2 ;;
        --no-install) install=0; shift ;;
        --out) out="$2"; shift 2 ;;
        -h | --help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done

mkdir -p "$out" && out=$(cd "$out" && pwd)
# The virtual environment and the steps' records, outside $OUT: only the three result files go
# back from the GPU machine. A folder of its own under $GPU_CHECK_WORK (else the temp folder).
parent=${GPU_CHECK_WORK:-${TMPDIR:-/tmp}}
mkdir -p "$parent" && work=$(mktemp -d "$parent/gpu-check.XXXXXX") || exit 1
trap 'rm -rf "$work"' EXIT
log=$out/gpu_check.log
rm -f "$out/gpu_check.json" "$out"/pytest*.xml # not a result of an earlier run
: >"$log"
: >"$work/steps.tsv"
started_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# Time budgets, in seconds. Full: under 8 minutes in all on an H200 (the tests get what the
# benchmarks leave). Quick: about 90 s on an idle 2-core CPU; its budgets only stop a hung step,
# since CI machines are shared and a busy one is several times slower.
if ((quick)); then
    deadline=900 tests_max=240 turbo_tests_max=240 streaming_budget=180 concurrency_budget=180
    budget_env=60 budget_install=120 budget_imports=120 budget_checkpoint=120
    tests=(
        tests/engine/test_engine.py::test_same_seed_same_tokens_different_seed_different_tokens
        tests/engine/test_token2wav.py::test_decoding_after_the_final_chunk_is_an_error
    )
    other_tests=() # Turbo only
    streaming_args=(--max-new-tokens 12 --chunk-size 10 --first-chunk-tokens 8 --repeats 1)
    streaming_args+=(--text "A quick check.")
    concurrency_args=(--levels "1,2" --modes batched --tokens 8 --repeats 1)
    # One CPU thread: on a shared machine, OpenMP's two-thread team slows down several times
    # over whenever another process holds a core. The quick figures check the plumbing only.
    export OMP_NUM_THREADS=1
else
    deadline=450 tests_max=240 turbo_tests_max=180 streaming_budget=70 concurrency_budget=60
    budget_env=15 budget_install=40 budget_imports=30 budget_checkpoint=45
    # Every model test but the install test (it needs the package index). Of tests/server only
    # the modules that hold model tests: others import clients the machine lacks (openai, ...).
    # test_start_script runs the start script, which puts its worker on the GPU. Turbo's first:
    # the other models' tests build their checkpoints (a minute or more) and come second.
    mapfile -t server_tests < <(grep -l "pytest.mark.model" tests/server/test_*.py)
    paths=(tests/engine "${server_tests[@]}" tests/balancer/test_start_script.py)
    tests=(-m model -k "not original and not multilingual" "${paths[@]}")
    other_tests=(-m model -k "original or multilingual" "${paths[@]}")
    streaming_args=(--repeats 2)
    concurrency_args=(--levels "1,4,8,16" --modes batched --tokens 100 --repeats 2)
fi

export CHATTERBOX_TEST_CACHE=${CHATTERBOX_TEST_CACHE:-$HOME/.cache/chatterbox-streaming}
export PYTHONPATH=$REPO${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
# Nothing may reach for the network: fail at once instead of waiting on the hub.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# tests/scripts/test_gpu_check.py runs this script: it must not run again inside the tests.
export CHATTERBOX_GPU_CHECK=1

now() { date +%s.%N; }
script_start=$(now)
elapsed() { awk -v a="$script_start" -v b="$(now)" 'BEGIN { printf "%d", b - a }'; }

# summary: (re)writes gpu_check.json from what the steps left in $work; after every step, so
# that a run cut short still says how far it got. The standard library only: it runs with the
# machine's Python whatever else failed.
cat >"$work/summary.py" <<'EOF'
import json, sys, time
import xml.etree.ElementTree as ET
from pathlib import Path

work, out, device, quick, started = Path(sys.argv[1]), Path(sys.argv[2]), *sys.argv[3:]


def load(path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


steps = []
for line in (work / "steps.tsv").read_text().splitlines():
    name, status, seconds, budget, note = line.split("\t")
    steps.append(
        {"name": name, "status": status, "seconds": float(seconds), "budget_s": int(budget),
         "note": note}
    )

tests = None
for report in ("pytest.xml", "pytest_other_models.xml"):
    try:
        root = ET.parse(out / report).getroot()
    except (OSError, ET.ParseError):
        continue
    if tests is None:
        tests = {"total": 0, "passed": 0, "failed": 0, "errors": 0, "skipped": 0, "problems": []}
    for case in root.iter("testcase"):
        tests["total"] += 1
        kinds = {child.tag for child in case}
        problem = case.find("failure") if "failure" in kinds else case.find("error")
        if problem is not None:
            tests["failed" if problem.tag == "failure" else "errors"] += 1
            tests["problems"].append(
                {"test": f"{case.get('classname')}::{case.get('name')}",
                 "message": (problem.get("message") or "")[:300]}
            )
        elif "skipped" in kinds:
            tests["skipped"] += 1
        else:
            tests["passed"] += 1

bench = {"streaming": {}, "concurrency": {}}
for kind in bench:
    for dtype in ("bf16", "fp32"):
        figures = load(work / f"bench_{kind}_{dtype}.json")
        if figures is not None:
            bench[kind][dtype] = figures


def goal(value, target, met, dtype=None):
    return {"value": value, "target": target, "met": met, **({"dtype": dtype} if dtype else {})}


# The issue's goals (docs/gpu.md): Turbo in bf16; fp32 stands in, and says so, where the
# benchmarks take no --dtype (an older checkout).
goals = {}
dtype = "bf16" if "bf16" in bench["streaming"] else "fp32"
streaming = bench["streaming"].get(dtype)
if streaming:
    ttfa, rtf = streaming.get("ttfa_s"), streaming.get("rtf_stream")
    goals["ttfa_one_stream_s"] = goal(ttfa, "<= 0.15", ttfa is not None and ttfa <= 0.15, dtype)
    goals["rtf_one_stream"] = goal(rtf, "<= 0.1", rtf is not None and rtf <= 0.1, dtype)
dtype = "bf16" if "bf16" in bench["concurrency"] else "fp32"
levels = {r["streams"]: r for r in (bench["concurrency"].get(dtype) or {}).get("batched", [])}
if 1 in levels and 16 in levels:
    ratio = round(levels[16]["throughput"] / levels[1]["throughput"], 2)
    goals["throughput_16_over_1"] = goal(ratio, ">= 10", ratio >= 10, dtype)
    p95 = levels[16]["ttfa_p95_s"]
    goals["ttfa_p95_16_streams_s"] = goal(p95, "<= 0.5", p95 <= 0.5, dtype)
if tests is not None:
    bad = tests["failed"] + tests["errors"]
    ran = [s for s in steps if s["name"].startswith("tests")]
    complete = bool(ran) and all(s["status"] in ("ok", "skipped") for s in ran)
    goals["no_test_fails"] = goal(bad, "0 failed, every test run", bad == 0 and complete)

summary = {
    "check": "scripts/gpu_check.sh",
    "device": device,
    "quick": quick == "1",
    "started": started,
    "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    "seconds": round(sum(s["seconds"] for s in steps), 1),
    "environment": load(work / "environment.json"),
    "versions": load(work / "versions.json"),
    "bench_dtype_flag": load(work / "dtypes.json"),
    "steps": steps,
    "tests": tests,
    "bench": bench,
    "goals": goals,
}
(out / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
EOF
summary() {
    "$base_python" "$work/summary.py" "$work" "$out" "$device" "$quick" "$started_at" \
        >>"$log" 2>&1 || echo "gpu_check: the summary could not be written" >&2
}

# step NAME BUDGET COMMAND...: run with a time limit (at most what is left before the
# deadline), output to the log, and record the outcome. SIGINT first: pytest then writes its
# report and Python programs unwind.
step() {
    local name=$1 budget=$2 left
    shift 2
    left=$((deadline - $(elapsed)))
    if ((left < 5 || budget < 5)); then
        printf '%s\tskipped\t0\t%s\tno time left\n' "$name" "$budget" >>"$work/steps.tsv"
        echo "gpu_check: $name skipped: no time left"
        return 1
    fi
    ((budget > left)) && budget=$left
    echo "=== $name (budget ${budget}s): $*" >>"$log"
    echo "gpu_check: $name (budget ${budget}s)..."
    local begin status rc seconds
    begin=$(now)
    timeout --signal=INT --kill-after=15 "$budget" "$@" >"$work/step.out" 2>&1
    rc=$?
    seconds=$(awk -v a="$begin" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }')
    cat "$work/step.out" >>"$log"
    case $rc in
        0) status=ok ;;
        124 | 137) status=timeout ;;
        *) status=failed ;;
    esac
    printf '%s\t%s\t%s\t%s\texit %s\n' "$name" "$status" "$seconds" "$budget" "$rc" \
        >>"$work/steps.tsv"
    echo "=== $name: $status (exit $rc) in ${seconds}s" >>"$log"
    echo "gpu_check: $name: $status in ${seconds}s"
    if [[ $status != ok ]]; then tail -n 15 "$work/step.out" | sed 's/^/    /'; fi
    summary
    [[ $status == ok ]]
}

skip() {
    printf '%s\tskipped\t0\t0\t%s\n' "$1" "$2" >>"$work/steps.tsv"
    echo "gpu_check: $1 skipped: $2"
}

# --- the machine -------------------------------------------------------------------------------
step environment "$budget_env" "$base_python" - "$device" "$work/environment.json" <<'EOF'
import json, platform, subprocess, sys
import torch

device = sys.argv[1]
info = {
    "python": platform.python_version(),
    "torch": torch.__version__,
    "cuda": torch.version.cuda,
    "cuda_available": torch.cuda.is_available(),
    "cpu_threads": torch.get_num_threads(),
}
if torch.cuda.is_available():
    info["gpu"] = torch.cuda.get_device_name(0)
    info["gpu_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    info["gpu_memory_gib"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=20,
        )
        info["nvidia_smi"] = smi.stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        info["nvidia_smi"] = f"unavailable: {exc}"
print(json.dumps(info, indent=2))
json.dump(info, open(sys.argv[2], "w"))
if device.startswith("cuda") and not torch.cuda.is_available():
    sys.exit("--device cuda, but torch sees no GPU")
EOF

# --- our dependencies --------------------------------------------------------------------------
python=$base_python
install_wheels() {
    if ! compgen -G "$wheels/*.whl" >/dev/null; then
        echo "no wheels in $wheels: run scripts/gpu_wheels.sh where the package index is" \
            "reachable and bring the folder along (docs/gpu.md)"
        return 1
    fi
    local venv=$work/venv site
    "$base_python" -m venv --system-site-packages --without-pip "$venv" || return 1
    site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    # The interpreter given may itself be a virtual environment (python3 on the H200 machines
    # is one): --system-site-packages then reaches the Python under it, not that environment's
    # packages (PyTorch). A .pth file adds its site folders (their own .pth files included)
    # after the wheels installed here.
    "$base_python" -c 'import sys
for p in sys.path:
    if p.endswith(("site-packages", "dist-packages")):
        print(f"import site; site.addsitedir({p!r})")' >"$site/machine-packages.pth"
    "$base_python" -m pip install --quiet --disable-pip-version-check --no-index --no-deps \
        --no-compile --target "$site" "$wheels"/*.whl || return 1
    "$venv/bin/python" -c 'import torch, transformers; print("torch", torch.__version__,
        "from", torch.__file__); print("transformers", transformers.__version__)'
}
if ((install)); then
    export -f install_wheels
    export wheels work base_python
    if step install "$budget_install" bash -c install_wheels; then
        python=$work/venv/bin/python
    fi
else
    skip install "--no-install: $base_python as it is"
fi

# Everything the worker, the engine and the benchmarks import, with the versions that ran, and
# whether the benchmarks take --dtype yet (another change adds it): from their --help.
step imports "$budget_imports" "$python" - "$work/versions.json" "$work/dtypes.json" <<'EOF'
import contextlib, importlib.metadata as md, io, json, sys

import chatterbox.tts_turbo, librosa, perth, s3tokenizer, soundfile, torch  # noqa: F401
import server.__main__, server.app  # noqa: F401
from scripts import bench_concurrency, bench_streaming
from server.engine.watermark import new_watermarker

new_watermarker()  # None without pkg_resources: Perth would silently mark nothing
names = ("torch", "torchaudio", "transformers", "tokenizers", "safetensors", "numpy", "scipy",
         "numba", "librosa", "diffusers", "chatterbox-tts", "resemble-perth", "setuptools")
versions = {}
for name in names:
    try:
        versions[name] = md.version(name)
    except md.PackageNotFoundError:
        versions[name] = None
print(json.dumps(versions, indent=2))
json.dump(versions, open(sys.argv[1], "w"))


def dtypes(main):
    """The bench's words for bf16 and fp32, or None while it has no --dtype."""
    text = io.StringIO()
    with contextlib.redirect_stdout(text), contextlib.suppress(SystemExit):
        main(["--help"])
    text = text.getvalue()
    if "--dtype" not in text:
        return None
    bf16 = "bf16" if "bf16" in text and "bfloat16" not in text else "bfloat16"
    fp32 = "fp32" if "fp32" in text and "float32" not in text else "float32"
    return {"bf16": bf16, "fp32": fp32}


found = {"streaming": dtypes(bench_streaming.main), "concurrency": dtypes(bench_concurrency.main)}
print("--dtype:", found)
json.dump(found, open(sys.argv[2], "w"))
EOF

# --- the checkpoint ----------------------------------------------------------------------------
step checkpoint "$budget_checkpoint" "$python" scripts/make_random_checkpoint.py --variant turbo \
    --out "$CHATTERBOX_TEST_CACHE/checkpoints/turbo"

# --- the benchmarks to come: bf16 and fp32 where the scripts take --dtype, else their default --
# One line each: BENCH DTYPE WORD, WORD being the bench's spelling of the dtype, "default" (no
# --dtype: its float32) or "-" (not run: no bf16 without --dtype).
mapfile -t bench_runs < <("$base_python" - "$work/dtypes.json" <<'EOF'
import json, sys
try:
    found = json.load(open(sys.argv[1]))
except (OSError, ValueError):
    found = {}
for dtype in ("bf16", "fp32"):
    for bench in ("streaming", "concurrency"):
        words = found.get(bench)
        print(bench, dtype, words[dtype] if words else ("default" if dtype == "fp32" else "-"))
EOF
)
# Quick: the benchmarks in bf16 only; fp32 takes the same steps with another --dtype value.
quick_skips() { ((quick)) && [[ $1 == fp32 && $2 != default ]]; }
reserve=0
for run in "${bench_runs[@]}"; do
    read -r _ dtype word <<<"$run"
    quick_skips "$dtype" "$word" && continue
    case $run in
        *" -") ;;
        streaming*) reserve=$((reserve + streaming_budget)) ;;
        *) reserve=$((reserve + concurrency_budget)) ;;
    esac
done

# --- the model tests on the device -------------------------------------------------------------
# They get what the benchmarks' budgets leave, at most tests_max in all: Turbo's first.
tests_started=$(elapsed)
tests_budget() {
    local budget=$((deadline - $(elapsed) - reserve)) spent=$(($(elapsed) - tests_started))
    ((budget > tests_max - spent)) && budget=$((tests_max - spent))
    ((budget > $1)) && budget=$1
    echo "$budget"
}
# The start script in test_start_script runs its processes with $PYTHON.
export PYTHON=$python CHATTERBOX_TEST_DEVICE=$device
pytest=("$python" -m pytest -p no:cacheprovider -q -rfE --ignore=tests/scripts/test_gpu_check.py)
step tests "$(tests_budget "$turbo_tests_max")" \
    "${pytest[@]}" --junitxml="$out/pytest.xml" "${tests[@]}"
if ((${#other_tests[@]})); then
    step tests_other_models "$(tests_budget "$tests_max")" \
        "${pytest[@]}" --junitxml="$out/pytest_other_models.xml" "${other_tests[@]}"
else
    skip tests_other_models "--quick: Turbo's tests only"
fi

# --- the benchmarks ----------------------------------------------------------------------------
for run in "${bench_runs[@]}"; do
    read -r bench dtype word <<<"$run"
    name=bench_${bench}_$dtype
    if [[ $word == - ]]; then
        skip "$name" "scripts/bench_$bench.py takes no --dtype (yet), or the imports failed"
        continue
    fi
    if quick_skips "$dtype" "$word"; then
        skip "$name" "--quick: bf16 only (fp32 runs the same steps)"
        continue
    fi
    flags=(--device "$device" --json "$work/$name.json")
    [[ $word != default ]] && flags+=(--dtype "$word")
    if [[ $bench == streaming ]]; then
        step "$name" "$streaming_budget" "$python" scripts/bench_streaming.py "${flags[@]}" \
            "${streaming_args[@]}"
    else
        step "$name" "$concurrency_budget" "$python" scripts/bench_concurrency.py "${flags[@]}" \
            "${concurrency_args[@]}"
    fi
done

summary
echo "gpu_check: done in $(elapsed)s; results in $out/gpu_check.json, the log in $log"
# Exit 1 when a step failed or ran out of time (a step skipped for want of --dtype is fine).
! cut -f2 "$work/steps.tsv" | grep -qx -e failed -e timeout
