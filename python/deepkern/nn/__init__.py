"""deepkern.nn: modules with explicit forward/backward, losses and initialisers,
with torch.nn's names, arguments, shapes and parameter names."""
from . import init
from .activation import ELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, SiLU, Softmax, Softplus, Tanh
from .layers import Flatten, Linear
from .loss import BCEWithLogitsLoss, CrossEntropyLoss, MSELoss, MultiMarginLoss
from .module import IncompatibleKeys, Module, Parameter, Sequential, load, save

__all__ = [
    "init", "Module", "Parameter", "Sequential", "IncompatibleKeys", "save", "load",
    "Linear", "Flatten",
    "ReLU", "LeakyReLU", "ELU", "Sigmoid", "Tanh", "Softplus", "SiLU", "Softmax", "LogSoftmax",
    "CrossEntropyLoss", "MSELoss", "BCEWithLogitsLoss", "MultiMarginLoss",
]

from .conv import Conv2d  # noqa: E402
from .normalization import BatchNorm1d, BatchNorm2d  # noqa: E402
from .pooling import AvgPool2d, GlobalAvgPool2d, MaxPool2d  # noqa: E402

__all__ += ["Conv2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d", "BatchNorm1d", "BatchNorm2d"]

from .dropout import Dropout  # noqa: E402
from .residual import BasicBlock, Residual  # noqa: E402

__all__ += ["Dropout", "Residual", "BasicBlock"]

from .rnn import GRU, LSTM, Embedding, GRUCell, LSTMCell  # noqa: E402

__all__ += ["LSTM", "GRU", "LSTMCell", "GRUCell", "Embedding"]
