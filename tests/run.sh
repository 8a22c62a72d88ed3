#!/usr/bin/env bash
# The test command (README, CI): the kernel tests under each lower instruction
# set first (DEEPKERN_ISA forces the path), then the whole suite with the best
# one the CPU has. Extra arguments go to every pytest run.
set -u
cd "$(dirname "$0")/.."
status=0

run() {
  python -m pytest -q "$@"
  local rc=$?
  if [ $rc -eq 5 ]; then echo "pytest collected no tests: $*"; rc=0; fi
  [ $rc -eq 0 ] || status=$rc
}

best=$(python -c "import deepkern._C as c; print(c.best_isa())")
case $best in avx512) lower="avx2 generic" ;; avx2) lower="generic" ;; *) lower="" ;; esac
for isa in $lower; do
  echo "== kernel tests with DEEPKERN_ISA=$isa"
  DEEPKERN_ISA=$isa run tests/test_gemm.py tests/test_activation.py tests/test_loss.py tests/test_optim.py \
    tests/test_optim_kernels.py tests/test_pool.py tests/test_batchnorm.py tests/test_conv.py tests/test_rnn.py tests/test_dropout.py "$@"
done
echo "== full suite with the best ISA ($best)"
run tests "$@"
exit $status
