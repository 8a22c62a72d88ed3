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
# The subset (SUBSET below): every op family's tests (tests/test_<family>.py, and
# the nn modules and optimizers over them), the fuzzer, the crash barrage (its
# child processes inherit the runtimes), threads, determinism, gradcheck and the
# build facts, minus the tests marked slow (large shapes, long loops). Left out:
# whole training runs (test_train, test_models, test_rnn_demos, test_cli: long
# loops over the same kernels), the pure-Python data pipeline and schedules
# (test_data, test_lr_scheduler), test_memory.py (ASan's quarantine keeps freed
# memory resident, so its RSS checks are meaningless here; LeakSanitizer does that
# job), and PyTorch (hidden with DEEPKERN_NO_TORCH=1: torch under the preloaded
# runtime reports its own allocations). Target: < 15 min on 2 cores, build included.
set -euo pipefail
cd "$(dirname "$0")/.."
stage_start=$(date +%s)
trap 'echo "sanitizer stage: $(( $(date +%s) - stage_start ))s"' EXIT
root=$(pwd)
build=build/sanitize
mkdir -p "$build"
# The interpreter itself, not a wrapper script (pyenv shims are bash scripts: the
# preloaded runtime would report bash's leaks).
py=$("${PYTHON:-python3}" -c 'import sys; print(sys.executable)')

# Only the kernel variant the tests run (the best this CPU has, by cpu_features.cpp's
# rule) and generic (the fallback, always built): each variant is a full copy of the
# kernels, and instrumented copies are the bulk of the build time.
cpu_flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | cut -d: -f2) "
has() { local f; for f; do [[ $cpu_flags == *" $f "* ]] || return 1; done; }
if has avx512f avx512bw avx512vl avx512dq; then isa=avx512; elif has avx2 fma; then isa=avx2; else isa=generic; fi

echo "== configure and build ($build, DEEPKERN_SANITIZE=address,undefined, CUDA off, ISA variants: generic $isa)"
SECONDS=0
generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
cmake -S . -B "$build" "${generator[@]}" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DDEEPKERN_SANITIZE=address,undefined -DDEEPKERN_ISAS="generic;$isa" -DDEEPKERN_CUDA=OFF -DDEEPKERN_BENCH=OFF \
  -DPython_EXECUTABLE="$py" \
  -Dpybind11_DIR="$("$py" -c 'import pybind11; print(pybind11.get_cmake_dir())')" > "$build.cfg.log" 2>&1 \
  || { cat "$build.cfg.log"; exit 1; }
cmake --build "$build" -j "$(nproc)"

echo "== assemble an importable package ($build/py)"
rm -rf "$build/py" && mkdir -p "$build/py/deepkern"
# The Python sources, and this build's _C (not one a development build left there).
for f in "$root"/python/deepkern/*; do
  case $(basename "$f") in _C.*) continue ;; esac
  ln -s "$f" "$build/py/deepkern/"
done
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

SUBSET=(tests/test_core.py tests/test_gemm.py tests/test_activation.py tests/test_loss.py
        tests/test_optim_kernels.py tests/test_pool.py tests/test_batchnorm.py tests/test_conv.py
        tests/test_rnn.py tests/test_dropout.py tests/test_nn.py tests/test_optim.py tests/test_gradcheck.py
        tests/test_fuzz.py tests/test_crash.py tests/test_threads.py tests/test_determinism.py)

echo "== tests under ASan + UBSan (build and import check: ${SECONDS}s)"
SECONDS=0
# --capture=sys: pytest captures Python's sys.stderr only, so a sanitizer report
# (written to file descriptor 2 by the runtime) reaches the log even when it
# ends the process. pytest-benchmark (where installed) runs git for its machine
# info: git would run with the runtimes preloaded and report git's own leaks.
# --durations: the slowest tests are listed, to keep the stage inside its budget.
sanitized -m pytest -q -p no:cacheprovider -p no:benchmark --capture=sys -m "not slow" --durations=15 \
  "${SUBSET[@]}" "$@"
echo "tests ran in ${SECONDS}s"
