// CUDA optimizer steps over many tensors in one launch, and the gradient
// utilities (finiteness, clip by norm, clip by value).
//
// Multi-tensor apply (apex's scheme, with 64-bit sizes and offsets: apex's
// 32-bit fields overflowed past 2^31 elements and silently skipped updates):
// the host builds a table of one Entry per tensor (its param, grad and state
// pointers, and its size) and one Chunk per kChunk elements of a tensor (the
// tensor's index and the chunk's first element). The table goes to the device
// in one copy; one launch then covers every tensor, a block per chunk
// (grid-stride over chunks), a thread per element within it, so 200 small
// tensors and one huge one both fill the GPU, with no launch per tensor.
// Each thread calls the per-element update of core/optim_math.h (V = T), the
// formula the CPU kernels run; coefficients that depend on the step count are
// computed once per call on the host, as on the CPU. This file is compiled
// with -fmad=false (CMakeLists.txt): the formulas fuse exactly where torch's
// do (their explicit fma calls), as the CPU build does with fp-contract off.
//
// Table upload: the table is staged in pinned host memory and copied with
// cudaMemcpyAsync on the caller's stream into memory from the stream-ordered
// allocator (cudaMallocAsync, freed with cudaFreeAsync after the last kernel),
// so nothing here waits for the GPU. The pinned buffer is reused by the next
// call, which first waits on an event recorded after this call's copy: the
// buffer is never overwritten while a copy may still read it.
//
// Non-finite rule: with check_finite, a read-only kernel first sets a device
// flag when any gradient is NaN/Inf (every writer stores 1: no atomics), the
// update kernel returns at once when the flag is set, and the host reads the
// flag back after a stream sync to report whether the step happened.
//
// clip_grad_norm: pass 1 reduces each chunk to a float64 partial (a block
// reduction in a fixed order), pass 2 is one block folding the partials in
// chunk order: deterministic, no float atomics. The host reads the norm back,
// decides as the CPU does, and launches the scaling pass only when it scales.
#include "cuda/optim.h"

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <mutex>
#include <vector>

#include "core/optim_math.h"
#include "cuda/launch.h"
#include "cuda/reduce.cuh"

namespace dk::cuda {
namespace {

constexpr int kBlock = 256;
constexpr int64_t kChunk = int64_t(1) << 16;  // elements per block-sized piece of work
constexpr int kSlots = 5;                     // param, grad, up to three state arrays

template <class T>
struct Entry {
  T* p[kSlots];  // p[0] param (or the array of a utility), p[1] grad, p[2..4] states
  int64_t size;
};
struct Chunk {
  int64_t tensor, start;
};
struct Header {
  int nonfinite;  // set by nonfinite_kernel
  int pad;
  double value, nans;  // clip_grad_norm's total
};
struct Partial {
  double value, nans;
};

void check(const char* op, const char* what, cudaError_t err) {
  if (err != cudaSuccess) cuda_fail(op, what, err);
}

// -- host side: the table and its upload ---------------------------------------------

// Pinned staging memory shared by every call (under a mutex: calls release the
// GIL). Never destroyed: no CUDA call may run at process exit.
class Staging {
 public:
  static Staging& get() {
    static Staging* s = new Staging();
    return *s;
  }
  std::mutex mutex;

  // A buffer of at least `bytes`, free to overwrite. Call with the mutex held.
  void* reserve(const char* op, size_t bytes) {
    if (pending_ != nullptr) {
      cudaError_t err = cudaEventSynchronize(pending_);  // the previous copy has read the buffer
      cudaEventDestroy(pending_);
      pending_ = nullptr;
      check(op, "cannot wait for the previous table upload", err);
    }
    if (bytes > capacity_) {
      if (host_ != nullptr) cudaFreeHost(host_);
      host_ = nullptr, capacity_ = 0;
      size_t cap = std::max<size_t>(bytes + bytes / 2, 64 << 10);
      check(op, "cannot allocate pinned host memory for the tensor table",
            cudaHostAlloc(&host_, cap, cudaHostAllocPortable));
      capacity_ = cap;
    }
    return host_;
  }

