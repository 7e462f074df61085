"""The trainer's step: gradient accumulation, sharded data functions, TF32, deferred finiteness checks."""

from __future__ import annotations

import functools
import shutil

import numpy as np
import pytest
import torch
from cfm_core.cli import ConfigError
from cfm_core.training import (
    Trainer,
    latest_checkpoint,
    loss_stream,
    read_log,
    seed_everything,
    set_tf32,
    step_loader,
    step_seed,
    takes_rows,
)

from .test_training_fixtures import BATCH, gaussian_data, make_loss, train_config

SEED = 5


def _trainer(path, data=gaussian_data, **overrides):
    return Trainer(make_loss(), data, train_config(path, seed=SEED, **overrides), run_config={}, app="test")


def _resumed_from_step_3(path, data, **overrides):
    """A 6-step run checkpointed at step 3, its last checkpoint deleted, resumed from step 3 by a
    trainer built with other initial weights, and trained to the end."""
    _trainer(path, data, steps=6, checkpoint_every=3, keep_last=0, **overrides).fit()
    shutil.rmtree(path / "step-0000006")
    resumed = Trainer(
        make_loss(seed=9),
        data,
        train_config(path, seed=SEED, steps=6, resume=True, **overrides),
        run_config={},
        app="test",
    )
    assert resumed.step == 3
    resumed.fit()
    return resumed


def _assert_same_weights(first, second):
    for name, value in first.unwrapped_model.state_dict().items():
        assert torch.equal(value, second.unwrapped_model.state_dict()[name]), name


def _grads(module):
    return {n: p.grad.clone() for n, p in module.named_parameters()}


def test_accumulated_micro_batches_equal_one_pass_through_their_mean_loss(tmp_path):
    """grad_accum=4: the gradient and loss of one pass through the mean of the four micro-batch
    losses (rows m::4, each with chunk m's noise and times): the big batch with the same draws."""
    trainer = _trainer(tmp_path / "run", grad_accum=4)
    terms = trainer.backward(0)
    accumulated = _grads(trainer.unwrapped_model)

    loss = make_loss()
    seed_everything(step_seed(SEED, 0, 0))
    x = gaussian_data(0)
    losses = []
    for micro in range(4):
        seed_everything(step_seed(SEED, 0, loss_stream(micro)))
        losses.append(loss(x[micro::4]))
    big = torch.stack(losses).mean()
    big.backward()
    assert torch.allclose(terms["loss"], big.detach(), rtol=1e-6, atol=0)
    for name, grad in _grads(loss.model).items():
        assert torch.allclose(accumulated[name], grad, rtol=1e-5, atol=1e-7), name
    assert any(not torch.allclose(losses[0], other) for other in losses[1:])  # the chunks differ


def test_grad_accum_resumes_exactly(tmp_path):
    straight = _trainer(tmp_path / "a", steps=6, grad_accum=2)
    straight.fit()
    resumed = _resumed_from_step_3(tmp_path / "b", gaussian_data, grad_accum=2)
    _assert_same_weights(straight, resumed)
    log_a, log_b = read_log(tmp_path / "a"), read_log(tmp_path / "b")
    assert [r["loss"] for r in log_a] == [r["loss"] for r in log_b][-6:]


def test_grad_accum_must_divide_the_batch(tmp_path):
    with pytest.raises(ConfigError, match="grad_accum: must divide batch_size 32"):
        train_config(tmp_path, grad_accum=3)
    with pytest.raises(ConfigError, match="grad_accum: must be a positive integer"):
        train_config(tmp_path, grad_accum=0)


def test_a_data_function_with_rows_builds_only_those_rows(tmp_path):
    """``data(step, rows)`` trains exactly as ``data(step)`` (one process: all rows)."""
    asked = []

    def sharded(step, rows):
        asked.append(rows)
        return gaussian_data(step)[rows]

    assert takes_rows(sharded) and not takes_rows(gaussian_data) and not takes_rows(len)
    plain, by_rows = _trainer(tmp_path / "a", steps=3), _trainer(tmp_path / "b", sharded, steps=3)
    plain.fit()
    by_rows.fit()
    assert asked == [slice(0, None, 1)] * 3
    for name, value in plain.unwrapped_model.state_dict().items():
        assert torch.equal(value, by_rows.unwrapped_model.state_dict()[name]), name


