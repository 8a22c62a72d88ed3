"""deepkern against its peers (numpy / OpenBLAS, PyTorch / MKL-oneDNN) on the same arrays.

    python bench/compare.py gemm [--threads 2] [--repeats 7]

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
    p.add_argument("family", choices=sorted(FAMILIES), help="which op family to benchmark")
    p.add_argument("--threads", type=int, default=2, help="threads for every library (default 2)")
    p.add_argument("--repeats", type=int, default=7, help="timed samples per case, median reported (default 7)")
    p.add_argument("--out", default=None, help="markdown file for the table (default bench/results/<family>.md)")
    return p.parse_args()


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
    """Warn when deepkern and torch disagree on a case (the table would compare different work)."""
    for u, v in zip(ours if isinstance(ours, tuple) else (ours,), theirs if isinstance(theirs, tuple) else (theirs,)):
        v = v.numpy()
        if not np.abs(u - v).max() <= 1e-5 * max(1.0, float(np.abs(v).max())):  # float32 sums of 1e5 terms
            print(f"warning: deepkern and torch differ on {label}", file=sys.stderr)


def bench_pool(args):
    np, dk, torch = load_peers(args.threads)
    gbps = dk._C.triad_gbps(threads=args.threads)
    F = torch.nn.functional if torch is not None else None
    x = np.random.default_rng(0).standard_normal(POOL_SHAPE, dtype=np.float32)
    nx, tnx = cycling(np, torch, x)
    n = x.nbytes
    cases = []
    for k, s, p in [(2, 2, 0), (3, 2, 1)]:
        out = n // (POOL_SHAPE[2] * POOL_SHAPE[3]) * ((POOL_SHAPE[2] + 2 * p - k) // s + 1) ** 2
        label = f"max_pool2d {k}x{k}/{s} pad {p}, y + int64 indices"
        t_fn = (lambda k=k, s=s, p=p: F.max_pool2d(tnx()[0], k, s, p, return_indices=True)) if torch else None
        cases.append((label, lambda k=k, s=s, p=p: dk.ops.max_pool2d(nx()[0], k, s, p), t_fn, n + 3 * out))
        if torch is not None:
            check_same(np, label, dk.ops.max_pool2d(x, k, s, p),
                       F.max_pool2d(torch.from_numpy(x), k, s, p, return_indices=True))
    for k, s, p in [(2, 2, 0), (3, 2, 1)]:
        out = n // (POOL_SHAPE[2] * POOL_SHAPE[3]) * ((POOL_SHAPE[2] + 2 * p - k) // s + 1) ** 2
        label = f"avg_pool2d {k}x{k}/{s} pad {p}"
        t_fn = (lambda k=k, s=s, p=p: F.avg_pool2d(tnx()[0], k, s, p)) if torch else None
        cases.append((label, lambda k=k, s=s, p=p: dk.ops.avg_pool2d(nx()[0], k, s, p), t_fn, n + out))
        if torch is not None:
            check_same(np, label, dk.ops.avg_pool2d(x, k, s, p), F.avg_pool2d(torch.from_numpy(x), k, s, p))
    label = "global_avg_pool2d (torch: adaptive_avg_pool2d 1)"
    cases.append((label, lambda: dk.ops.global_avg_pool2d(nx()[0]),
                  (lambda: F.adaptive_avg_pool2d(tnx()[0], 1)) if torch else None, n))
    # Backwards against torch's own backward kernels, without autograd's bookkeeping.
    y, idx = dk.ops.max_pool2d(x, 2)
    ny, tny = cycling(np, torch, y, idx)
    cases.append(("max_pool2d 2x2/2 backward", lambda: dk.ops.max_pool2d_backward(*ny(), x.shape),
                  (lambda: torch.ops.aten.max_pool2d_with_indices_backward(tny()[0], tnx()[0], 2, 2, 0, 1, False,
                                                                           tny()[1])) if torch else None,
                  n + 3 * y.nbytes))
    cases.append(("avg_pool2d 2x2/2 backward", lambda: dk.ops.avg_pool2d_backward(ny()[0], x.shape, 2),
                  (lambda: torch.ops.aten.avg_pool2d_backward(tny()[0], tnx()[0], 2, 2, 0, False, True, None))
                  if torch else None, n + y.nbytes))
    rows = bandwidth_rows(np, dk, torch, cases, args.repeats, gbps)
    notes = [f"float32 x {POOL_SHAPE}, {args.threads} thread(s), median of {args.repeats} samples; "
             f"numpy {np.__version__}" + (f", torch {torch.__version__}" if torch is not None else ", torch absent"),
             bandwidth_note(dk, args.threads, gbps), CYCLING_NOTE, "",
             "Command: `python bench/compare.py pool --threads %d --repeats %d`" % (args.threads, args.repeats)]
    return "pool: deepkern vs torch", notes, BANDWIDTH_HEADER, rows


def bench_bn(args):
    np, dk, torch = load_peers(args.threads)
    gbps = dk._C.triad_gbps(threads=args.threads)
    gen = np.random.default_rng(0)
    cases = []
    for shape in [POOL_SHAPE, (256, 512)]:
        c = shape[1]
        x, dy = gen.standard_normal(shape, dtype=np.float32), gen.standard_normal(shape, dtype=np.float32)
        w, b = np.ones(c, np.float32), np.zeros(c, np.float32)
        rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
        _, mean, invstd = dk.ops.batch_norm(x, w, b, rm, rv, True)
        nxt, tnxt = cycling(np, torch, x, dy)
        n = x.nbytes

        def dk_train(nxt=nxt, w=w, b=b, rm=rm, rv=rv):
            x, dy = nxt()
            _, m, s = dk.ops.batch_norm(x, w, b, rm, rv, True)
            return dk.ops.batch_norm_backward(dy, x, w, m, s)

        t = {}
        if torch is not None:  # aten's kernels directly: no autograd bookkeeping in the peer
            tw, tb, trm, trv, tm, ts = (torch.from_numpy(a.copy()) for a in (w, b, rm, rv, mean, invstd))
            aten = torch.ops.aten

            def t_train(tnxt=tnxt, tw=tw, tb=tb, trm=trm, trv=trv):
                tx, tdy = tnxt()
                _, m, s = torch.native_batch_norm(tx, tw, tb, trm, trv, True, 0.1, 1e-5)
                return aten.native_batch_norm_backward(tdy, tx, tw, trm, trv, m, s, True, 1e-5, [True] * 3)

            t = {"train": t_train,
                 "fwd": lambda tnxt=tnxt, tw=tw, tb=tb, trm=trm, trv=trv:
                 torch.native_batch_norm(tnxt()[0], tw, tb, trm, trv, True, 0.1, 1e-5),
                 "bwd": lambda tnxt=tnxt, tw=tw, trm=trm, trv=trv, tm=tm, ts=ts:
                 aten.native_batch_norm_backward(*tnxt()[::-1], tw, trm, trv, tm, ts, True, 1e-5, [True] * 3),
                 "eval": lambda tnxt=tnxt, tw=tw, tb=tb, trm=trm, trv=trv:
                 torch.native_batch_norm(tnxt()[0], tw, tb, trm, trv, False, 0.1, 1e-5)}
            label = "x".join(map(str, shape))
            tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)
            _, tm_, ts_ = torch.native_batch_norm(tx, tw, tb, None, None, True, 0.1, 1e-5)
            check_same(np, f"batch_norm {label}",
                       dk.ops.batch_norm_backward(dy, x, w, *dk.ops.batch_norm(x, w, b, None, None, True)[1:]),
                       tuple(aten.native_batch_norm_backward(tdy, tx, tw, None, None, tm_, ts_, True, 1e-5,
                                                             [True] * 3)))
        s = "x".join(map(str, shape))
        cases += [
            (f"batch_norm {s} training forward + backward", dk_train, t.get("train"), 5 * n),
            (f"batch_norm {s} training forward", lambda nxt=nxt, w=w, b=b, rm=rm, rv=rv:
             dk.ops.batch_norm(nxt()[0], w, b, rm, rv, True), t.get("fwd"), 2 * n),
            (f"batch_norm {s} backward", lambda nxt=nxt, w=w, m=mean, s_=invstd:
             dk.ops.batch_norm_backward(*nxt()[::-1], w, m, s_), t.get("bwd"), 3 * n),
            (f"batch_norm {s} eval forward", lambda nxt=nxt, w=w, b=b, rm=rm, rv=rv:
             dk.ops.batch_norm(nxt()[0], w, b, rm, rv, False), t.get("eval"), 2 * n)]
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


def bench_conv(args):
    np, dk, torch = load_peers(args.threads)
    peak = measured_peak(dk, args.threads, "float32")
    gen = np.random.default_rng(0)
    F = torch.nn.functional if torch is not None else None
    rows = []
    for label, xs, ws, stride, pad, groups in CONV_SHAPES:
        x = gen.standard_normal(xs, dtype=np.float32)
        w = (gen.standard_normal(ws, dtype=np.float32) / np.sqrt(np.prod(ws[1:]))).astype(np.float32)
        b = gen.standard_normal(ws[0], dtype=np.float32)
        y = dk.ops.conv2d(x, w, b, stride, pad, 1, groups)
        dy = gen.standard_normal(y.shape, dtype=np.float32)
        nxt, tnxt = cycling(np, torch, x, dy)
        kw = dict(stride=stride, padding=pad, dilation=1, groups=groups)
        fwd_flops = 2.0 * y.size * np.prod(ws[1:])

        def dk_train():
            x, dy = nxt()
            dk.ops.conv2d(x, w, b, **kw)
            return dk.ops.conv2d_backward(dy, x, w, **kw)
        cases = [("forward", lambda: dk.ops.conv2d(nxt()[0], w, b, **kw), fwd_flops),
                 ("forward + backward", dk_train, 3 * fwd_flops)]
        peers = {}
        if torch is not None:
            tw, tb = torch.from_numpy(w), torch.from_numpy(b)
            conv_bwd = torch.ops.aten.convolution_backward

            def t_fwd():
                with torch.no_grad():
                    return F.conv2d(tnxt()[0], tw, tb, **kw)

            def t_train():  # aten's forward and backward kernels, without autograd's bookkeeping
                tx, tdy = tnxt()
                with torch.no_grad():
                    F.conv2d(tx, tw, tb, **kw)
                return conv_bwd(tdy, tx, tw, [ws[0]], [stride] * 2, [pad] * 2, [1, 1], False, [0, 0], groups,
                                [True, True, True])
            peers = {"forward": t_fwd, "forward + backward": t_train}
            tx, tdy = torch.from_numpy(x), torch.from_numpy(dy)
            check_same(np, f"conv2d {label}", y, F.conv2d(tx, tw, tb, **kw))
            check_same(np, f"conv2d_backward {label}", dk.ops.conv2d_backward(dy, x, w, **kw),
                       tuple(conv_bwd(tdy, tx, tw, [ws[0]], [stride] * 2, [pad] * 2, [1, 1], False, [0, 0], groups,
                                      [True, True, True])))
        for what, fn, flops in cases:
            fns = {"deepkern": fn}
            if what in peers:
                fns["torch"] = peers[what]
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


def optim_case_fns(dk, torch, name, kw, has_fused, data, grads):
    """Each contender's optimizer.step over its own copy of the params, the grads shared."""
    fns = {}
    for mode in ("ignore", "skip"):
        ps = [dk.nn.Parameter(d.copy()) for d in data]
        for p, g in zip(ps, grads):
            p.grad = g
        fns[f"dk-{mode}"] = getattr(dk.optim, name)(ps, nonfinite=mode, **kw).step
    if torch is not None:
        for tag, extra in [("loop", dict(foreach=False))] + ([("fused", dict(fused=True))] if has_fused else []):
            ts = [torch.from_numpy(d.copy()).requires_grad_() for d in data]
            for t, g in zip(ts, grads):
                t.grad = torch.from_numpy(g)
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


FAMILIES = {"gemm": bench_gemm, "pool": bench_pool, "bn": bench_bn, "optim": bench_optim, "train": bench_train,
            "rnn": bench_rnn, "conv": bench_conv}


def main():
    args = parse_args()
    set_threads(args.threads)
    title, notes, header, rows = FAMILIES[args.family](args)
    suffix = "" if args.threads == 2 else f"_t{args.threads}"
    out = args.out or os.path.join(HERE, "results", f"{args.family}{suffix}.md")
    write_table(out, title, notes, header, rows)


if __name__ == "__main__":
    main()