  // After the copy from the buffer was enqueued on `stream`. Call with the mutex held.
  void uploaded(const char* op, cudaStream_t stream) {
    cudaError_t err = cudaEventCreateWithFlags(&pending_, cudaEventDisableTiming);
    if (err == cudaSuccess) err = cudaEventRecord(pending_, stream);
    if (err != cudaSuccess) {
      if (pending_ != nullptr) cudaEventDestroy(pending_);
      pending_ = nullptr;
      cudaStreamSynchronize(stream);  // without an event, the copy must be over before the buffer is reused
      cuda_fail(op, "cannot record the table upload", err);
    }
  }

 private:
  void* host_ = nullptr;
  size_t capacity_ = 0;
  cudaEvent_t pending_ = nullptr;
};

// The table in device memory, freed (stream-ordered) when it goes out of scope.
template <class T>
struct DeviceTable {
  cudaStream_t stream = nullptr;
  void* base = nullptr;
  Header* header = nullptr;
  const Entry<T>* entries = nullptr;
  const Chunk* chunks = nullptr;
  Partial* partials = nullptr;  // nchunks of them when asked for, not uploaded
  int64_t nchunks = 0;

  DeviceTable() = default;
  DeviceTable(const DeviceTable&) = delete;
  DeviceTable& operator=(const DeviceTable&) = delete;
  ~DeviceTable() {
    if (base != nullptr) cudaFreeAsync(base, stream);
  }
  unsigned grid() const { return static_cast<unsigned>(std::min<int64_t>(std::max<int64_t>(nchunks, 1), 1 << 20)); }
};

constexpr size_t align_up(size_t n) { return (n + 15) / 16 * 16; }

template <class T>
struct HostTable {
  std::vector<Entry<T>> entries;
  std::vector<Chunk> chunks;
  std::vector<const void*> pointers;  // every non-empty array, for the device check

  // An empty tensor contributes nothing (its pointer may be null).
  void add(std::initializer_list<T*> arrays, int64_t size) {
    if (size <= 0) return;
    Entry<T> e{};
    int k = 0;
    for (T* a : arrays) {
      e.p[k++] = a;
      if (a != nullptr) pointers.push_back(a);
    }
    e.size = size;
    const int64_t index = static_cast<int64_t>(entries.size());
    entries.push_back(e);
    for (int64_t s = 0; s < size; s += kChunk) chunks.push_back({index, s});
  }

  // The GPU that holds every array; invalid_argument for host memory or two GPUs.
  int device(const char* op) const {
    int dev = -1;
    for (const void* p : pointers) {
      const int d = device_of(op, {p});
      if (dev >= 0 && d != dev)
        throw std::invalid_argument(std::string("[") + op + "] the arrays are on different GPUs (" +
                                    std::to_string(dev) + " and " + std::to_string(d) + ")");
      dev = d;
    }
    return dev;
  }

