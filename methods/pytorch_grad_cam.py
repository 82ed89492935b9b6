"""Adapter: any pytorch-grad-cam CAM class by name (Gildenblat and contributors,
"PyTorch library for CAM methods", github.com/jacobgil/pytorch-grad-cam). Optional extra."""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from faithbench.errors import unknown_choice
from faithbench.methods import register
from faithbench.methods._cam import resolve_layer
from faithbench.methods._common import check_inputs
from faithbench.methods._peers import import_peer, preserved
from faithbench.tokens import token_layout


@register(context=("layer",), cost="backward")
def pytorch_grad_cam(model: nn.Module, x: Tensor, target: Tensor, cam: str = "GradCAM",
                     layer: str | None = None, init_kwargs: dict[str, Any] | None = None) -> Tensor:
    """Run ``pytorch_grad_cam.<cam>`` on ``layer`` with one ClassifierOutputTarget per
    sample (the target logit).

    The peer returns maps already post-processed: ReLU, min-max normalised to [0, 1] at
    layer resolution, resized with OpenCV and normalised again. They are returned as
    they come (not raw, unlike the native CAM methods). The peer calls ``model.eval()``
    and ``.backward()``; the adapter restores the modes and freezes parameters meanwhile.

    Args:
        model: classifier returning logits [B,K].
        x: normalised images [B,3,H,W].
        target: class per sample [B] int64.
        cam: class name, e.g. "GradCAM", "GradCAMPlusPlus", "ScoreCAM", "EigenCAM".
        layer: dotted module name of the target layer (the model's CAM layer by default).
        init_kwargs: extra constructor arguments (e.g. ``batch_size`` for AblationCAM); for
            a transformer, ``reshape_transform`` defaults to the model's token layout
            (``faithbench.tokens``).

    Returns:
        [B,H,W] float32 in [0, 1] on x.device.
    """
    target = check_inputs(x, target)
    pgc = import_peer("pytorch_grad_cam", "pytorch_grad_cam")
    targets_mod = import_peer("pytorch_grad_cam.utils.model_targets", "pytorch_grad_cam")
    base = import_peer("pytorch_grad_cam.base_cam", "pytorch_grad_cam").BaseCAM
    classes = {n: c for n, c in vars(pgc).items() if inspect.isclass(c) and issubclass(c, base)}
    if cam not in classes:
        raise unknown_choice("pytorch-grad-cam class", cam, classes)
    module = resolve_layer(model, layer)
    targets = [targets_mod.ClassifierOutputTarget(int(t)) for t in target.tolist()]
    # A leaf input that requires grad lets the peer's hooks see gradients even when
    # every parameter is frozen (as the runner loads models).
    xin = x.detach().clone().requires_grad_(True)
    kwargs = dict(init_kwargs or {})
    layout = token_layout(model)
    if layout is not None and "reshape_transform" not in kwargs:
        # A transformer's tokens read as [B,C,h,w], as faithbench's own CAMs read them.
        kwargs["reshape_transform"] = lambda t: layout.to_map(t, tuple(x.shape[-2:]), module)
    with preserved(model), torch.enable_grad():
        method = classes[cam](model, [module], **kwargs)
        try:
            out = method(xin, targets)
        finally:
            method.activations_and_grads.release()
    return torch.from_numpy(np.asarray(out, dtype=np.float32)).to(x.device)
