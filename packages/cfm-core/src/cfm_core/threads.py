"""How many CPU threads torch uses: one unless asked otherwise, so that a shared CPU stays fast.

torch runs its CPU kernels on one thread per core by default. When other work shares the cores,
those threads wait on each other at every parallel region and a small model's training step gets
many times slower than on one thread. The ``cfm`` command and the test suite therefore call
:func:`configure_threads`: ``cfm --threads N`` sets the count, and so do the usual environment
variables (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``), which torch reads itself.
"""

from __future__ import annotations

import os

#: Environment variables that set torch's CPU thread count; when one is set it is respected.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


def configure_threads(threads: int | None = None) -> int:
    """Set torch's CPU (intra-op) threads and return the count in use.

    ``threads`` when given; otherwise what :data:`THREAD_VARIABLES` ask for when one of them is
    set; otherwise 1. Unset variables are set to the chosen count, so that processes started
    from this one (data workers, subprocesses) follow it too.
    """
    import torch

    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive integer, got {threads!r}")
        torch.set_num_threads(threads)
    elif not any(os.environ.get(name) for name in THREAD_VARIABLES):
        torch.set_num_threads(1)
    count = torch.get_num_threads()
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, str(count))
    return count
