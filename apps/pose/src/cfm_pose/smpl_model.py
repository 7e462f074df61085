"""SMPL-family model files (SMPL, SMPL-X): reading them without chumpy, checking, converting.

The original SMPL ``.pkl`` files (Python 2 pickles) store ``v_template``, ``shapedirs``, ``weights``
and others as ``chumpy`` objects and ``J_regressor`` as a ``scipy.sparse`` matrix; SMPL-X ``.pkl``
files may do the same. chumpy does not import on Python 3.11, so :class:`ChumpyFreeUnpickler` maps
every ``chumpy.*`` class to a stub that just records the pickled state, and every sparse-matrix
class to a stub that records its arrays. A chumpy leaf (``chumpy.ch.Ch``) keeps its value in the
state's ``x`` entry, which becomes a plain numpy array; sparse matrices become dense. A chumpy
*expression* (no ``x``) cannot be evaluated without chumpy and raises an error naming the key.
``.npz`` files are read without pickle (only the arrays a model needs, so the object arrays of
smplx's SMPL-X ``.npz`` files, such as ``joint2num``, are skipped).

The family is detected from the joint count of ``J_regressor`` (24: SMPL, 55: SMPL-X; SMPL-H's
52 is refused by name), and every array is checked against it (:mod:`cfm_pose.body_families`),
the hierarchy (``kintree_table``) included: it must be a tree and the family's. :func:`convert_
smpl_pkl` writes the checked arrays to a clean pickle (or ``.npz``) that ``smplx.SMPL`` /
``smplx.SMPLX`` load; :func:`read_smpl_model` reads original, converted and ``.npz`` files alike.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from cfm_core.io import write_atomically

from cfm_pose.body_families import FAMILIES, OTHER_FAMILIES, SMPLX, BodyFamily
from cfm_pose.files import load_npz
from cfm_pose.skeleton import check_parents

MODEL_KEYS = tuple(dict.fromkeys(key for family in FAMILIES.values() for key in family.keys + family.optional_keys))
"""Every array any family reads: what is taken from an ``.npz`` model file."""
INDEX_KEYS = ("f", "kintree_table", "lmk_faces_idx", "dynamic_lmk_faces_idx")
"""Integer arrays; every other model array is real-valued."""
SMPLX_MIN_SHAPE_COMPONENTS = 20
"""smplx reads an SMPL-X ``shapedirs`` of fewer than 400 columns as 10 shape then 10
expression directions, so it needs at least 20."""
HAND_POSE_DIM = 45


@dataclass(frozen=True, eq=False)
class BodyModelFile:
    """A checked model file: its path, its family and its arrays (the family's keys, plus the
    optional ones it has), as numpy arrays (float64, or int64 for :data:`INDEX_KEYS`)."""

    path: Path
    family: BodyFamily
    arrays: dict[str, np.ndarray]


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
    ("builtins", "set"),
    ("builtins", "frozenset"),
    ("builtins", "object"),
    ("builtins", "slice"),
    ("builtins", "complex"),
    ("builtins", "bytearray"),
    ("_codecs", "encode"),
    ("copyreg", "_reconstructor"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
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
            module = "numpy._core" + module[len("numpy.core") :]
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
        raise ValueError(f"{where}: unsupported sparse matrix {stub.sparse_format} ({error})") from error
    return matrix.toarray()


def _to_array(value: Any, where: str) -> np.ndarray:
    """A numpy array from a plain value, a chumpy leaf stub or a sparse stub."""
    if isinstance(value, _ChumpyStub):
        state = value.state if isinstance(value.state, dict) else {}
        if "x" not in state:
            raise ValueError(
                f"{where} is a chumpy expression ({value.chumpy_class}) that cannot be evaluated without chumpy"
            )
        return _to_array(state["x"], where)
    if isinstance(value, _SparseStub):
        return _sparse_to_dense(value, where)
    if hasattr(value, "toarray"):
        return np.asarray(value.toarray())
    return np.asarray(value)


def _expect_shape(arrays: dict[str, np.ndarray], key: str, shape: tuple[int | None, ...], path: Path) -> None:
    actual = arrays[key].shape
    if len(actual) != len(shape) or any(s is not None and s != a for s, a in zip(shape, actual, strict=True)):
        wanted = "(" + ", ".join("?" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{path}: '{key}' has shape {actual}, expected {wanted}")


def detect_family(raw: dict[str, Any], path: Path) -> BodyFamily:
    """The family of a model file's raw arrays, from the joint count of its ``J_regressor``."""
    if "J_regressor" not in raw:
        raise ValueError(f"{path}: not an SMPL-family model, missing key 'J_regressor'")
    regressor = _to_array(raw["J_regressor"], f"{path}: 'J_regressor'")
    joints = regressor.shape[0] if regressor.ndim == 2 else None
    for family in FAMILIES.values():
        if joints == family.num_joints:
            return family
    if joints in OTHER_FAMILIES:
        raise ValueError(
            f"{path}: 'J_regressor' has {joints} joints: an {OTHER_FAMILIES[joints]} "
            "model; this app reads SMPL (24 joints) and SMPL-X (55 joints) files"
        )
    raise ValueError(
        f"{path}: 'J_regressor' has shape {regressor.shape}, expected 24 rows (SMPL) or 55 rows (SMPL-X), one per joint"
    )


