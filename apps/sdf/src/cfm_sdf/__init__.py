"""cfm-sdf: signed distance fields generated with Cumulative Flow Maps."""

__version__ = "0.1.0"
