#!/usr/bin/env bash
# One pass over everything that needs a GPU: build deepkern with the CUDA kernels,
# run every GPU test, then the GPU benchmarks. Meant for a fresh GPU machine with
# Python 3.12, nvcc and a driver, and pip without internet access: every Python
# package comes from wheels in .whl/ at the repository root.
#
# Before going to the GPU machine, on any machine with internet access (Linux
# x86-64 wheels for Python 3.12; pip resolves and downloads the dependencies too):
#
#   pip download -d .whl --only-binary=:all: --python-version 3.12 \
#       --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
#       pip cupy-cuda13x numpy pytest hypothesis scikit-learn pybind11 cmake ninja
#   # optional, the benchmarks' peer (large; the CUDA 13 build of torch):
#   pip download -d .whl --only-binary=:all: --python-version 3.12 \
#       --platform manylinux_2_28_x86_64 --index-url https://download.pytorch.org/whl/cu130 torch
#
# (cupy-cuda12x instead of cupy-cuda13x where the machine has a CUDA 12 toolkit and driver.)
# Then, on the GPU machine, from the repository root:
#
#   bash bench/gpu_check.sh
#
# Steps: a virtual environment in build/gpu-venv (system site-packages visible, so
# a preinstalled numpy or torch is reused), the packages installed from .whl/ alone,
# cmake + ninja build of the native module with DEEPKERN_CUDA=ON in build/gpu (the
# module symlinked into python/deepkern, as a development build), `deepkern info`,
# pytest -rs over the tests selected by -k "gpu or cuda or device" (GPU tests are
# named test_gpu_* or sit in TestGpu* classes; see tests/helpers.py), and
# `bench/compare.py --device cuda`. Logs go to $OUT when it is set, else to
# bench/results/; the benchmark table to bench/results/gpu.md (and $OUT/gpu.md).
# Exit status: non-zero when the build or any selected test failed.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
LOGS=${OUT:-$ROOT/bench/results}
mkdir -p "$LOGS"
PY=${PYTHON:-python3.12}
"$PY" -c "" 2>/dev/null || PY=python3  # runs, not just found: a version-manager shim may only be found

step() { echo; echo "== $*"; }
{
  step "environment"
  # The toolkit's usual home, when its bin/ is not on the PATH yet.
  [ -x /usr/local/cuda/bin/nvcc ] && export PATH=/usr/local/cuda/bin:$PATH
  # CuPy (14, through cuda-pathfinder) loads the toolkit's libraries (nvrtc, cublas)
  # from CUDA_PATH when no NVIDIA wheel has them and the loader's path does not list
  # the toolkit (an install without an ld.so.conf.d entry): name it when unset.
  [ -z "${CUDA_PATH:-}" ] && [ -d /usr/local/cuda ] && export CUDA_PATH=/usr/local/cuda
  nvidia-smi || echo "nvidia-smi not found"
  command -v nvcc && nvcc --version | tail -n 2 || echo "nvcc not found: the build will fail with DEEPKERN_CUDA=ON"
  "$PY" --version

  step "python packages from .whl/"
  VENV=$ROOT/build/gpu-venv
  # Where ensurepip is missing (Debian/Ubuntu without python3.X-venv), venv fails
  # after creating bin/python: a venv without pip, which would install nothing.
  # Made again --without-pip, it gets pip from the pip wheel in .whl/ (a wheel
  # runs from its zip), else the user site of $PY takes over.
  [ -x "$VENV/bin/python" ] || "$PY" -m venv --system-site-packages "$VENV" \
    || { rm -rf "$VENV"; "$PY" -m venv --system-site-packages --without-pip "$VENV"; } \
    || echo "no venv module: installing into the user site of $PY instead"
  VPY=$VENV/bin/python
  PIPX=()
  if [ -x "$VPY" ] && ! "$VPY" -m pip --version >/dev/null 2>&1; then
    PIPWHL=$(ls .whl/pip-*.whl 2>/dev/null | head -n 1)
    [ -n "$PIPWHL" ] && "$VPY" "$PIPWHL/pip" install -q --no-index --find-links .whl pip
    "$VPY" -m pip --version >/dev/null 2>&1 || { rm -rf "$VENV"; echo "no pip for the venv: using the user site of $PY"; }
  fi
  if [ ! -x "$VPY" ]; then
    VPY=$(command -v "$PY")
    PIPX=(--user)
  fi
  if [ -d .whl ]; then
    # One package at a time: a wheel missing from .whl/ (torch, say) must not stop the others.
    for pkg in numpy pytest hypothesis scikit-learn pybind11 cmake ninja cupy-cuda13x cupy-cuda12x torch; do
      ls .whl | grep -qi "^${pkg//-/_}-\|^${pkg}-" || continue
      "$VPY" -m pip install -q "${PIPX[@]}" --no-index --find-links .whl "$pkg" \
        || "$VPY" -m pip install -q "${PIPX[@]}" --break-system-packages --no-index --find-links .whl "$pkg" \
        || echo "pip: $pkg not installed"
    done
  else
    echo "no .whl/ directory: using the packages already installed"
  fi
  "$VPY" -c "import cupy; print('cupy', cupy.__version__, 'CUDA runtime', cupy.cuda.runtime.runtimeGetVersion())" \
    || echo "CuPy is not importable: the GPU tests will skip"

  step "build (DEEPKERN_CUDA=ON)"
  export PATH=$VENV/bin:$HOME/.local/bin:$PATH
  cmake -S . -B build/gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DDEEPKERN_CUDA=ON \
      -Dpybind11_DIR="$("$VPY" -m pybind11 --cmakedir)" -DPython_EXECUTABLE="$VPY" \
    && cmake --build build/gpu \
    && ln -sf "$ROOT"/build/gpu/_C*.so "$ROOT/python/deepkern/"
  BUILD=$?
  export PYTHONPATH=$ROOT/python
  [ $BUILD -eq 0 ] && "$VPY" -m deepkern info

  step "GPU tests"
  TESTS=1
  if [ $BUILD -eq 0 ]; then
    "$VPY" -m pytest -q -rs tests -k "gpu or cuda or device" -p no:cacheprovider
    TESTS=$?
  fi

  step "GPU benchmarks"
  if [ $BUILD -eq 0 ]; then
    "$VPY" bench/compare.py --device cuda \
      && { [ "$LOGS" = "$ROOT/bench/results" ] || cp bench/results/gpu.md "$LOGS/"; }
  fi
  echo
  echo "build status $BUILD, tests status $TESTS"
  [ $BUILD -eq 0 ] && [ $TESTS -eq 0 ]
} 2>&1 | tee "$LOGS/gpu_check.log"
exit "${PIPESTATUS[0]}"
