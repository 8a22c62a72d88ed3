// Batch norm, forward (training and eval) and backward, over x viewed as
// (n, c, inner): (N, C) inputs have inner = 1, (N, C, L) inner = L,
// (N, C, H, W) inner = H * W. Statistics are per channel, over n * inner values.
#pragma once
#include "core/params.h"
#include "cpu/dispatch.h"

namespace dk::cpu {

template <class T>
struct BatchNormKernels {
  // x, y: (n, c, inner); weight, bias: (c), or nullptr for 1 and 0 (affine=False).
  // p.training: normalise with the batch mean and biased variance, write them to
  //   save_mean and save_invstd = 1 / sqrt(var + eps), and update running_mean and
  //   running_var (both (c), or both nullptr) in place with the unbiased variance.
  //   An empty batch (n * inner == 0) saves zeros and leaves the running statistics.
  // eval: normalise with running_mean / running_var, and save them as mean and
  //   1 / sqrt(running_var + eps) so that the backward takes the same arguments.
  void (*forward)(const BatchNormParams& p, const T* x, const T* weight, const T* bias,
                  T* running_mean, T* running_var, T* y, T* save_mean, T* save_invstd);
  // dx (n, c, inner) from dy and the forward's x, save_mean and save_invstd, with
  // p.training choosing whether the statistics are differentiated too.
  // dweight = sum(dy * xhat) and dbias = sum(dy) per channel, each nullptr when not wanted.
  void (*backward)(const BatchNormParams& p, const T* dy, const T* x, const T* weight,
                   const T* save_mean, const T* save_invstd, T* dx, T* dweight, T* dbias);
};

DK_DECLARE_KERNELS(BatchNormKernels, batchnorm)

}  // namespace dk::cpu
