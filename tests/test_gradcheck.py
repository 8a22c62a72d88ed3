"""deepkern.gradcheck: passes correct backwards, catches wrong ones (input or
parameter gradients), works on function pairs and losses, leaves the module alone."""
import numpy as np
import pytest

import deepkern
from deepkern import gradcheck, nn, ops


def x_of(shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape)


def test_correct_modules_pass_with_small_errors():
    g = np.random.default_rng(0)
    model = nn.Sequential(nn.Linear(5, 7, rng=g), nn.Tanh(), nn.BatchNorm1d(7), nn.Linear(7, 3, rng=g))
    result = gradcheck(model, x_of((6, 5)))
    assert result.ok and bool(result)
    assert list(result.errors) == ["input0", "0.weight", "0.bias", "2.weight", "2.bias", "3.weight", "3.bias"]
    assert result.worst < 1e-6
    assert model[0].weight.dtype == np.float32  # the check ran on a float64 copy
    assert "ok" in repr(result) and "0.weight" in repr(result)


def test_a_wrong_backward_is_caught():
    class WrongInputGrad(nn.Linear):
        def backward(self, dy):
            return 1.01 * super().backward(dy)

    class WrongWeightGrad(nn.Linear):
        def backward(self, dy):
            dx = super().backward(dy)
            self.weight.grad[0, 0] += 1e-3
            return dx

    r = gradcheck(WrongInputGrad(4, 3, rng=np.random.default_rng(0)), x_of((5, 4)))
    assert not r.ok and r.errors["input0"] > 1e-3 and r.errors["weight"] < 1e-6
    r = gradcheck(WrongWeightGrad(4, 3, rng=np.random.default_rng(0)), x_of((5, 4)))
    assert not r.ok and r.errors["weight"] > 1e-5 and r.errors["input0"] < 1e-6
    assert "FAIL" in repr(r)
    with pytest.raises(AssertionError, match="FAILED"):
        gradcheck(WrongWeightGrad(4, 3), x_of((5, 4)), raise_on_failure=True)


def test_function_pairs_and_losses():
    x = x_of((4, 6))
    assert gradcheck((ops.sigmoid, lambda dy, x: ops.sigmoid_backward(dy, ops.sigmoid(x))), [x])
    assert gradcheck((ops.relu, lambda dy, x: ops.relu_backward(dy, x)), [x + 0.01 * np.sign(x)])
    bad = gradcheck((ops.relu, lambda dy, x: dy), [x])
    assert not bad.ok
    target = np.array([0, 2, 1, 5])
    r = gradcheck(nn.CrossEntropyLoss(), [x, target])  # integer targets pass through unchecked
    assert r.ok and list(r.errors) == ["input0"]
    a, b = x_of((3, 4), 1), x_of((3, 4), 2)
    r = gradcheck((lambda a, b: a * b, lambda dy, a, b: (dy * b, dy * a)), [a, b])
    assert r.ok and list(r.errors) == ["input0", "input1"]


def test_sampling_and_bad_arguments():
    m = nn.Linear(30, 20, rng=np.random.default_rng(0))
    assert gradcheck(m, x_of((2, 30)), max_elements=10).ok
    with pytest.raises(TypeError, match="Module or a pair"):
        gradcheck(lambda x: x, [x_of(3)])


def test_exported_at_top_level():
    assert deepkern.gradcheck is gradcheck
    from deepkern.gradcheck import GradcheckResult
    assert isinstance(gradcheck(nn.Linear(2, 2), x_of((1, 2))), GradcheckResult)
