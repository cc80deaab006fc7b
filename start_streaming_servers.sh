#!/usr/bin/env bash
# Start a streaming deployment on this machine: one worker per GPU (or one CPU worker when
# there is none) and the load balancer in front of them, then wait until all are healthy.
# Ctrl-C or SIGTERM stops every process it started.
#
#   ./start_streaming_servers.sh [--random-weights | --ckpt-dir DIR] [--model turbo|original]
#       [--workers N] [--worker-port 6093] [--port 6095] [--host 0.0.0.0]
#       [--max-batch N] [--max-streams N] [--voices-dir voices] [--log-dir logs]
#       [--ready-timeout 900]
#       [-- extra worker flags]
#
# Worker N listens on 127.0.0.1:(worker-port + N) with CUDA_VISIBLE_DEVICES=N and logs to
# logs/gpuN_streaming_server.log (logs/cpuN_... on CPU); the balancer listens on --host:--port
# and logs to logs/loadbalancer_streaming.log. BALANCER_* environment variables configure the
# balancer further (see `python -m balancer --help`).
set -euo pipefail
cd "$(dirname "$0")"

WORKERS=""
MODEL="turbo"
CKPT_DIR=""
RANDOM_WEIGHTS=0
WORKER_PORT=6093
WORKER_HOST="127.0.0.1"
PORT=6095
HOST="0.0.0.0"
MAX_STREAMS=""
MAX_BATCH=""
VOICES_DIR="voices"
LOG_DIR="logs"
READY_TIMEOUT=900 # first run on a new machine may download weights
STOP_GRACE=10     # seconds children get to exit on SIGTERM before SIGKILL
PY="${PYTHON:-}"
EXTRA=()

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; }

while (($#)); do
    case "$1" in
    --workers) WORKERS="$2"; shift 2 ;;
    --model) MODEL="$2"; shift 2 ;;
    --ckpt-dir) CKPT_DIR="$2"; shift 2 ;;
    --random-weights) RANDOM_WEIGHTS=1; shift ;;
    --worker-port) WORKER_PORT="$2"; shift 2 ;;
    --worker-host) WORKER_HOST="$2"; shift 2 ;;
    --port) PORT="$2"; shift 2 ;;
    --host) HOST="$2"; shift 2 ;;
    --max-streams) MAX_STREAMS="$2"; shift 2 ;;
    --max-batch) MAX_BATCH="$2"; shift 2 ;;
    --voices-dir) VOICES_DIR="$2"; shift 2 ;;
    --log-dir) LOG_DIR="$2"; shift 2 ;;
    --ready-timeout) READY_TIMEOUT="$2"; shift 2 ;;
    --python) PY="$2"; shift 2 ;;
    --) shift; EXTRA=("$@"); break ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option: $1 (see --help)" >&2; exit 2 ;;
    esac
done

if [[ -z "$PY" ]]; then
    if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
if ((RANDOM_WEIGHTS)) && [[ -n "$CKPT_DIR" ]]; then
    echo "--random-weights and --ckpt-dir exclude each other" >&2
    exit 2
fi

detect_gpus() {
    if command -v nvidia-smi >/dev/null 2>&1; then
        local count
        count=$(nvidia-smi --query-gpu=index --format=csv,noheader 2>/dev/null | grep -c '[0-9]' || true)
        echo "${count:-0}"
    else
        echo 0
    fi
}

GPUS=$(detect_gpus)
if [[ -z "$WORKERS" ]]; then
    WORKERS=$((GPUS > 0 ? GPUS : 1))
fi
if ! [[ "$WORKERS" =~ ^[1-9][0-9]*$ ]]; then
    echo "--workers must be a positive number" >&2
    exit 2
fi

noise_banner() {
    echo "################################################################################"
    echo "#  RANDOM WEIGHTS: every voice is NOISE. This deployment is for smoke tests only. #"
    echo "################################################################################"
}

