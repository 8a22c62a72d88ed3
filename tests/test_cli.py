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


def test_train_checkpoint_resume_csv_and_plot(tmp_path, capsys):
    """Two epochs, then a resume to three, end where three uninterrupted epochs end."""
    pytest.importorskip("sklearn", reason="scikit-learn (deepkern[examples]) is not installed")
    pytest.importorskip("matplotlib", reason="matplotlib (deepkern[examples]) is not installed")
    common = ["train", "--quiet", "--optimizer", "adam", "--schedule", "exponential", "--seed", "3"]
    assert cli.main(common + ["--epochs", "3"]) == 0
    whole = re.search(r"test loss .*", capsys.readouterr().out).group(0).split("(")[0]
    ck, csv, png = tmp_path / "ck.npz", tmp_path / "log.csv", tmp_path / "curves.png"
    assert cli.main(common + ["--epochs", "2", "--checkpoint", str(ck), "--csv", str(csv)]) == 0
    assert cli.main(common + ["--epochs", "3", "--resume", str(ck), "--csv", str(csv), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert re.findall(r"test loss .*", out)[-1].split("(")[0] == whole
    assert len(csv.read_text().splitlines()) == 4 and png.read_bytes()[:4] == b"\x89PNG"


def test_train_other_models_and_data(capsys):
    pytest.importorskip("sklearn", reason="scikit-learn (deepkern[examples]) is not installed")
    assert cli.main(["train", "--data", "breast_cancer", "--model", "logreg", "--epochs", "20", "--quiet"]) == 0
    acc = float(re.search(r"test accuracy (\d\.\d+)", capsys.readouterr().out).group(1))
    assert acc >= 0.95
    if hasattr(deepkern.nn, "LSTM"):
        assert cli.main(["train", "--model", "lstm", "--optimizer", "adam", "--lr", "0.01", "--epochs", "2",
                         "--quiet"]) == 0
        assert "test accuracy" in capsys.readouterr().out
    if hasattr(deepkern.nn, "Conv2d"):  # the full run (default 15 epochs) reaches 97.8-98.6% on seeds 0-2
        assert cli.main(["train", "--model", "lenet5", "--epochs", "3", "--quiet"]) == 0
        acc = float(re.search(r"test accuracy (\d\.\d+)", capsys.readouterr().out).group(1))
        assert acc >= 0.9


def one_line_error(capsys):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_errors_are_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--optimizer", "lbfgs"])
    assert e.value.code == 2 and "invalid choice: 'lbfgs'" in one_line_error(capsys)
    with pytest.raises(SystemExit):
        cli.main(["train", "--epochs", "many"])
    one_line_error(capsys)
    assert cli.main(["train", "--lr", "-1"]) == 2
    assert "--lr must be > 0" in one_line_error(capsys)
    assert cli.main(["train", "--data", "imagenet"]) == 1
    assert "--data must be" in one_line_error(capsys)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x12\x34\x56\x78" + bytes(100))
    assert cli.main(["train", "--data", f"mnist:{tmp_path}"]) == 1
    assert "not an IDX file" in one_line_error(capsys)
    assert cli.main(["train", "--data", f"cifar10:{tmp_path / 'none'}"]) == 1
    assert "no such file or directory" in one_line_error(capsys)
    (tmp_path / "bad.npz").write_bytes(b"junk")
    assert cli.main(["train", "--resume", str(tmp_path / "bad.npz"), "--epochs", "1"]) == 1
    assert "not a readable checkpoint" in one_line_error(capsys)
    if not deepkern.cuda.is_available():
        assert cli.main(["train", "--device", "cuda"]) == 1
        assert "CUDA is not available" in one_line_error(capsys)


def test_bench_optimizers_plots_every_curve(tmp_path, capsys):
    pytest.importorskip("sklearn", reason="scikit-learn (deepkern[examples]) is not installed")
    pytest.importorskip("matplotlib", reason="matplotlib (deepkern[examples]) is not installed")
    png = tmp_path / "opt.png"
    assert cli.main(["bench", "optimizers", "--epochs", "2", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    for name in ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam"):
        assert re.search(rf"^{name} ", out, re.M), name
    assert png.read_bytes()[:4] == b"\x89PNG"
