"""The optional `zennit` adapter: equal to calling zennit directly, LRP-0 by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mlflow.tracking import MlflowClient

from faithbench.cli import compose
from faithbench.errors import ConfigError
from faithbench.methods import get
from faithbench.preprocess import Preprocess
from faithbench.run import run

zennit = pytest.importorskip("zennit")
from zennit import attribution as zattr  # noqa: E402
from zennit import composites as zcomp  # noqa: E402
from zennit import torchvision as ztv  # noqa: E402

TARGET = torch.tensor([4, 0, 2])


@pytest.fixture
def x() -> torch.Tensor:
    """A batch of 3 non-square normalised images [3,3,20,28]."""
    return torch.randn(3, 3, 20, 28, generator=torch.Generator().manual_seed(1))


def direct(model, x, target, composite, attributor=zattr.Gradient, **kw):
    """zennit's own recipe: one-hot output relevance, channel sum."""
    onehot = torch.eye(5)[target]
    with attributor(model, composite, **kw) as a:
        _, rel = a(x.clone(), onehot)
    return rel.sum(1)


@pytest.mark.parametrize("name", ["EpsilonPlusFlat", "EpsilonPlus", "EpsilonAlpha2Beta1Flat",
                                  "ExcitationBackprop", "GuidedBackprop"])
def test_equals_zennit_directly(tiny_cnn, x, name):
    ours = get("zennit").fn(tiny_cnn, x, TARGET, composite=name)
    ref = direct(tiny_cnn, x, TARGET, getattr(zcomp, name)())
    assert ours.shape == (3, 20, 28) and ours.dtype == torch.float32
    assert ours.abs().max() > 0
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


def test_box_rule_bounds_come_from_the_preprocess(tiny_cnn, x):
    pre = Preprocess(size=20, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3))
    ours = get("zennit").fn(tiny_cnn, x, TARGET, composite="EpsilonGammaBox", preprocess=pre)
    low = ((0 - torch.tensor(pre.mean)) / torch.tensor(pre.std)).view(1, 3, 1, 1)
    high = ((1 - torch.tensor(pre.mean)) / torch.tensor(pre.std)).view(1, 3, 1, 1)
    ref = direct(tiny_cnn, x, TARGET, zcomp.EpsilonGammaBox(low=low, high=high))
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
    given = get("zennit").fn(tiny_cnn, x, TARGET, composite="EpsilonGammaBox",
                             composite_kwargs={"low": -3.0, "high": 3.0})
    ref = direct(tiny_cnn, x, TARGET, zcomp.EpsilonGammaBox(low=-3.0, high=3.0))
    torch.testing.assert_close(given, ref, atol=1e-6, rtol=0)
    assert (given - ours).abs().max() > 1e-6  # the bounds matter
    with pytest.raises(ConfigError, match="composite_kwargs.low"):
        get("zennit").fn(tiny_cnn, x, TARGET, composite="EpsilonGammaBox")


def test_smoothgrad_attributor_is_seeded(tiny_cnn, x):
    kw = {"n_iter": 3, "noise_level": 0.2}
    ours = get("zennit").fn(tiny_cnn, x, TARGET, composite=None, attributor="SmoothGrad",
                            attributor_kwargs=kw, seed=7)
    torch.manual_seed(7)
    ref = direct(tiny_cnn, x, TARGET, None, zattr.SmoothGrad, **kw)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
    again = get("zennit").fn(tiny_cnn, x, TARGET, composite=None, attributor="SmoothGrad",
                             attributor_kwargs=kw, seed=7)
    assert torch.equal(ours, again)


def test_integrated_gradients_attributor(tiny_cnn, x):
    kw = {"n_iter": 4}
    ours = get("zennit").fn(tiny_cnn, x, TARGET, composite=None,
                            attributor="IntegratedGradients", attributor_kwargs=kw)
    ref = direct(tiny_cnn, x, TARGET, None, zattr.IntegratedGradients, **kw)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)