def _check_hierarchy(table: np.ndarray, family: BodyFamily, path: Path) -> None:
    count = family.num_joints
    if not np.array_equal(table[1], np.arange(count)):
        raise ValueError(f"{path}: 'kintree_table' row 1 must list the joints 0..{count - 1} in order")
    parents = table[0].copy()
    parents[0] = -1
    try:
        check_parents(parents)
    except ValueError as error:
        raise ValueError(f"{path}: 'kintree_table': {error}") from error
    wrong = np.flatnonzero(parents != family.parents)
    if len(wrong):
        joint = int(wrong[0])
        raise ValueError(
            f"{path}: 'kintree_table' is not {family.label}'s hierarchy: joint "
            f"{joint} ({family.names[joint]}) has parent {parents[joint]}, expected "
            f"{family.parents[joint]}"
        )


def _check_smplx_parts(arrays: dict[str, np.ndarray], path: Path) -> None:
    """Shapes of the arrays only SMPL-X has (hands, landmarks, expression directions)."""
    if arrays["shapedirs"].shape[2] < SMPLX_MIN_SHAPE_COMPONENTS:
        raise ValueError(
            f"{path}: 'shapedirs' has {arrays['shapedirs'].shape[2]} components; "
            f"SMPL-X needs at least {SMPLX_MIN_SHAPE_COMPONENTS} (10 shape and 10 "
            "expression directions)"
        )
    for side in "lr":
        _expect_shape(arrays, f"hands_components{side}", (None, HAND_POSE_DIM), path)
        _expect_shape(arrays, f"hands_mean{side}", (HAND_POSE_DIM,), path)
    landmarks = arrays["lmk_faces_idx"].shape[0] if arrays["lmk_faces_idx"].ndim == 1 else None
    _expect_shape(arrays, "lmk_faces_idx", (None,), path)
    _expect_shape(arrays, "lmk_bary_coords", (landmarks, 3), path)
    if "dynamic_lmk_faces_idx" in arrays or "dynamic_lmk_bary_coords" in arrays:
        missing = [key for key in SMPLX.optional_keys if key not in arrays]
        if missing:
            raise ValueError(f"{path}: the face-contour landmarks lack {missing}")
        _expect_shape(arrays, "dynamic_lmk_faces_idx", (None, None), path)
        _expect_shape(arrays, "dynamic_lmk_bary_coords", (*arrays["dynamic_lmk_faces_idx"].shape, 3), path)