def test_tf32_is_set_on_a_gpu_device_only():
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn.conv
    before = matmul.fp32_precision, conv.fp32_precision
    try:
        set_tf32(torch.device("cpu"), True)
        assert (matmul.fp32_precision, conv.fp32_precision) == before
        set_tf32(torch.device("cuda"), True)
        assert (matmul.fp32_precision, conv.fp32_precision) == ("tf32", "tf32")
        set_tf32(torch.device("cuda"), False)
        assert (matmul.fp32_precision, conv.fp32_precision) == ("ieee", "ieee")
    finally:
        matmul.fp32_precision, conv.fp32_precision = before


def test_a_non_finite_gradient_stops_the_run_at_the_next_log_before_any_checkpoint(tmp_path):
    trainer = _trainer(tmp_path, steps=6, log_every=3, checkpoint_every=0)
    weight = trainer.unwrapped_model.net.body[0].weight
    weight.register_hook(lambda grad: grad if trainer.step != 2 else torch.full_like(grad, float("nan")))
    with pytest.raises(FloatingPointError, match="non-finite gradient norm in steps 0 to 2"):
        trainer.fit()
    assert trainer.step == 3 and latest_checkpoint(tmp_path) is None and read_log(tmp_path) == []


def test_compile_trains_like_eager(tmp_path, monkeypatch):
    """``compile=True`` runs the loss through ``torch.compile`` (the same losses, to float tolerance).

    The graph is captured as in any run, then executed by the ``aot_eager`` backend: inductor's code
    generation takes minutes on a CPU, and its random numbers differ from eager ones."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="aot_eager"))
    eager, compiled = _trainer(tmp_path / "a", steps=2), _trainer(tmp_path / "b", steps=2, compile=True)
    assert compiled.loss_fn is not compiled.loss and eager.loss_fn is eager.loss
    eager.fit()
    compiled.fit()
    losses = [[r["loss"] for r in read_log(tmp_path / run)] for run in "ab"]
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)


def test_the_global_batch_fixture_has_rows_for_every_split():
    assert BATCH % 4 == 0


def test_the_loss_checks_finiteness_on_logging_steps_only(tmp_path):
    """NaN data at step 1 passes unread; the run stops at the logging step 2 (steps 0..2)."""

    def poisoned(step):
        x = gaussian_data(step)
        return x * float("nan") if step == 1 else x

    trainer = _trainer(tmp_path, poisoned, steps=6, log_every=3, checkpoint_every=0)
    with pytest.raises((FloatingPointError, ValueError), match="non-finite|NaN"):
        trainer.fit()
    assert trainer.step == 2 and latest_checkpoint(tmp_path) is None
    assert trainer.unwrapped_loss.check_finite  # set for the logging step that raised


def _noisy_data(step, rows=slice(None)):
    """Gaussian data plus a draw from numpy's global RNG (seeded per step in a worker as here)."""
    x = gaussian_data(step)
    return (x + torch.from_numpy(np.random.standard_normal(x.shape)).float())[rows]


def test_the_step_loader_yields_the_batches_built_in_process_in_order():
    loader = step_loader(lambda step: (step, torch.rand(3), np.random.rand()), 4, 11, SEED, workers=3, prefetch=1)
    built = []
    for step in range(4, 11):
        seed_everything(step_seed(SEED, step, 0))
        built.append((step, (step, torch.rand(3), np.random.rand())))
    loaded = list(loader)
    assert [step for step, _ in loaded] == list(range(4, 11))
    for (_, (s, a, b)), (_, (s2, a2, b2)) in zip(loaded, built, strict=True):
        assert s == s2 and torch.equal(a, a2) and b == b2


def test_data_workers_train_exactly_as_the_training_process_and_resume_exactly(tmp_path):
    plain = _trainer(tmp_path / "plain", _noisy_data, steps=6)
    plain.fit()
    resumed = _resumed_from_step_3(tmp_path / "workers", _noisy_data, data_workers=2)
    _assert_same_weights(plain, resumed)
    losses = [[r["loss"] for r in read_log(tmp_path / run)] for run in ("plain", "workers")]
    assert losses[0] == losses[1][-6:]
