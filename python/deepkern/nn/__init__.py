"""deepkern.nn: modules with explicit forward/backward, losses and initialisers,
with torch.nn's names, arguments, shapes and parameter names."""
from . import init
from .activation import ELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, SiLU, Softmax, Softplus, Tanh
from .layers import Flatten, Linear
from .loss import CrossEntropyLoss, MSELoss
from .module import IncompatibleKeys, Module, Parameter, Sequential, load, save

__all__ = [
    "init", "Module", "Parameter", "Sequential", "IncompatibleKeys", "save", "load",
    "Linear", "Flatten",
    "ReLU", "LeakyReLU", "ELU", "Sigmoid", "Tanh", "Softplus", "SiLU", "Softmax", "LogSoftmax",
    "CrossEntropyLoss", "MSELoss",
]

from .normalization import BatchNorm1d, BatchNorm2d  # noqa: E402
from .pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d  # noqa: E402

__all__ += ["MaxPool2d", "AvgPool2d", "GlobalAvgPool2d", "BatchNorm1d", "BatchNorm2d"]
