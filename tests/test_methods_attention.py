"""Attention methods on tiny random-weight timm ViTs, against naive per-image loops
written from the papers (attention recomputed from the q/k weights, no hooks) and, for
LeGrad, against torchcam 0.5's ``LeGrad`` on a torchvision twin with the same weights."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from faithbench.errors import ConfigError
from faithbench.methods import get

timm = pytest.importorskip("timm")
from timm.models.deit import VisionTransformerDistilled  # noqa: E402
from timm.models.vision_transformer import VisionTransformer  # noqa: E402

ATTENTION = ("raw_attention", "attention_rollout", "gradient_rollout", "legrad")
TINY = dict(patch_size=8, embed_dim=32, depth=3, num_heads=2, num_classes=5)


def _seeded(model: nn.Module, seed: int = 0) -> nn.Module:
    """Weights drawn at unit fan-in scale, so the attention is far from uniform."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            scale = 1.0 if p.dim() == 1 and "norm" in name else max(1, p[0].numel()) ** -0.5
            p.copy_(torch.randn(p.shape, generator=g) * scale + (1.0 if "norm" in name and name.endswith("weight") else 0.0))
    return model.eval()


MODELS = {
    "vit": lambda: VisionTransformer(img_size=32, **TINY),
    "deit_distilled": lambda: VisionTransformerDistilled(img_size=32, **TINY),
    "registers": lambda: VisionTransformer(img_size=32, reg_tokens=2, **TINY),
    "non_square": lambda: VisionTransformer(img_size=(32, 48), **TINY),
}
SIZES = {"vit": (32, 32), "deit_distilled": (32, 32), "registers": (32, 32), "non_square": (32, 48)}
TARGET = torch.tensor([0, 3, 1])


def _model(kind: str) -> nn.Module:
    torch.manual_seed(0)
    return _seeded(MODELS[kind]())


def _images(kind: str, n: int = 3) -> Tensor:
    return torch.randn(n, 3, *SIZES[kind], generator=torch.Generator().manual_seed(1))


def _close(a: Tensor, b: Tensor, tol: float = 1e-5) -> None:
    assert a.shape == b.shape
    err = float((a - b).abs().max() / b.abs().max().clamp(min=1e-12))
    assert err < tol, f"relative error {err:.2e}"


# --- naive references: one image at a time, attention from the q/k weights -------------

def _head(vit: nn.Module, z: Tensor) -> Tensor:
    """The classifier on final-normed tokens z [N,D] -> [K] (class token; distilled:
    the mean of the class and distillation heads)."""
    if hasattr(vit, "head_dist"):
        return (vit.head(z[0]) + vit.head_dist(z[1])) / 2
    return vit.head(z[0])


def _naive_forward(vit: nn.Module, img: Tensor) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Logits [K], per block softmax(q k^T / sqrt(d)) [heads,N,N] and output tokens [N,D]."""
    x = vit.norm_pre(vit._pos_embed(vit.patch_embed(img[None])))[0]
    attns, tokens = [], []
    for blk in vit.blocks:
        h = blk.norm1(x)
        qkv = h @ blk.attn.qkv.weight.T + blk.attn.qkv.bias
        n, heads = x.shape[0], blk.attn.num_heads
        q, k, v = qkv.view(n, 3, heads, -1).permute(1, 2, 0, 3)
        a = torch.softmax(q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5, dim=-1)
        attns.append(a)
        out = (a @ v).transpose(0, 1).reshape(n, -1)
        x = x + blk.attn.proj(out)
        x = x + blk.mlp(blk.norm2(x))
        tokens.append(x)
    return _head(vit, vit.norm(x)), attns, tokens


def _patches(vit: nn.Module, row: Tensor, size: tuple[int, int]) -> Tensor:
    """Patch scores [gh*gw] -> [H,W] with the authors' interpolate(scale_factor=patch)."""
    gh, gw = size[0] // 8, size[1] // 8
    m = row[vit.num_prefix_tokens:].reshape(1, 1, gh, gw)
    return F.interpolate(m, scale_factor=8, mode="bilinear")[0, 0]