def check_smpl_arrays(raw: dict[str, Any], path: Path, family: BodyFamily | None = None) -> dict[str, np.ndarray]:
    """The arrays of ``raw`` as clean numpy arrays, checked for keys, shapes, values and the
    hierarchy of ``family`` (default: the detected one, :func:`detect_family`)."""
    family = family or detect_family(raw, path)
    missing = [key for key in family.keys if key not in raw]
    if missing:
        raise ValueError(
            f"{path}: not an {family.label} model ({family.num_joints} joints in 'J_regressor'), missing keys {missing}"
        )
    present = family.keys + tuple(key for key in family.optional_keys if key in raw)
    arrays = {key: _to_array(raw[key], f"{path}: '{key}'") for key in present}
    count, joints = arrays["v_template"].shape[0], family.num_joints
    _expect_shape(arrays, "v_template", (None, 3), path)
    _expect_shape(arrays, "shapedirs", (count, 3, None), path)
    _expect_shape(arrays, "posedirs", (count, 3, family.pose_basis), path)
    _expect_shape(arrays, "J_regressor", (joints, count), path)
    _expect_shape(arrays, "weights", (count, joints), path)
    _expect_shape(arrays, "kintree_table", (2, joints), path)
    _expect_shape(arrays, "f", (None, 3), path)
    if family is SMPLX:
        _check_smplx_parts(arrays, path)
    for key, value in arrays.items():
        try:
            arrays[key] = value.astype(np.int64 if key in INDEX_KEYS else np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{path}: '{key}' is not numeric ({error})") from error
        if key not in INDEX_KEYS and not np.isfinite(arrays[key]).all():
            raise ValueError(f"{path}: '{key}' contains NaN or inf")
    bounds = {"f": count, "lmk_faces_idx": len(arrays["f"]), "dynamic_lmk_faces_idx": len(arrays["f"])}
    for key, bound in bounds.items():
        if key in arrays and arrays[key].size and (arrays[key].min() < 0 or arrays[key].max() >= bound):
            what = "vertex" if key == "f" else "face"
            raise ValueError(f"{path}: '{key}' has {what} indices outside [0, {bound})")
    _check_hierarchy(arrays["kintree_table"], family, path)
    return arrays


def _load_raw(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"SMPL model file not found: {path}")
    if path.suffix == ".npz":
        return load_npz(path, "SMPL model", keys=MODEL_KEYS)
    try:
        with path.open("rb") as file:
            raw = ChumpyFreeUnpickler(file, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: not a readable SMPL pickle ({type(error).__name__}: {error})") from error
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: an SMPL pickle holds a dict, found {type(raw).__name__}")
    return raw


def resolve_smpl_path(model_path: str | Path, gender: str = "neutral", model_type: str = "auto") -> Path:
    """A model file as given, or the file of ``gender`` inside a folder, as smplx names them:
    ``SMPL_<GENDER>.pkl`` (or ``.npz``), ``SMPLX_<GENDER>.npz`` (or ``.pkl``). With
    ``model_type="auto"`` the folder must hold one family's file for that gender."""
    path = Path(model_path)
    if not path.is_dir():
        if not path.is_file():
            raise FileNotFoundError(f"SMPL model file not found: {path}")
        return path
    families = FAMILIES.values() if model_type == "auto" else (FAMILIES[model_type],)
    names = [f"{family.file_prefix}_{gender.upper()}{ext}" for family in families for ext in family.extensions]
    found = {}
    for family in families:
        files = [path / f"{family.file_prefix}_{gender.upper()}{ext}" for ext in family.extensions]
        existing = [file for file in files if file.is_file()]
        if existing:
            found[family.label] = existing[0]
    if not found:
        raise FileNotFoundError(f"SMPL model file not found: none of {', '.join(names)} in {path}")
    if len(found) > 1:
        files = " and ".join(f.name for f in found.values())
        raise ValueError(f"{path} holds {files}: choose one with --smpl.model-type")
    return next(iter(found.values()))


def read_smpl_model(path: str | Path, model_type: str = "auto") -> BodyModelFile:
    """The checked arrays of an original, converted or ``.npz`` SMPL or SMPL-X file; with
    ``model_type`` ``"smpl"`` or ``"smplx"`` a file of the other family is refused."""
    path = Path(path)
    raw = _load_raw(path)
    family = detect_family(raw, path)
    if model_type != "auto" and family.key != model_type:
        raise ValueError(
            f"{path}: an {family.label} model ({family.num_joints} joints), expected {FAMILIES[model_type].label}"
        )
    return BodyModelFile(path, family, check_smpl_arrays(raw, path, family))


def write_smpl_model(arrays: dict[str, np.ndarray], dst: str | Path) -> Path:
    """Write model arrays atomically: a plain pickle of numpy arrays, or ``.npz`` by suffix."""
    dst = Path(dst)
    if dst.suffix == ".npz":
        return write_atomically(dst, lambda file: np.savez(file, **arrays))
    buffer = io.BytesIO()
    pickle.dump(dict(arrays), buffer, protocol=4)
    return write_atomically(dst, lambda file: file.write(buffer.getvalue()))


def convert_smpl_pkl(src: str | Path, dst: str | Path) -> BodyModelFile:
    """Read an SMPL or SMPL-X file (``.pkl`` without chumpy, or ``.npz``), check it, and write a
    clean ``.pkl`` or ``.npz``.

    The output holds exactly the family's arrays (:class:`BodyModelFile`; dense
    ``J_regressor``), which is what ``smplx.SMPL`` / ``smplx.SMPLX`` read. Returns the written
    file; a ``dst`` that cannot be written raises :class:`~cfm_core.io.OutputError` (a
    ``ValueError``) naming it.
    """
    src, dst = Path(src), Path(dst)
    if dst.suffix not in (".pkl", ".npz"):
        raise ValueError(f"output {dst} must end in .pkl or .npz")
    if dst.resolve() == src.resolve():
        raise ValueError(f"output {dst} would overwrite the input")
    model = read_smpl_model(src)
    return BodyModelFile(write_smpl_model(model.arrays, dst), model.family, model.arrays)
