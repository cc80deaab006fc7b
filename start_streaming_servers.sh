#!/usr/bin/env bash
# Start a streaming deployment on this machine: one worker per GPU (or one CPU worker when
# there is none) and the load balancer in front of them, wait until all are healthy, and keep
# them running (`python -m deployment`, deployment/supervisor.py):
#
#   ./start_streaming_servers.sh [--random-weights | --ckpt-dir DIR] [--model turbo|original]
#       [--workers N] [--worker-port 6093] [--port 6095] [--host 0.0.0.0]
#       [--max-batch N] [--max-streams N] [--voices-dir voices] [--log-dir logs]
#       [--ready-timeout 900] [--drain-timeout 30] [--restart-limit 5] [--restart-delay 1]
#       [-- extra worker flags]
#
# Worker N listens on 127.0.0.1:(worker-port + N) on GPU N (the N-th of a CUDA_VISIBLE_DEVICES
# list the caller set) and logs to
# logs/gpuN_streaming_server.log (logs/cpuN_... on CPU); the balancer listens on --host:--port
# and logs to logs/loadbalancer_streaming.log. A process that dies is restarted (given up on
# after repeated fast failures); SIGHUP restarts the workers one at a time without failing a
# request; Ctrl-C or SIGTERM stops everything. --help says more.
set -euo pipefail
cd "$(dirname "$0")"

PY="${PYTHON:-}"
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
    [[ "${args[$i]}" == "--" ]] && break
    if [[ "${args[$i]}" == "--python" ]] && ((i + 1 < ${#args[@]})); then PY="${args[$((i + 1))]}"; fi
done
if [[ -z "$PY" ]]; then
    if [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
fi
# exec: the supervisor keeps this process id, so signals sent to the script reach it.
exec "$PY" -m deployment "$@"