def _naive(name: str, vit: nn.Module, x: Tensor, target: Tensor, **p) -> Tensor:
    maps = []
    for img, t in zip(x, target.tolist()):
        logits, attns, tokens = _naive_forward(vit, img)
        n = attns[0].shape[-1]
        eye = torch.eye(n)
        if name == "raw_attention":
            row = attns[-1].mean(0)[0]
        elif name == "attention_rollout":
            r = eye
            for a in attns:
                a = a.detach().mean(0)
                if p.get("discard_ratio"):
                    flat = a.flatten().clone()
                    low = flat.argsort()[: int(flat.numel() * p["discard_ratio"])]
                    flat[low[low != 0]] = 0  # the class token's attention to itself is kept
                    a = flat.view(n, n)
                a = 0.5 * a + 0.5 * eye
                a = a / a.sum(-1, keepdim=True)
                r = a @ r
            row = r[0]
        elif name == "gradient_rollout":
            grads = torch.autograd.grad(logits[t], attns)
            r = eye
            for a, g in zip(attns, grads):
                r = r + (g * a).clamp(min=0).mean(0) @ r  # Eq. 5, Eq. 6
            row = r[0]
        else:  # legrad: s^l = C(LN(mean of the block's tokens)), E^l = mean_(h,i) ReLU(ds^l/dA^l)
            rows = []
            for a, z in zip(attns, tokens):
                z = vit.norm(z.mean(0, keepdim=True)).expand_as(z) if p.get("pool", "mean") == "mean" else vit.norm(z)
                (g,) = torch.autograd.grad(_head(vit, z)[t], a, retain_graph=True)
                rows.append(g.clamp(min=0).mean((0, 1)))
            row = torch.stack(rows).mean(0)
        maps.append(_patches(vit, row.detach(), tuple(x.shape[-2:])))
    return torch.stack(maps)


@pytest.mark.parametrize("kind", list(MODELS))
def test_naive_forward_is_the_model(kind):
    vit, x = _model(kind), _images(kind)
    with torch.no_grad():
        naive = torch.stack([_naive_forward(vit, img)[0] for img in x])
        _close(naive, vit(x))


@pytest.mark.parametrize("kind", list(MODELS))
@pytest.mark.parametrize("name", ATTENTION)
def test_equals_the_naive_loop_of_the_paper(name, kind):
    vit, x = _model(kind), _images(kind)
    _close(get(name).fn(vit, x, TARGET), _naive(name, vit, x, TARGET))


def test_rollout_discard_ratio_and_legrad_pool_options():
    vit, x = _model("registers"), _images("registers")
    rollout = get("attention_rollout").fn
    _close(rollout(vit, x, TARGET, discard_ratio=0.3), _naive("attention_rollout", vit, x, TARGET, discard_ratio=0.3))
    assert not torch.allclose(rollout(vit, x, TARGET, discard_ratio=0.3), rollout(vit, x, TARGET))
    legrad = get("legrad").fn
    _close(legrad(vit, x, TARGET, pool="model"), _naive("legrad", vit, x, TARGET, pool="model"))
    assert not torch.allclose(legrad(vit, x, TARGET, pool="model"), legrad(vit, x, TARGET))


def test_rollout_rows_sum_to_one_and_head_fusions_differ():
    vit, x = _model("deit_distilled"), _images("deit_distilled")
    rollout = get("attention_rollout").fn
    # every row of the rolled-out product sums to 1, so the patch share of the class row
    # is 1 minus what its two prefix tokens keep: with one block, that share is known
    maps = rollout(vit, x, TARGET, start_layer=-1, upsample="nearest")[:, ::8, ::8]
    _, attns, _ = _naive_forward(vit, x[0])
    a = attns[-1].detach().mean(0)
    a = (0.5 * a + 0.5 * torch.eye(a.shape[0]))
    a = a / a.sum(-1, keepdim=True)
    assert torch.allclose(maps[0].sum(), 1 - a[0, :2].sum(), atol=1e-6)
    assert torch.allclose(maps[0].flatten(), a[0, 2:], atol=1e-6)
    full = rollout(vit, x, TARGET, upsample="nearest")[:, ::8, ::8]
    assert (full.sum((1, 2)) < 1).all() and (full > 0).all()
    mean, mx, mn = (rollout(vit, x, TARGET, head_fusion=h) for h in ("mean", "max", "min"))
    assert not torch.allclose(mean, mx) and not torch.allclose(mean, mn)
    raw = get("raw_attention").fn
    assert torch.allclose(raw(vit, x, TARGET, upsample="nearest")[:, ::8, ::8].flatten(1),
                          torch.stack([_naive_forward(vit, i)[1][-1].detach().mean(0)[0, 2:] for i in x]), atol=1e-6)
    assert torch.allclose(raw(vit, x, TARGET, head_fusion="max", block=0, upsample="nearest")[:, ::8, ::8].flatten(1),
                          torch.stack([_naive_forward(vit, i)[1][0].detach().amax(0)[0, 2:] for i in x]), atol=1e-6)


