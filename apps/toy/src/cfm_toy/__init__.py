"""The 2-D toy app: distributions, a small two-time MLP, and ``cfm toy train|sample|eval``."""

__version__ = "0.1.0"
