// Google Benchmark: the LSTM and GRU kernels at the cell sizes, (B, I, H) =
// (64, 128, 256) and (32, 512, 512), float32: one step forward (the cell) and
// backward, and a sequence of T = 50 steps forward and backward. Items per
// iteration are the GEMMs' multiply-adds, so the rate reads as GFMA/s.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "core/params.h"
#include "cpu/rnn.h"

namespace {

struct Layer {
  dk::RnnParams p;
  int64_t gates;
  std::vector<float> x, h0, c0, w_ih, w_hh, b_ih, b_hh, hs, cs, saved, dy, dx, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh;

  Layer(bool lstm, int64_t steps, int64_t batch, int64_t input, int64_t hidden) : gates(lstm ? 4 : 3) {
    p.steps = steps, p.batch = batch, p.input = input, p.hidden = hidden;
    const int64_t sb = steps * batch, gh = gates * hidden;
    std::mt19937 gen(0);
    std::normal_distribution<float> dist(0.f, 0.1f);
    auto fill = [&](std::vector<float>& v, int64_t n) {
      v.resize(n);
      for (auto& e : v) e = dist(gen);
    };
    fill(x, sb * input), fill(h0, batch * hidden), fill(c0, batch * hidden), fill(w_ih, gh * input);
    fill(w_hh, gh * hidden), fill(b_ih, gh), fill(b_hh, gh), fill(dy, sb * hidden);
    hs.resize(sb * hidden), cs.resize(sb * hidden), saved.resize(sb * 4 * hidden), dx.resize(sb * input);
    dh0.resize(batch * hidden), dc0.resize(batch * hidden), dw_ih.resize(gh * input), dw_hh.resize(gh * hidden);
    db_ih.resize(gh), db_hh.resize(gh);
  }
  dk::RnnWeights<float> weights() const { return {w_ih.data(), w_hh.data(), b_ih.data(), b_hh.data()}; }
  dk::RnnGrads<float> grads() { return {dw_ih.data(), dw_hh.data(), db_ih.data(), db_hh.data()}; }
  void forward() {
    const auto& k = dk::cpu::rnn_kernels<float>();
    if (gates == 4) k.lstm_forward(p, x.data(), h0.data(), c0.data(), weights(), hs.data(), cs.data(), saved.data());
    else k.gru_forward(p, x.data(), h0.data(), weights(), hs.data(), saved.data());
  }
  void backward() {
    const auto& k = dk::cpu::rnn_kernels<float>();
    if (gates == 4)
      k.lstm_backward(p, x.data(), h0.data(), c0.data(), weights(), hs.data(), cs.data(), saved.data(), dy.data(),
                      nullptr, nullptr, dx.data(), dh0.data(), dc0.data(), grads());
    else
      k.gru_backward(p, x.data(), h0.data(), weights(), hs.data(), saved.data(), dy.data(), nullptr, dx.data(),
                     dh0.data(), grads());
  }
  int64_t fmas() const { return p.steps * p.batch * gates * p.hidden * (p.input + p.hidden); }
};

// Args: lstm (1) or gru (0), steps, batch, input, hidden.
void BM_rnn_forward(benchmark::State& st) {
  Layer l(st.range(0), st.range(1), st.range(2), st.range(3), st.range(4));
  for (auto _ : st) {
    l.forward();
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * l.fmas());
}

void BM_rnn_backward(benchmark::State& st) {
  Layer l(st.range(0), st.range(1), st.range(2), st.range(3), st.range(4));
  l.forward();
  for (auto _ : st) {
    l.backward();
    benchmark::ClobberMemory();
  }
  st.SetItemsProcessed(st.iterations() * 2 * l.fmas());
}

void sizes(benchmark::internal::Benchmark* b) {
  for (int64_t lstm : {1, 0})
    for (int64_t steps : {1, 50}) {
      b->Args({lstm, steps, 64, 128, 256});
      b->Args({lstm, steps, 32, 512, 512});
    }
  b->ArgNames({"lstm", "T", "B", "I", "H"});
}

BENCHMARK(BM_rnn_forward)->Apply(sizes)->UseRealTime()->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_rnn_backward)->Apply(sizes)->UseRealTime()->Unit(benchmark::kMicrosecond);

}  // namespace
