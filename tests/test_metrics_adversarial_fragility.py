"""adversarial_fragility against a naive per-sample loop of Ghorbani et al.'s top-k attack
(Alg. 1) with the same random directions, and toys where the answer is known."""

from __future__ import annotations

import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from faithbench.errors import ConfigError
from faithbench.metrics import get
from faithbench.metrics._common import per_sample_noise
from faithbench.params import check_params
from faithbench.types import Batch

fragility = get("adversarial_fragility").fn
H, W = 5, 7  # non-square

def mlp() -> nn.Module:
    torch.manual_seed(3)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * H * W, 12), nn.Tanh(), nn.Linear(12, 3)).eval()

def smooth_gradient(model):
    """Input x gradient, summed over channels: a map that moves with the input."""
    def explain(x, target):
        with torch.enable_grad():
            z = x.detach().clone().requires_grad_(True)
            (g,) = torch.autograd.grad(model(z).gather(1, target.view(-1, 1)).sum(), z)
        return (g * x).sum(1)
    return explain

def naive(model, x, h, target, explain, ids, seed, epsilon, alpha, iterations, topk,
          n_directions, delta):
    """Alg. 1 one sample at a time, with pixel sets and sums written out."""
    n = H * W
    k = max(1, round(topk * n))
    results = []
    for i in range(x.shape[0]):
        xi, ti = x[i:i + 1], target[i:i + 1]
        hv = h[i].flatten().tolist()
        top = set(sorted(range(n), key=lambda j: (-hv[j], j))[:k])

        def share(m):
            v = m.flatten().tolist()
            total = sum(abs(a) for a in v)
            return sum(v[j] for j in top) / total if total > 0 else 0.0

        pred = int(model(xi).argmax())
        best, best_rho, kept, xp = 1.0, 1.0, 0, xi.clone()
        for p in range(iterations):
            g = torch.zeros_like(xi)
            for q in range(n_directions):
                u = per_sample_noise((3, H, W), seed, [ids[i]], x.device, kind="uniform",
                                     stream=5000 + p * n_directions + q).sign()
                d = share(explain(xp + delta * u, ti)[0]) - share(explain(xp - delta * u, ti)[0])
                g += d / (2 * delta) * u / n_directions
            xp = torch.minimum(torch.maximum(xp - alpha * g.sign(), xi - epsilon), xi + epsilon)
            if int(model(xp).argmax()) != pred:
                continue
            kept += 1
            hp = explain(xp, ti)[0].flatten().tolist()
            top_p = set(sorted(range(n), key=lambda j: (-hp[j], j))[:k])
            inter = len(top & top_p) / k
            if inter < best:
                best, best_rho = inter, spearmanr(hv, hp)[0]
        results.append((best, best_rho, kept / iterations))
    return results

@pytest.mark.parametrize("topk", [0.1, 0.3])
def test_matches_a_naive_loop_of_the_paper(topk):
    model = mlp()
    explain = smooth_gradient(model)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 3, H, W, generator=g)
    target = torch.tensor([2, 0, 1])  # per-sample targets
    h = explain(x, target)
    params = dict(epsilon=0.3, alpha=0.1, iterations=4, topk=topk, n_directions=3, delta=0.05)
    batch = Batch(images=x, labels=target, ids=["a", "b", "c"], index=torch.tensor([4, 9, 2]),
                  orig_size=torch.ones(3, 2), scale=torch.ones(3, 2), offset=torch.zeros(3, 2))
    out = fragility(model, x, h, target, batch, explain=explain, seed=6, **params)
    ref = naive(model, x, h, target, explain, [4, 9, 2], 6, **params)
    for i, (inter, rho, kept) in enumerate(ref):
        assert out["adversarial_fragility"][i].item() == pytest.approx(inter, abs=1e-6)
        assert out["adversarial_fragility_spearman"][i].item() == pytest.approx(rho, abs=1e-5)
        assert out["adversarial_fragility_unchanged"][i].item() == pytest.approx(kept)
    assert (out["adversarial_fragility"] < 1).any(), "the attack must move some map"

def test_attack_moves_an_input_copying_map_and_respects_the_budget():
    # The map is the input's first channel; a constant model never changes its prediction.
    class Constant(nn.Module):
        def forward(self, z):
            return torch.tensor([[1.0, 0.0]]).expand(z.shape[0], -1)

    seen = []

    def copy(z, t):
        seen.append(z.clone())
        return z[:, 0]

    x = torch.rand(2, 3, H, W)
    out = fragility(Constant(), x, x[:, 0], torch.zeros(2, dtype=torch.long), explain=copy,
                    epsilon=0.5, alpha=0.25, iterations=3, topk=0.2, seed=1)
    assert (out["adversarial_fragility"] < 1).all()
    assert out["adversarial_fragility_unchanged"].tolist() == [1.0, 1.0]
    # Attacked inputs (the last map of each step) stay in the epsilon ball.
    assert max(float((z - x).abs().max()) for z in seen if z.shape[0] == 2) <= 0.5 + 1e-6
    # epsilon = alpha / 1000: almost nothing moves, the top-k set stays.
    tiny = fragility(Constant(), x, x[:, 0], torch.zeros(2, dtype=torch.long), explain=copy,
                     epsilon=1e-4, alpha=0.1, iterations=2, topk=0.2, seed=1)
    assert tiny["adversarial_fragility"].tolist() == [1.0, 1.0]

def test_constant_maps_ties_and_batch_independence():
    model = mlp()
    x = torch.randn(3, 3, H, W)
    t = torch.tensor([0, 1, 2])
    const = lambda z, tt: torch.full((z.shape[0], H, W), 2.0)  # noqa: E731
    out = fragility(model, x, torch.full((3, H, W), 2.0), t, explain=const, seed=0)
    assert out["adversarial_fragility"].tolist() == [1.0, 1.0, 1.0]  # all ties, never moves
    assert out["adversarial_fragility_spearman"].tolist() == [1.0, 1.0, 1.0]
    explain = smooth_gradient(model)
    h = explain(x, t)
    h[2, 0, 0] = float("nan")
    whole = fragility(model, x, h, t, explain=explain, seed=3, epsilon=0.5, alpha=0.2)
    assert whole["adversarial_fragility"][2].isnan()
    one = fragility(model, x[1:2], h[1:2], t[1:2], explain=explain, seed=3, epsilon=0.5, alpha=0.2,
                    batch=Batch(images=x[1:2], labels=t[1:2], ids=["b"], index=torch.tensor([1]),
                                orig_size=torch.ones(1, 2), scale=torch.ones(1, 2),
                                offset=torch.zeros(1, 2)))
    for k in ("adversarial_fragility", "adversarial_fragility_spearman"):
        assert whole[k][1].item() == pytest.approx(one[k][0].item(), abs=1e-5)

def test_bad_parameters_are_config_errors():
    for name, bad in (("epsilon", 0.0), ("iterations", 0), ("topk", 1.5), ("n_directions", 0)):
        with pytest.raises(ConfigError, match=name):
            check_params(fragility, {name: bad}, "metric 'adversarial_fragility'")
    with pytest.raises(ConfigError, match="needs explain"):
        fragility(None, torch.zeros(1, 3, 2, 2), torch.zeros(1, 2, 2), torch.zeros(1, dtype=torch.long))
