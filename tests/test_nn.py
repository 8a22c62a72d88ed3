"""deepkern.nn: modules, losses and initialisers against tests/reference.py (float64),
against torch.nn with copied weights, and by finite differences in float64."""
import math

import numpy as np
import pytest

import deepkern as dk
import reference as ref
from deepkern import nn
from helpers import DTYPES, assert_close, assert_grad, randn, rng, torch_or_skip

LINEAR_SHAPES = [(1, 1, 1), (7, 13, 5), (0, 3, 4), (33, 17, 10), (5, 16, 31)]

# name, module factory, float64 reference, torch factory (called with the torch module)
ACTIVATIONS = [
    ("relu", lambda: nn.ReLU(), ref.relu, lambda t: t.nn.ReLU()),
    ("leaky_relu", lambda: nn.LeakyReLU(0.2), lambda x: ref.leaky_relu(x, 0.2), lambda t: t.nn.LeakyReLU(0.2)),
    ("elu", lambda: nn.ELU(0.7), lambda x: ref.elu(x, 0.7), lambda t: t.nn.ELU(0.7)),
    ("sigmoid", lambda: nn.Sigmoid(), ref.sigmoid, lambda t: t.nn.Sigmoid()),
    ("tanh", lambda: nn.Tanh(), ref.tanh, lambda t: t.nn.Tanh()),
    ("softplus", lambda: nn.Softplus(2.0, 3.0), lambda x: ref.softplus(x, 2.0, 3.0),
     lambda t: t.nn.Softplus(2.0, 3.0)),
    ("silu", lambda: nn.SiLU(), ref.silu, lambda t: t.nn.SiLU()),
    ("softmax", lambda: nn.Softmax(1), lambda x: ref.softmax(x, 1), lambda t: t.nn.Softmax(1)),
    ("log_softmax", lambda: nn.LogSoftmax(-1), lambda x: ref.log_softmax(x, -1), lambda t: t.nn.LogSoftmax(-1)),
]
ACT_IDS = [a[0] for a in ACTIVATIONS]


def mlp(dtype=np.float32, seed=0, sizes=(6, 9, 7, 4), act=nn.ReLU):
    g = np.random.default_rng(seed)
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b, dtype=dtype, rng=g))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


# -- Linear --------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n,k,m", LINEAR_SHAPES)
def test_linear_forward_backward_matches_reference(dtype, n, k, m):
    g = rng(n * 100 + k)
    layer = nn.Linear(k, m, dtype=dtype, rng=g)
    x, dy = randn(g, (n, k), dtype), randn(g, (n, m), dtype)
    w, b = layer.weight.data, layer.bias.data
    assert_close(layer(x), ref.linear(x, w, b), dtype, scale=math.sqrt(k), name="y")
    dx = layer.backward(dy)
    rdx, rdw, rdb = ref.linear_backward(dy, x, w)
    assert_close(dx, rdx, dtype, scale=math.sqrt(m), name="dx")
    assert_close(layer.weight.grad, rdw, dtype, scale=math.sqrt(max(n, 1)), name="dw")
    assert_close(layer.bias.grad, rdb, dtype, scale=math.sqrt(max(n, 1)), name="db")
    layer.backward(dy)  # gradients accumulate, as torch
    assert_close(layer.weight.grad, 2 * rdw, dtype, scale=math.sqrt(max(n, 1)), name="accumulated dw")


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_batched_leading_dims_and_no_bias(dtype):
    g = rng(1)
    layer = nn.Linear(5, 3, bias=False, dtype=dtype, rng=g)
    assert layer.bias is None and [n for n, _ in layer.named_parameters()] == ["weight"]
    x, dy = randn(g, (2, 4, 5), dtype), randn(g, (2, 4, 3), dtype)
    assert_close(layer(x), ref.linear(x, layer.weight.data), dtype, scale=3)
    dx = layer.backward(dy)
    rdx, rdw, _ = ref.linear_backward(dy.reshape(-1, 3), x.reshape(-1, 5), layer.weight.data)
    assert_close(dx, rdx.reshape(x.shape), dtype, scale=3)
    assert_close(layer.weight.grad, rdw, dtype, scale=3)
    with pytest.raises(ValueError, match=r"\[Linear\] dy must have shape"):
        layer.backward(dy[:, :3])


