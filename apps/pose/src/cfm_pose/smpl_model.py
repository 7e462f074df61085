"""SMPL model files: reading them without chumpy, checking them, and converting them.

The original SMPL ``.pkl`` files (Python 2 pickles) store ``v_template``, ``shapedirs``, ``weights``
and others as ``chumpy`` objects and ``J_regressor`` as a ``scipy.sparse`` matrix. chumpy does not
import on Python 3.11, so :class:`ChumpyFreeUnpickler` maps every ``chumpy.*`` class to a stub that
just records the pickled state, and every sparse-matrix class to a stub that records its arrays.
A chumpy leaf (``chumpy.ch.Ch``) keeps its value in the state's ``x`` entry, which becomes a plain
numpy array; sparse matrices become dense. A chumpy *expression* (no ``x``) cannot be evaluated
without chumpy and raises an error naming the key.

:func:`convert_smpl_pkl` writes the checked arrays to a clean pickle (or ``.npz``) that
``smplx.SMPL(model_path=...)`` loads. :func:`read_smpl_model` reads original, converted and
``.npz`` files alike.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np
from cfm_core.io import write_atomically

from cfm_pose.files import load_npz
from cfm_pose.skeleton import check_parents

SMPL_JOINT_NAMES = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar",
    "right_collar", "head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hand", "right_hand",
)
SMPL_PARENTS = np.array([-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18,
                         19, 20, 21])
SMPL_NUM_JOINTS = len(SMPL_JOINT_NAMES)
SMPL_POSE_BASIS = 9 * (SMPL_NUM_JOINTS - 1)
OTHER_FAMILIES = {52: "SMPL-H", 55: "SMPL-X"}
"""Joint counts of the SMPL-family models that are not SMPL (reported by name)."""
SMPL_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")


class _ChumpyStub:
    """Stands in for a chumpy object while unpickling; ``state`` is what chumpy pickled."""

    chumpy_class = "chumpy"

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _SparseStub:
    """Stands in for a ``scipy.sparse`` matrix while unpickling; ``state`` holds its arrays."""

    sparse_format = "csc_matrix"

    def __setstate__(self, state: Any) -> None:
        self.state = state


# Globals a plain SMPL pickle may name (arrays, sets, Python 2 object reconstruction); anything
# else is refused, so a model file cannot run arbitrary code while it is read.
_SAFE_GLOBALS = {
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "object"), ("builtins", "slice"),
    ("builtins", "complex"), ("builtins", "bytearray"), ("_codecs", "encode"),
    ("copyreg", "_reconstructor"), ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
}

_PYTHON2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}


class ChumpyFreeUnpickler(pickle.Unpickler):
    """An unpickler that needs neither chumpy nor the scipy version that wrote the file, and that
    refuses every global outside numpy arrays and the stubs (``pickle.UnpicklingError``)."""

    _stubs: dict[str, type] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "chumpy" or module.startswith("chumpy."):
            return self._stub(_ChumpyStub, "chumpy_class", f"{module}.{name}")
        if module.startswith("scipy.sparse") and name.endswith(("_matrix", "_array")):
            return self._stub(_SparseStub, "sparse_format", name)
        if module.startswith("numpy.core"):
            module = "numpy._core" + module[len("numpy.core"):]
        module = _PYTHON2_MODULES.get(module, module)
        if (module, name) not in _SAFE_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a model file")
        return super().find_class(module, name)

    @classmethod
    def _stub(cls, base: type, attribute: str, label: str) -> type:
        key = f"{base.__name__}:{label}"
        if key not in cls._stubs:
            cls._stubs[key] = type(base.__name__, (base,), {attribute: label})
        return cls._stubs[key]


def _sparse_to_dense(stub: _SparseStub, where: str) -> np.ndarray:
    from scipy import sparse

    state = stub.state if isinstance(stub.state, dict) else {}
    shape = tuple(state.get("_shape", state.get("shape", ())))
    kind = stub.sparse_format[:3]
    try:
        if kind in ("csc", "csr"):
            build = sparse.csc_matrix if kind == "csc" else sparse.csr_matrix
            matrix = build((state["data"], state["indices"], state["indptr"]), shape=shape)
        elif kind == "coo":
            rows, cols = state["coords"] if "coords" in state else (state["row"], state["col"])
            matrix = sparse.coo_matrix((state["data"], (rows, cols)), shape=shape)
        else:
            raise KeyError(stub.sparse_format)
    except (KeyError, ValueError, TypeError) as error:
        raise ValueError(f"{where}: unsupported sparse matrix {stub.sparse_format} "
                         f"({error})") from error
    return matrix.toarray()


def _to_array(value: Any, where: str) -> np.ndarray:
    """A numpy array from a plain value, a chumpy leaf stub or a sparse stub."""
    if isinstance(value, _ChumpyStub):
        state = value.state if isinstance(value.state, dict) else {}
        if "x" not in state:
            raise ValueError(f"{where} is a chumpy expression ({value.chumpy_class}) that "
                             "cannot be evaluated without chumpy")
        return _to_array(state["x"], where)
    if isinstance(value, _SparseStub):
        return _sparse_to_dense(value, where)
    if hasattr(value, "toarray"):
        return np.asarray(value.toarray())
    return np.asarray(value)


def _expect_shape(arrays: dict[str, np.ndarray], key: str, shape: tuple[int | None, ...],
                  path: Path) -> None:
    actual = arrays[key].shape
    if len(actual) != len(shape) or any(
            s is not None and s != a for s, a in zip(shape, actual, strict=True)):
        wanted = "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{path}: '{key}' has shape {actual}, expected {wanted}")


def check_smpl_arrays(raw: dict[str, Any], path: Path) -> dict[str, np.ndarray]:
    """The SMPL arrays of ``raw`` as clean numpy arrays, checked for keys, shapes and values."""
    missing = [key for key in SMPL_KEYS if key not in raw]
    if missing:
        raise ValueError(f"{path}: not an SMPL model, missing keys {missing}")
    arrays = {key: _to_array(raw[key], f"{path}: '{key}'") for key in SMPL_KEYS}
    joints = arrays["J_regressor"].shape[0] if arrays["J_regressor"].ndim == 2 else None
    if joints in OTHER_FAMILIES:
        raise ValueError(f"{path}: 'J_regressor' has {joints} joints: an {OTHER_FAMILIES[joints]} "
                         f"model; this app reads SMPL model files ({SMPL_NUM_JOINTS} joints)")
    count = arrays["v_template"].shape[0]
    _expect_shape(arrays, "v_template", (None, 3), path)
    _expect_shape(arrays, "shapedirs", (count, 3, None), path)
    _expect_shape(arrays, "posedirs", (count, 3, SMPL_POSE_BASIS), path)
    _expect_shape(arrays, "J_regressor", (SMPL_NUM_JOINTS, count), path)
    _expect_shape(arrays, "weights", (count, SMPL_NUM_JOINTS), path)
    _expect_shape(arrays, "kintree_table", (2, SMPL_NUM_JOINTS), path)
    _expect_shape(arrays, "f", (None, 3), path)
    for key in ("v_template", "shapedirs", "posedirs", "J_regressor", "weights"):
        arrays[key] = arrays[key].astype(np.float64)
        if not np.isfinite(arrays[key]).all():
            raise ValueError(f"{path}: '{key}' contains NaN or inf")
    faces = arrays["f"].astype(np.int64)
    if faces.min() < 0 or faces.max() >= count:
        raise ValueError(f"{path}: 'f' has vertex indices outside [0, {count})")
    table = arrays["kintree_table"].astype(np.int64)
    if not np.array_equal(table[1], np.arange(SMPL_NUM_JOINTS)):
        raise ValueError(f"{path}: 'kintree_table' row 1 must list the joints 0..23 in order")
    parents = table[0].copy()
    parents[0] = -1
    try:
        check_parents(parents)
    except ValueError as error:
        raise ValueError(f"{path}: 'kintree_table': {error}") from error
    arrays["f"], arrays["kintree_table"] = faces, table
    return arrays


def _load_raw(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"SMPL model file not found: {path}")
    if path.suffix == ".npz":
        return load_npz(path, "SMPL model")
    try:
        with path.open("rb") as file:
            raw = ChumpyFreeUnpickler(file, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError,
            TypeError, ValueError) as error:
        raise ValueError(f"{path}: not a readable SMPL pickle ({type(error).__name__}: "
                         f"{error})") from error
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: an SMPL pickle holds a dict, found {type(raw).__name__}")
    return raw


def resolve_smpl_path(model_path: str | Path, gender: str = "neutral") -> Path:
    """A model file as given, or ``SMPL_<GENDER>.pkl`` inside a folder (as smplx does)."""
    path = Path(model_path)
    if path.is_dir():
        path = path / f"SMPL_{gender.upper()}.pkl"
    if not path.is_file():
        raise FileNotFoundError(f"SMPL model file not found: {path}")
    return path


def read_smpl_model(path: str | Path) -> dict[str, np.ndarray]:
    """The checked arrays (:data:`SMPL_KEYS`) of an original, converted or ``.npz`` SMPL file."""
    path = Path(path)
    return check_smpl_arrays(_load_raw(path), path)


def write_smpl_model(arrays: dict[str, np.ndarray], dst: str | Path) -> Path:
    """Write SMPL arrays atomically: a plain pickle of numpy arrays, or ``.npz`` by suffix."""
    dst = Path(dst)
    if dst.suffix == ".npz":
        return write_atomically(dst, lambda file: np.savez(file, **arrays))
    buffer = io.BytesIO()
    pickle.dump(dict(arrays), buffer, protocol=4)
    return write_atomically(dst, lambda file: file.write(buffer.getvalue()))


def convert_smpl_pkl(src: str | Path, dst: str | Path) -> Path:
    """Read an SMPL ``.pkl`` without chumpy, check it, and write a clean ``.pkl`` or ``.npz``.

    The output holds exactly :data:`SMPL_KEYS` as numpy arrays (dense ``J_regressor``), which is
    what ``smplx.SMPL`` reads. Returns ``dst``; a ``dst`` that cannot be written raises
    ``ValueError`` naming it.
    """
    src, dst = Path(src), Path(dst)
    if dst.suffix not in (".pkl", ".npz"):
        raise ValueError(f"output {dst} must end in .pkl or .npz")
    if dst.resolve() == src.resolve():
        raise ValueError(f"output {dst} would overwrite the input")
    arrays = read_smpl_model(src)
    try:
        return write_smpl_model(arrays, dst)
    except OSError as error:
        raise ValueError(f"cannot write the output {dst}: {error}") from error
