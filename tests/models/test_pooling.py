"""The ConvNet's CPU pooling form: nn.AvgPool2d's values and derivatives of every order, under torch.func too; on
only in first-order training and test loops."""

import pytest
import torch
from torch import nn
from torch.func import grad, jvp, vmap

from hf_condense.models import pooling
from hf_condense.models.convnet import ConvNet
from hf_condense.models.pooling import AvgPool2d, as_convolution
from hf_condense.models.training import batch_gradient

SHAPES = [(4, 3, 8, 8), (2, 5, 7, 9)]  # odd sizes: the floor drops a row and a column, as nn.AvgPool2d's does


@pytest.fixture(autouse=True)
def small_inputs_too(monkeypatch):
    monkeypatch.setattr(pooling, "MIN_ELEMENTS", 0)  # tiny tensors here; the library keeps ATen's op below 2^19


@pytest.fixture(params=SHAPES, ids=str)
def x(request):
    with as_convolution():  # every test here runs the convolution form
        yield torch.randn(*request.param, generator=torch.Generator().manual_seed(0))


def test_the_convolution_form_runs_only_within_as_convolution():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    assert "AvgPool2D" in type(AvgPool2d(2)(x).grad_fn).__name__  # unrolls and gradient matching: ATen's op
    with as_convolution():
        assert "_Mean" in type(AvgPool2d(2)(x).grad_fn).__name__
    assert "AvgPool2D" in type(AvgPool2d(2)(x).grad_fn).__name__


def test_small_inputs_keep_atens_op(monkeypatch):
    monkeypatch.setattr(pooling, "MIN_ELEMENTS", 1 << 19)  # oneDNN's per-call cost outweighs the kernel below
    with as_convolution():
        assert "AvgPool2D" in type(AvgPool2d(2)(torch.randn(2, 3, 8, 8, requires_grad=True)).grad_fn).__name__
        assert "_Mean" in type(AvgPool2d(2)(torch.randn(8, 64, 32, 32, requires_grad=True)).grad_fn).__name__


def test_training_steps_pool_as_convolutions():
    net = ConvNet(num_classes=3, in_chans=3, depth=2, width=8, img_size=8)
    seen = []
    net.features[3].register_forward_hook(lambda m, i, out: seen.append(type(out.grad_fn).__name__))
    batch_gradient(net, torch.randn(4, 3, 8, 8), torch.tensor([0, 1, 2, 0]), 2)
    assert seen and all("_Mean" in name for name in seen)


def test_values_and_gradients_equal_nn_avgpool2d(x):
    fast, ref = AvgPool2d(2), nn.AvgPool2d(2)
    x = x.requires_grad_(True)
    y, y_ref = fast(x), ref(x)
    assert "_Mean" in type(y.grad_fn).__name__ and y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref, rtol=0, atol=0)
    v = torch.randn_like(y)
    w = torch.randn_like(x)
    # first and second derivatives: the MTT unroll differentiates the backward pass again
    cot = v.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(fast(x), x, cot, create_graph=True)
    (g_ref,) = torch.autograd.grad(ref(x), x, cot, create_graph=True)
    torch.testing.assert_close(g, g_ref, rtol=0, atol=0)
    (gg,) = torch.autograd.grad((g * w).sum(), cot)
    (gg_ref,) = torch.autograd.grad((g_ref * w).sum(), cot)
    torch.testing.assert_close(gg, gg_ref, rtol=0, atol=0)


def test_torch_func_transforms_agree(x):
    fast, ref = AvgPool2d(2), nn.AvgPool2d(2)
    xs = torch.stack([x, 2 * x])

    def loss(pool):
        return lambda x: (pool(x) ** 2).sum()

    torch.testing.assert_close(vmap(fast)(xs), vmap(ref)(xs), rtol=0, atol=0)
    torch.testing.assert_close(vmap(grad(loss(fast)))(xs), vmap(grad(loss(ref)))(xs), rtol=0, atol=0)
    t = torch.randn_like(x)
    torch.testing.assert_close(jvp(fast, (x,), (t,))[1], jvp(ref, (x,), (t,))[1], rtol=0, atol=0)
    hess_fast = grad(lambda x: grad(loss(fast))(x).sin().sum())(x)
    hess_ref = grad(lambda x: grad(loss(ref))(x).sin().sum())(x)
    torch.testing.assert_close(hess_fast, hess_ref, rtol=1e-6, atol=1e-6)


def test_other_dtypes_keep_atens_kernel():
    with as_convolution():
        y = AvgPool2d(2)(torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True))
    assert "AvgPool2D" in type(y.grad_fn).__name__


def test_the_convnet_pools_with_it_and_keeps_its_state_dict():
    net = ConvNet(num_classes=10, in_chans=3, depth=3, width=8)
    assert sum(isinstance(m, AvgPool2d) for m in net.modules()) == 3
    assert all(not k.startswith("features.3") for k in net.state_dict())  # pooling holds no parameters or buffers