def test_linear_default_init_is_torchs_and_reproducible():
    layer = nn.Linear(50, 400, rng=np.random.default_rng(3))
    bound = 1 / math.sqrt(50)  # kaiming_uniform_(a=sqrt(5)) and the bias rule both give 1/sqrt(in)
    for p in (layer.weight.data, layer.bias.data):
        assert p.dtype == np.float32 and np.abs(p).max() <= bound
    w = layer.weight.data
    assert abs(w.std() - bound / math.sqrt(3)) < 0.02 * bound and abs(w.mean()) < 0.01 * bound
    again = nn.Linear(50, 400, rng=np.random.default_rng(3))
    assert np.array_equal(again.weight.data, w) and np.array_equal(again.bias.data, layer.bias.data)
    dk.manual_seed(7)
    a = nn.Linear(4, 4)
    dk.manual_seed(7)
    assert np.array_equal(nn.Linear(4, 4).weight.data, a.weight.data)
    with pytest.raises(ValueError, match="in_features"):
        nn.Linear(-1, 3)
    with pytest.raises(TypeError, match="float32 or float64"):
        nn.Linear(2, 3, dtype=np.int32)


def test_linear_wrong_dtype_input_raises():
    layer = nn.Linear(3, 2)
    with pytest.raises(TypeError):
        layer(np.ones((4, 3), np.float64))


# -- activations -------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,make,reference,_", ACTIVATIONS, ids=ACT_IDS)
def test_activation_forward_matches_reference(name, make, reference, _, dtype):
    g = rng(len(name))
    x = (3 * randn(g, (7, 19), dtype)).astype(dtype)
    assert_close(make()(x), reference(x), dtype, name=name)
    assert make()(x[:0]).shape == (0, 19)


@pytest.mark.parametrize("name,make,reference,_", ACTIVATIONS, ids=ACT_IDS)
def test_activation_backward_by_finite_differences(name, make, reference, _):
    g = rng(2 + len(name))
    x, dy = 3 * randn(g, (5, 11), np.float64), randn(g, (5, 11), np.float64)
    m = make()
    m(x)
    dx = m.backward(dy)
    assert_grad(dx, lambda: float((dy * reference(x)).sum()), x, name=name)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name,make,_,torch_make", ACTIVATIONS, ids=ACT_IDS)
def test_activation_matches_torch(name, make, _, torch_make, dtype):
    torch = torch_or_skip()
    g = rng(5 + len(name))
    x, dy = 3 * randn(g, (6, 23), dtype), randn(g, (6, 23), dtype)
    m = make()
    y, dx = m(x), m.backward(dy)
    tx = torch.tensor(x, requires_grad=True)
    ty = torch_make(torch)(tx)
    ty.backward(torch.tensor(dy))
    assert_close(y, ty.detach().numpy(), dtype, name=name)
    assert_close(dx, tx.grad.numpy(), dtype, name=name + " dx")


def test_backward_before_forward_raises():
    for m in (nn.ReLU(), nn.Sigmoid(), nn.Linear(2, 2), nn.Flatten(), nn.MSELoss(), nn.CrossEntropyLoss()):
        with pytest.raises(RuntimeError, match="before forward"):
            m.backward(np.ones((1, 2), np.float32))


# -- Flatten, Sequential -----------------------------------------------------

def test_flatten():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    f = nn.Flatten()
    y = f(x)
    assert y.shape == (2, 60) and np.array_equal(y.ravel(), x.ravel())
    assert f.backward(y).shape == x.shape
    assert nn.Flatten(1, 2)(x).shape == (2, 12, 5) and nn.Flatten(0, -1)(x).shape == (120,)
    with pytest.raises(ValueError, match=r"\[Flatten\]"):
        nn.Flatten(3, 1)(x)


