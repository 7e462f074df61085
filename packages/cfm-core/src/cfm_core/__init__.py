"""cfm-core: Cumulative Flow Maps (Li, Chen, Sun, Zhu; ACM TOG) for few-step generation.

The public API::

    from cfm_core import CFMLoss, FlowMap, LossRecipe
    model = FlowMap(net, formulation="edm")             # net(x, t, r, cond); "u", "x1", "ddim" too
    loss_fn = CFMLoss(model, LossRecipe())              # the training loss (a module, for DDP)
    loss = loss_fn(x_data, cond=None)                   # scalar, differentiable
    x = model.sample(noise, steps=1)                    # k cumulative jumps (or a time grid)
    x = model.sample(noise, steps=100, sampler="euler") # the multi-step baseline (r = t)
    student = CFMLoss(FlowMap(net2), LossRecipe(objective="lagrangian"), teacher=Teacher(model))  # distil

``CumulativeFlowMap`` (model and loss in one object) is deprecated.
"""

from cfm_core.conditions import Condition, select_condition
from cfm_core.distillation import Teacher
from cfm_core.flow_map import FlowMap
from cfm_core.formulations import (
    DDIM,
    EDM,
    FORMULATIONS,
    Formulation,
    UFlowMatching,
    X1FlowMatching,
    get_formulation,
)
from cfm_core.loss import CFMLoss, LossRecipe
from cfm_core.model import CumulativeFlowMap
from cfm_core.nn import TwoTimeEmbedding, load_single_time_state_dict
from cfm_core.samplers import sample_cumulative, sample_euler, sample_heun
from cfm_core.time_sampling import TimePairSampler

__version__ = "0.1.0"

__all__ = [
    "DDIM",
    "EDM",
    "FORMULATIONS",
    "CFMLoss",
    "Condition",
    "CumulativeFlowMap",
    "FlowMap",
    "Formulation",
    "LossRecipe",
    "Teacher",
    "TimePairSampler",
    "TwoTimeEmbedding",
    "UFlowMatching",
    "X1FlowMatching",
    "__version__",
    "get_formulation",
    "load_single_time_state_dict",
    "sample_cumulative",
    "sample_euler",
    "sample_heun",
    "select_condition",
]