  // Uploads header (zeroed), entries and chunks on `stream`; with_partials adds
  // room for one Partial per chunk after them.
  void upload(const char* op, cudaStream_t stream, bool with_partials, DeviceTable<T>& d) const {
    const size_t head = align_up(sizeof(Header));
    const size_t ebytes = align_up(entries.size() * sizeof(Entry<T>));
    const size_t cbytes = align_up(chunks.size() * sizeof(Chunk));
    const size_t bytes = head + ebytes + cbytes;
    const size_t total = bytes + (with_partials ? chunks.size() * sizeof(Partial) : 0);
    d.stream = stream;
    check(op, "cannot allocate device memory for the tensor table", cudaMallocAsync(&d.base, total, stream));
    char* base = static_cast<char*>(d.base);
    d.header = reinterpret_cast<Header*>(base);
    d.entries = reinterpret_cast<const Entry<T>*>(base + head);
    d.chunks = reinterpret_cast<const Chunk*>(base + head + ebytes);
    d.partials = with_partials ? reinterpret_cast<Partial*>(base + bytes) : nullptr;
    d.nchunks = static_cast<int64_t>(chunks.size());

    Staging& s = Staging::get();
    std::lock_guard<std::mutex> lock(s.mutex);
    char* h = static_cast<char*>(s.reserve(op, bytes));
    std::fill(h, h + head, char(0));
    std::copy_n(reinterpret_cast<const char*>(entries.data()), entries.size() * sizeof(Entry<T>), h + head);
    std::copy_n(reinterpret_cast<const char*>(chunks.data()), chunks.size() * sizeof(Chunk), h + head + ebytes);
    check(op, "cannot copy the tensor table to the device",
          cudaMemcpyAsync(d.base, h, bytes, cudaMemcpyHostToDevice, stream));
    s.uploaded(op, stream);
  }
};

// -- kernels -------------------------------------------------------------------------

template <class T, class F>
__device__ __forceinline__ void for_each_element(const Entry<T>* entries, const Chunk* chunks, int64_t nchunks,
                                                 F&& f) {
  for (int64_t c = blockIdx.x; c < nchunks; c += gridDim.x) {
    const Chunk ch = chunks[c];
    // A copy in registers: the updates store through T*, which could alias the
    // table as far as the compiler knows, so a reference would reload it per element.
    const Entry<T> e = entries[ch.tensor];
    const int64_t end = ch.start + kChunk < e.size ? ch.start + kChunk : e.size;
    for (int64_t j = ch.start + threadIdx.x; j < end; j += blockDim.x) f(e, j);
  }
}

// flag = 1 when any element of slot `slot` is NaN or +-Inf.
template <class T>
__global__ void __launch_bounds__(kBlock)
    nonfinite_kernel(const Entry<T>* entries, const Chunk* chunks, int64_t nchunks, int slot, int* flag) {
  bool bad = false;
  for_each_element(entries, chunks, nchunks, [&](const Entry<T>& e, int64_t j) { bad |= !isfinite(e.p[slot][j]); });
  if (bad) *flag = 1;  // every writer stores the same value
}

// op(entry, j) on every element; returns at once when *skip is set.
template <class T, class Op>
__global__ void __launch_bounds__(kBlock)
    apply_kernel(const Entry<T>* entries, const Chunk* chunks, int64_t nchunks, const int* skip, Op op) {
  if (skip != nullptr && *skip != 0) return;  // a non-finite grad: the step writes nothing
  for_each_element(entries, chunks, nchunks, [&](const Entry<T>& e, int64_t j) { op(e, j); });
}

template <class T>
struct SgdOp {
  SgdCoef<T> c;
  bool momentum;
  __device__ void operator()(const Entry<T>& e, int64_t j) const {
    T buf = momentum ? e.p[2][j] : T(0);
    e.p[0][j] = sgd_update<T, T>(e.p[0][j], e.p[1][j], momentum ? &buf : nullptr, c);
    if (momentum) e.p[2][j] = buf;
  }
};
template <class T>
struct AdagradOp {
  AdagradCoef<T> c;
  __device__ void operator()(const Entry<T>& e, int64_t j) const {
    T sum = e.p[2][j];
    e.p[0][j] = adagrad_update<T, T>(e.p[0][j], e.p[1][j], sum, c);
    e.p[2][j] = sum;
  }
};
template <class T>
struct AdadeltaOp {
  AdadeltaCoef<T> c;
  __device__ void operator()(const Entry<T>& e, int64_t j) const {
    T sq = e.p[2][j], acc = e.p[3][j];
    e.p[0][j] = adadelta_update<T, T>(e.p[0][j], e.p[1][j], sq, acc, c);
    e.p[2][j] = sq, e.p[3][j] = acc;
  }
};
template <class T>
struct RmspropOp {
  RmspropCoef<T> c;
  bool centered, momentum;
  __device__ void operator()(const Entry<T>& e, int64_t j) const {
    T sq = e.p[2][j], ga = centered ? e.p[3][j] : T(0), buf = momentum ? e.p[4][j] : T(0);
    e.p[0][j] = rmsprop_update<T, T>(e.p[0][j], e.p[1][j], sq, centered ? &ga : nullptr, momentum ? &buf : nullptr, c);
    e.p[2][j] = sq;
    if (centered) e.p[3][j] = ga;
    if (momentum) e.p[4][j] = buf;
  }
};
template <class T>
struct AdamOp {
  AdamCoef<T> c;
  bool amsgrad;
  __device__ void operator()(const Entry<T>& e, int64_t j) const {
    T m = e.p[2][j], v = e.p[3][j], vmax = amsgrad ? e.p[4][j] : T(0);
    e.p[0][j] = adam_update<T, T>(e.p[0][j], e.p[1][j], m, v, amsgrad ? &vmax : nullptr, c);
    e.p[2][j] = m, e.p[3][j] = v;
    if (amsgrad) e.p[4][j] = vmax;
  }
};
template <class T>
struct AdamaxOp {
  AdamaxCoef<T> c;
  __device__ void operator()(const Entry<T>& e, int64_t j) const {
    T m = e.p[2][j], u = e.p[3][j];
    e.p[0][j] = adamax_update<T, T>(e.p[0][j], e.p[1][j], m, u, c);
    e.p[2][j] = m, e.p[3][j] = u;
  }
};
template <class T>
struct NadamOp {
  NadamCoef<T> c;
  __device__ void operator()(const Entry<T>& e, int64_t j) const {
    T m = e.p[2][j], v = e.p[3][j];
    e.p[0][j] = nadam_update<T, T>(e.p[0][j], e.p[1][j], m, v, c);
    e.p[2][j] = m, e.p[3][j] = v;
  }
};
template <class T>
struct ScaleOp {
  T factor;
  __device__ void operator()(const Entry<T>& e, int64_t j) const { e.p[0][j] = e.p[0][j] * factor; }
};
template <class T>
struct ClampOp {
  T clip;
  // Comparisons are false for NaN: NaN passes through, as on the CPU.
  __device__ void operator()(const Entry<T>& e, int64_t j) const {
    T x = e.p[0][j];
    x = x < -clip ? -clip : x;
    e.p[0][j] = x > clip ? clip : x;
  }
};

// -- norms ---------------------------------------------------------------------------

enum class NormKind { sum_abs, sum_sq, sum_pow, count_nonzero, max_abs, min_abs };

NormKind norm_kind(double p) {
  if (std::isinf(p)) return p > 0 ? NormKind::max_abs : NormKind::min_abs;
  if (p == 0) return NormKind::count_nonzero;
  if (p == 1) return NormKind::sum_abs;
  if (p == 2) return NormKind::sum_sq;
  return NormKind::sum_pow;
}

struct MinOp {
  template <class V>
  __device__ V operator()(V a, V b) const { return b < a ? b : a; }
};

__device__ __forceinline__ double norm_identity(NormKind k) {
  return k == NormKind::min_abs ? static_cast<double>(INFINITY) : 0.0;
}

// Folds |x| into acc; max/min skip NaN and count it in nans instead (torch's
// norm is NaN then); the sums let NaN propagate; count_nonzero counts NaN, as
// the CPU does.
__device__ __forceinline__ void norm_term(NormKind k, double p, double a, double& acc, double& nans) {
  switch (k) {
    case NormKind::sum_abs: acc += a; break;
    case NormKind::sum_sq: acc = fma(a, a, acc); break;
    case NormKind::sum_pow: acc += pow(a, p); break;
    case NormKind::count_nonzero: acc += a <= 0.0 ? 0.0 : 1.0; break;
    case NormKind::max_abs:
      if (a != a) nans += 1.0;
      else acc = a > acc ? a : acc;
      break;
    case NormKind::min_abs:
      if (a != a) nans += 1.0;
      else acc = a < acc ? a : acc;
      break;
  }
}

__device__ __forceinline__ double norm_combine(NormKind k, double v, double* shared) {
  if (k == NormKind::max_abs) return block_reduce(v, MaxOp(), 0.0, shared);
  if (k == NormKind::min_abs) return block_reduce(v, MinOp(), static_cast<double>(INFINITY), shared);
  return block_reduce(v, SumOp(), 0.0, shared);
}

// Pass 1: partials[c] = the fold of chunk c (one block per chunk, fixed order).
template <class T>
__global__ void __launch_bounds__(kBlock) norm_partial_kernel(const Entry<T>* entries, const Chunk* chunks,
                                                              int64_t nchunks, NormKind kind, double p,
                                                              Partial* partials) {
  __shared__ double shared[32];
  for (int64_t c = blockIdx.x; c < nchunks; c += gridDim.x) {
    const Chunk ch = chunks[c];
    const Entry<T> e = entries[ch.tensor];
    const int64_t end = ch.start + kChunk < e.size ? ch.start + kChunk : e.size;
    double acc = norm_identity(kind), nans = 0.0;
    for (int64_t j = ch.start + threadIdx.x; j < end; j += blockDim.x)
      norm_term(kind, p, fabs(static_cast<double>(e.p[0][j])), acc, nans);
    acc = norm_combine(kind, acc, shared);
    nans = block_reduce(nans, SumOp(), 0.0, shared);
    if (threadIdx.x == 0) partials[c] = {acc, nans};
  }
}

// Pass 2: one block folds the partials in chunk order into the header.
__global__ void __launch_bounds__(kBlock)
    norm_final_kernel(const Partial* partials, int64_t nchunks, NormKind kind, Header* header) {
  __shared__ double shared[32];
  double acc = norm_identity(kind), nans = 0.0;
  for (int64_t c = threadIdx.x; c < nchunks; c += blockDim.x) {
    const Partial q = partials[c];
    nans += q.nans;
    if (kind == NormKind::max_abs) acc = q.value > acc ? q.value : acc;
    else if (kind == NormKind::min_abs) acc = q.value < acc ? q.value : acc;
    else acc += q.value;
  }
  acc = norm_combine(kind, acc, shared);
  nans = block_reduce(nans, SumOp(), 0.0, shared);
  if (threadIdx.x == 0) header->value = acc, header->nans = nans;
}

// -- drivers -------------------------------------------------------------------------

// Reads `bytes` from device memory after everything enqueued on the stream.
void read_back(const char* op, void* host, const void* device, size_t bytes, cudaStream_t stream) {
  check(op, "cannot copy a result to the host", cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, stream));
  check(op, "the kernels failed", cudaStreamSynchronize(stream));
}

template <class T>
HostTable<T> step_table(const TensorLists<T>& t) {
  HostTable<T> h;
  h.entries.reserve(static_cast<size_t>(t.count));
  for (int64_t i = 0; i < t.count; ++i) {
    auto state = [&](int k) { return t.state[k] != nullptr ? t.state[k][i] : nullptr; };
    h.add({t.params[i], const_cast<T*>(t.grads[i]), state(0), state(1), state(2)}, t.sizes[i]);
  }
  return h;
}

// The non-finite check (optional), then op over every element, in two launches.
template <class T, class Op>
bool run_step(const char* op, const TensorLists<T>& t, bool check_finite, std::uintptr_t stream, const Op& f) {
  HostTable<T> h = step_table(t);
  if (h.chunks.empty()) return true;
  DeviceGuard guard(op, h.device(op));
  const cudaStream_t s = as_stream(stream);
  DeviceTable<T> d;
  h.upload(op, s, false, d);
  int* flag = check_finite ? &d.header->nonfinite : nullptr;
  if (check_finite) {
    nonfinite_kernel<T><<<d.grid(), kBlock, 0, s>>>(d.entries, d.chunks, d.nchunks, 1, flag);
    check_launch(op);
  }
  apply_kernel<T, Op><<<d.grid(), kBlock, 0, s>>>(d.entries, d.chunks, d.nchunks, flag, f);
  check_launch(op);
  if (!check_finite) return true;
  int bad = 0;
  read_back(op, &bad, flag, sizeof(int), s);
  return bad == 0;
}

// T from the kernel's view; U is T or const T (all_finite only reads).
template <class T, class U>
HostTable<T> list_table(const ArrayLists<U>& a) {
  HostTable<T> h;
  h.entries.reserve(static_cast<size_t>(a.count));
  for (int64_t i = 0; i < a.count; ++i) h.add({const_cast<T*>(a.data[i])}, a.sizes[i]);
  return h;
}

}  // namespace