def test_sequential_container():
    a, b, c = nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)
    s = nn.Sequential(a, b)
    s.append(c)
    assert len(s) == 3 and s[0] is a and s[-1] is c and list(s) == [a, b, c]
    tail = s[1:]
    assert isinstance(tail, nn.Sequential) and [n for n, _ in tail.named_children()] == ["1", "2"]
    assert [n for n, _ in s.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    with pytest.raises(IndexError):
        s[3]
    assert "(0): Linear(in_features=3, out_features=4, bias=True)" in repr(s)
    x = np.ones((2, 3), np.float32)
    assert np.array_equal(s(x), c(b(a(x))))


def _mlp_reference(model, x, labels):
    """float64 forward and backward of Linear/ReLU stacks with cross-entropy (mean)."""
    acts, h = [], np.asarray(x, np.float64)
    for m in model:
        acts.append(h)
        h = ref.linear(h, m.weight.data, m.bias.data) if isinstance(m, nn.Linear) else ref.relu(h)
    loss = ref.cross_entropy(h, labels)
    d = ref.softmax(h, 1)
    d[np.arange(len(labels)), labels] -= 1
    d /= len(labels)
    grads = {}
    for i in reversed(range(len(model))):
        m, a = model[i], acts[i]
        if isinstance(m, nn.Linear):
            d, grads[f"{i}.weight"], grads[f"{i}.bias"] = ref.linear_backward(d, a, m.weight.data)
        else:
            d = d * (a > 0)
    return loss, d, grads


@pytest.mark.parametrize("dtype", DTYPES)
def test_mlp_forward_backward_matches_reference(dtype):
    g = rng(11)
    model = mlp(dtype, sizes=(13, 17, 9, 5))
    x, labels = randn(g, (10, 13), dtype), g.integers(0, 5, 10)
    loss_fn = nn.CrossEntropyLoss()
    loss = loss_fn(model(x), labels)
    model.zero_grad()
    dx = model.backward(loss_fn.backward())
    rloss, rdx, rgrads = _mlp_reference(model, x, labels)
    assert_close(loss, rloss, dtype, scale=4, name="loss")
    assert_close(dx, rdx, dtype, scale=4, name="dx")
    for name, p in model.named_parameters():
        assert_close(p.grad, rgrads[name], dtype, scale=4, name=name)


def test_mlp_gradients_by_finite_differences_float64():
    g = rng(12)
    model = nn.Sequential(nn.Linear(4, 6, dtype=np.float64, rng=g), nn.Tanh(),
                          nn.Linear(6, 5, dtype=np.float64, rng=g), nn.SiLU(),
                          nn.Linear(5, 3, dtype=np.float64, rng=g))
    x, labels = randn(g, (7, 4), np.float64), g.integers(0, 3, 7)
    loss_fn = nn.CrossEntropyLoss()
    loss_fn(model(x), labels)
    dx = model.backward(loss_fn.backward())

    def f():
        return loss_fn(model(x), labels)

    for name, p in model.named_parameters():
        assert_grad(p.grad, f, p.data, name=name)
    assert_grad(dx, f, x, name="x")


@pytest.mark.parametrize("dtype", DTYPES)
def test_model_matches_torch_with_copied_weights(dtype):
    torch = torch_or_skip()
    tn = torch.nn
    torch.manual_seed(0)
    tmodel = tn.Sequential(tn.Linear(12, 20), tn.ELU(), tn.Linear(20, 16), tn.Sigmoid(),
                           tn.Linear(16, 6)).to(torch.float64 if dtype == np.float64 else torch.float32)
    model = nn.Sequential(nn.Linear(12, 20, dtype=dtype), nn.ELU(), nn.Linear(20, 16, dtype=dtype),
                          nn.Sigmoid(), nn.Linear(16, 6, dtype=dtype))
    tsd = {k: v.detach().numpy() for k, v in tmodel.state_dict().items()}
    assert list(model.state_dict()) == list(tsd) == [n for n, _ in tmodel.named_parameters()]
    model.load_state_dict(tsd)
    g = rng(13)
    x, labels = randn(g, (9, 12), dtype), g.integers(0, 6, 9)
    loss_fn = nn.CrossEntropyLoss()
    loss = loss_fn(model(x), labels)
    dx = model.backward(loss_fn.backward())
    tx = torch.tensor(x, requires_grad=True)
    tloss = tn.CrossEntropyLoss()(tmodel(tx), torch.tensor(labels))
    tloss.backward()
    assert_close(loss, tloss.item(), dtype, scale=4, name="loss")
    assert_close(dx, tx.grad.numpy(), dtype, scale=4, name="dx")
    for name, p in tmodel.named_parameters():
        assert_close(dict(model.named_parameters())[name].grad, p.grad.numpy(), dtype, scale=4, name=name)


# -- losses --------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_losses_match_reference_and_torch(dtype, reduction):
    g = rng(14)
    logits, labels = randn(g, (8, 5), dtype), g.integers(0, 5, 8)
    pred, target = randn(g, (8, 3), dtype), randn(g, (8, 3), dtype)
    ce, mse = nn.CrossEntropyLoss(reduction), nn.MSELoss(reduction)
    assert_close(ce(logits, labels), ref.cross_entropy(logits, labels, reduction), dtype, name="ce")
    assert_close(mse(pred, target), ref.mse(pred, target, reduction), dtype, name="mse")
    torch = torch_or_skip()
    tl = torch.tensor(logits, requires_grad=True)
    tp = torch.tensor(pred, requires_grad=True)
    tce = torch.nn.CrossEntropyLoss(reduction=reduction)(tl, torch.tensor(labels))
    tmse = torch.nn.MSELoss(reduction=reduction)(tp, torch.tensor(target))
    w_ce = randn(g, (8,), dtype) if reduction == "none" else 1.5
    w_mse = randn(g, (8, 3), dtype) if reduction == "none" else 1.5
    tce.backward(torch.tensor(w_ce) if reduction == "none" else torch.tensor(w_ce, dtype=tce.dtype))
    tmse.backward(torch.tensor(w_mse) if reduction == "none" else torch.tensor(w_mse, dtype=tmse.dtype))
    assert_close(ce.backward(w_ce), tl.grad.numpy(), dtype, name="dce")
    assert_close(mse.backward(w_mse), tp.grad.numpy(), dtype, name="dmse")


def test_loss_bad_reduction():
    with pytest.raises(ValueError, match="reduction"):
        nn.CrossEntropyLoss("avg")


# -- Module machinery, state dicts -----------------------------------------------

class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(3, 4), nn.ReLU())
        self.head = nn.Linear(4, 2)
        self.register_buffer("scale", np.ones(2, np.float32))

    def forward(self, x):
        return self.head(self.encoder(x)) * self.scale