@pytest.mark.parametrize("name", ["gradient_rollout", "legrad"])
def test_per_sample_targets(name):
    vit, x = _model("vit"), _images("vit")
    fn = get(name).fn
    mixed = fn(vit, x, TARGET)
    fixed = fn(vit, x, torch.zeros(3, dtype=torch.int64))
    assert torch.allclose(mixed[0], fixed[0])  # sample 0 has target 0 in both
    assert not torch.allclose(mixed[1], fixed[1]) and not torch.allclose(mixed[2], fixed[2])
    one = torch.cat([fn(vit, x[i : i + 1], TARGET[i : i + 1]) for i in range(3)])
    _close(mixed, one)


def test_legrad_equals_torchcam_on_a_torchvision_twin():
    torchcam = pytest.importorskip("torchcam.methods")
    torchvision = pytest.importorskip("torchvision")
    vit = _model("vit")
    tv = torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=3, num_heads=2,
                                              hidden_dim=32, mlp_dim=128, num_classes=5).eval()
    with torch.no_grad():
        tv.conv_proj.load_state_dict(vit.patch_embed.proj.state_dict())
        tv.class_token.copy_(vit.cls_token)
        tv.encoder.pos_embedding.copy_(vit.pos_embed)
        for blk, layer in zip(vit.blocks, tv.encoder.layers):
            layer.ln_1.load_state_dict(blk.norm1.state_dict())
            layer.ln_2.load_state_dict(blk.norm2.state_dict())
            layer.self_attention.in_proj_weight.copy_(blk.attn.qkv.weight)
            layer.self_attention.in_proj_bias.copy_(blk.attn.qkv.bias)
            layer.self_attention.out_proj.load_state_dict(blk.attn.proj.state_dict())
            layer.mlp[0].load_state_dict(blk.mlp.fc1.state_dict())
            layer.mlp[3].load_state_dict(blk.mlp.fc2.state_dict())
        tv.encoder.ln.load_state_dict(vit.norm.state_dict())
        tv.heads.head.load_state_dict(vit.head.state_dict())
    x = _images("vit", 4)
    target = torch.tensor([0, 3, 1, 3])
    with torch.no_grad():
        _close(tv(x), vit(x))  # the twin is the same network
    for start in (0, 1):
        with torchcam.LeGrad(tv, list(tv.encoder.layers)[start:]) as cam:
            ref = cam(class_idx=target.tolist(), scores=tv(x), normalized=False)[0]  # [B,4,4]
        ours = get("legrad").fn(vit, x, target, start_layer=start, upsample="nearest")
        _close(ours[:, ::8, ::8], ref)  # raw: the same mean over blocks
        up = F.interpolate(ref[:, None], scale_factor=8, mode="bilinear")[:, 0]
        norm = lambda m: (m - m.amin((1, 2), keepdim=True)) / (m.amax((1, 2), keepdim=True) - m.amin((1, 2), keepdim=True))  # noqa: E731
        _close(norm(get("legrad").fn(vit, x, target, start_layer=start)), norm(up))


def test_fused_attention_state_is_restored_and_frozen_models_work():
    vit, x = _model("vit"), _images("vit")
    flags = [b.attn.fused_attn for b in vit.blocks]
    for p in vit.parameters():
        p.requires_grad_(False)
    ref = get("gradient_rollout").fn(vit, x, TARGET)
    assert ref.abs().sum() > 0 and all(p.grad is None for p in vit.parameters())
    assert [b.attn.fused_attn for b in vit.blocks] == flags
    vit.blocks[0].attn.fused_attn = not flags[0]  # either setting on entry: same maps, kept
    _close(get("gradient_rollout").fn(vit, x, TARGET), ref)
    assert vit.blocks[0].attn.fused_attn == (not flags[0])


@pytest.mark.parametrize("name", ATTENTION)
def test_an_exception_mid_forward_leaves_no_hook_and_restores_fused_attention(name):
    vit, x = _model("vit"), _images("vit")
    flags = [b.attn.fused_attn for b in vit.blocks]

    def boom(_m, _inp, _out):
        raise RuntimeError("boom")

    handle = vit.blocks[1].mlp.register_forward_hook(boom)
    with pytest.raises(RuntimeError, match="boom"):
        get(name).fn(vit, x, TARGET)
    handle.remove()
    assert [b.attn.fused_attn for b in vit.blocks] == flags
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in vit.modules())


