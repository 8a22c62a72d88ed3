#!/usr/bin/env bash
# The sanitizer stage of CI: builds deepkern._C with AddressSanitizer and
# UndefinedBehaviorSanitizer (CPU only) into build/sanitize, assembles an
# importable package there (no install, no venv), and runs the fast subset of
# the suite under it with the runtimes preloaded and leak detection on. Any
# finding aborts the test process, so it fails the stage.
#
#   bash .ci/sanitize.sh            # from a clean clone: needs cmake, a C++ compiler
#                                   # with libasan/libubsan, and numpy, pybind11,
#                                   # pytest, hypothesis in the python on PATH
#   bash .ci/sanitize.sh -k gemm    # extra arguments go to pytest
#
# The subset: every test file except test_memory.py (ASan's quarantine keeps
# freed memory resident, so RSS checks are meaningless there; it skips itself),
# tests marked slow, and PyTorch (hidden with DEEPKERN_NO_TORCH=1: torch under the
# preloaded runtime reports its own allocations). Target: < 15 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
build=build/sanitize
# The interpreter itself, not a wrapper script (pyenv shims are bash scripts: the
# preloaded runtime would report bash's leaks).
py=$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)')

echo "== configure and build ($build, DEEPKERN_SANITIZE=address,undefined, CUDA off)"
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DDEEPKERN_SANITIZE=address,undefined -DDEEPKERN_CUDA=OFF -DDEEPKERN_BENCH=OFF \
  -DPython_EXECUTABLE="$py" \
  -Dpybind11_DIR="$("$py" -c 'import pybind11; print(pybind11.get_cmake_dir())')" > "$build.cfg.log" 2>&1 \
  || { cat "$build.cfg.log"; exit 1; }
cmake --build "$build" -j "$(nproc)"

echo "== assemble an importable package ($build/py)"
rm -rf "$build/py" && mkdir -p "$build/py/deepkern"
for f in "$root"/python/deepkern/*; do ln -s "$f" "$build/py/deepkern/"; done
ln -s "$(realpath "$build"/_C*.so)" "$build/py/deepkern/"

libasan=$(gcc -print-file-name=libasan.so)
libubsan=$(gcc -print-file-name=libubsan.so)
[ -f "$libasan" ] && [ -f "$libubsan" ] || { echo "libasan/libubsan not found"; exit 1; }

export PYTHONPATH="$root/$build/py"
# allocator_may_return_null: numpy's MemoryError for impossible sizes (the crash
# barrage asks for exabytes) must stay a Python exception, not an ASan abort.
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:allocator_may_return_null=1:detect_odr_violation=0
export LSAN_OPTIONS=suppressions="$root/.ci/lsan.supp":print_suppressions=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
# Python objects from malloc, not from pymalloc's mmap'd arenas, which LeakSanitizer
# does not scan: objects referenced only from arenas would look leaked.
export PYTHONMALLOC=malloc
export DEEPKERN_NO_TORCH=1
# Idle OpenMP workers sleep instead of spinning: the tests start many teams (4
# Python threads each), and LeakSanitizer stops every thread at exit.
export OMP_WAIT_POLICY=PASSIVE
export PYTHONDONTWRITEBYTECODE=1

# Only the interpreter gets the runtimes (children it starts inherit them).
sanitized() { LD_PRELOAD="$libasan $libubsan" "$py" "$@"; }

echo "== import check"
sanitized -c "import deepkern; deepkern.show_config()"

echo "== tests under ASan + UBSan"
# --capture=sys: pytest captures Python's sys.stderr only, so a sanitizer report
# (written to file descriptor 2 by the runtime) reaches the log even when it
# ends the process. pytest-benchmark (where installed) runs git for its machine
# info: git would run with the runtimes preloaded and report git's own leaks.
sanitized -m pytest -q -p no:cacheprovider -p no:benchmark --capture=sys -m "not slow" \
  --ignore=tests/test_memory.py tests "$@"
