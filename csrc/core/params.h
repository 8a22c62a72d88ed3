// The params struct of each op: everything a kernel needs besides the pointers.
// Shared by the CPU and CUDA kernels; the bindings fill them after validation,
// so kernels trust them. Every size, stride and offset is int64_t.
#pragma once
#include <cstdint>

namespace dk {

// C (m x n) = alpha * op(A) (m x k) * op(B) (k x n) + beta * C, all row-major.
// op(A) = A, stored (m x k), or A^T when trans_a, stored (k x m); likewise B.
// lda/ldb/ldc are row strides of the stored matrices, in elements.
// beta == 0 means C is write-only (NaNs already in C do not propagate), as BLAS.
struct GemmParams {
  int64_t m = 0, n = 0, k = 0;
  int64_t lda = 0, ldb = 0, ldc = 0;
  bool trans_a = false, trans_b = false;
  double alpha = 1.0, beta = 0.0;
};

enum class Activation : int { relu, leaky_relu, elu, sigmoid, tanh, softplus, silu };

// Elementwise activations over n contiguous elements.
// alpha: leaky_relu's negative_slope, elu's alpha, softplus's beta.
// threshold: softplus reverts to the identity where beta * x > threshold.
struct ActivationParams {
  Activation kind = Activation::relu;
  int64_t n = 0;
  double alpha = 0.0;
  double threshold = 20.0;
};

// softmax / log_softmax over the middle axis of a contiguous (outer, dim, inner) view.
struct SoftmaxParams {
  int64_t outer = 0, dim = 0, inner = 0;
  bool log = false;
};

enum class Reduction : int { none, mean, sum };

// Losses over n rows of c values (cross_entropy: c classes, integer labels).
struct LossParams {
  int64_t n = 0, c = 0;
  Reduction reduction = Reduction::mean;
};

// torch.optim.SGD. The momentum buffer starts as a copy of the first gradient
// (first_step), as torch does when the buffer does not exist yet.
struct SgdParams {
  double lr = 0.0, momentum = 0.0, dampening = 0.0, weight_decay = 0.0;
  bool nesterov = false, maximize = false, first_step = false;
};

}  // namespace dk
