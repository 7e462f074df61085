"""cfm-core: Cumulative Flow Maps (Li, Chen, Sun, Zhu; ACM TOG) for few-step generation.

The public API::

    from cfm_core import CumulativeFlowMap
    model = CumulativeFlowMap(net, formulation="edm")   # or "u", "x1", "ddim", or a Formulation
    loss = model.loss(x_data, cond=None)                # scalar, differentiable
    x = model.sample(noise, steps=1)                    # k cumulative jumps (or a time grid)
    x = model.sample_instantaneous(noise, steps=100)    # the multi-step baseline (r = t)
"""

from cfm_core.formulations import (
    DDIM,
    EDM,
    FORMULATIONS,
    Formulation,
    UFlowMatching,
    X1FlowMatching,
    get_formulation,
)
from cfm_core.model import CumulativeFlowMap
from cfm_core.nn import TwoTimeEmbedding, load_single_time_state_dict
from cfm_core.samplers import sample_cumulative, sample_euler, sample_heun
from cfm_core.time_sampling import TimePairSampler

__version__ = "0.1.0"

__all__ = [
    "DDIM",
    "EDM",
    "FORMULATIONS",
    "CumulativeFlowMap",
    "Formulation",
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
]
