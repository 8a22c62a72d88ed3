"""The deepkern command: `info` prints the configuration, `train` reaches >= 95% test
accuracy on scikit-learn's digits."""
import os
import re
import subprocess
import sys

import pytest

import deepkern
from deepkern import cli


def test_info_prints_the_isa():
    # A subprocess also checks `python -m deepkern` (the __main__ module).
    r = subprocess.run([sys.executable, "-m", "deepkern", "info"], capture_output=True, text=True,
                       env=dict(os.environ), timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"CPU ISA: {deepkern._C.isa()}" in r.stdout
    assert "threads:" in r.stdout and "CUDA:" in r.stdout


def test_train_reaches_95_percent_on_digits(capsys):
    pytest.importorskip("sklearn", reason="scikit-learn (deepkern[examples]) is not installed")
    assert cli.main(["train", "--epochs", "10", "--seed", "0"]) == 0
    out = capsys.readouterr().out
    assert out.count("epoch ") == 10 and "val_accuracy" in out
    acc = float(re.search(r"test accuracy (\d\.\d+)", out).group(1))
    assert acc >= 0.95, out


def test_bad_arguments(capsys):
    assert cli.main(["train", "--batch-size", "0"]) == 2
    assert "--batch-size must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["train", "--model", "resnet"])
    with pytest.raises(SystemExit):
        cli.main([])


def test_package_surface_and_config():
    import io
    assert deepkern.linear is deepkern.ops.linear and deepkern.sgd_step is deepkern.ops.sgd_step
    for name in ("nn", "optim", "train", "data", "cuda", "show_config", "get_num_threads", "set_num_threads"):
        assert hasattr(deepkern, name), name
    buf = io.StringIO()
    deepkern.show_config(file=buf)
    text = buf.getvalue()
    assert text.startswith("deepkern ") and f"best available: {deepkern._C.best_isa()}" in text
    assert f"threads: {deepkern.get_num_threads()}" in text


def test_cuda_queries_never_fail():
    cuda = deepkern.cuda
    n = cuda.device_count()
    assert cuda.is_available() == (n > 0) and (cuda.is_built() or n == 0)
    if n:
        assert isinstance(cuda.device_name(0), str) and cuda.device_name(0)
    with pytest.raises((ValueError, RuntimeError), match=r"\[cuda\]"):
        cuda.device_name(n)