def test_module_names_modes_zero_grad_and_to():
    m = Block()
    assert [n for n, _ in m.named_parameters()] == ["encoder.0.weight", "encoder.0.bias", "head.weight", "head.bias"]
    assert list(m.state_dict()) == ["scale", "encoder.0.weight", "encoder.0.bias", "head.weight", "head.bias"]
    assert [n for n, _ in m.named_modules()] == ["", "encoder", "encoder.0", "encoder.1", "head"]
    assert all(x.training for x in m.modules())
    m.eval()
    assert not any(x.training for x in m.modules())
    m.train()
    assert all(x.training for x in m.modules())
    for p in m.parameters():
        p.grad = np.ones_like(p.data)
    m.zero_grad(set_to_none=False)
    assert all(not p.grad.any() for p in m.parameters())
    m.zero_grad()
    assert all(p.grad is None for p in m.parameters())
    m.to(np.float64)
    assert all(p.dtype == np.float64 for p in m.parameters()) and m.scale.dtype == np.float64
    assert m(np.ones((2, 3))).dtype == np.float64
    with pytest.raises(TypeError):
        m.head = np.zeros(3)  # replacing a child with a non-module
    with pytest.raises(TypeError, match="float32 or float64"):
        nn.Parameter(np.zeros(3, np.int64))


def test_state_dict_round_trip_through_npz(tmp_path):
    model = mlp(seed=1)
    sd = model.state_dict()
    sd["0.weight"][...] = 0  # a copy: the model is untouched
    assert model[0].weight.data.any()
    path = tmp_path / "model.npz"
    nn.save(model.state_dict(), path)
    other = mlp(seed=2)
    other.load_state_dict(nn.load(path))
    x = randn(rng(3), (4, 6), np.float32)
    assert np.array_equal(other(x), model(x))
    assert list(nn.load(path)) == list(model.state_dict())


