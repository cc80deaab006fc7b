#!/usr/bin/env bash
# Download the wheels that scripts/gpu_check.sh installs on a GPU machine without network:
# what our code and chatterbox-tts import at run time, at the versions uv.lock pins, less what
# such a machine already has (PyTorch and CUDA, numpy, scipy, numba, ...: docs/gpu.md).
# Run it here, where the package index is reachable; the folder then travels with the checkout.
#
#   scripts/gpu_wheels.sh [--python-version 3.12] [--dest gpu-wheels]
#
# The version is the GPU machine's Python (3.12 on the H200 machines lent to this project).
# Every wheel is fetched without its dependencies (each one it needs is named below) for
# CPython on manylinux x86_64; the folder is emptied first, so it holds one version of each.
set -euo pipefail
cd "$(dirname "$0")/.."

python_version=3.12
dest=gpu-wheels
while (($#)); do
    case "$1" in
        --python-version) python_version="$2"; shift 2 ;;
        --dest) dest="$2"; shift 2 ;;
        -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_wheels.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done

# What the worker, the engine, the benchmarks and the model tests import, found by running
# them (server, a Turbo stream and a voice, scripts/bench_*.py, tests/engine) and listing the
# distributions of every module loaded. Left out: what the GPU machine has (torch, torchaudio,
# numpy, scipy, numba, llvmlite, scikit-learn, joblib, onnx, protobuf, huggingface-hub, httpx,
# anyio, h11, einops, pyyaml, regex, requests, tqdm, jinja2, pillow, pytest, ...).
PACKAGES=(
    # The model.
    chatterbox-tts conformer diffusers omegaconf s3tokenizer
    # Pinned by us and chatterbox; the machine has other versions (transformers 5.2.0 wants
    # tokenizers <= 0.23.0).
    transformers tokenizers safetensors
    # Watermarking: resemble-perth needs pkg_resources, which setuptools 81 removed.
    resemble-perth setuptools
    # Audio: voice prompts (loudness, resampling) and decoding.
    librosa audioread decorator pooch platformdirs soundfile cffi pycparser soxr pyloudnorm
    # The worker's HTTP side.
    starlette sse-starlette uvicorn python-multipart websockets prometheus-client
    # The multilingual model's Chinese front-end, which its model tests use. Not pykakasi
    # (Japanese, 2.5 MB with its own dependencies, over the 60 MiB budget): its tests are text
    # only and skip the GPU run, and a worker there would list Japanese as unavailable.
    spacy-pkuseg srsly catalogue
)

python=.venv/bin/python
[[ -x "$python" ]] || python=python3
# name==version for each package, from uv.lock: the versions the tests pass with here.
mapfile -t pins < <("$python" - "${PACKAGES[@]}" <<'EOF'
import sys, tomllib

locked = {p["name"]: p["version"] for p in tomllib.load(open("uv.lock", "rb"))["package"]}
missing = [name for name in sys.argv[1:] if name not in locked]
if missing:
    sys.exit(f"gpu_wheels.sh: not in uv.lock: {', '.join(missing)}")
print("\n".join(f"{name}=={locked[name]}" for name in sys.argv[1:]))
EOF
)

if [[ -n "${PIP:-}" ]]; then
    read -r -a pip <<<"$PIP"
elif python3 -m pip --version >/dev/null 2>&1; then
    pip=(python3 -m pip)
else
    pip=(uvx pip)
fi

abi="cp${python_version/./}"
platforms=()
# pip matches a manylinux tag exactly: name every glibc level a wheel of these may carry.
for glibc in 17 24 27 28 31 34 35; do platforms+=(--platform "manylinux_2_${glibc}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)

mkdir -p "$dest"
rm -f "$dest"/*.whl
# (pip's complaints about find-links folders of this machine's pip.conf are left out.)
"${pip[@]}" download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version "$python_version" --implementation cp --abi "$abi" --abi abi3 --abi none \
    "${platforms[@]}" --dest "$dest" "${pins[@]}" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)

printf '%s\n' "python ${python_version}" "${pins[@]}" >"$dest/MANIFEST.txt"
count=$(find "$dest" -name '*.whl' | wc -l)
size=$(du -cb "$dest"/*.whl | tail -1 | cut -f1)
echo "$count wheels for CPython $python_version in $dest: $((size / 1024 / 1024)) MiB" \
    "($size bytes)"
if ((count != ${#pins[@]})); then
    echo "gpu_wheels.sh: expected ${#pins[@]} wheels, got $count" >&2
    exit 1
fi
