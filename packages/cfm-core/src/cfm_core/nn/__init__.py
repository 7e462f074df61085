"""Building blocks shared by every backbone: time embeddings and the two-time embedding."""

from cfm_core.nn.embeddings import FourierTimeEmbedding, SinusoidalTimeEmbedding, TimeMLPEmbedding
from cfm_core.nn.two_time import TwoTimeEmbedding, load_single_time_state_dict, two_time_key_map

__all__ = [
    "FourierTimeEmbedding",
    "SinusoidalTimeEmbedding",
    "TimeMLPEmbedding",
    "TwoTimeEmbedding",
    "load_single_time_state_dict",
    "two_time_key_map",
]
