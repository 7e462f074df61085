"""Building blocks shared by every backbone: time and point embeddings, the two-time embedding."""

from cfm_core.nn.embeddings import (
    FourierPointFeatures,
    FourierTimeEmbedding,
    SinusoidalTimeEmbedding,
    TimeMLPEmbedding,
)
from cfm_core.nn.two_time import TwoTimeEmbedding, load_single_time_state_dict, two_time_key_map

__all__ = [
    "FourierPointFeatures",
    "FourierTimeEmbedding",
    "SinusoidalTimeEmbedding",
    "TimeMLPEmbedding",
    "TwoTimeEmbedding",
    "load_single_time_state_dict",
    "two_time_key_map",
]