template <class T>
bool optim_step(const SgdParams& p, const TensorLists<T>& t, bool check_finite, std::uintptr_t stream) {
  const SgdCoef<T> c{T(p.lr), T(p.weight_decay), T(p.momentum), T(1.0 - p.dampening),
                     p.nesterov, p.maximize, p.first_step};
  return run_step("sgd_step", t, check_finite, stream, SgdOp<T>{c, t.state[0] != nullptr});
}
template <class T>
bool optim_step(const AdagradParams& p, const TensorLists<T>& t, bool check_finite, std::uintptr_t stream) {
  return run_step("adagrad_step", t, check_finite, stream, AdagradOp<T>{adagrad_coef<T>(p)});
}
template <class T>
bool optim_step(const AdadeltaParams& p, const TensorLists<T>& t, bool check_finite, std::uintptr_t stream) {
  return run_step("adadelta_step", t, check_finite, stream, AdadeltaOp<T>{adadelta_coef<T>(p)});
}
template <class T>
bool optim_step(const RmspropParams& p, const TensorLists<T>& t, bool check_finite, std::uintptr_t stream) {
  return run_step("rmsprop_step", t, check_finite, stream,
                  RmspropOp<T>{rmsprop_coef<T>(p), t.state[1] != nullptr, t.state[2] != nullptr});
}
template <class T>
bool optim_step(const AdamParams& p, const TensorLists<T>& t, bool check_finite, std::uintptr_t stream) {
  return run_step("adam_step", t, check_finite, stream, AdamOp<T>{adam_coef<T>(p), t.state[2] != nullptr});
}
template <class T>
bool optim_step(const AdamaxParams& p, const TensorLists<T>& t, bool check_finite, std::uintptr_t stream) {
  return run_step("adamax_step", t, check_finite, stream, AdamaxOp<T>{adamax_coef<T>(p)});
}
template <class T>
bool optim_step(const NadamParams& p, const TensorLists<T>& t, bool check_finite, std::uintptr_t stream) {
  return run_step("nadam_step", t, check_finite, stream, NadamOp<T>{nadam_coef<T>(p)});
}

