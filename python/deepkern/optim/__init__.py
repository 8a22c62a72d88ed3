"""deepkern.optim: optimizers with torch.optim's arguments, update rules and state dicts;
each step is one native call over all the parameters of a group. Learning-rate
schedules live in deepkern.optim.lr_scheduler; gradient clipping and penalties in
deepkern.optim.clip (re-exported here)."""
from . import lr_scheduler
from .adadelta import Adadelta
from .adagrad import Adagrad
from .adam import Adam, AdamW
from .adamax import Adamax
from .clip import clip_grad_norm_, clip_grad_value_, l1_penalty, l2_penalty
from .nadam import NAdam
from .optimizer import Optimizer
from .rmsprop import RMSprop
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adagrad", "Adadelta", "RMSprop", "Adam", "AdamW", "Adamax", "NAdam",
           "lr_scheduler", "clip_grad_norm_", "clip_grad_value_", "l1_penalty", "l2_penalty"]