def test_load_state_dict_errors_write_nothing():
    model = mlp()
    good = model.state_dict()
    before = model[0].weight.data.copy()
    bad = dict(good, **{"0.weight": np.zeros_like(good["0.weight"])})
    del bad["2.bias"]
    with pytest.raises(ValueError, match=r"missing key\(s\): 2\.bias"):
        model.load_state_dict(bad)
    assert np.array_equal(model[0].weight.data, before)
    with pytest.raises(ValueError, match=r"unexpected key\(s\): extra"):
        model.load_state_dict(dict(good, extra=np.zeros(2)))
    with pytest.raises(ValueError, match=r"0\.bias has shape \(3,\)"):
        model.load_state_dict(dict(good, **{"0.bias": np.zeros(3, np.float32)}))
    with pytest.raises(TypeError, match="0.bias has dtype float64"):
        model.load_state_dict(dict(good, **{"0.bias": good["0.bias"].astype(np.float64)}))
    missing, unexpected = model.load_state_dict(dict(bad, extra=np.zeros(2)), strict=False)
    assert missing == ["2.bias"] and unexpected == ["extra"]
    assert not model[0].weight.data.any()


# -- init ----------------------------------------------------------------------

def _assert_stats(a, std, mean=0.0, kurtosis=3.0, bound=None):
    """Sample mean and std within 5 standard errors of the distribution's."""
    n = a.size
    a = a.astype(np.float64)
    assert abs(a.mean() - mean) < 5 * std / math.sqrt(n)
    assert abs(a.std() - std) < 5 * std * math.sqrt((kurtosis - 1) / (4 * n))
    if bound is not None:
        assert np.abs(a - mean).max() <= bound


UNIFORM_K = 1.8  # kurtosis of a uniform distribution


@pytest.mark.parametrize("dtype", DTYPES)
def test_init_statistics(dtype):
    shape = (300, 200)
    fan_in, fan_out = 200, 300
    a = np.empty(shape, dtype)
    b = math.sqrt(6 / (fan_in + fan_out))
    _assert_stats(nn.init.xavier_uniform_(a, rng=rng(0)), b / math.sqrt(3), kurtosis=UNIFORM_K, bound=b)
    _assert_stats(nn.init.xavier_normal_(a, gain=2.0, rng=rng(1)), 2 * math.sqrt(2 / (fan_in + fan_out)))
    b = math.sqrt(2) * math.sqrt(3 / fan_in)
    _assert_stats(nn.init.kaiming_uniform_(a, nonlinearity="relu", rng=rng(2)), b / math.sqrt(3),
                  kurtosis=UNIFORM_K, bound=b)
    _assert_stats(nn.init.kaiming_normal_(a, mode="fan_out", nonlinearity="relu", rng=rng(3)),
                  math.sqrt(2) / math.sqrt(fan_out))
    _assert_stats(nn.init.uniform_(a, -2.0, 4.0, rng=rng(4)), 6 / math.sqrt(12), mean=1.0,
                  kurtosis=UNIFORM_K, bound=3.0)
    _assert_stats(nn.init.normal_(a, 0.5, 0.1, rng=rng(5)), 0.1, mean=0.5)
    assert not nn.init.zeros_(a).any() and (nn.init.ones_(a) == 1).all()
    assert a.dtype == dtype


def test_init_reproducible_and_accepts_parameters():
    p = nn.Parameter(np.empty((8, 5), np.float32))
    nn.init.kaiming_normal_(p, rng=rng(9))
    q = nn.init.kaiming_normal_(np.empty((8, 5), np.float32), rng=rng(9))
    assert np.array_equal(p.data, q)
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        nn.init.xavier_uniform_(np.empty(5))
    with pytest.raises(ValueError, match="mode"):
        nn.init.kaiming_uniform_(np.empty((2, 2)), mode="fan_avg")
    with pytest.raises(TypeError, match="Generator"):
        nn.init.normal_(np.empty(2), rng=3)


