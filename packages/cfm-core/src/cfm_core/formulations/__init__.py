"""The four formulations and the registry that builds one from a name or a config."""

from __future__ import annotations

import inspect
from typing import Any

from cfm_core.formulations.base import Formulation, expand_like
from cfm_core.formulations.ddim import DDIM
from cfm_core.formulations.edm import EDM
from cfm_core.formulations.flow_matching import UFlowMatching, X1FlowMatching

FORMULATIONS: dict[str, type[Formulation]] = {
    "u": UFlowMatching,
    "x1": X1FlowMatching,
    "edm": EDM,
    "ddim": DDIM,
}


def get_formulation(spec: str | Formulation | dict[str, Any], **kwargs: Any) -> Formulation:
    """Build a formulation from a name (``"u"``, ``"x1"``, ``"edm"``, ``"ddim"``), a config dict
    (as :meth:`Formulation.config` returns, the form stored in checkpoints) or pass an instance through."""
    if isinstance(spec, Formulation):
        if kwargs:
            raise ValueError("formulation options can only be given with a formulation name")
        return spec
    if isinstance(spec, dict):
        spec = dict(spec)
        name = spec.pop("name", None)
        if name is None:
            raise ValueError("formulation config has no 'name'")
        return get_formulation(name, **spec, **kwargs)
    if not isinstance(spec, str) or spec not in FORMULATIONS:
        raise ValueError(
            f"unknown formulation {spec!r}; choose one of {sorted(FORMULATIONS)} or pass a Formulation instance"
        )
    for key, parameter in inspect.signature(FORMULATIONS[spec]).parameters.items():
        numeric = isinstance(parameter.default, (int, float)) and not isinstance(parameter.default, bool)
        if numeric and isinstance(kwargs.get(key), str):
            raise ValueError(f"{spec}: {key} must be a number, got {kwargs[key]!r}")
    try:
        return FORMULATIONS[spec](**kwargs)
    except TypeError as err:
        raise ValueError(f"bad options for formulation {spec!r}: {err}") from None


__all__ = [
    "DDIM",
    "EDM",
    "FORMULATIONS",
    "Formulation",
    "UFlowMatching",
    "X1FlowMatching",
    "expand_like",
    "get_formulation",
]
