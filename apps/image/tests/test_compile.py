"""The loss of the micro UNet under ``torch.compile(fullgraph=True)`` on the CPU: captured by Dynamo
and traced forward and backward by AOT autograd ("aot_eager"; see the toy app's test_compile for what
does not compile and why).

Both backends, on two formulations (edm with jvp, ddim with finite differences): the toy app's test
compiles every formulation with each backend on the toy MLP, and the formulations differ only in
elementwise preconditioning around the same network, while each UNet case takes ten seconds or
more to trace on a CPU."""

from __future__ import annotations

import pytest
import torch
from cfm_core import CFMLoss, FlowMap, LossRecipe
from cfm_image.unet import UNET_PRESETS, UNet

CASES = [("edm", "jvp"), ("ddim", "finite_difference")]


@pytest.mark.parametrize(("formulation", "derivative"), CASES)
def test_the_micro_unet_loss_compiles_as_one_graph(formulation, derivative):
    torch.manual_seed(0)
    net = UNet(**UNET_PRESETS["micro"], in_channels=1, resolution=8, num_classes=3)
    loss = CFMLoss(FlowMap(net, formulation), LossRecipe(derivative=derivative))
    loss.check_finite = False
    x, labels = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    torch._dynamo.reset()
    compiled = torch.compile(loss, fullgraph=True, backend="aot_eager")
    results = []
    for run in (compiled, loss):
        loss.zero_grad(set_to_none=True)
        torch.manual_seed(1)
        value = run(x, labels)
        value.backward()
        results.append((value.detach(), {n: p.grad.clone() for n, p in loss.named_parameters() if p.grad is not None}))
    (value, grads), (reference, reference_grads) = results
    torch.testing.assert_close(value, reference, rtol=1e-5, atol=1e-6)
    assert grads.keys() == reference_grads.keys() and grads
    for name, grad in grads.items():
        torch.testing.assert_close(grad, reference_grads[name], rtol=1e-4, atol=1e-6, msg=name)
