// gemm, linear, linear_backward: checks, then the GEMM engine (csrc/cpu/gemm.h).
//
// Read-only matrices are passed to the engine without a copy whenever their
// layout is one it reads: rows with unit stride (a slice's row stride becomes
// lda) or columns with unit stride (a transposed view: the engine reads the
// stored matrix with trans flipped). Anything else (negative or broadcast
// strides, odd steps, a view misaligned for its dtype) is copied to C-contiguous
// memory, and so is an input that shares memory with an output, so that C = A B
// with C aliasing A still computes from the old A, as numpy does. Outputs are
// written in place.
// CUDA arrays (__cuda_array_interface__, C-contiguous) run cuda::gemm on the
// stream of the first input, after the same shape checks (the *_dims functions);
// there an output that overlaps an input is an error rather than a copy.
#include <algorithm>

#include "bindings/common.h"
#include "bindings/cuda_array.h"
#include "cpu/gemm.h"

#ifdef DK_WITH_CUDA
#include "cuda/gemm.h"
#endif

namespace dk::bind {

namespace {

// A 2-D operand (rows x cols) as the engine reads it: `keep` is the array (or
// a copy of it) whose memory holds the matrix row-major with row stride ld
// elements, or its transpose that way (transposed: a column-major view).
struct Matrix {
  py::array keep;
  int64_t rows = 0, cols = 0, ld = 1;
  bool transposed = false;
};

// Bytes [lo, hi) an array's elements span.
std::pair<const char*, const char*> extent(const py::array& a) {
  const char* base = static_cast<const char*>(a.data());
  if (a.size() == 0) return {base, base};
  py::ssize_t lo = 0, hi = 0;
  for (py::ssize_t i = 0; i < a.ndim(); ++i) {
    py::ssize_t reach = (a.shape(i) - 1) * a.strides(i);
    (reach < 0 ? lo : hi) += reach;
  }
  return {base + lo, base + hi + a.itemsize()};
}

bool overlaps(const py::array& a, const py::array& b) {
  auto [alo, ahi] = extent(a);
  auto [blo, bhi] = extent(b);
  return alo < bhi && blo < ahi;
}

py::array contiguous_copy(const py::array& a) {
  return py::array::ensure(a.attr("copy")("C"), py::array::c_style);
}

void check_matrix(const char* op, const char* name, const std::vector<int64_t>& shape) {
  if (shape.size() != 2) value_error(op, std::string(name) + " must be 2-D, got shape " + shape_str(shape));
}

// (m, n, k) of op(a) op(b); ValueError when the inner dimensions differ.
struct Dims {
  int64_t m, n, k;
};
Dims gemm_dims(const char* op, const std::vector<int64_t>& a, const std::vector<int64_t>& b, bool trans_a,
               bool trans_b) {
  const int64_t m = a[trans_a ? 1 : 0], k = a[trans_a ? 0 : 1], kb = b[trans_b ? 1 : 0], n = b[trans_b ? 0 : 1];
  if (k != kb)
    value_error(op, "op(a) is (" + std::to_string(m) + ", " + std::to_string(k) + ") but op(b) is (" +
                        std::to_string(kb) + ", " + std::to_string(n) + "): inner dimensions differ");
  return {m, n, k};
}

// linear's x (rows, in) and w (out, in): (rows, out, in).
Dims linear_dims(const char* op, const std::vector<int64_t>& x, const std::vector<int64_t>& w) {
  if (x[1] != w[1])
    value_error(op, "x has " + std::to_string(x[1]) + " features but w has " + std::to_string(w[1]) +
                        " input features (w is (out_features, in_features))");
  return {x[0], w[0], x[1]};
}

// linear_backward's dy (rows, out), x (rows, in), w (out, in): (rows, out, in).
Dims linear_backward_dims(const char* op, const std::vector<int64_t>& dy, const std::vector<int64_t>& x,
                          const std::vector<int64_t>& w) {
  const int64_t n = dy[0], out = dy[1], in = x[1];
  if (x[0] != n) value_error(op, "dy has " + std::to_string(n) + " rows but x has " + std::to_string(x[0]));
  check_shape(op, "w", w, {out, in});
  return {n, out, in};
}

// `name` checked as a float matrix of `dtype` (nothing is copied yet: shapes
// are checked first, so a mismatch never pays for a copy).
py::array matrix_arg(const char* op, const char* name, py::handle h, DType dtype) {
  py::array a = as_array(op, name, h);
  if (float_dtype(op, name, a) != dtype)
    type_error(op, std::string(name) + " has dtype " + dtype_name(a) + ", expected " +
                       (dtype == DType::f32 ? "float32" : "float64") + " like the other arguments");
  check_matrix(op, name, shape_of(a));
  return a;
}

// a as the engine reads it: in place, or a copy when its layout is not one the
// engine reads or it overlaps any of `outputs`.
Matrix matrix(const py::array& a, const std::vector<py::array>& outputs) {
  const int64_t r = a.shape(0), c = a.shape(1), sz = a.itemsize(), s0 = a.strides(0), s1 = a.strides(1);
  auto stride_ok = [&](int64_t s, int64_t at_least) { return s > 0 && s % sz == 0 && s / sz >= at_least; };
  bool copy = false;
  for (py::ssize_t i = 0; i < 2; ++i) copy |= a.shape(i) > 1 && a.strides(i) <= 0;
  copy |= !is_aligned(a);  // the engine reads elements as T: a view at an odd byte offset is copied
  for (const auto& o : outputs) copy |= a.size() > 0 && overlaps(a, o);
  Matrix m{a, r, c};
  if (!copy && (c <= 1 || s1 == sz) && (r <= 1 || stride_ok(s0, c))) {  // rows of unit stride
    m.ld = r <= 1 ? std::max<int64_t>(c, 1) : s0 / sz;
    return m;
  }
  if (!copy && (r <= 1 || s0 == sz) && (c <= 1 || stride_ok(s1, r))) {  // columns of unit stride
    m.ld = c <= 1 ? std::max<int64_t>(r, 1) : s1 / sz;
    m.transposed = true;
    return m;
  }
  m.keep = contiguous_copy(a);
  m.ld = std::max<int64_t>(c, 1);
  return m;
}

// A 1-D read-only vector of length n (a bias), copied if it overlaps an output.
py::array vector(const char* op, const char* name, py::handle h, DType dtype, int64_t n,
                 const std::vector<py::array>& outputs) {
  py::array a = input(op, name, h, dtype);
  check_shape(op, name, a, {n});
  for (const auto& o : outputs)
    if (a.size() > 0 && overlaps(a, o)) return contiguous_copy(a);
  return a;
}

void check_disjoint(const char* op, const std::vector<std::pair<const char*, py::array>>& outs) {
  for (size_t i = 0; i < outs.size(); ++i)
    for (size_t j = i + 1; j < outs.size(); ++j)
      if (outs[i].second.size() > 0 && outs[j].second.size() > 0 && overlaps(outs[i].second, outs[j].second))
        value_error(op, std::string(outs[i].first) + " and " + outs[j].first + " are written and must not overlap");
}

// op(x) = x or x^T, as the engine reads it: (rows, cols) of op(x), its ld and trans flag.
struct Op {
  int64_t rows, cols, ld;
  bool trans;
};
Op op_of(const Matrix& x, bool trans) {
  bool t = trans != x.transposed;  // stored matrix transposed once more
  return trans ? Op{x.cols, x.rows, x.ld, t} : Op{x.rows, x.cols, x.ld, t};
}

template <class T>
const T* ptr(const Matrix& x) {
  return static_cast<const T*>(x.keep.data());
}

struct GemmCall {
  DType dtype;
  Matrix a, b;
  py::array c;
  GemmParams p;
};

GemmCall check_gemm(const char* op, py::handle a_, py::handle b_, py::handle c_, bool trans_a, bool trans_b,
                    double alpha, double beta) {
  DType dt = float_dtype(op, "a", as_array(op, "a", a_));
  py::array c = output(op, "out", c_, dt);
  py::array a_arr = matrix_arg(op, "a", a_, dt), b_arr = matrix_arg(op, "b", b_, dt);
  const Dims d = gemm_dims(op, shape_of(a_arr), shape_of(b_arr), trans_a, trans_b);
  check_shape(op, "out", c, {d.m, d.n});
  Matrix a = matrix(a_arr, {c}), b = matrix(b_arr, {c});
  Op oa = op_of(a, trans_a), ob = op_of(b, trans_b);
  GemmParams p;
  p.m = oa.rows, p.n = ob.cols, p.k = oa.cols;
  p.lda = oa.ld, p.ldb = ob.ld, p.ldc = std::max<int64_t>(p.n, 1);
  p.trans_a = oa.trans, p.trans_b = ob.trans;
  p.alpha = alpha, p.beta = beta;
  return {dt, std::move(a), std::move(b), std::move(c), p};
}

#ifdef DK_WITH_CUDA
// -- CUDA arrays: C-contiguous, so a matrix's ld is its column count ---------------

int64_t ld_of(const CudaArray& a) { return std::max<int64_t>(a.shape[1], 1); }

bool overlaps(const CudaArray& a, const CudaArray& b) {
  if (!a.data || !b.data || a.size() == 0 || b.size() == 0) return false;  // an absent optional array: no data
  auto bytes = [](const CudaArray& x) { return static_cast<std::uintptr_t>(x.size()) * (x.dtype == DType::f32 ? 4 : 8); };
  const auto lo_a = reinterpret_cast<std::uintptr_t>(a.data), lo_b = reinterpret_cast<std::uintptr_t>(b.data);
  return lo_a < lo_b + bytes(b) && lo_b < lo_a + bytes(a);
}

using Named = std::vector<std::pair<const char*, const CudaArray*>>;

// The outputs of a GPU call: disjoint from each other (as the CPU path) and,
// since nothing is copied on the GPU, from the inputs too.
void check_gpu_disjoint(const char* op, const Named& outs, const Named& ins) {
  for (size_t i = 0; i < outs.size(); ++i) {
    for (size_t j = i + 1; j < outs.size(); ++j)
      if (overlaps(*outs[i].second, *outs[j].second))
        value_error(op, std::string(outs[i].first) + " and " + outs[j].first + " are written and must not overlap");
    for (auto [name, a] : ins)
      if (overlaps(*outs[i].second, *a))
        value_error(op, std::string(outs[i].first) + " overlaps " + name +
                            ": a CUDA output must not share memory with an input (pass a copy)");
  }
}

CudaArray cuda_matrix(const char* op, const char* name, py::handle h, DType dt) {
  CudaArray a = cuda_input(op, name, h, dt);
  check_matrix(op, name, a.shape);
  return a;
}

template <class T>
const T* cptr(const CudaArray& a) {
  return static_cast<const T*>(a.data);
}
template <class T>
T* mptr(const CudaArray& a) {
  return static_cast<T*>(a.data);
}

void gemm_gpu(py::handle a_, py::handle b_, py::handle c_, bool trans_a, bool trans_b, double alpha, double beta,
              bool tf32) {
  const char* op = "gemm";
  DType dt = cuda_array(op, "a", a_).dtype;
  CudaArray c = cuda_output(op, "out", c_, dt);
  CudaArray a = cuda_matrix(op, "a", a_, dt), b = cuda_matrix(op, "b", b_, dt);
  const Dims d = gemm_dims(op, a.shape, b.shape, trans_a, trans_b);
  check_shape(op, "out", c.shape, {d.m, d.n});
  check_gpu_disjoint(op, {{"out", &c}}, {{"a", &a}, {"b", &b}});
  GemmParams p;
  p.m = d.m, p.n = d.n, p.k = d.k, p.lda = ld_of(a), p.ldb = ld_of(b), p.ldc = std::max<int64_t>(d.n, 1);
  p.trans_a = trans_a, p.trans_b = trans_b, p.alpha = alpha, p.beta = beta;
  by_dtype(dt, [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    cuda::gemm<T>(p, cptr<T>(a), cptr<T>(b), mptr<T>(c), a.stream, tf32);
  });
}

// y = x w^T + b: y is filled with b, then the gemm adds the product (beta = 1).
void linear_gpu(py::handle x_, py::handle w_, py::handle b_, py::handle y_, bool tf32) {
  const char* op = "linear";
  DType dt = cuda_array(op, "x", x_).dtype;
  CudaArray y = cuda_output(op, "y", y_, dt);
  CudaArray x = cuda_matrix(op, "x", x_, dt), w = cuda_matrix(op, "w", w_, dt);
  const Dims d = linear_dims(op, x.shape, w.shape);
  check_shape(op, "y", y.shape, {d.m, d.n});
  const bool has_bias = !b_.is_none();
  CudaArray bias = has_bias ? cuda_input(op, "b", b_, dt) : CudaArray();
  if (has_bias) check_shape(op, "b", bias.shape, {d.n});
  check_gpu_disjoint(op, {{"y", &y}}, {{"x", &x}, {"w", &w}, {"b", &bias}});
  GemmParams p;
  p.m = d.m, p.n = d.n, p.k = d.k, p.lda = ld_of(x), p.ldb = ld_of(w), p.ldc = std::max<int64_t>(d.n, 1);
  p.trans_b = true, p.beta = has_bias ? 1.0 : 0.0;
  by_dtype(dt, [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    if (has_bias) cuda::broadcast_rows<T>(d.m, d.n, cptr<T>(bias), mptr<T>(y), p.ldc, x.stream);
    cuda::gemm<T>(p, cptr<T>(x), cptr<T>(w), mptr<T>(y), x.stream, tf32);
  });
}

void linear_backward_gpu(py::handle dy_, py::handle x_, py::handle w_, py::handle dx_, py::handle dw_, py::handle db_,
                         bool tf32) {
  const char* op = "linear_backward";
  DType dt = cuda_array(op, "dy", dy_).dtype;
  const bool has_db = !db_.is_none();
  CudaArray dx = cuda_output(op, "dx", dx_, dt), dw = cuda_output(op, "dw", dw_, dt);
  CudaArray db = has_db ? cuda_output(op, "db", db_, dt) : CudaArray();
  CudaArray dy = cuda_matrix(op, "dy", dy_, dt), x = cuda_matrix(op, "x", x_, dt), w = cuda_matrix(op, "w", w_, dt);
  const Dims d = linear_backward_dims(op, dy.shape, x.shape, w.shape);
  const int64_t n = d.m, out = d.n, in = d.k;
  check_shape(op, "dx", dx.shape, {n, in});
  check_shape(op, "dw", dw.shape, {out, in});
  if (has_db) check_shape(op, "db", db.shape, {out});
  check_gpu_disjoint(op, {{"dx", &dx}, {"dw", &dw}, {"db", &db}}, {{"dy", &dy}, {"x", &x}, {"w", &w}});
  GemmParams pdx;  // dx (n x in) = dy (n x out) @ w (out x in)
  pdx.m = n, pdx.n = in, pdx.k = out;
  pdx.lda = ld_of(dy), pdx.ldb = ld_of(w), pdx.ldc = std::max<int64_t>(in, 1);
  GemmParams pdw;  // dw (out x in) = dy^T (out x n) @ x (n x in)
  pdw.m = out, pdw.n = in, pdw.k = n;
  pdw.lda = ld_of(dy), pdw.ldb = ld_of(x), pdw.ldc = std::max<int64_t>(in, 1);
  pdw.trans_a = true;
  by_dtype(dt, [&](auto tag) {
    using T = decltype(tag);
    py::gil_scoped_release nogil;
    cuda::gemm<T>(pdx, cptr<T>(dy), cptr<T>(w), mptr<T>(dx), dy.stream, tf32);
    cuda::gemm<T>(pdw, cptr<T>(dy), cptr<T>(x), mptr<T>(dw), dy.stream, tf32);
    if (has_db) cuda::sum_rows<T>(n, out, cptr<T>(dy), mptr<T>(db), dy.stream);
  });
}
#endif

}  // namespace

void bind_gemm(py::module_& m) {
  m.def(
      "gemm",
      [](py::handle a, py::handle b, py::handle c, bool trans_a, bool trans_b, double alpha, double beta,
         bool tf32) {
        if (on_gpu("gemm", {{"a", a}, {"b", b}, {"out", c}})) {
#ifdef DK_WITH_CUDA
          gemm_gpu(a, b, c, trans_a, trans_b, alpha, beta, tf32);
#endif
          return;
        }
        (void)tf32;  // the CPU kernels have one, exact, path
        GemmCall g = check_gemm("gemm", a, b, c, trans_a, trans_b, alpha, beta);
        by_dtype(g.dtype, [&](auto tag) {
          using T = decltype(tag);
          T* cp = out_ptr<T>(g.c);
          py::gil_scoped_release nogil;
          cpu::gemm(g.p, ptr<T>(g.a), ptr<T>(g.b), cp);
        });
      },
      py::arg("a"), py::arg("b"), py::arg("out"), py::arg("trans_a") = false, py::arg("trans_b") = false,
      py::arg("alpha") = 1.0, py::arg("beta") = 0.0, py::arg("tf32") = false,
      "out = alpha * op(a) @ op(b) + beta * out in place (beta == 0: out is not read). numpy arrays run on "
      "the CPU, CUDA arrays on the GPU; tf32: tensor-core products on the GPU (float32), ignored on the CPU.");

  m.def(
      "_gemm_prepacked",
      [](py::handle a, py::handle b, py::handle c, bool trans_a, bool trans_b, double alpha, double beta,
         bool pack_a, bool pack_b) {
        GemmCall g = check_gemm("gemm", a, b, c, trans_a, trans_b, alpha, beta);
        by_dtype(g.dtype, [&](auto tag) {
          using T = decltype(tag);
          T* cp = out_ptr<T>(g.c);
          const GemmParams& p = g.p;
          py::gil_scoped_release nogil;
          cpu::PackedMatrix<T> pa, pb;
          if (pack_a && p.k > 0) pa = cpu::pack_a(p.m, p.k, ptr<T>(g.a), p.lda, p.trans_a);
          if (pack_b && p.k > 0) pb = cpu::pack_b(p.k, p.n, ptr<T>(g.b), p.ldb, p.trans_b);
          cpu::GemmOperand<T> oa = pa.data ? cpu::GemmOperand<T>(pa) : cpu::GemmOperand<T>(ptr<T>(g.a));
          cpu::GemmOperand<T> ob = pb.data ? cpu::GemmOperand<T>(pb) : cpu::GemmOperand<T>(ptr<T>(g.b));
          cpu::gemm<T>(p, oa, ob, cp);
        });
      },
      py::arg("a"), py::arg("b"), py::arg("out"), py::arg("trans_a"), py::arg("trans_b"), py::arg("alpha"),
      py::arg("beta"), py::arg("pack_a"), py::arg("pack_b"),
      "gemm through the pre-packed operand path (a and/or b packed first): for tests.");

  m.def(
      "fma_peak_gflops",
      [](int threads, double seconds, const std::string& dtype) {
        const char* op = "fma_peak_gflops";
        if (threads < 1) value_error(op, "threads must be >= 1, got " + std::to_string(threads));
        if (!(seconds > 0 && seconds <= 60)) value_error(op, "seconds must be in (0, 60], got " + std::to_string(seconds));
        if (dtype != "float32" && dtype != "float64")
          value_error(op, "dtype must be 'float32' or 'float64', got '" + dtype + "'");
        py::gil_scoped_release nogil;
        return dtype == "float32" ? cpu::gemm_kernels<float>().fma_peak_gflops(threads, seconds)
                                  : cpu::gemm_kernels<double>().fma_peak_gflops(threads, seconds);
      },
      py::arg("threads"), py::arg("seconds") = 0.2, py::arg("dtype") = "float32",
      "Measured FMA throughput (GFLOP/s of dtype) of `threads` threads: the benchmarks' 100%.");

  m.def(
      "linear",
      [](py::handle x_, py::handle w_, py::handle b_, py::handle y_, bool tf32) {
        const char* op = "linear";
        const bool gpu = on_gpu(op, {{"x", x_}, {"w", w_}, {"b", b_}, {"y", y_}});  // b may be None
        if (gpu) {
#ifdef DK_WITH_CUDA
          linear_gpu(x_, w_, b_, y_, tf32);
#endif
          return;
        }
        (void)tf32;  // the CPU kernels have one, exact, path
        DType dt = float_dtype(op, "x", as_array(op, "x", x_));
        py::array y = output(op, "y", y_, dt);
        py::array x_arr = matrix_arg(op, "x", x_, dt), w_arr = matrix_arg(op, "w", w_, dt);
        const Dims d = linear_dims(op, shape_of(x_arr), shape_of(w_arr));
        check_shape(op, "y", y, {d.m, d.n});
        const bool has_bias = !b_.is_none();
        py::array bias = has_bias ? vector(op, "b", b_, dt, w_arr.shape(0), {y}) : py::array();
        Matrix x = matrix(x_arr, {y}), w = matrix(w_arr, {y});
        Op ox = op_of(x, false), ow = op_of(w, true);
        GemmParams p;
        p.m = x.rows, p.n = w.rows, p.k = x.cols;
        p.lda = ox.ld, p.ldb = ow.ld, p.ldc = std::max<int64_t>(p.n, 1);
        p.trans_a = ox.trans, p.trans_b = ow.trans;
        by_dtype(dt, [&](auto tag) {
          using T = decltype(tag);
          T* yp = out_ptr<T>(y);
          cpu::GemmBias<T> bb{has_bias ? in_ptr<T>(bias) : nullptr, nullptr};
          py::gil_scoped_release nogil;
          cpu::gemm<T>(p, ptr<T>(x), ptr<T>(w), yp, bb);
        });
      },
      py::arg("x"), py::arg("w"), py::arg("b"), py::arg("y"), py::arg("tf32") = false,
      "y = x @ w.T + b in place; x (N, in), w (out, in), b (out,) or None, y (N, out).");

  m.def(
      "linear_backward",
      [](py::handle dy_, py::handle x_, py::handle w_, py::handle dx_, py::handle dw_, py::handle db_, bool tf32) {
        const char* op = "linear_backward";
        const bool gpu = on_gpu(op, {{"dy", dy_}, {"x", x_}, {"w", w_}, {"dx", dx_}, {"dw", dw_}, {"db", db_}});
        if (gpu) {
#ifdef DK_WITH_CUDA
          linear_backward_gpu(dy_, x_, w_, dx_, dw_, db_, tf32);
#endif
          return;
        }
        (void)tf32;  // the CPU kernels have one, exact, path
        DType dt = float_dtype(op, "dy", as_array(op, "dy", dy_));
        const bool has_db = !db_.is_none();
        py::array dx = output(op, "dx", dx_, dt), dw = output(op, "dw", dw_, dt);
        py::array db = has_db ? output(op, "db", db_, dt) : py::array();
        std::vector<py::array> outs{dx, dw};
        if (has_db) outs.push_back(db);
        py::array dy_arr = matrix_arg(op, "dy", dy_, dt), x_arr = matrix_arg(op, "x", x_, dt),
                  w_arr = matrix_arg(op, "w", w_, dt);
        const Dims d = linear_backward_dims(op, shape_of(dy_arr), shape_of(x_arr), shape_of(w_arr));
        const int64_t n = d.m, out = d.n, in = d.k;
        check_shape(op, "dx", dx, {n, in});
        check_shape(op, "dw", dw, {out, in});
        if (has_db) check_shape(op, "db", db, {out});
        std::vector<std::pair<const char*, py::array>> named{{"dx", dx}, {"dw", dw}};
        if (has_db) named.emplace_back("db", db);
        check_disjoint(op, named);
        Matrix x = matrix(x_arr, outs), w = matrix(w_arr, outs);
        // dy is also summed by rows for db, which wants it C-contiguous.
        py::array dy = input(op, "dy", dy_arr, dt);
        for (const auto& o : outs)
          if (dy.size() > 0 && overlaps(dy, o)) dy = contiguous_copy(dy);

        Op ow = op_of(w, false), ox = op_of(x, false);
        GemmParams pdx;  // dx (n x in) = dy (n x out) @ w (out x in)
        pdx.m = n, pdx.n = in, pdx.k = out;
        pdx.lda = std::max<int64_t>(out, 1), pdx.ldb = ow.ld, pdx.ldc = std::max<int64_t>(in, 1);
        pdx.trans_b = ow.trans;
        GemmParams pdw;  // dw (out x in) = dy^T (out x n) @ x (n x in)
        pdw.m = out, pdw.n = in, pdw.k = n;
        pdw.lda = std::max<int64_t>(out, 1), pdw.ldb = ox.ld, pdw.ldc = std::max<int64_t>(in, 1);
        pdw.trans_a = true, pdw.trans_b = ox.trans;
        by_dtype(dt, [&](auto tag) {
          using T = decltype(tag);
          T *dxp = out_ptr<T>(dx), *dwp = out_ptr<T>(dw), *dbp = has_db ? out_ptr<T>(db) : nullptr;
          const T* dyp = in_ptr<T>(dy);
          py::gil_scoped_release nogil;
          cpu::gemm(pdx, dyp, ptr<T>(w), dxp);
          cpu::gemm(pdw, dyp, ptr<T>(x), dwp);
          if (dbp) cpu::sum_rows(n, out, dyp, dbp);
        });
      },
      py::arg("dy"), py::arg("x"), py::arg("w"), py::arg("dx"), py::arg("dw"), py::arg("db"),
      py::arg("tf32") = false,
      "Gradients of y = x @ w.T + b, in place: dx = dy @ w, dw = dy.T @ x, db = dy.sum(0) (db may be None).");
}

}  // namespace dk::bind
