"""Shared fixtures of the pose tests."""

import pickle
import sys
import types

import pytest
import scipy.sparse

CHUMPY_KEYS = ("v_template", "shapedirs", "posedirs", "weights")


def _write_chumpy_style(path, arrays, expression_key=None, chumpy_keys=CHUMPY_KEYS):
    """Pickle ``arrays`` the way the original SMPL files are: chumpy objects (``chumpy_keys``)
    and a sparse ``J_regressor``; ``expression_key`` becomes a chumpy expression (no value).

    A fake ``chumpy`` package exists only while pickling, so reading needs no chumpy.
    """
    package, module = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, value):
            self.x = value
            self._dirty_vars = set()

    class Add:
        def __init__(self, a, b):
            self.a, self.b = a, b

    Ch.__module__ = Add.__module__ = "chumpy.ch"
    Ch.__qualname__, Add.__qualname__ = "Ch", "add"
    module.Ch, module.add, package.ch = Ch, Add, module
    raw = dict(arrays)
    for key in chumpy_keys:
        raw[key] = Ch(arrays[key])
    raw["J_regressor"] = scipy.sparse.csc_matrix(arrays["J_regressor"])
    raw["bs_style"] = "lbs"
    if expression_key is not None:
        raw[expression_key] = Add(Ch(arrays[expression_key]), Ch(0.0))
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = package, module
    try:
        path.write_bytes(pickle.dumps(raw, protocol=2))
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]


@pytest.fixture
def write_chumpy_style():
    """A writer of chumpy-style model pickles: ``(path, arrays, expression_key=None,
    chumpy_keys=...)``."""
    return _write_chumpy_style


def _expect_model_rejections(folder, cases):
    """Pickle each ``{file name: (raw dict, message pattern)}`` case into ``folder`` and check that
    ``read_smpl_model`` rejects it with a ``ValueError`` matching the pattern and naming the file."""
    from cfm_pose.smpl_model import read_smpl_model

    for name, (raw, message) in cases.items():
        path = folder / name
        path.write_bytes(pickle.dumps(raw))
        with pytest.raises(ValueError, match=message) as error:
            read_smpl_model(path)
        assert name in str(error.value)


@pytest.fixture
def expect_model_rejections():
    """``(folder, cases)``: every case's model file is rejected with a message naming it."""
    return _expect_model_rejections