template <class T>
bool all_finite(const ArrayLists<const T>& a, std::uintptr_t stream) {
  const char* op = "all_finite";
  HostTable<T> h = list_table<T>(a);
  if (h.chunks.empty()) return true;
  DeviceGuard guard(op, h.device(op));
  const cudaStream_t s = as_stream(stream);
  DeviceTable<T> d;
  h.upload(op, s, false, d);
  nonfinite_kernel<T><<<d.grid(), kBlock, 0, s>>>(d.entries, d.chunks, d.nchunks, 0, &d.header->nonfinite);
  check_launch(op);
  int bad = 0;
  read_back(op, &bad, &d.header->nonfinite, sizeof(int), s);
  return bad == 0;
}

template <class T>
double clip_grad_norm(const ClipParams& p, const ArrayLists<T>& g, std::uintptr_t stream) {
  const char* op = "clip_grad_norm";
  const NormKind kind = norm_kind(p.norm_type);
  HostTable<T> h = list_table<T>(g);
  double value = kind == NormKind::min_abs ? std::numeric_limits<double>::infinity() : 0.0, nans = 0.0;
  if (h.chunks.empty()) {  // no elements: the fold's identity, as on the CPU
    return kind == NormKind::sum_pow ? std::pow(value, 1.0 / p.norm_type) : value;
  }
  DeviceGuard guard(op, h.device(op));
  const cudaStream_t s = as_stream(stream);
  DeviceTable<T> d;
  h.upload(op, s, true, d);
  norm_partial_kernel<T><<<d.grid(), kBlock, 0, s>>>(d.entries, d.chunks, d.nchunks, kind, p.norm_type, d.partials);
  check_launch(op);
  norm_final_kernel<<<1, kBlock, 0, s>>>(d.partials, d.nchunks, kind, d.header);
  check_launch(op);
  Header result{};
  read_back(op, &result, d.header, sizeof(Header), s);
  value = result.value, nans = result.nans;
  const double norm = nans > 0                    ? std::numeric_limits<double>::quiet_NaN()
                      : kind == NormKind::sum_sq  ? std::sqrt(value)
                      : kind == NormKind::sum_pow ? std::pow(value, 1.0 / p.norm_type)
                                                  : value;
  if (p.max_norm < 0 || (!std::isfinite(norm) && !p.scale_nonfinite)) return norm;
  // torch: clamp(max_norm / (norm + 1e-6), max=1); NaN stays NaN and scales every grad to NaN.
  const double coef = p.max_norm / (norm + 1e-6);
  if (coef >= 1.0) return norm;
  apply_kernel<T, ScaleOp<T>><<<d.grid(), kBlock, 0, s>>>(d.entries, d.chunks, d.nchunks, nullptr,
                                                          ScaleOp<T>{T(coef)});
  check_launch(op);
  return norm;
}

