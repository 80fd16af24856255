"""GSAM (the FTD / DATM / PAD experts' optimiser): its step against the formula, and experts trained with it."""

from __future__ import annotations

import torch

from hf_condense.models.sam import GSAM


def quadratic(seed=0):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(5, 3, generator=g), torch.randn(5, generator=g)
    w = torch.nn.Parameter(torch.randn(3, generator=g))

    def grad_at(v):
        return a.T @ (a @ v - b)

    def closure():
        loss = 0.5 * ((a @ w - b) ** 2).sum()
        loss.backward()

    return w, grad_at, closure


def test_a_gsam_step_follows_the_climbed_gradient_less_alpha_times_the_orthogonal_part():
    w, grad_at, closure = quadratic()
    lr, rho, alpha = 0.1, 0.05, 0.4
    w0 = w.detach().clone()
    g = grad_at(w0)
    e = rho * w0**2 * g / torch.linalg.vector_norm(w0.abs() * g)  # adaptive climb
    g2 = grad_at(w0 + e)
    vertical = g - (g @ g2) / (g2 @ g2) * g2  # g's part orthogonal to g2
    expected = w0 - lr * (g2 - alpha * vertical)
    opt = GSAM([w], lr, rho, alpha)
    closure()
    opt.step(closure)
    assert torch.allclose(w.detach(), expected, atol=1e-6)


def test_gsam_without_a_climb_is_sgd():
    w, _, closure = quadratic(1)
    v = torch.nn.Parameter(w.detach().clone())
    sam, sgd = GSAM([w], 0.1, 1e-12, 0.4), torch.optim.SGD([v], lr=0.1)
    for opt, p in ((sam, w), (sgd, v)):
        for _ in range(3):
            opt.zero_grad()
            loss = 0.5 * (p**2).sum() + p.sum()
            loss.backward()
            opt.step((lambda q=p: (0.5 * (q**2).sum() + q.sum()).backward()) if opt is sam else None)
    assert torch.allclose(w, v, atol=1e-6)


def test_gsam_experts_have_their_own_key_and_trajectories(tiny, accelerator):
    """expert_optimizer gsam: another cache key (SGD experts keep theirs), trained unstacked."""
    from hf_condense.cli.distill import prepare
    from hf_condense.methods.experts import ExpertStore
    from hf_condense.methods.mtt import expert_settings
    from hf_condense.stages.recipe import load_recipe

    from ..conftest import tiny_mtt

    tiny["method"] = tiny_mtt(num_experts=1, expert_stack=2)
    recipe = load_recipe(tiny)
    store = ExpertStore(prepare(recipe, accelerator))
    sgd = expert_settings(recipe.method, 0)
    gsam = expert_settings(load_recipe(tiny, ["method.expert_optimizer=gsam"]).method, 0)
    assert gsam.schedule.optimizer == "gsam" and not gsam.stackable and sgd.stackable
    (k1, (p1,)), (k2, (p2,)) = store.base_experts(sgd), store.base_experts(gsam)
    assert k1 != k2
    t1, t2 = store.trajectory(p1, k1, sgd.epochs), store.trajectory(p2, k2, gsam.epochs)
    assert not torch.allclose(t1[-1], t2[-1])