PIDS=()
NAMES=()
LOGS=()
stopping=0
# shellcheck disable=SC2317 # called from the traps
stop_all() {
    ((stopping)) && return
    stopping=1
    ((${#PIDS[@]})) || return 0
    echo "stopping ${#PIDS[@]} process(es)..."
    kill -TERM "${PIDS[@]}" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_GRACE))
    while ((SECONDS < deadline)); do
        local alive=0 pid
        for pid in "${PIDS[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then alive=1; fi
        done
        ((alive)) || break
        sleep 0.2
    done
    kill -KILL "${PIDS[@]}" 2>/dev/null || true
    wait "${PIDS[@]}" 2>/dev/null || true
    echo "stopped."
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap 'stop_all' EXIT

mkdir -p "$LOG_DIR" "$VOICES_DIR"

if ((RANDOM_WEIGHTS)); then
    noise_banner
    # Build the checkpoint once here (minutes, the first time), so N workers do not all build
    # it at once; each worker then finds it in the cache.
    echo "preparing the random $MODEL checkpoint (log: $LOG_DIR/random_checkpoint.log)..."
    ckpt=$("$PY" -c '
import sys
from server.engine.__main__ import random_checkpoint
from server.engine.loading import ModelVariant
print(random_checkpoint(ModelVariant(sys.argv[1])))
' "$MODEL" 2>>"$LOG_DIR/random_checkpoint.log")
    echo "random $MODEL checkpoint: $ckpt"
fi

WORKER_URLS=()
for ((i = 0; i < WORKERS; i++)); do
    port=$((WORKER_PORT + i))
    args=(-m server --host "$WORKER_HOST" --port "$port" --model "$MODEL" --voices-dir "$VOICES_DIR")
    [[ -n "$CKPT_DIR" ]] && args+=(--ckpt-dir "$CKPT_DIR")
    ((RANDOM_WEIGHTS)) && args+=(--random-weights)
    [[ -n "$MAX_STREAMS" ]] && args+=(--max-streams "$MAX_STREAMS")
    [[ -n "$MAX_BATCH" ]] && args+=(--max-batch "$MAX_BATCH")
    if ((GPUS > 0)); then
        gpu=$((i % GPUS))
        name="gpu$i"
        CUDA_VISIBLE_DEVICES="$gpu" "$PY" "${args[@]}" --device cuda:0 "${EXTRA[@]}" \
            >"$LOG_DIR/${name}_streaming_server.log" 2>&1 &
    else
        name="cpu$i"
        CUDA_VISIBLE_DEVICES="" "$PY" "${args[@]}" --device cpu "${EXTRA[@]}" \
            >"$LOG_DIR/${name}_streaming_server.log" 2>&1 &
    fi
    PIDS+=($!)
    NAMES+=("$name worker")
    LOGS+=("$LOG_DIR/${name}_streaming_server.log")
    WORKER_URLS+=("http://$WORKER_HOST:$port")
    echo "started $name worker on $WORKER_HOST:$port (pid $!)"
done

workers_csv=$(IFS=,; echo "${WORKER_URLS[*]}")
"$PY" -m balancer --workers "$workers_csv" --host "$HOST" --port "$PORT" \
    >"$LOG_DIR/loadbalancer_streaming.log" 2>&1 &
PIDS+=($!)
NAMES+=("balancer")
LOGS+=("$LOG_DIR/loadbalancer_streaming.log")
echo "started balancer on $HOST:$PORT (pid $!)"

local_host="$HOST"
[[ "$HOST" == "0.0.0.0" || "$HOST" == "::" ]] && local_host="localhost"
BALANCER_URL="http://$local_host:$PORT"

# The balancer's /stats says how many workers are ready and whether one failed to load.
probe() {
    "$PY" - "$BALANCER_URL" "$WORKERS" <<'EOF' 2>/dev/null || echo "waiting for the balancer"
import json, sys, urllib.request
url, expected = sys.argv[1], int(sys.argv[2])
with urllib.request.urlopen(f"{url}/stats?format=json", timeout=2) as r:
    stats = json.load(r)
failed = [w["url"] for w in stats["workers"] if w["health"] == "failed"]
ready = stats["balancer"]["workers_in_rotation"]
if failed:
    print("failed: " + ", ".join(failed))
elif ready == expected:
    print("ready")
else:
    states = ", ".join(f'{w["url"]} {w["health"]}' for w in stats["workers"])
    print(f"waiting: {ready}/{expected} ready ({states})")
EOF
}

echo "waiting for every worker to load its model (up to ${READY_TIMEOUT}s)..."
deadline=$((SECONDS + READY_TIMEOUT))
last=""
while :; do
    for ((i = 0; i < ${#PIDS[@]}; i++)); do
        if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
            echo "the ${NAMES[$i]} exited during startup; the end of ${LOGS[$i]}:" >&2
            tail -n 20 "${LOGS[$i]}" >&2 || true
            exit 1
        fi
    done
    state=$(probe)
    if [[ "$state" == ready ]]; then break; fi
    if [[ "$state" == failed* ]]; then
        echo "a worker failed to load its model ($state); see $LOG_DIR/" >&2
        exit 1
    fi
    if [[ "$state" != "$last" ]]; then echo "  $state"; last="$state"; fi
    if ((SECONDS > deadline)); then
        echo "not ready after ${READY_TIMEOUT}s ($state); see $LOG_DIR/" >&2
        exit 1
    fi
    sleep 1
done

echo
echo "Chatterbox streaming is up:"
echo "  balancer   $BALANCER_URL   (dashboard $BALANCER_URL/stats, metrics $BALANCER_URL/metrics)"
echo "             log ${LOGS[-1]}"
for ((i = 0; i < WORKERS; i++)); do
    echo "  worker $i   ${WORKER_URLS[$i]}   ${NAMES[$i]}, log ${LOGS[$i]}"
done
echo "  stream:    curl -N -X POST $BALANCER_URL/synthesize-stream -F 'text=Hello there.'"
((RANDOM_WEIGHTS)) && noise_banner
echo "Ctrl-C stops everything."

# Until a signal arrives, or a child dies on its own (then stop the rest).
set +e
wait -n "${PIDS[@]}"
status=$?
echo "a process exited (status $status); stopping the deployment" >&2
exit 1
