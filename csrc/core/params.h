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

// Dropout over n contiguous elements: element i is zeroed with probability p,
// decided by core/random.h's counter-based stream `seed`; survivors are scaled
// by 1 / (1 - p) (0 when p == 1, as torch).
struct DropoutParams {
  int64_t n = 0;
  double p = 0.5;
  uint64_t seed = 0;
};

// Losses over n rows of c values whose per-element formula needs more than
// LossParams: binary_cross_entropy_with_logits (pos_weight over the c columns)
// and multi_margin (torch.nn.MultiMarginLoss: power p_norm 1 or 2, margin).
struct MarginParams {
  int64_t n = 0, c = 0;
  Reduction reduction = Reduction::mean;
  int p_norm = 1;
  double margin = 1.0;
};

// torch.optim.SGD. The momentum buffer starts as a copy of the first gradient
// (first_step), as torch does when the buffer does not exist yet.
struct SgdParams {
  double lr = 0.0, momentum = 0.0, dampening = 0.0, weight_decay = 0.0;
  bool nesterov = false, maximize = false, first_step = false;
};

// The other torch.optim optimizers, one struct each, fields named as torch's
// arguments. `step` is torch's state["step"] after this step's increment (1 on
// the first step): the kernels turn it into bias corrections once per call.
struct AdagradParams {
  double lr = 0.0, lr_decay = 0.0, weight_decay = 0.0, eps = 0.0;
  int64_t step = 1;
  bool maximize = false;
};

struct AdadeltaParams {
  double lr = 0.0, rho = 0.0, eps = 0.0, weight_decay = 0.0;
  bool maximize = false;
};

struct RmspropParams {
  double lr = 0.0, alpha = 0.0, eps = 0.0, weight_decay = 0.0, momentum = 0.0;
  bool centered = false, maximize = false;
};

// Adam, AdamW (decoupled_weight_decay) and AMSGrad.
struct AdamParams {
  double lr = 0.0, beta1 = 0.0, beta2 = 0.0, eps = 0.0, weight_decay = 0.0;
  int64_t step = 1;
  bool amsgrad = false, decoupled_weight_decay = false, maximize = false;
};

struct AdamaxParams {
  double lr = 0.0, beta1 = 0.0, beta2 = 0.0, eps = 0.0, weight_decay = 0.0;
  int64_t step = 1;
  bool maximize = false;
};

// mu_product: torch's state["mu_product"] after this step's update, the product
// of the momentum coefficients mu_1 ... mu_step (see dk::nadam_mu).
struct NadamParams {
  double lr = 0.0, beta1 = 0.0, beta2 = 0.0, eps = 0.0, weight_decay = 0.0;
  double momentum_decay = 0.0, mu_product = 1.0;
  int64_t step = 1;
  bool decoupled_weight_decay = false, maximize = false;
};

// The norm of all the gradients of a call seen as one vector, as
// torch.nn.utils.clip_grad_norm_: norm_type is p (> 0), 0 (count of non-zeros),
// +inf (max |g|) or -inf (min |g|). When max_norm >= 0 the gradients are then
// scaled by min(1, max_norm / (norm + 1e-6)), unless the norm is not finite and
// scale_nonfinite is false (the caller raises instead).
struct ClipParams {
  double norm_type = 2.0, max_norm = -1.0;
  bool scale_nonfinite = true;
};

// 2-D convolution, NCHW, as torch's conv2d (a cross-correlation): x (n, c, h, w),
// w (k, c / groups, r, s), y (n, k, oh, ow). Output channel kk of group
// g = kk / (k / groups) sees input channels [g * c / groups, (g + 1) * c / groups);
// y[.][kk][i][j] = sum w[kk][ci][a][b] * x[.][ci][i * sh - ph + a * dh][j * sw - pw + b * dw]
// with positions outside x read as 0. ph and pw are the top and left padding;
// the bottom and right padding only show in oh and ow (so torch's asymmetric
// "same" padding for even kernels is ph, pw and a larger oh, ow). Kernels also
// accept ph, pw < 0 (a crop), which the backward uses internally.
struct ConvParams {
  int64_t n = 0, c = 0, h = 0, w = 0;
  int64_t k = 0, r = 1, s = 1, groups = 1;
  int64_t oh = 0, ow = 0;
  int64_t sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
};

// 2-D pooling over `planes` independent planes (N * C of an NCHW array): input
// (planes, ih, iw) and output (planes, oh, ow), both contiguous. Output (oh, ow)
// looks at input rows oh * sh - ph + i * dh (i < kh) and columns ow * sw - pw +
// j * dw (j < kw); positions outside the input are padding (never read).
// avg_pool2d has dh = dw = 1 and divides by the window's size clipped to the padded
// input (count_include_pad) or by the number of input elements it covers.
struct PoolParams {
  int64_t planes = 0, ih = 0, iw = 0, oh = 0, ow = 0;
  int64_t kh = 1, kw = 1, sh = 1, sw = 1, ph = 0, pw = 0, dh = 1, dw = 1;
  bool count_include_pad = true;
};

// Batch norm over x viewed as (n, c, inner): per-channel statistics over the
// n * inner values of each channel. training: batch statistics, and the running
// ones (when given) become (1 - momentum) * running + momentum * batch, with the
// unbiased batch variance; otherwise the running statistics normalise.
struct BatchNormParams {
  int64_t n = 0, c = 0, inner = 0;
  double eps = 1e-5, momentum = 0.1;
  bool training = true;
};

// LSTM and GRU over a sequence of `steps` time steps (a cell is one step) of
// `batch` rows: x (steps, batch, input), hidden and cell states (batch, hidden).
// Gates are stacked as PyTorch's: LSTM (i, f, g, o), GRU (r, z, n), so w_ih is
// (gates * hidden, input), w_hh (gates * hidden, hidden), biases (gates * hidden).
struct RnnParams {
  int64_t steps = 1, batch = 0, input = 0, hidden = 0;
  // Backward: whether the caller wants dh0 (a caller that passed no initial
  // state does not, as torch's autograd does not); false skips the last
  // product, dh0 = dA_0 w_hh, and leaves dh0 undefined (dc0 still comes out).
  bool state_grads = true;
};

// The weights of one LSTM/GRU layer as PyTorch's (shapes in cpu/rnn.h); a bias may be nullptr.
template <class T>
struct RnnWeights {
  const T* w_ih = nullptr;
  const T* w_hh = nullptr;
  const T* b_ih = nullptr;
  const T* b_hh = nullptr;
};

// Their gradients, overwritten by backward; a bias gradient nullptr is not computed.
template <class T>
struct RnnGrads {
  T* dw_ih = nullptr;
  T* dw_hh = nullptr;
  T* db_ih = nullptr;
  T* db_hh = nullptr;
};

}  // namespace dk
