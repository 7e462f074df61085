"""Loading a distillation teacher for an app's ``train`` command, and refusing one that does not fit."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cfm_core.cli.app import ConfigError
from cfm_core.cli.common import load_trained, require_path

if TYPE_CHECKING:
    from cfm_core.distillation import Teacher
    from cfm_core.formulations import Formulation
    from cfm_core.loss import CFMLoss

_MISSING = object()


def _lookup(config: dict[str, Any], dotted: str) -> Any:
    value: Any = config
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _shown(value: Any) -> str:
    return "(not stored)" if value is _MISSING else json.dumps(value)


def load_teacher(
    path: str | Path,
    build: Callable[[dict[str, Any]], Any],
    app: str,
    *,
    student_config: dict[str, Any],
    student_formulation: Formulation,
    must_match: Sequence[str] = (),
    option: str = "--method.teacher",
) -> tuple[Teacher, dict[str, Any]]:
    """The frozen teacher a run directory or checkpoint of ``app`` holds (its first EMA average).

    Refuses, with a :class:`ConfigError` naming the difference, a teacher of another app, another
    formulation (another :meth:`~cfm_core.formulations.Formulation.field_config`; the network's
    prediction may differ: an epsilon-prediction ddim teacher distils into an x0-prediction ddim
    student), or whose stored config differs from ``student_config`` at any dotted key of
    ``must_match`` (data shape, class count...); a run directory without a checkpoint yet (still
    training) is named as such. Returns the teacher and its stored run config.
    """
    from cfm_core.distillation import Teacher
    from cfm_core.training import latest_checkpoint

    source = require_path(path, "teacher run directory or checkpoint", option)
    if source.is_dir() and not (source / "meta.json").is_file() and latest_checkpoint(source) is None:
        raise ConfigError(
            f"{option}: {source} holds no checkpoint yet (a run still training saves its first one at "
            "--train.checkpoint-every steps); give a run directory or checkpoint with a saved step"
        )
    model, checkpoint = load_trained(source, build, app, option=option)
    teacher_config = checkpoint.meta["config"]
    if model.formulation.field_config() != student_formulation.field_config():
        raise ConfigError(
            f"{option}: the teacher {checkpoint.path} uses formulation {json.dumps(checkpoint.meta['formulation'])}, "
            f"the student {json.dumps(student_formulation.config())}; distil within one formulation "
            "(only the network's prediction may differ)"
        )
    for key in must_match:
        theirs, ours = _lookup(teacher_config, key), _lookup(student_config, key)
        if json.dumps(theirs, default=str) != json.dumps(ours, default=str):
            raise ConfigError(
                f"{option}: the teacher {checkpoint.path} was trained with {key} = {_shown(theirs)}, "
                f"the student has {key} = {_shown(ours)}"
            )
    return Teacher(model, source=str(checkpoint.path)), teacher_config


def same_network(teacher_config: dict[str, Any], student_config: dict[str, Any], net_key: str = "net") -> bool:
    """True when the student's network options (``net_key`` of the run config) equal the teacher's,
    so that it can start from the teacher's weights; a smaller (or otherwise different) student
    starts fresh."""
    return _shown(_lookup(teacher_config, net_key)) == _shown(_lookup(student_config, net_key))


def distillation_setup(
    cfg: Any, build: Callable[[dict[str, Any]], Any], app: str, *, must_match: Sequence[str] = ()
) -> tuple[Any, Teacher | None]:
    """Load ``cfg.method.teacher`` (if any) for a train config with ``method`` and ``train`` parts.

    Returns ``(cfg, teacher)``: without a teacher ``(cfg, None)``; with one, the teacher checked
    against the student (see :func:`load_teacher`) and ``cfg`` set to start from its weights
    (``train.init_from``) when ``method.student_init`` is ``"teacher"``, no other warm start is
    given, and the student's ``net`` options and formulation (its network's prediction included)
    equal the teacher's (else it starts fresh).
    """
    from cfm_core.cli.config import config_to_dict

    method = cfg.method
    if method.teacher is None:
        return cfg, None
    student_config = config_to_dict(cfg)
    student_formulation = build(student_config).model.formulation  # as the app resolves it
    teacher, teacher_config = load_teacher(
        method.teacher,
        build,
        app,
        student_config=student_config,
        student_formulation=student_formulation,
        must_match=must_match,
    )
    print(f"distilling teacher {teacher.source} (weights sha256 {teacher.weights_sha256[:16]}...)")
    if cfg.train.resume:
        _check_resumed_teacher(Path(cfg.train.output_dir), teacher)
    if method.student_init == "teacher" and cfg.train.init_from is None and not cfg.train.resume:
        if not same_network(teacher_config, student_config):
            print("the student's network options differ from the teacher's: the student starts fresh")
        elif teacher.formulation.config() != student_formulation.config():
            print(
                f"the teacher's network predicts another quantity ({teacher.formulation!r}, the student "
                f"{student_formulation!r}): the student starts fresh"
            )
        else:
            cfg = replace(cfg, train=replace(cfg.train, init_from=teacher.source))
    return cfg, teacher


def with_teacher(loss: CFMLoss, teacher: Teacher | None, objective: str | None) -> CFMLoss:
    """``loss`` (as an app builds it, training from the data) distilling ``teacher`` by
    ``objective`` instead (``None``: eulerian); ``loss`` itself without a teacher."""
    from cfm_core.loss import CFMLoss

    if teacher is None:
        return loss
    recipe = replace(loss.recipe, objective=objective)
    try:
        return CFMLoss(loss.model, recipe, noise_sampler=loss.noise_sampler, teacher=teacher)
    except ValueError as err:
        raise ConfigError(f"--method.teacher: {err}") from None


def _check_resumed_teacher(run_dir: Path, teacher: Teacher) -> None:
    """A resumed run must distil the teacher it started with (same weights)."""
    from cfm_core.training import latest_checkpoint, load_checkpoint

    latest = latest_checkpoint(run_dir)
    if latest is None:
        return  # the trainer names the missing checkpoint
    stored = (load_checkpoint(latest, load_optimizer=False).meta.get("extra") or {}).get("teacher")
    if stored is None:
        raise ConfigError(f"--method.teacher: the run in {run_dir} was trained without a teacher")
    if stored.get("weights_sha256") != teacher.weights_sha256:
        raise ConfigError(
            f"--method.teacher: the run in {run_dir} distilled the teacher {stored.get('path')} (weights "
            f"sha256 {str(stored.get('weights_sha256'))[:16]}...), {teacher.source} holds other weights "
            f"(sha256 {teacher.weights_sha256[:16]}...)"
        )


def teacher_record(teacher: Teacher | None) -> dict[str, Any] | None:
    """What a student's checkpoints store about its teacher (the ``extra`` of the trainer)."""
    return None if teacher is None else {"teacher": teacher.record()}
