"""deepkern against its peers (numpy / OpenBLAS, PyTorch / MKL-oneDNN) on the same arrays.

    python bench/compare.py gemm [--threads 2] [--repeats 7]
    python bench/compare.py --device cuda [optim|pool|bn|conv|rnn]   (the GPU tables, see bench_gpu)

Each family is a function in FAMILIES that returns table rows; the shared
helpers time a call (warm-up, then the median of `repeats` samples, each long
enough to swamp the timer; the peers interleaved so background load hits them
alike, with a pause after each sample so that no library's idle threads, still
spinning, take cores from the next one's), print the table and write it to
bench/results/<family>.md (<family>_t<N>.md for other thread counts). Thread
counts are set for all three libraries before numpy is imported; OpenBLAS
tuning overrides (OPENBLAS_CORETYPE, OPENBLAS_L2_SIZE) are removed, since they
slow numpy down and an honest peer is a fast one.
"""
import argparse
import os
import platform
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def parse_args():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("family", nargs="?", choices=sorted(FAMILIES),
                   help="which op family to benchmark (with --device cuda: optional, one of "
                        f"{', '.join(GPU_FAMILIES)}; all of them by default)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cuda: the GPU tables, written to bench/results/gpu.md")
    p.add_argument("--threads", type=int, default=2, help="threads for every library (default 2)")
    p.add_argument("--repeats", type=int, default=7, help="timed samples per case, median reported (default 7)")
    p.add_argument("--out", default=None, help="markdown file for the table (default bench/results/<family>.md)")
    args = p.parse_args()
    if args.device == "cpu" and args.family is None:
        p.error("a family is needed on the CPU")
    if args.device == "cuda" and args.family not in (None,) + GPU_FAMILIES:
        p.error(f"--device cuda benchmarks {', '.join(GPU_FAMILIES)}, not {args.family}")
    return args


def set_threads(n):
    """Must run before numpy (and torch) are imported."""
    for var in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        os.environ.pop(var, None)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


# Pause after each sample: every library's worker threads spin-wait for a while
# after a call (OpenBLAS's for about 2**28 cycles, some 70 ms), and a spinning
# pool would take a core from the next library's sample.
PAUSE = 0.15


def time_calls(fns, repeats, min_sample=0.1, stat=statistics.median):
    """Median (or `stat`) seconds per call of each function in the dict `fns`, sampled interleaved."""
    inner = {}
    for name, fn in fns.items():
        fn()  # warm-up: first-touch, thread pools, caches
        t0 = time.perf_counter()
        fn()
        once = max(time.perf_counter() - t0, 1e-7)
        inner[name] = max(1, int(min_sample / once))
        time.sleep(PAUSE)
    samples = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            n = inner[name]
            t0 = time.perf_counter()
            for _ in range(n):
                fn()
            samples[name].append((time.perf_counter() - t0) / n)
            time.sleep(PAUSE)
    return {name: stat(s) for name, s in samples.items()}


def load_peers(threads):
    """numpy, deepkern and torch (or None), each set to `threads` threads."""
    import numpy as np

    import deepkern

    deepkern.set_num_threads(threads)
    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        torch = None
    return np, deepkern, torch


def measured_peak(deepkern, threads, dtype):
    """The machine's FMA throughput with `threads` threads: the best of a few
    measurements (a core busy elsewhere for a moment only lowers one of them)."""
    best = 0.0
    for _ in range(3):
        best = max(best, deepkern._C.fma_peak_gflops(threads, 0.3, dtype))
        time.sleep(PAUSE)
    return best


def machine_line(deepkern, threads, peak, peak_dtype):
    return (f"{platform.processor() or platform.machine()}, deepkern ISA {deepkern._C.isa()}, "
            f"{threads} thread(s), measured FMA peak {peak:.1f} GFLOP/s ({peak_dtype}, {threads} thread(s))")