def test_resnet_canonizer_and_state_left_as_found(tiny_resnet, x):
    model = tiny_resnet.train()
    model.layer1[0].bn1.weight.grad = None
    before = {k: v.clone() for k, v in model.state_dict().items()}
    ours = get("zennit").fn(model.eval(), x, TARGET, canonizers=["ResNetCanonizer"])
    ref = direct(model, x, TARGET, zcomp.EpsilonPlusFlat(canonizers=[ztv.ResNetCanonizer()]))
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=0)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    model.train()
    get("zennit").fn(model, x, TARGET, canonizers=["SequentialMergeBatchNorm"])
    assert all(m.training for m in model.modules())


def test_lrp0_by_hand_conserves_the_logit():
    """LRP-0 on a bias-free ReLU net (Bach et al. 2015, eq. 56 with no bias):
    R_i = sum_j x_i w_ji R_j / z_j layer by layer, from R = logit on the target."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(3 * 4 * 5, 6, bias=False), nn.ReLU(),
                        nn.Linear(6, 3, bias=False)).eval()
    x = torch.randn(2, 3, 4, 5)
    target = torch.tensor([2, 0])
    ours = get("zennit").fn(net, x, target, composite="EpsilonPlus",
                            composite_kwargs={"epsilon": 1e-12}, output_relevance="logit")
    w1, w2 = net[1].weight.detach().double(), net[3].weight.detach().double()
    for b, t in enumerate(target.tolist()):
        a0 = x[b].flatten().double()
        z1 = w1 @ a0
        a1 = z1.clamp(min=0)
        z2 = w2 @ a1
        r1 = [a1[j] * w2[t, j] * z2[t] / z2[t] for j in range(6)]
        r0 = torch.zeros(60, dtype=torch.float64)
        for i in range(60):
            r0[i] = sum(a0[i] * w1[j, i] * r1[j] / z1[j] for j in range(6) if z1[j] > 0)
        expect = r0.view(3, 4, 5).sum(0)
        torch.testing.assert_close(ours[b].double(), expect, atol=1e-5, rtol=1e-5)
        assert float(ours[b].sum()) == pytest.approx(float(z2[t]), rel=1e-4)
    one_hot = get("zennit").fn(net, x, target, composite="EpsilonPlus",
                               composite_kwargs={"epsilon": 1e-12})
    torch.testing.assert_close(one_hot.sum((1, 2)), torch.ones(2), atol=1e-4, rtol=0)


def test_bad_names_list_the_valid_ones(tiny_cnn, x):
    fn = get("zennit").fn
    with pytest.raises(ConfigError, match="unknown zennit composite 'EpsPlusFlat'.*EpsilonPlusFlat"):
        fn(tiny_cnn, x, TARGET, composite="EpsPlusFlat")
    with pytest.raises(ConfigError, match="unknown zennit attributor 'Gradients'.*Gradient"):
        fn(tiny_cnn, x, TARGET, attributor="Gradients")
    with pytest.raises(ConfigError, match="unknown zennit canonizer 'ResNet'.*ResNetCanonizer"):
        fn(tiny_cnn, x, TARGET, canonizers=["ResNet"])
    with pytest.raises(ConfigError, match="output_relevance"):
        fn(tiny_cnn, x, TARGET, output_relevance="softmax")
    with pytest.raises(ConfigError, match=r"canonizers=\['ResNetCanonizer'\] need a composite"):
        fn(tiny_cnn, x, TARGET, composite=None, canonizers=["ResNetCanonizer"])


def test_a_bad_name_stops_before_any_run_opens(workdir):
    cfg = compose(["method=zennit", "method.attributor=SmoothGrads", "dataset.limit=2", "device=cpu"])
    with pytest.raises(ConfigError, match=r"method 'zennit': attributor='SmoothGrads' is not a "
                                          r"zennit attributor.*Did you mean 'SmoothGrad'"):
        run(cfg)
    client = MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("faithbench")
    assert exp is None or not client.search_runs([exp.experiment_id])


def test_missing_zennit_names_the_extra(monkeypatch, tiny_cnn, x):
    import sys

    for mod in [m for m in sys.modules if m == "zennit" or m.startswith("zennit.")]:
        monkeypatch.delitem(sys.modules, mod)
    monkeypatch.setitem(sys.modules, "zennit", None)  # makes `import zennit` fail
    with pytest.raises(ImportError, match=r"method 'zennit' needs the optional package 'zennit': "
                                          r"pip install 'faithbench\[compare\]'"):
        get("zennit").fn(tiny_cnn, x, TARGET)