def test_calculate_gain_matches_torch():
    expected = {("linear", None): 1.0, ("sigmoid", None): 1.0, ("tanh", None): 5 / 3,
                ("relu", None): math.sqrt(2), ("leaky_relu", None): math.sqrt(2 / (1 + 0.01 ** 2)),
                ("leaky_relu", 0.2): math.sqrt(2 / 1.04), ("selu", None): 0.75}
    for (nl, param), v in expected.items():
        assert nn.init.calculate_gain(nl, param) == pytest.approx(v, rel=1e-15)
    torch = torch_or_skip()
    for nl, param in expected:
        assert nn.init.calculate_gain(nl, param) == pytest.approx(torch.nn.init.calculate_gain(nl, param))
    with pytest.raises(ValueError, match="unsupported"):
        nn.init.calculate_gain("swish")


# -- residual blocks -------------------------------------------------------------

def _torch_basic_block(torch, block):
    """The same block in torch (torchvision's BasicBlock layout), weights copied."""
    tn = torch.nn

    class TorchBlock(tn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = tn.Conv2d(cin, cout, 3, stride, 1, bias=False, dtype=torch.float64)
            self.bn1 = tn.BatchNorm2d(cout, dtype=torch.float64)
            self.conv2 = tn.Conv2d(cout, cout, 3, 1, 1, bias=False, dtype=torch.float64)
            self.bn2 = tn.BatchNorm2d(cout, dtype=torch.float64)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = tn.Sequential(tn.Conv2d(cin, cout, 1, stride, bias=False, dtype=torch.float64),
                                                tn.BatchNorm2d(cout, dtype=torch.float64))

        def forward(self, x):
            out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
            return torch.relu(out + (self.downsample(x) if self.downsample is not None else x))

    cin, cout, stride = block.conv1.in_channels, block.conv1.out_channels, block.conv1.stride[0]
    t = TorchBlock(cin, cout, stride)
    t.load_state_dict({k: torch.tensor(v) for k, v in block.state_dict().items()})
    return t


@pytest.mark.parametrize("cin,cout,stride", [(4, 4, 1), (3, 6, 2), (5, 5, 2)])
def test_basic_block_matches_torch(cin, cout, stride):
    torch = torch_or_skip()
    gen = rng(21)
    block = nn.BasicBlock(cin, cout, stride, dtype=np.float64, rng=gen)
    for m in block.modules():  # non-trivial batch norm affine parameters
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data[...] = gen.uniform(0.5, 1.5, m.weight.shape)
            m.bias.data[...] = gen.standard_normal(m.bias.shape) * 0.1
    assert ("downsample.0.weight" in block.state_dict()) == (stride != 1 or cin != cout)
    t = _torch_basic_block(torch, block)
    x = gen.standard_normal((2, cin, 7, 9))
    y = block(x)  # one forward each: both update their running statistics once
    dy = gen.standard_normal(y.shape)
    tx = torch.tensor(x, requires_grad=True)
    ty = t(tx)
    ty.backward(torch.tensor(dy))
    assert_close(y, ty.detach().numpy(), np.float64, scale=10)
    block.zero_grad()
    dx = block.backward(dy)
    assert_close(dx, tx.grad.numpy(), np.float64, scale=100)
    tparams = dict(t.named_parameters())
    for name, p in block.named_parameters():
        assert_close(p.grad, tparams[name].grad.numpy(), np.float64, scale=100, name=name)
    for name, b in block.named_buffers():
        if name.endswith("running_mean") or name.endswith("running_var"):
            assert_close(b, t.state_dict()[name].numpy(), np.float64, name=name)


def test_residual_sums_its_branches():
    gen = rng(22)
    body = nn.Sequential(nn.Linear(5, 5, dtype=np.float64, rng=gen), nn.Tanh())
    res = nn.Residual(body)
    x = gen.standard_normal((3, 5))
    assert_close(res(x), body(x) + x, np.float64)
    dy = gen.standard_normal((3, 5))
    res(x)
    dx = res.backward(dy)

    def f():
        return float(np.sum(res(x) * dy))

    assert_grad(dx, f, x)
    short = nn.Residual(nn.Linear(5, 2, dtype=np.float64), nn.Linear(5, 2, dtype=np.float64))
    assert short(x).shape == (3, 2)
    with pytest.raises(ValueError, match=r"\[Residual\] body gives shape \(3, 2\) but the shortcut \(3, 5\)"):
        nn.Residual(nn.Linear(5, 2, dtype=np.float64))(x)