def write_table(path, title, notes, header, rows):
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = lambda r: "| " + " | ".join(str(x).rjust(w) for x, w in zip(r, widths)) + " |"
    lines = [fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [fmt(r) for r in rows]
    text = f"# {title}\n\n" + "".join(f"{n}\n" for n in notes) + "\n" + "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


# -- gemm ----------------------------------------------------------------------

GEMM_SHAPES = [(256, 256, 256), (512, 512, 512), (1024, 1024, 1024), (2048, 2048, 2048),
               (64, 32768, 576), (128, 8192, 576), (6, 50176, 25), (64, 1024, 384), (32, 2048, 1024)]


def bench_gemm(args):
    np, dk, torch = load_peers(args.threads)
    peak = measured_peak(dk, args.threads, "float32")
    rng = np.random.default_rng(0)
    rows = []
    for m, n, k in GEMM_SHAPES:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        c_dk, c_np = np.empty((m, n), np.float32), np.empty((m, n), np.float32)
        fns = {"deepkern": lambda: dk.ops.gemm(a, b, out=c_dk), "numpy": lambda: np.matmul(a, b, out=c_np)}
        if torch is not None:
            ta, tb, tc = torch.from_numpy(a), torch.from_numpy(b), torch.empty((m, n))
            fns["torch"] = lambda: torch.mm(ta, tb, out=tc)
        t = time_calls(fns, args.repeats)
        err = float(np.abs(c_dk - c_np).max() / max(1e-30, np.abs(c_np).max()))
        if err > 1e-4:
            print(f"warning: deepkern and numpy differ by {err:.2g} (relative) at {(m, n, k)}", file=sys.stderr)
        gf = {name: 2.0 * m * n * k / s / 1e9 for name, s in t.items()}
        row = [f"{m}x{n}x{k}", f"{gf['deepkern']:.1f}", f"{gf['numpy']:.1f}",
               f"{gf['torch']:.1f}" if torch is not None else "-",
               f"{gf['deepkern'] / gf['numpy']:.2f}",
               f"{gf['deepkern'] / gf['torch']:.2f}" if torch is not None else "-",
               f"{100 * gf['deepkern'] / peak:.0f}%"]
        rows.append(row)
        print(" ".join(row), flush=True)
    header = ["M x N x K", "deepkern GFLOP/s", "numpy GFLOP/s", "torch GFLOP/s", "dk/numpy", "dk/torch",
              "dk % of peak"]
    notes = [f"float32, C = A @ B, {args.threads} thread(s), median of {args.repeats} samples; "
             f"numpy {np.__version__}" + (f", torch {torch.__version__}" if torch is not None else ", torch absent"),
             machine_line(dk, args.threads, peak, "float32"),
             "", "Command: `python bench/compare.py gemm --threads %d --repeats %d`" % (args.threads, args.repeats)]
    return f"gemm: deepkern vs numpy vs torch", notes, header, rows


# -- pool and bn: memory-bound, so the limit is the measured bandwidth -------------

POOL_SHAPE = (32, 64, 56, 56)
COPIES_BYTES = 128 << 20  # inputs are cycled through copies of this much in all: four times the L3


def bandwidth_note(dk, threads, gbps):
    return (f"{platform.processor() or platform.machine()}, deepkern ISA {dk._C.isa()}, {threads} thread(s), "
            f"measured STREAM triad {gbps:.1f} GB/s ({threads} thread(s)); GB/s counts each array the op must "
            "touch once: inputs read + outputs written")


CYCLING_NOTE = ("Each call reads the next of several copies of its inputs, together larger than the L3, so "
                "inputs come from memory, as a layer's do in a network.")


def cycling(np, torch, *arrays):
    """(next_numpy, next_torch): each call returns the next copy of `arrays` (a tuple), cycling
    through enough copies that together they exceed COPIES_BYTES."""
    copies = max(1, -(-COPIES_BYTES // sum(a.nbytes for a in arrays)))
    sets = [arrays] + [tuple(a.copy() for a in arrays) for _ in range(copies - 1)]
    tsets = [tuple(torch.from_numpy(a) for a in s) for s in sets] if torch is not None else None

    def make(pool):
        state = {"i": 0}

        def next_set():
            state["i"] = (state["i"] + 1) % len(pool)
            return pool[state["i"]]
        return next_set
    return make(sets), (make(tsets) if tsets is not None else None)


def bandwidth_rows(np, dk, torch, cases, repeats, gbps):
    """cases: (label, deepkern fn, torch fn or None, bytes). Rows: label, ms, ratio, GB/s, % of triad."""
    rows = []
    for label, dk_fn, torch_fn, nbytes in cases:
        fns = {"deepkern": dk_fn}
        if torch is not None and torch_fn is not None:
            fns["torch"] = torch_fn
        t = time_calls(fns, repeats)
        dk_gbps = nbytes / t["deepkern"] / 1e9
        row = [label, f"{t['deepkern'] * 1e3:.2f}", f"{t['torch'] * 1e3:.2f}" if "torch" in t else "-",
               f"{t['torch'] / t['deepkern']:.2f}" if "torch" in t else "-", f"{dk_gbps:.1f}",
               f"{100 * dk_gbps / gbps:.0f}%"]
        rows.append(row)
        print(" ".join(row), flush=True)
    return rows


BANDWIDTH_HEADER = ["case", "deepkern ms", "torch ms", "speed-up vs torch", "deepkern GB/s", "% of triad"]


def check_same(np, label, ours, theirs):
    """Warn when deepkern and torch disagree on a case (the table would compare different work).
    Either device: CuPy results and torch CUDA tensors are brought to the host first."""
    for u, v in zip(ours if isinstance(ours, tuple) else (ours,), theirs if isinstance(theirs, tuple) else (theirs,)):
        v = v.detach().cpu().numpy()
        u = u.get() if type(u).__module__.startswith("cupy") else u
        if not np.abs(u - v).max() <= 1e-5 * max(1.0, float(np.abs(v).max())):  # float32 sums of 1e5 terms
            print(f"warning: deepkern and torch differ on {label}", file=sys.stderr)


def pool_cases(dk, torch, x, cyc, tt):
    """The pool table's cases over x (numpy or CuPy): (label, deepkern fn, torch fn or None,
    bytes moved). cyc(*arrays) -> (next, next_torch) feeds inputs (cycled copies on the
    CPU); tt makes a torch tensor of an array, sharing its memory."""
    import numpy as np  # imported by load_peers already, after the thread settings

    F = torch.nn.functional if torch is not None else None
    nx, tnx = cyc(x)
    n, (h, w) = x.nbytes, x.shape[2:]
    cases = []
    for k, s, p in [(2, 2, 0), (3, 2, 1)]:
        out = n // (h * w) * ((h + 2 * p - k) // s + 1) ** 2
        label = f"max_pool2d {k}x{k}/{s} pad {p}, y + int64 indices"
        t_fn = (lambda k=k, s=s, p=p: F.max_pool2d(tnx()[0], k, s, p, return_indices=True)) if torch else None
        cases.append((label, lambda k=k, s=s, p=p: dk.ops.max_pool2d(nx()[0], k, s, p), t_fn, n + 3 * out))
        if torch is not None:
            check_same(np, label, dk.ops.max_pool2d(x, k, s, p), F.max_pool2d(tt(x), k, s, p, return_indices=True))
    for k, s, p in [(2, 2, 0), (3, 2, 1)]:
        out = n // (h * w) * ((h + 2 * p - k) // s + 1) ** 2
        label = f"avg_pool2d {k}x{k}/{s} pad {p}"
        t_fn = (lambda k=k, s=s, p=p: F.avg_pool2d(tnx()[0], k, s, p)) if torch else None
        cases.append((label, lambda k=k, s=s, p=p: dk.ops.avg_pool2d(nx()[0], k, s, p), t_fn, n + out))
        if torch is not None:
            check_same(np, label, dk.ops.avg_pool2d(x, k, s, p), F.avg_pool2d(tt(x), k, s, p))
    label = "global_avg_pool2d (torch: adaptive_avg_pool2d 1)"
    cases.append((label, lambda: dk.ops.global_avg_pool2d(nx()[0]),
                  (lambda: F.adaptive_avg_pool2d(tnx()[0], 1)) if torch else None, n))
    # Backwards against torch's own backward kernels, without autograd's bookkeeping.
    y, idx = dk.ops.max_pool2d(x, 2)
    ny, tny = cyc(y, idx)
    cases.append(("max_pool2d 2x2/2 backward", lambda: dk.ops.max_pool2d_backward(*ny(), x.shape),
                  (lambda: torch.ops.aten.max_pool2d_with_indices_backward(tny()[0], tnx()[0], 2, 2, 0, 1, False,
                                                                           tny()[1])) if torch else None,
                  n + 3 * y.nbytes))
    cases.append(("avg_pool2d 2x2/2 backward", lambda: dk.ops.avg_pool2d_backward(ny()[0], x.shape, 2),
                  (lambda: torch.ops.aten.avg_pool2d_backward(tny()[0], tnx()[0], 2, 2, 0, False, True, None))
                  if torch else None, n + y.nbytes))
    return cases


def host_cycling(np, torch):
    """cyc for the CPU tables: each call returns the next of several copies (see cycling)."""
    return lambda *arrays: cycling(np, torch, *arrays)


def bench_pool(args):
    np, dk, torch = load_peers(args.threads)
    gbps = dk._C.triad_gbps(threads=args.threads)
    x = np.random.default_rng(0).standard_normal(POOL_SHAPE, dtype=np.float32)
    cases = pool_cases(dk, torch, x, host_cycling(np, torch), torch.from_numpy if torch is not None else None)
    rows = bandwidth_rows(np, dk, torch, cases, args.repeats, gbps)
    notes = [f"float32 x {POOL_SHAPE}, {args.threads} thread(s), median of {args.repeats} samples; "
             f"numpy {np.__version__}" + (f", torch {torch.__version__}" if torch is not None else ", torch absent"),
             bandwidth_note(dk, args.threads, gbps), CYCLING_NOTE, "",
             "Command: `python bench/compare.py pool --threads %d --repeats %d`" % (args.threads, args.repeats)]
    return "pool: deepkern vs torch", notes, BANDWIDTH_HEADER, rows


def bn_cases(dk, torch, xp, x, dy, cyc, tt):
    """The bn table's cases for one input x (N, C, *) and output gradient dy, numpy or
    CuPy (xp their module); cyc and tt as in pool_cases."""
    import numpy as np  # imported by load_peers already, after the thread settings

    c = x.shape[1]
    w, b = xp.ones(c, xp.float32), xp.zeros(c, xp.float32)
    rm, rv = xp.zeros(c, xp.float32), xp.ones(c, xp.float32)
    _, mean, invstd = dk.ops.batch_norm(x, w, b, rm, rv, True)
    nxt, tnxt = cyc(x, dy)
    n = x.nbytes

    def dk_train():
        x, dy = nxt()
        _, m, s = dk.ops.batch_norm(x, w, b, rm, rv, True)
        return dk.ops.batch_norm_backward(dy, x, w, m, s)

    t = {}
    if torch is not None:  # aten's kernels directly: no autograd bookkeeping in the peer
        tw, tb, trm, trv, tm, ts = (tt(a.copy()) for a in (w, b, rm, rv, mean, invstd))
        aten = torch.ops.aten

        def t_train():
            tx, tdy = tnxt()
            _, m, s = torch.native_batch_norm(tx, tw, tb, trm, trv, True, 0.1, 1e-5)
            return aten.native_batch_norm_backward(tdy, tx, tw, trm, trv, m, s, True, 1e-5, [True] * 3)

        t = {"train": t_train,
             "fwd": lambda: torch.native_batch_norm(tnxt()[0], tw, tb, trm, trv, True, 0.1, 1e-5),
             "bwd": lambda: aten.native_batch_norm_backward(*tnxt()[::-1], tw, trm, trv, tm, ts, True, 1e-5,
                                                            [True] * 3),
             "eval": lambda: torch.native_batch_norm(tnxt()[0], tw, tb, trm, trv, False, 0.1, 1e-5)}
        tx, tdy = tt(x), tt(dy)
        _, tm_, ts_ = torch.native_batch_norm(tx, tw, tb, None, None, True, 0.1, 1e-5)
        check_same(np, "batch_norm " + "x".join(map(str, x.shape)),
                   dk.ops.batch_norm_backward(dy, x, w, *dk.ops.batch_norm(x, w, b, None, None, True)[1:]),
                   tuple(aten.native_batch_norm_backward(tdy, tx, tw, None, None, tm_, ts_, True, 1e-5, [True] * 3)))
    s = "x".join(map(str, x.shape))
    return [
        (f"batch_norm {s} training forward + backward", dk_train, t.get("train"), 5 * n),
        (f"batch_norm {s} training forward", lambda: dk.ops.batch_norm(nxt()[0], w, b, rm, rv, True),
         t.get("fwd"), 2 * n),
        (f"batch_norm {s} backward", lambda: dk.ops.batch_norm_backward(*nxt()[::-1], w, mean, invstd),
         t.get("bwd"), 3 * n),
        (f"batch_norm {s} eval forward", lambda: dk.ops.batch_norm(nxt()[0], w, b, rm, rv, False),
         t.get("eval"), 2 * n)]


def bench_bn(args):
    np, dk, torch = load_peers(args.threads)
    gbps = dk._C.triad_gbps(threads=args.threads)
    gen = np.random.default_rng(0)
    cases = []
    for shape in [POOL_SHAPE, (256, 512)]:
        x, dy = gen.standard_normal(shape, dtype=np.float32), gen.standard_normal(shape, dtype=np.float32)
        cases += bn_cases(dk, torch, np, x, dy, host_cycling(np, torch),
                          torch.from_numpy if torch is not None else None)
    rows = bandwidth_rows(np, dk, torch, cases, args.repeats, gbps)
    notes = [f"float32, {args.threads} thread(s), median of {args.repeats} samples; torch peer: aten's "
             "native_batch_norm / native_batch_norm_backward called directly; "
             f"numpy {np.__version__}" + (f", torch {torch.__version__}" if torch is not None else ", torch absent"),
             bandwidth_note(dk, args.threads, gbps), CYCLING_NOTE, "",
             "Command: `python bench/compare.py bn --threads %d --repeats %d`" % (args.threads, args.repeats)]
    return "bn: deepkern vs torch", notes, BANDWIDTH_HEADER, rows


# -- conv: compute-bound, so the limit is the measured FMA peak ----------------------

# (label, x shape (N, C, H, W), w shape (K, C / groups, R, S), stride, padding, groups): the shapes.
CONV_SHAPES = [
    ("LeNet c1", (64, 1, 28, 28), (6, 1, 5, 5), 1, 2, 1),
    ("LeNet c2", (64, 6, 14, 14), (16, 6, 5, 5), 1, 0, 1),
    ("ResNet 3x3", (32, 64, 32, 32), (64, 64, 3, 3), 1, 1, 1),
    ("ResNet 3x3 stride 2", (32, 64, 32, 32), (128, 64, 3, 3), 2, 1, 1),
    ("VGG 3x3", (8, 256, 28, 28), (256, 256, 3, 3), 1, 1, 1),
    ("1x1", (32, 256, 14, 14), (64, 256, 1, 1), 1, 0, 1),
    ("depthwise 3x3", (32, 128, 28, 28), (128, 1, 3, 3), 1, 1, 128),
]


def conv_cases(dk, torch, label, x, w, b, dy, stride, pad, groups, cyc, tt, check=True, **dk_kw):
    """The conv table's cases for one layer, numpy or CuPy arrays: (pass, deepkern fn,
    torch fn or None, flops), after checking both libraries agree (unless not check:
    TF32 results differ from float32 ones by design). dk_kw: extra arguments of
    deepkern's conv2d / conv2d_backward (the GPU's tf32=True)."""
    import numpy as np  # imported by load_peers already, after the thread settings

    nxt, tnxt = cyc(x, dy)
    kw = dict(stride=stride, padding=pad, dilation=1, groups=groups)
    fwd_flops = 2.0 * dy.size * int(np.prod(w.shape[1:]))

    def dk_train():
        x, dy = nxt()
        dk.ops.conv2d(x, w, b, **kw, **dk_kw)
        return dk.ops.conv2d_backward(dy, x, w, **kw, **dk_kw)
    cases = [("forward", lambda: dk.ops.conv2d(nxt()[0], w, b, **kw, **dk_kw), fwd_flops),
             ("forward + backward", dk_train, 3 * fwd_flops)]
    peers = {}
    if torch is not None:
        F = torch.nn.functional
        tw, tb = tt(w), tt(b)
        conv_bwd = torch.ops.aten.convolution_backward
        bwd_args = ([w.shape[0]], [stride] * 2, [pad] * 2, [1, 1], False, [0, 0], groups, [True, True, True])

        def t_fwd():
            with torch.no_grad():
                return F.conv2d(tnxt()[0], tw, tb, **kw)

        def t_train():  # aten's forward and backward kernels, without autograd's bookkeeping
            tx, tdy = tnxt()
            with torch.no_grad():
                F.conv2d(tx, tw, tb, **kw)
            return conv_bwd(tdy, tx, tw, *bwd_args)
        peers = {"forward": t_fwd, "forward + backward": t_train}
        tx, tdy = tt(x), tt(dy)
        if check:
            check_same(np, f"conv2d {label}", dk.ops.conv2d(x, w, b, **kw), F.conv2d(tx, tw, tb, **kw))
            check_same(np, f"conv2d_backward {label}", dk.ops.conv2d_backward(dy, x, w, **kw),
                       tuple(conv_bwd(tdy, tx, tw, *bwd_args)))
    return [(what, fn, peers.get(what), flops) for what, fn, flops in cases]


def bench_conv(args):
    np, dk, torch = load_peers(args.threads)
    peak = measured_peak(dk, args.threads, "float32")
    gen = np.random.default_rng(0)
    rows = []
    for label, xs, ws, stride, pad, groups in CONV_SHAPES:
        x = gen.standard_normal(xs, dtype=np.float32)
        w = (gen.standard_normal(ws, dtype=np.float32) / np.sqrt(np.prod(ws[1:]))).astype(np.float32)
        b = gen.standard_normal(ws[0], dtype=np.float32)
        dy = gen.standard_normal(dk.ops.conv2d(x, w, b, stride, pad, 1, groups).shape, dtype=np.float32)
        for what, fn, t_fn, flops in conv_cases(dk, torch, label, x, w, b, dy, stride, pad, groups,
                                                host_cycling(np, torch), torch.from_numpy if torch else None):
            fns = {"deepkern": fn}
            if t_fn is not None:
                fns["torch"] = t_fn
            t = time_calls(fns, args.repeats)
            gf = flops / t["deepkern"] / 1e9
            row = [label, "x".join(map(str, xs)) + " * " + "x".join(map(str, ws)) + f" s{stride} p{pad}"
                   + (f" g{groups}" if groups > 1 else ""), what, f"{t['deepkern'] * 1e3:.2f}",
                   f"{t['torch'] * 1e3:.2f}" if "torch" in t else "-",
                   f"{t['torch'] / t['deepkern']:.2f}" if "torch" in t else "-", f"{gf:.1f}", f"{100 * gf / peak:.0f}%"]
            rows.append(row)
            print(" ".join(row), flush=True)
    header = ["layer", "x * w, stride, padding", "pass", "deepkern ms", "torch ms", "speed-up vs torch",
              "deepkern GFLOP/s", "% of FMA peak"]
    notes = [f"float32, {args.threads} thread(s), median of {args.repeats} samples; "
             f"numpy {np.__version__}" + (f", torch {torch.__version__}" if torch is not None else ", torch absent"),
             machine_line(dk, args.threads, peak, "float32"),
             "forward: deepkern.ops.conv2d against torch.nn.functional.conv2d (no_grad); forward + backward: "
             "conv2d then conv2d_backward (dx, dw, db) against F.conv2d then aten.convolution_backward "
             "(output_mask all True), aten's kernels called directly, without autograd's bookkeeping.",
             "GFLOP/s counts 2 * N * K * oH * oW * C/groups * R * S per pass (forward + backward: three passes) "
             "whatever the algorithm, so Winograd's shapes (ResNet 3x3, VGG 3x3: 2.25x fewer multiplies) can pass "
             "100% of the peak. " + CYCLING_NOTE, "",
             "Command: `python bench/compare.py conv --threads %d --repeats %d`" % (args.threads, args.repeats)]
    return "conv: deepkern vs torch", notes, header, rows


# -- optim: fused optimizer steps, memory-bound at 10M parameters -------------------

# (label, class name in deepkern.optim and torch.optim, kwargs, torch has fused=True, arrays moved per element)
OPTIM_CASES = [
    ("Adam", "Adam", dict(lr=1e-3), True, 7),
    ("AdamW", "AdamW", dict(lr=1e-3, weight_decay=1e-2), True, 7),
    ("RMSprop", "RMSprop", dict(lr=1e-3), False, 5),
    ("SGD-momentum", "SGD", dict(lr=1e-2, momentum=0.9), True, 5),
]


OPTIM_ROUNDS = 3


def optim_sizes(np, total, count):
    """`count` tensor sizes summing to `total`, log-normal like a model's mix of weights and biases."""
    if count == 1:
        return [total]
    w = np.random.default_rng(0).lognormal(0.0, 1.5, count)
    sizes = np.maximum(1, (w / w.sum() * total).astype(np.int64))
    sizes[np.argmax(sizes)] += total - sizes.sum()
    return [int(s) for s in sizes]


def optim_case_fns(dk, torch, name, kw, has_fused, data, grads, tt=None, torch_default=("loop", dict(foreach=False))):
    """Each contender's optimizer.step over its own copy of the params, the grads shared.
    tt: an array as a torch tensor (default torch.from_numpy); torch_default: the tag and
    options of torch's non-fused contender."""
    tt = (tt or torch.from_numpy) if torch is not None else None
    fns = {}
    for mode in ("ignore", "skip"):
        ps = [dk.nn.Parameter(d.copy()) for d in data]
        for p, g in zip(ps, grads):
            p.grad = g
        fns[f"dk-{mode}"] = getattr(dk.optim, name)(ps, nonfinite=mode, **kw).step
    if torch is not None:
        for tag, extra in [torch_default] + ([("fused", dict(fused=True))] if has_fused else []):
            ts = [tt(d.copy()).requires_grad_() for d in data]
            for t, g in zip(ts, grads):
                t.grad = tt(g)
            fns[f"torch-{tag}"] = getattr(torch.optim, name)(ts, **kw, **extra).step
    return fns


def bench_optim(args):
    np, dk, torch = load_peers(args.threads)
    rng = np.random.default_rng(0)
    layouts = [("10M, 1 tensor", 10_000_000, 1), ("10M, 200 tensors", 10_000_000, 200),
               ("100k, 1 tensor", 100_000, 1), ("100k, 20 tensors", 100_000, 20)]
    # Every case is timed in each of OPTIM_ROUNDS rounds, a minute or more apart, and keeps
    # its fastest sample: on a shared 2-core machine, while another process runs, every
    # OpenMP barrier can wait out a scheduler slice (milliseconds, for every contender
    # alike), so noise only adds and the minimum is the stable statistic.
    best, gbps = {}, 0.0
    for r in range(OPTIM_ROUNDS):
        gbps = max(gbps, dk._C.triad_gbps())
        for layout, total, count in layouts:
            sizes = optim_sizes(np, total, count)
            data = [rng.standard_normal(n, dtype=np.float32) for n in sizes]
            grads = [rng.standard_normal(n, dtype=np.float32) for n in sizes]
            for label, name, kw, has_fused, streams in OPTIM_CASES:
                t = time_calls(optim_case_fns(dk, torch, name, kw, has_fused, data, grads), args.repeats,
                               min_sample=0.02, stat=min)
                print(f"round {r + 1}: {label}, {layout}: " + ", ".join(f"{k} {v * 1e3:.3f} ms" for k, v in t.items()),
                      file=sys.stderr, flush=True)
                prev = best.setdefault((label, layout), t)
                best[(label, layout)] = {k: min(prev[k], t[k]) for k in t}
    rows = []
    for layout, total, count in layouts:
        for label, name, kw, has_fused, streams in OPTIM_CASES:
            t = best[(label, layout)]
            dk_gbps = total * 4 * streams / t["dk-ignore"] / 1e9
            ratio = lambda peer: f"{t[peer] / t['dk-ignore']:.2f}" if peer in t else "-"  # noqa: E731
            row = [label, layout, f"{t['dk-ignore'] * 1e3:.3f}", f"{t['dk-skip'] * 1e3:.3f}",
                   f"{100 * (t['dk-skip'] / t['dk-ignore'] - 1):+.0f}%",
                   f"{t['torch-fused'] * 1e3:.3f}" if "torch-fused" in t else "-",
                   f"{t['torch-loop'] * 1e3:.3f}" if "torch-loop" in t else "-",
                   ratio("torch-fused"), ratio("torch-loop"), f"{dk_gbps:.1f}", f"{100 * dk_gbps / gbps:.0f}%"]
            rows.append(row)
    header = ["optimizer", "params", "dk ms", "dk ms checked", "check cost", "torch fused ms", "torch loop ms",
              "dk/fused", "dk/loop", "dk GB/s", "% of triad"]
    notes = [f"float32, optimizer.step() with grads set, {args.threads} thread(s), the fastest of {OPTIM_ROUNDS} "
             f"x {args.repeats} samples (each >= 20 ms of calls), taken in {OPTIM_ROUNDS} rounds minutes apart "
             f"on a shared machine; numpy {np.__version__}"
             + (f", torch {torch.__version__}" if torch is not None else ", torch absent"),
             bandwidth_note(dk, args.threads, gbps).replace(
                 "inputs read + outputs written", "params, grads and state read + params and state written "
                 "(Adam/AdamW 7 x 4 B per parameter, RMSprop and SGD-momentum 5 x 4 B)"),
             "The steps update in place, so they move no write-allocate traffic, which the triad does and "
             "does not count: a step can pass 100% of the triad's figure.",
             "dk ms: nonfinite='ignore' (one pass, torch's semantics); dk ms checked: the default "
             "nonfinite='skip' (a read-only finiteness pass over the grads first). dk/fused and dk/loop: "
             "speed-ups of 'dk ms' over torch fused=True (Adam, AdamW, SGD; RMSprop has none) and over "
             "torch's default CPU path (foreach=False, the per-tensor for-loop).",
             "", f"Command: `python bench/compare.py optim --threads {args.threads} --repeats {args.repeats}`"]
    return "optim: deepkern fused steps vs torch.optim", notes, header, rows


# -- train: one epoch of LeNet-5 on digits, the whole fit loop ----------------------

def torch_lenet5(torch, dk_model):
    """torch's LeNet-5 with the deepkern model's layout and a copy of its weights."""
    nn = torch.nn
    convs = [m for m in dk_model if type(m).__name__ == "Conv2d"]
    m = nn.Sequential(nn.Conv2d(1, 6, 5, padding=convs[0].padding), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(6, 16, 5, padding=convs[1].padding), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                      nn.Linear(dk_model[7].in_features, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                      nn.Linear(84, 10))
    m.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in dk_model.state_dict().items()})
    return m


def bench_train(args):
    """deepkern.train.fit for one epoch against the same loop in PyTorch: same network,
    same initial weights, same batches in the same order, Adam(lr=1e-3), batch 64."""
    np, dk, torch = load_peers(args.threads)
    X, y = dk.data.load_digits(flatten=False)
    X = dk.data.standardize(X)
    batch = 64
    model = dk.models.lenet5(1, 10, input_size=8, seed=0)
    opt = dk.optim.Adam(model.parameters(), lr=1e-3)
    loss = dk.nn.CrossEntropyLoss()
    epoch = [0]

    def dk_epoch():
        epoch[0] += 1
        return dk.train.fit(model, loss, opt, (X, y), epochs=1, batch_size=batch, seed=epoch[0], verbose=0)

    fns = {"deepkern": dk_epoch}
    first = {}
    if torch is not None:
        tmodel = torch_lenet5(torch, model)
        topt = torch.optim.Adam(tmodel.parameters(), lr=1e-3)
        tX, ty = torch.from_numpy(X), torch.from_numpy(y)
        tepoch = [0]

        def torch_epoch():
            tepoch[0] += 1
            order = torch.from_numpy(np.random.default_rng([tepoch[0], 0]).permutation(len(X)))
            losses = []
            for k in range(0, len(X), batch):
                idx = order[k:k + batch]
                topt.zero_grad()
                out = torch.nn.functional.cross_entropy(tmodel(tX[idx]), ty[idx])
                out.backward()
                topt.step()
                losses.append(out.item())
            return losses

        # the same first epoch from the same weights and batches: the losses must agree
        first["deepkern"] = dk_epoch().batches["loss"]
        first["torch"] = torch_epoch()
        fns["torch"] = torch_epoch
    t = time_calls(fns, args.repeats, min_sample=0.3)
    gap = max((abs(a - b) for a, b in zip(first.get("deepkern", []), first.get("torch", []))), default=None)
    agree = f"first-epoch batch losses agree to {gap:.1e}" if gap is not None else "torch absent"
    rows = [["lenet5, digits 1797 x 1 x 8 x 8, Adam, batch 64", f"{t['deepkern'] * 1e3:.1f}",
             f"{t['torch'] * 1e3:.1f}" if "torch" in t else "-",
             f"{t['torch'] / t['deepkern']:.2f}" if "torch" in t else "-",
             f"{len(X) / t['deepkern']:.0f}"]]
    header = ["case", "deepkern ms/epoch", "torch ms/epoch", "speed-up", "deepkern samples/s"]
    notes = [f"One training epoch (forward, loss, backward, Adam step per batch; deepkern through "
             f"deepkern.train.fit with its history and callbacks), {args.threads} thread(s), median of "
             f"{args.repeats} samples; numpy {np.__version__}"
             + (f", torch {torch.__version__}" if torch is not None else ", torch absent") + f"; {agree}.",
             "", f"Command: `python bench/compare.py train --threads {args.threads} --repeats {args.repeats}`"]
    return "train: one epoch of LeNet-5 on digits, deepkern vs PyTorch", notes, header, rows


# -- rnn: LSTM and GRU cells and whole sequences ------------------------------------

RNN_CELL_SHAPES = [(64, 128, 256), (32, 512, 512)]  # (B, I, H)
RNN_SEQ_LEN = 50


def bench_rnn(args):
    """Cell forward (deepkern ops.lstm_cell / gru_cell, which also keep the gates for
    backward, against torch.nn.LSTMCell / GRUCell under no_grad), and a whole
    sequence forward + backward (nn.LSTM / nn.GRU modules against torch.nn.LSTM /
    GRU with autograd, dx included), T = 50, 1 and 2 layers."""
    np, dk, torch = load_peers(args.threads)
    peak = measured_peak(dk, args.threads, "float32")
    gen = np.random.default_rng(0)
    rows = []

    def row(label, flops, fns, check=None):
        t = time_calls(fns, args.repeats)
        gf = flops / t["deepkern"] / 1e9
        r = [label, f"{t['deepkern'] * 1e3:.3f}", f"{t['torch'] * 1e3:.3f}" if "torch" in t else "-",
             f"{t['torch'] / t['deepkern']:.2f}" if "torch" in t else "-", f"{gf:.1f}", f"{100 * gf / peak:.0f}%"]
        rows.append(r)
        print(" ".join(r), flush=True)

    for kind, gates in (("lstm", 4), ("gru", 3)):
        for b, i, h in RNN_CELL_SHAPES:
            x, h0, c0 = (gen.standard_normal(s, dtype=np.float32) for s in ((b, i), (b, h), (b, h)))
            fns, tm = {}, None
            if torch is not None:
                tm = (torch.nn.LSTMCell if gates == 4 else torch.nn.GRUCell)(i, h)
                w = [p.detach().numpy() for p in tm.parameters()]
                tx, th, tc = (torch.from_numpy(a) for a in (x, h0, c0))
            else:
                w = [gen.uniform(-0.05, 0.05, s).astype(np.float32) for s in ((gates * h, i), (gates * h, h))] + \
                    [np.zeros(gates * h, np.float32)] * 2
            if gates == 4:
                fns["deepkern"] = lambda x=x, h0=h0, c0=c0, w=w: dk.ops.lstm_cell(x, h0, c0, *w)
                if tm is not None:
                    def t_fn(tm=tm, tx=tx, th=th, tc=tc):
                        with torch.no_grad():
                            return tm(tx, (th, tc))
                    fns["torch"] = t_fn
                    check_same(np, f"lstm_cell {b}x{i}x{h}", fns["deepkern"]()[:2], tuple(t_fn()))
            else:
                fns["deepkern"] = lambda x=x, h0=h0, w=w: dk.ops.gru_cell(x, h0, *w)
                if tm is not None:
                    def t_fn(tm=tm, tx=tx, th=th):
                        with torch.no_grad():
                            return tm(tx, th)
                    fns["torch"] = t_fn
                    check_same(np, f"gru_cell {b}x{i}x{h}", fns["deepkern"]()[0], t_fn())
            row(f"{kind} cell forward, B={b} I={i} H={h}", 2.0 * b * gates * h * (i + h), fns)

    for kind, gates in (("lstm", 4), ("gru", 3)):
        for layers in (1, 2):
            for b, i, h in RNN_CELL_SHAPES:
                t = RNN_SEQ_LEN
                m = getattr(dk.nn, kind.upper())(i, h, num_layers=layers)
                x, dy = gen.standard_normal((t, b, i), dtype=np.float32), gen.standard_normal((t, b, h), dtype=np.float32)

                def dk_fn(m=m, x=x, dy=dy):
                    m.zero_grad()
                    out, _ = m(x)
                    return out, m.backward(dy)

                fns = {"deepkern": dk_fn}
                if torch is not None:
                    tm = getattr(torch.nn, kind.upper())(i, h, num_layers=layers)
                    m.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
                    tx, tdy = torch.from_numpy(x).requires_grad_(), torch.from_numpy(dy)

                    def t_fn(tm=tm, tx=tx, tdy=tdy):
                        tm.zero_grad(set_to_none=True)
                        tx.grad = None
                        out, _ = tm(tx)
                        out.backward(tdy)
                        return out.detach(), tx.grad

                    fns["torch"] = t_fn
                    check_same(np, f"{kind} sequence {layers} layer(s)", dk_fn(), t_fn())
                fwd_flops = 2.0 * t * b * gates * h * ((i + h) + (layers - 1) * 2 * h)
                row(f"{kind} T={t}, {layers} layer(s) fwd+bwd, B={b} I={i} H={h}", 3 * fwd_flops, fns)

    header = ["case", "deepkern ms", "torch ms", "speed-up vs torch", "deepkern GFLOP/s", "% of peak"]
    notes = [f"float32, {args.threads} thread(s), median of {args.repeats} samples; "
             f"numpy {np.__version__}" + (f", torch {torch.__version__}" if torch is not None else ", torch absent"),
             machine_line(dk, args.threads, peak, "float32"),
             "Cells: forward only (deepkern also keeps the gates for backward; torch runs under no_grad). "
             "Sequences: the nn.LSTM / nn.GRU module's forward and backward (dx and every weight gradient) "
             "against torch.nn.LSTM / GRU with autograd; GFLOP/s counts the GEMMs (forward 2 T B G H (I + H) "
             "per layer, backward twice that).",
             "", f"Command: `python bench/compare.py rnn --threads {args.threads} --repeats {args.repeats}`"]
    return "rnn: deepkern LSTM / GRU vs torch", notes, header, rows


# -- GPU: python bench/compare.py --device cuda [family] ----------------------------
# The families' cases on CuPy arrays against PyTorch CUDA reading the same memory
# (torch.as_tensor over __cuda_array_interface__), at GPU-sized shapes, timed with
# CUDA events on the default stream: deepkern launches on the caller's stream and
# CuPy's and torch's defaults are the legacy default stream, so one pair of events
# brackets either library's kernels. Inputs are larger than the L2 cache except the
# small conv layers'. Roofs, measured here: the device-to-device copy bandwidth (a
# 1 GiB cupy copy, read + write) for memory-bound rows, cuBLAS SGEMM (cupy.matmul
# 8192^3 float32, TF32 off) for compute-bound ones. float32 rows run with TF32 off
# in torch too; the "TF32" conv rows turn it on in both, where deepkern's conv2d
# takes tf32=True.

GPU_FAMILIES = ("optim", "pool", "bn", "conv", "rnn")
GPU_POOL_SHAPE = (256, 64, 56, 56)
GPU_CONV_BATCH = 256
GPU_OPTIM_PARAMS = 100_000_000
GPU_RNN = (256, 1024, 1024, 50)  # B, I, H, T


def gpu_time(cp, fn, repeats, min_ms=20.0):
    """Median seconds per call of fn: each sample brackets enough calls to last min_ms with
    CUDA events, after a warm-up call (allocator pools, cuBLAS / cuDNN handles, autotuning)."""
    start, end = cp.cuda.Event(), cp.cuda.Event()

    def sample(n):
        start.record()
        for _ in range(n):
            fn()
        end.record()
        end.synchronize()
        return cp.cuda.get_elapsed_time(start, end) / n  # ms

    sample(1)
    n = max(1, int(min_ms / max(sample(1), 1e-3)))
    return statistics.median(sample(n) for _ in range(repeats)) / 1e3


def gpu_roofs(cp, repeats):
    """(copy GB/s, SGEMM TFLOP/s) measured on this GPU."""
    a = cp.empty(1 << 28, cp.float32)
    b = cp.empty_like(a)
    gbps = 2 * a.nbytes / gpu_time(cp, lambda: cp.copyto(b, a), repeats) / 1e9
    del a, b
    m = cp.random.standard_normal((8192, 8192), dtype=cp.float32)
    out = cp.empty_like(m)
    tflops = 2 * 8192 ** 3 / gpu_time(cp, lambda: cp.matmul(m, m, out=out), repeats) / 1e12
    return gbps, tflops


def gpu_optim_cases(np, cp, dk, torch, tt):
    for layout, count in (("1 tensor", 1), ("200 tensors", 200)):
        sizes = optim_sizes(np, GPU_OPTIM_PARAMS, count)
        data = [cp.random.standard_normal(n, dtype=cp.float32) for n in sizes]
        grads = [cp.random.standard_normal(n, dtype=cp.float32) for n in sizes]
        for label, name, kw, has_fused, streams in OPTIM_CASES:
            fns = optim_case_fns(dk, torch, name, kw, has_fused, data, grads, tt, ("foreach", dict(foreach=True)))
            peer = "torch-fused" if "torch-fused" in fns else "torch-foreach"
            nbytes = GPU_OPTIM_PARAMS * 4 * streams
            what = f"{label} step, {GPU_OPTIM_PARAMS / 1e6:g}M params in {layout}"
            against = f" (torch {peer[6:]})" if torch is not None else ""
            yield "optim", what + against, fns["dk-ignore"], fns.get(peer), "bytes", nbytes
            yield "optim", f"{what}, nonfinite='skip'{against}", fns["dk-skip"], fns.get(peer), "bytes", \
                nbytes + GPU_OPTIM_PARAMS * 4  # the finiteness pass reads the grads once more


def gpu_pool_cases(np, cp, dk, torch, tt):
    x = cp.random.standard_normal(GPU_POOL_SHAPE, dtype=cp.float32)
    for label, dk_fn, t_fn, nbytes in pool_cases(dk, torch, x, gpu_inputs(tt), tt):
        yield "pool", label, dk_fn, t_fn, "bytes", nbytes


def gpu_bn_cases(np, cp, dk, torch, tt):
    for shape in (GPU_POOL_SHAPE, (4096, 1024)):
        x, dy = (cp.random.standard_normal(shape, dtype=cp.float32) for _ in range(2))
        for label, dk_fn, t_fn, nbytes in bn_cases(dk, torch, cp, x, dy, gpu_inputs(tt), tt):
            yield "bn", label, dk_fn, t_fn, "bytes", nbytes


def _takes_tf32(dk, cp):
    """Whether deepkern's conv2d and conv2d_backward have a tf32= option (tried on a tiny input)."""
    x, w = cp.zeros((1, 1, 3, 3), cp.float32), cp.zeros((1, 1, 3, 3), cp.float32)
    try:
        dk.ops.conv2d(x, w, tf32=True)
        dk.ops.conv2d_backward(cp.zeros((1, 1, 1, 1), cp.float32), x, w, tf32=True)
    except TypeError:
        return False
    return True


def gpu_conv_cases(np, cp, dk, torch, tt):
    tf32 = _takes_tf32(dk, cp)
    for label, xs, ws, stride, pad, groups in CONV_SHAPES:
        xs = (GPU_CONV_BATCH,) + xs[1:]
        x = cp.random.standard_normal(xs, dtype=cp.float32)
        w = (cp.random.standard_normal(ws, dtype=cp.float32) / np.sqrt(np.prod(ws[1:]))).astype(cp.float32)
        b = cp.random.standard_normal(ws[0], dtype=cp.float32)
        dy = cp.random.standard_normal(dk.ops.conv2d(x, w, b, stride, pad, 1, groups).shape, dtype=cp.float32)
        shape = "x".join(map(str, xs)) + " * " + "x".join(map(str, ws)) + f" s{stride} p{pad}" + \
            (f" g{groups}" if groups > 1 else "")
        for what, fn, t_fn, flops in conv_cases(dk, torch, label, x, w, b, dy, stride, pad, groups,
                                                gpu_inputs(tt), tt):
            yield "conv", f"{label} {shape} {what}", fn, t_fn, "flops", flops
        if tf32 and groups == 1:
            for what, fn, t_fn, flops in conv_cases(dk, torch, label, x, w, b, dy, stride, pad, groups,
                                                    gpu_inputs(tt), tt, check=False, tf32=True):
                yield "conv", f"{label} {shape} {what}, TF32", fn, with_tf32(torch, t_fn), "flops", flops


def with_tf32(torch, fn):
    """fn run with TF32 allowed in torch's cuDNN convolutions and cuBLAS matmuls."""
    if fn is None:
        return None

    def run():
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        try:
            return fn()
        finally:
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    return run


def gpu_rnn_cases(np, cp, dk, torch, tt):
    """LSTM cell forward (ops.lstm_cell against torch.nn.LSTMCell under no_grad) and one
    layer over a sequence forward + backward (nn.LSTM against torch.nn.LSTM, cuDNN)."""
    b, i, h, t = GPU_RNN
    x, h0, c0 = (cp.random.standard_normal(s, dtype=cp.float32) for s in ((b, i), (b, h), (b, h)))
    m = dk.nn.LSTM(i, h)
    t_cell = t_seq = None
    if torch is not None:
        tm = torch.nn.LSTM(i, h).cuda()
        m.load_state_dict({k: v.detach().cpu().numpy() for k, v in tm.state_dict().items()})
        tc = torch.nn.LSTMCell(i, h).cuda()
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(tc, name).copy_(getattr(tm, name + "_l0"))
    m.to("cuda")
    w = [p.data for p in m.parameters()]
    dk_cell = lambda: dk.ops.lstm_cell(x, h0, c0, *w)  # noqa: E731
    if torch is not None:
        tx, th, tcc = tt(x), tt(h0), tt(c0)

        def t_cell():
            with torch.no_grad():
                return tc(tx, (th, tcc))
        check_same(np, "lstm_cell", dk_cell()[:2], tuple(t_cell()))
    yield "rnn", f"lstm cell forward, B={b} I={i} H={h}", dk_cell, t_cell, "flops", 2.0 * b * 4 * h * (i + h)
    xs, dy = (cp.random.standard_normal((t, b, n), dtype=cp.float32) for n in (i, h))

    def dk_seq():
        m.zero_grad()
        out, _ = m(xs)
        return out, m.backward(dy)
    if torch is not None:
        txs, tdy = tt(xs).requires_grad_(), tt(dy)

        def t_seq():
            tm.zero_grad(set_to_none=True)
            txs.grad = None
            out, _ = tm(txs)
            out.backward(tdy)
            return out.detach(), txs.grad
        check_same(np, "lstm sequence", dk_seq(), t_seq())
    yield "rnn", f"lstm T={t} fwd+bwd, B={b} I={i} H={h}", dk_seq, t_seq, "flops", 3 * 2.0 * t * b * 4 * h * (i + h)


def gpu_inputs(tt):
    """cyc for the GPU tables: the same inputs every call (they exceed the L2 cache)."""
    def cyc(*arrays):
        tensors = tuple(tt(a) for a in arrays) if tt is not None else None
        return (lambda: arrays), (lambda: tensors)
    return cyc


GPU_CASES = {"optim": gpu_optim_cases, "pool": gpu_pool_cases, "bn": gpu_bn_cases, "conv": gpu_conv_cases,
             "rnn": gpu_rnn_cases}


def bench_gpu(args):
    np, dk, torch = load_peers(args.threads)
    reason = dk.cuda.unavailable_reason()
    if reason is not None:
        sys.exit(f"bench/compare.py --device cuda: no GPU to benchmark on: {reason}")
    import cupy as cp

    if torch is not None and not torch.cuda.is_available():
        print("torch has no CUDA here: the GPU tables have no peer", file=sys.stderr)
        torch = None
    tt = None
    if torch is not None:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        tt = lambda a: torch.as_tensor(a, device="cuda")  # noqa: E731  shares the CuPy array's memory
    cp.random.seed(0)
    gbps, tflops = gpu_roofs(cp, args.repeats)
    rows = []
    for family in ([args.family] if args.family else GPU_FAMILIES):
        # A family whose op has no GPU kernel in this build gets a row saying so, and the
        # others still run: the table is written in any case.
        try:
            for fam, label, dk_fn, t_fn, kind, amount in GPU_CASES[family](np, cp, dk, torch, tt):
                t_dk = gpu_time(cp, dk_fn, args.repeats)
                t_t = gpu_time(cp, t_fn, args.repeats) if t_fn is not None else None
                rate = amount / t_dk / (1e9 if kind == "bytes" else 1e12)
                roof = gbps if kind == "bytes" else tflops
                row = [fam, label, f"{t_dk * 1e3:.3f}", f"{t_t * 1e3:.3f}" if t_t else "-",
                       f"{t_t / t_dk:.2f}" if t_t else "-", f"{rate:.1f} {'GB/s' if kind == 'bytes' else 'TFLOP/s'}",
                       f"{100 * rate / roof:.0f}%"]
                rows.append(row)
                print(" ".join(row), flush=True)
        except Exception as e:  # noqa: BLE001  (reported in the table, not hidden)
            why = " ".join(f"{type(e).__name__}: {e}".split())[:200]
            print(f"{family}: stopped: {why}", file=sys.stderr, flush=True)
            rows.append([family, f"not measured: {why}", "-", "-", "-", "-", "-"])
        cp.get_default_memory_pool().free_all_blocks()
        if torch is not None:
            torch.cuda.empty_cache()
    header = ["family", "case", "deepkern ms", "torch ms", "speed-up vs torch", "deepkern rate", "% of roof"]
    name = dk.cuda.device_name(cp.cuda.runtime.getDevice())
    notes = [f"GPU: {name}; float32; median of {args.repeats} samples of >= 20 ms each, CUDA events; "
             f"CuPy {cp.__version__}, numpy {np.__version__}"
             + (f", torch {torch.__version__} (CUDA {torch.version.cuda})" if torch is not None else ", torch absent"),
             f"Roofs measured on this GPU: device-to-device copy {gbps:.0f} GB/s (read + write) for the "
             f"GB/s rows, cuBLAS SGEMM {tflops:.1f} TFLOP/s (float32, TF32 off) for the TFLOP/s rows; TF32 rows "
             "can pass 100%.",
             "GB/s counts each array an op must touch once (optimizers: params, grads and state read, params and "
             "state written; the checked step also reads the grads once more). TFLOP/s counts the GEMM-equivalent "
             "work (conv: 2 N K oH oW C/g R S per pass, three passes forward + backward; LSTM: 2 B 4H (I + H) per "
             "step, backward twice the forward).",
             "Peers: torch.optim with fused=True where torch has it (Adam, AdamW, SGD), else foreach=True; aten's "
             "pooling, batch-norm and convolution kernels called directly; torch.nn.LSTMCell / LSTM (cuDNN).",
             "", "Command: `python bench/compare.py --device cuda" + (f" {args.family}" if args.family else "")
             + f" --repeats {args.repeats}`"]
    return f"GPU: deepkern vs torch on {name}", notes, header, rows


FAMILIES = {"gemm": bench_gemm, "pool": bench_pool, "bn": bench_bn, "optim": bench_optim, "train": bench_train,
            "rnn": bench_rnn, "conv": bench_conv}


def main():
    args = parse_args()
    set_threads(args.threads)
    if args.device == "cuda":
        title, notes, header, rows = bench_gpu(args)
        out = args.out or os.path.join(HERE, "results", "gpu.md" if args.family is None else f"gpu_{args.family}.md")
        write_table(out, title, notes, header, rows)
        return
    title, notes, header, rows = FAMILIES[args.family](args)
    suffix = "" if args.threads == 2 else f"_t{args.threads}"
    out = args.out or os.path.join(HERE, "results", f"{args.family}{suffix}.md")
    write_table(out, title, notes, header, rows)


if __name__ == "__main__":
    main()