def test_wrapped_and_dynamic_size_models():
    vit = _model("vit")
    wrapped = nn.Sequential(nn.Identity(), vit)  # e.g. a normalising wrapper
    x = _images("vit")
    _close(get("legrad").fn(wrapped, x, TARGET), get("legrad").fn(vit, x, TARGET))
    torch.manual_seed(0)
    dyn = _seeded(VisionTransformer(img_size=32, dynamic_img_size=True, dynamic_img_pad=True, **TINY))
    x = torch.randn(2, 3, 36, 44)  # padded to 40x48: a 5x6 grid
    out = get("attention_rollout").fn(dyn, x, TARGET[:2], upsample="nearest")
    assert out.shape == (2, 36, 44)
    grid = out[:, ::8, ::8]
    assert grid.shape == (2, 5, 6)
    assert torch.equal(out[:, 32:, 40:], grid[:, 4:, 5:].repeat_interleave(4, 1).repeat_interleave(4, 2))


@pytest.mark.parametrize("name", ATTENTION)
def test_cnn_and_windowed_models_are_config_errors(name, tiny_cnn, images):
    with pytest.raises(ConfigError, match="need a ViT-style transformer; got TinyCNN"):
        get(name).fn(tiny_cnn, images, TARGET.new_tensor([0, 1, 2, 3]))
    assert get(name).info.models == "vit"
    with pytest.raises(ConfigError, match="Swin"):
        get(name).info.check_model(tiny_cnn)


def test_swin_and_bad_parameters_are_config_errors():
    swin = timm.models.swin_transformer.SwinTransformer(img_size=32, patch_size=4, window_size=4, embed_dim=16,
                                                        depths=(1,), num_heads=(2,), num_classes=5)
    with pytest.raises(ConfigError, match="got SwinTransformer"):
        get("attention_rollout").fn(swin, torch.randn(1, 3, 32, 32), torch.tensor([0]))
    vit, x = _model("vit"), _images("vit")
    with pytest.raises(ConfigError, match="start_layer=3 is out of range.*-3..2"):
        get("gradient_rollout").fn(vit, x, TARGET, start_layer=3)
    with pytest.raises(ConfigError, match="head_fusion"):
        get("attention_rollout").fn(vit, x, TARGET, head_fusion="median")
    with pytest.raises(ConfigError, match="upsample"):
        get("legrad").fn(vit, x, TARGET, upsample="area")
    no_cls = _seeded(VisionTransformer(img_size=32, class_token=False, global_pool="avg", **TINY))
    with pytest.raises(ConfigError, match="no class token"):
        get("attention_rollout").fn(no_cls, x, TARGET)
    assert get("legrad").fn(no_cls, x, TARGET).shape == (3, 32, 32)  # LeGrad needs none


VIT_FACTORY = '''
import torch
from timm.models.vision_transformer import VisionTransformer


def build(classes=5):
    torch.manual_seed(0)
    return VisionTransformer(img_size=64, patch_size=16, embed_dim=16, depth=2, num_heads=2,
                             num_classes=classes)
'''


def test_runner_runs_a_vit_and_skips_a_cnn(workdir):
    from faithbench.cli import compose
    from faithbench.errors import IncompatibleError
    from faithbench.run import prepare, run

    (workdir / "my_vits.py").write_text(VIT_FACTORY)
    (workdir / "names.txt").write_text("circle\nsquare\ntriangle\nstar\ncross\n")
    base = ["dataset=shapes", "dataset.limit=2", "batch_size=2", "figures.grid=0",
            "metrics=[deletion]", "metric.deletion.step=0.25", "device=cpu"]
    with pytest.raises(IncompatibleError, match="'attention_rollout' does not apply to model 'shapes_cnn'"):
        prepare(compose([*base, "method=attention_rollout"]))
    vit = ["model=callable", "model.fn=my_vits:build", "model.size=64", "model.resize=stretch",
           "model.class_names=names.txt", "model.label_space=shapes"]
    res = run(compose([*base, *vit, "method=attention_rollout", "method.start_layer=-1"]))
    assert res["n_samples"] == 2 and 0 <= res["deletion"] <= 1
