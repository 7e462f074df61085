"""CFMLoss: the loss assembly, r = t, MeanFlow's identity, condition dropout and errors."""

from __future__ import annotations

import pytest
import torch
from cfm_core import FlowMap, LossRecipe
from cfm_core.derivatives import autograd_derivative, jvp_with_value
from cfm_core.oracle import GaussianOracle

from .conftest import SmoothNet, fix_times, make_loss


def _model_target_loss(net, formulation, **recipe):
    """A loss with ``target_field="model"`` (unless given) for any formulation: ddim refuses the
    combination when the loss is built (it diverges in training), but its target is still checked."""
    loss_fn = make_loss(net, "u", **{"target_field": "model", **recipe})
    loss_fn.model = FlowMap(net, formulation)
    return loss_fn


def _loss_on_a_fixed_batch(loss_fn, n: int = 8):
    """The loss on ``n`` rows with fixed times (every other row at r = t) and fixed noise;
    returns ``(loss, data, noise, t, r, inst, x)`` for rebuilding the target by hand."""
    u_t, u_r = torch.linspace(0.1, 0.6, n), torch.linspace(0.3, 0.9, n)
    inst = torch.tensor([True, False] * (n // 2))
    u_r = torch.where(inst, u_t, u_r)
    fix_times(loss_fn, u_t, u_r, inst)
    data, noise = torch.randn(n, 3), torch.randn(n, 3)
    loss = loss_fn(data, noise=noise)
    f = loss_fn.model.formulation
    t = f.time_from_unit(u_t)
    r = torch.where(inst, t, f.time_from_unit(u_r))
    return loss, data, noise, t, r, inst, f.interpolate(data, noise, t)


def test_loss_equals_hand_computed_target(formulation):
    """Fixed times and noise: the loss is the weighted MSE to the hand-built field-equation target."""
    torch.manual_seed(0)
    loss_fn = make_loss(SmoothNet(), formulation, derivative="jvp", adaptive_p=0.0)
    model = loss_fn.model
    loss, data, noise, t, r, inst, x = _loss_on_a_fixed_batch(loss_fn)
    f = formulation
    m_cond = f.conditional_target(data, noise, t)
    v = f.velocity(m_cond, x, t)
    dm = autograd_derivative(lambda a, b: model.field(a, b, r), x, t, v)
    target = torch.where(inst[:, None], m_cond, f.field_target(m_cond, x, t, r, dm))
    weight = f.loss_weight(t) * torch.where(inst, torch.ones_like(t), f.field_weight(t, r))
    expected = ((model.field(x, t, r) - target) ** 2).mean(1) * weight
    torch.testing.assert_close(loss, expected.mean(), rtol=1e-4, atol=1e-6)
    plain = make_loss(model.net, formulation, derivative="jvp", field_weighting="none", adaptive_p=0.0)
    plain.time_sampler = loss_fn.time_sampler
    expected_plain = ((model.field(x, t, r) - target) ** 2).mean(1) * f.loss_weight(t)
    torch.testing.assert_close(plain(data, noise=noise), expected_plain.mean(), rtol=1e-4, atol=1e-6)
    adaptive = make_loss(model.net, formulation, derivative="jvp", adaptive_p=1.0, adaptive_c=0.5)
    adaptive.time_sampler = loss_fn.time_sampler
    expected_adaptive = expected / (expected.detach() + 0.5)
    torch.testing.assert_close(adaptive(data, noise=noise), expected_adaptive.mean(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("derivative", ["jvp", "jvp_one_pass", "finite_difference"])
def test_model_target_field_builds_the_target_from_the_networks_r_equal_t_output(formulation, derivative):
    """target_field="model": the cumulative rows' target takes m_{t->t}(x) of the network (no
    gradient) where the paper's takes m_t(x | x1); the r = t rows keep the conditional target."""
    torch.manual_seed(0)
    loss_fn = _model_target_loss(SmoothNet(), formulation, derivative=derivative, fd_step=0.01, adaptive_p=0.0)
    model = loss_fn.model
    loss, data, noise, t, r, inst, x = _loss_on_a_fixed_batch(loss_fn)
    f = formulation
    m_model = model.field(x, t, t).detach()
    v = f.velocity(m_model, x, t)
    dm = autograd_derivative(lambda a, b: model.field(a, b, r), x, t, v)
    target = torch.where(inst[:, None], f.conditional_target(data, noise, t), f.field_target(m_model, x, t, r, dm))
    weight = f.loss_weight(t) * torch.where(inst, torch.ones_like(t), f.field_weight(t, r))
    expected = ((model.field(x, t, r) - target) ** 2).mean(1) * weight
    tolerance = 2e-2 if derivative == "finite_difference" else 1e-4
    torch.testing.assert_close(loss, expected.mean(), rtol=tolerance, atol=1e-6)
    if derivative == "finite_difference":
        return
    # the extra pass carries no gradient: the gradient is that of the squared error alone
    loss.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    expected.mean().backward()
    for got, want in zip(grads, (p.grad for p in model.parameters()), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def test_model_target_field_of_the_exact_field_has_no_data_noise(formulation):
    """Gaussian-to-Gaussian: with the exact cumulative field and derivative, the "model" target equals the field
    at every x (zero cumulative loss, whatever data the batch holds), while the paper's conditional
    target scatters around it with the data."""
    oracle = GaussianOracle(formulation, torch.tensor([0.5, -1.0]), torch.tensor([[1.0, 0.3], [0.3, 0.5]]))
    n = 64
    g = torch.Generator().manual_seed(3)
    u = 0.05 + 0.85 * torch.rand(2, n, generator=g)
    u_t, u_r = u.min(0).values, u.max(0).values
    inst = torch.zeros(n, dtype=torch.bool)
    data, noise = 3.0 * torch.randn(n, 2, generator=g), torch.randn(n, 2, generator=g)
    losses = {}
    for source in ("model", "conditional"):
        loss_fn = _model_target_loss(
            SmoothNet(dim=2), formulation, derivative="jvp", adaptive_p=0.0, target_field=source
        )
        loss_fn.model.field = lambda x, t, r, cond=None: oracle.cumulative_field(
            x.double(), t.double(), r.double()
        ).float()
        fix_times(loss_fn, u_t, u_r, inst)
        losses[source] = loss_fn(data, noise=noise).item()
    assert losses["conditional"] > 1e-2
    assert losses["model"] < 1e-6 * losses["conditional"]


def test_one_pass_jvp_gives_the_gradients_of_separate_passes(formulation, monkeypatch):
    """jvp_one_pass takes the prediction from its dual pass; the gradients must equal those of an
    ordinary forward beside a separately computed derivative (the autograd backend)."""
    import cfm_core.loss

    calls = []
    monkeypatch.setattr(cfm_core.loss, "jvp_with_value", lambda *a, **k: calls.append(1) or jvp_with_value(*a, **k))
    torch.manual_seed(3)
    joint = make_loss(SmoothNet(), formulation, derivative="jvp_one_pass")
    separate = make_loss(SmoothNet(), formulation, derivative="autograd")
    separate.load_state_dict(joint.state_dict())
    n = 12
    u_t, u_r = torch.rand(n) * 0.8, 0.1 + torch.rand(n) * 0.85
    inst = torch.arange(n) % 3 == 0
    u_t, u_r = torch.minimum(u_t, u_r), torch.where(inst, torch.minimum(u_t, u_r), torch.maximum(u_t, u_r))
    data, noise = torch.randn(n, 3), torch.randn(n, 3)
    losses = []
    for loss_fn in (joint, separate):
        fix_times(loss_fn, u_t, u_r, inst)
        loss = loss_fn(data, noise=noise)
        loss.backward()
        losses.append(loss)
    assert calls == [1]  # the one-pass path ran (once: the autograd model does not use it)
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-5, atol=1e-7)
    for (name, a), b in zip(joint.named_parameters(), separate.parameters(), strict=True):
        assert a.grad.abs().sum() > 0, name
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_one_pass_jvp_falls_back_to_separate_passes_under_autocast(monkeypatch):
    """Under autocast the tangent must stay in float32 while the prediction runs in bf16."""
    import cfm_core.loss

    monkeypatch.setattr(cfm_core.loss, "jvp_with_value", lambda *a: pytest.fail("one pass ran"))
    loss_fn = make_loss(SmoothNet(), "u", derivative="jvp_one_pass")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = loss_fn(torch.randn(8, 3))
    assert torch.isfinite(loss)


def test_r_equal_t_is_the_instantaneous_model(formulation):
    """With every row at r = t the loss is the ordinary (flow matching / EDM / DDPM-x0) loss."""
    torch.manual_seed(1)
    loss_fn = make_loss(SmoothNet(), formulation, instantaneous_ratio=1.0, adaptive_p=0.0)
    model = loss_fn.model
    u_t = torch.rand(16)
    fix_times(loss_fn, u_t, u_t, torch.ones(16, dtype=torch.bool))
    data, noise = torch.randn(16, 3), torch.randn(16, 3)
    t = formulation.time_from_unit(u_t)
    x = formulation.interpolate(data, noise, t)
    err = (model.field(x, t, t) - formulation.conditional_target(data, noise, t)) ** 2
    expected = (err.mean(1) * formulation.loss_weight(t)).mean()
    torch.testing.assert_close(loss_fn(data, noise=noise), expected)
    # and the field target collapses to the instantaneous target at r = t (Theorem 1)
    torch.testing.assert_close(formulation.field_target(data, x, t, t, torch.randn_like(x)), data)


def test_u_loss_is_meanflow_with_time_flipped():
    """Our u target equals -(MeanFlow target) under t_MF = 1 - t, u_MF = -u (MeanFlow: t = 1 is noise)."""
    torch.manual_seed(2)
    net = SmoothNet()
    model = FlowMap(net, "u")
    n = 16
    data, noise = torch.randn(n, 3), torch.randn(n, 3)
    t, r = torch.rand(n) * 0.5, 0.5 + torch.rand(n) * 0.5  # ours: t -> r towards data

    def u_mf(z, r_mf, t_mf):  # MeanFlow's u(z, r, t) from our network
        return -net(z, 1 - t_mf, 1 - r_mf)

    t_mf, r_mf = 1 - t, 1 - r
    z = (1 - t_mf[:, None]) * data + t_mf[:, None] * noise
    v_mf = noise - data
    u_val, dudt = torch.func.jvp(u_mf, (z, r_mf, t_mf), (v_mf, torch.zeros_like(r_mf), torch.ones_like(t_mf)))
    target_mf = v_mf - (t_mf - r_mf)[:, None] * dudt

    f = model.formulation
    x = f.interpolate(data, noise, t)
    m_cond = f.conditional_target(data, noise, t)
    dm = autograd_derivative(lambda a, b: model.field(a, b, r), x, t, f.velocity(m_cond, x, t))
    ours = f.field_target(m_cond, x, t, r, dm)
    torch.testing.assert_close(z, x)
    torch.testing.assert_close(ours, -target_mf, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(model.field(x, t, r), -u_val)


def test_condition_dropout_uses_the_null_condition():
    seen = []

    class Recorder(SmoothNet):
        def forward(self, x, t, r, cond=None):
            seen.append(cond.clone())
            return super().forward(x, t, r)

    loss_fn = make_loss(Recorder(), "u", null_cond=torch.tensor(-1), cond_dropout=0.5, instantaneous_ratio=1.0)
    loss_fn(torch.randn(400, 3), cond=torch.ones(400, dtype=torch.long))
    share = (seen[-1] == -1).float().mean().item()
    assert 0.35 < share < 0.65
    with pytest.raises(ValueError, match="needs null_cond"):
        make_loss(SmoothNet(), "u", cond_dropout=0.1)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="unknown formulation"):
        FlowMap(SmoothNet(), "flow")
    with pytest.raises(ValueError, match="unknown derivative backend"):
        make_loss(SmoothNet(), "u", derivative="fd")

    class WrongShape(torch.nn.Module):
        def forward(self, x, t, r, cond=None):
            return x[:, :2]

    with pytest.raises(
        ValueError,
        match=r"network output shape \(\d+, 2\) does not match the input shape \(\d+, 3\)",
    ):
        make_loss(WrongShape(), "u")(torch.randn(4, 3))
    loss_fn = make_loss(SmoothNet(), "u")
    model = loss_fn.model
    bad = torch.randn(4, 3)
    bad[1, 2] = float("nan")
    with pytest.raises(ValueError, match="x_data contains NaN or inf"):
        loss_fn(bad)
    with pytest.raises(ValueError, match="noise contains NaN"):
        model.sample(bad)
    with pytest.raises(ValueError, match="noise shape"):
        loss_fn(torch.randn(4, 3), noise=torch.randn(4, 2))
    with pytest.raises(ValueError, match="unknown sampling method"):
        model.sample(torch.randn(4, 3), sampler="rk4")
    with pytest.raises(ValueError, match="outside the formulation's range"):
        model.flow_map(torch.randn(4, 3), 1.5, 1.0)

    class Overflow(torch.nn.Module):
        def forward(self, x, t, r, cond=None):
            return x * float("inf")

    with pytest.raises(FloatingPointError, match="non-finite CFM loss"):
        make_loss(Overflow(), "u", instantaneous_ratio=1.0)(torch.randn(4, 3))


def test_dict_condition_dropout_keeps_none_entries_and_custom_noise_is_used():
    seen = []

    class Recorder(SmoothNet):
        def forward(self, x, t, r, cond=None):
            seen.append({k: v.clone() for k, v in cond.items()})
            return super().forward(x, t, r)

    calls = []

    def noise_sampler(x, cond):
        calls.append(cond["points"].shape)
        return torch.zeros_like(x)

    loss_fn = make_loss(
        Recorder(),
        "u",
        null_cond={"points": None, "label": torch.tensor(-1)},
        cond_dropout=0.5,
        instantaneous_ratio=1.0,
        noise_sampler=noise_sampler,
        adaptive_p=0.0,
    )
    points = torch.randn(200, 4)
    loss_fn(torch.randn(200, 3), cond={"points": points, "label": torch.ones(200, dtype=torch.long)})
    assert calls == [(200, 4)]
    got = seen[-1]
    assert 0.3 < (got["label"] == -1).float().mean().item() < 0.7
    # the positions are inputs, not a condition: untouched (rows are a permutation of the originals)
    assert torch.allclose(got["points"].sort(0).values, points.sort(0).values)


def test_model_target_field_is_refused_with_ddim():
    with pytest.raises(ValueError, match="target_field: 'model' diverges with the ddim formulation"):
        make_loss(SmoothNet(), "ddim", target_field="model")
    make_loss(SmoothNet(), "ddim")  # the conditional target is fine


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("instantaneous_ratio", 1.5),
        ("time_sampler", "beta"),
        ("logit_normal", (0.0, -1.0)),
        ("derivative", "fd"),
        ("fd_step", 0.0),
        ("fd_scheme", "backward"),
        ("field_weighting", "snr"),
        ("adaptive_p", -1.0),
        ("adaptive_c", 0.0),
        ("cond_dropout", 1.0),
        ("coupling", "sinkhorn"),
        ("ot_block", 1),
        ("target_field", "teacher"),
    ],
)
def test_loss_recipe_names_the_invalid_field(field, value):
    with pytest.raises(ValueError, match=f"^{field}"):
        LossRecipe(**{field: value})


def test_time_pairs_split_the_rows_by_a_fixed_count():
    """The r = t rows and the cumulative rows are ascending index sets of fixed sizes matching
    the mask, and the draw is the one of ``__call__`` (same random numbers)."""
    sampler = LossRecipe(instantaneous_ratio=0.25).time_pairs()
    torch.manual_seed(5)
    pairs = sampler.draw(40)
    torch.manual_seed(5)
    u_t, u_r, inst = sampler(40)
    for a, b in zip(pairs[:3], (u_t, u_r, inst), strict=True):
        assert torch.equal(a, b)
    assert pairs.instantaneous_rows.numel() == 10 and pairs.cumulative_rows.numel() == 30
    assert torch.equal(pairs.instantaneous_rows, inst.nonzero().squeeze(1))
    assert torch.equal(pairs.cumulative_rows, (~inst).nonzero().squeeze(1))
    assert torch.equal(pairs.u_r[inst], pairs.u_t[inst]) and (pairs.u_r >= pairs.u_t).all()


def test_central_finite_difference_brings_the_target_closer_to_the_exact_one(formulation):
    """fd_scheme="central" reaches the loss: at the same step its loss is nearer the exact
    derivative's loss than the forward secant's (second order against first)."""
    losses = {}
    for derivative, scheme in (
        ("autograd", "forward"),
        ("finite_difference", "forward"),
        ("finite_difference", "central"),
    ):
        torch.manual_seed(0)
        loss_fn = make_loss(SmoothNet(), "u", derivative=derivative, fd_step=0.05, fd_scheme=scheme, adaptive_p=0.0)
        loss_fn.model = FlowMap(loss_fn.model.net, formulation)
        losses[derivative, scheme] = _loss_on_a_fixed_batch(loss_fn)[0].item()
    exact = losses["autograd", "forward"]
    forward_gap = abs(losses["finite_difference", "forward"] - exact)
    assert abs(losses["finite_difference", "central"] - exact) < forward_gap / 3, losses
