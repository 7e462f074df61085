"""Building blocks shared by every backbone: time and point embeddings, the two-time embedding."""

from cfm_core.nn.embeddings import (
    TIME_FEATURES,
    FourierPointFeatures,
    FourierTimeEmbedding,
    SinusoidalTimeEmbedding,
    TimeMLPEmbedding,
    time_features,
    time_features_for,
)
from cfm_core.nn.two_time import TwoTimeEmbedding, load_single_time_state_dict, two_time_key_map

__all__ = [
    "TIME_FEATURES",
    "FourierPointFeatures",
    "FourierTimeEmbedding",
    "SinusoidalTimeEmbedding",
    "TimeMLPEmbedding",
    "TwoTimeEmbedding",
    "load_single_time_state_dict",
    "time_features",
    "time_features_for",
    "two_time_key_map",
]