template <class T>
void clip_grad_value(T clip, const ArrayLists<T>& g, std::uintptr_t stream) {
  const char* op = "clip_grad_value";
  HostTable<T> h = list_table<T>(g);
  if (h.chunks.empty()) return;
  DeviceGuard guard(op, h.device(op));
  const cudaStream_t s = as_stream(stream);
  DeviceTable<T> d;
  h.upload(op, s, false, d);
  apply_kernel<T, ClampOp<T>><<<d.grid(), kBlock, 0, s>>>(d.entries, d.chunks, d.nchunks, nullptr, ClampOp<T>{clip});
  check_launch(op);
}

#define DK_INSTANTIATE(T)                                                                          \
  template bool optim_step<T>(const SgdParams&, const TensorLists<T>&, bool, std::uintptr_t);      \
  template bool optim_step<T>(const AdagradParams&, const TensorLists<T>&, bool, std::uintptr_t);  \
  template bool optim_step<T>(const AdadeltaParams&, const TensorLists<T>&, bool, std::uintptr_t); \
  template bool optim_step<T>(const RmspropParams&, const TensorLists<T>&, bool, std::uintptr_t);  \
  template bool optim_step<T>(const AdamParams&, const TensorLists<T>&, bool, std::uintptr_t);     \
  template bool optim_step<T>(const AdamaxParams&, const TensorLists<T>&, bool, std::uintptr_t);   \
  template bool optim_step<T>(const NadamParams&, const TensorLists<T>&, bool, std::uintptr_t);    \
  template bool all_finite<T>(const ArrayLists<const T>&, std::uintptr_t);                         \
  template double clip_grad_norm<T>(const ClipParams&, const ArrayLists<T>&, std::uintptr_t);      \
  template void clip_grad_value<T>(T, const ArrayLists<T>&, std::uintptr_t);
DK_INSTANTIATE(float)
DK_INSTANTIATE(double)
#undef DK_INSTANTIATE

}  // namespace dk::cuda
