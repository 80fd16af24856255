"""GSAM, surrogate-gap guided sharpness-aware minimisation (Zhuang et al., ICLR 2022), over SGD: the optimiser of the
expert trajectories that FTD, DATM and PAD match (their buffer scripts: rho 0.01, alpha 0.4, adaptive).

One step, given the gradient g of the batch at w (already in `.grad`): climb to w + e with
e = rho x w^2 x g / ||w x g|| (adaptive; plain: rho x g / ||g||), take the gradient g' of the same batch there (the
closure), subtract alpha x the part of g orthogonal to g' from g', step back to w and let SGD step with that.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

EPS = 1e-12  # the reference's perturb_eps


class GSAM(torch.optim.Optimizer):
    """SGD (lr, momentum, weight decay) driven by GSAM's direction; `step(closure)` needs a closure that recomputes
    the batch's gradient (into `.grad`) at the current weights. Weights are flattened per network, so one instance
    serves one network (stacked networks would share its norms)."""

    needs_closure = True

    def __init__(self, params, lr: float, rho: float, alpha: float, adaptive: bool = True, **sgd):
        self.base = torch.optim.SGD(params, lr=lr, **sgd)
        super().__init__(self.base.param_groups, {"lr": lr})
        self.param_groups = self.base.param_groups  # an lr schedule sets both
        self.rho, self.alpha, self.adaptive = rho, alpha, adaptive

    def _params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"] if p.grad is not None]

    @torch.no_grad()
    def step(self, closure: Callable[[], object] | None = None):
        if closure is None:
            raise RuntimeError("GSAM.step needs a closure that recomputes the batch's gradient")
        params = self._params()
        old = [p.grad.clone() for p in params]
        scaled = [(p.abs() * g if self.adaptive else g) for p, g in zip(params, old, strict=True)]
        scale = self.rho / (torch.linalg.vector_norm(torch.stack([s.norm() for s in scaled])) + EPS)
        climb = [g * scale * (p * p if self.adaptive else 1.0) for p, g in zip(params, old, strict=True)]
        torch._foreach_add_(params, climb)
        for p in params:
            p.grad = None
        with torch.enable_grad():
            closure()
        new = [p.grad for p in params]
        inner = sum((a * b).sum() for a, b in zip(old, new, strict=True))
        new_norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in new]))
        old_norm = torch.linalg.vector_norm(torch.stack([g.norm() for g in old]))
        cosine = inner / (new_norm * old_norm + EPS)
        for g_old, g_new in zip(old, new, strict=True):
            vertical = g_old - cosine * old_norm * g_new / (new_norm + EPS)
            g_new.add_(vertical, alpha=-self.alpha)
        torch._foreach_sub_(params, climb)
        self.base.step()

    def state_dict(self):
        return self.base.state_dict()

    def load_state_dict(self, state_dict) -> None:
        self.base.load_state_dict(state_dict)
        self.param_groups = self.base.param_groups
