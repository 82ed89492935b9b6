import inspect
import typing

import pytest

from faithbench import methods, metrics
from faithbench.config import fill_context
from faithbench.errors import ConfigError
from faithbench.registry import Registry
from faithbench.types import Context, MethodInfo, MetricInfo


def _methods() -> Registry:
    reg = Registry("method", "faithbench.methods", MethodInfo)
    reg._loaded = True
    return reg


def test_unknown_name_lists_choices_and_close_matches():
    reg = _methods()

    @reg.register(context=("layer",))
    def grad_cam(model, x, target, *, layer=None):
        pass

    @reg.register()
    def saliency():
        pass

    assert reg.names() == ["grad_cam", "saliency"]
    assert reg.names("grad*") == ["grad_cam"]
    assert reg.get("grad_cam").info.needs_layer
    with pytest.raises(ConfigError, match=r"unknown method 'gradcam'.*'grad_cam'.*Valid choices: grad_cam, saliency"):
        reg.get("gradcam")


def test_double_registration_is_refused():
    reg = Registry("metric", "faithbench.metrics", MethodInfo)
    reg._loaded = True
    reg.register(name="x")(lambda: 1)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register(name="x")(lambda: 2)


def test_flags_are_derived_from_the_declared_context_and_cost():
    reg = _methods()

    def m(model, x, target, *, layer=None, seed=None):
        pass

    reg.register("a", context=("layer", "seed"), cost="perturbation")(m)
    reg.register("b", optional_context=("layer", "seed"), cost="free")(m)
    a, b = reg.get("a").info, reg.get("b").info
    assert (a.needs_layer, a.stochastic, a.needs_grad, a.model_free) == (True, True, False, False)
    assert (b.needs_layer, b.stochastic, b.needs_grad, b.model_free) == (False, False, False, True)
    assert a.injected == b.injected == {"layer", "seed"}
    assert MethodInfo().needs_grad and MetricInfo(True, context={"explain"}).needs_explain
    assert not MetricInfo(True, context={"seed"}).needs_explain


def test_a_context_must_be_known_and_a_parameter():
    reg = _methods()
    with pytest.raises(ConfigError, match=r"method 'g': unknown context 'layers'\. Did you mean 'layer'.*"
                                          r"Valid choices: activation, explain, layer, num_classes, preprocess, seed"):
        reg.register("g", context=("layers",))(lambda model, x, target, layers=None: None)

    def f(model, x, target, *, seed=None):
        pass

    with pytest.raises(ValueError, match=r"method 'f' declares context 'layer' but has no parameter 'layer'"):
        reg.register(context=("layer",))(f)


def test_older_capability_keywords_still_register():
    """Outside code written against ``register(stochastic=..., needs_grad=...)``."""
    reg = _methods()

    def r(model, x, target, *, seed=None, layer=None):
        pass

    with pytest.warns(DeprecationWarning, match=r"register\(needs_layer, stochastic=...\)"):
        reg.register("r", needs_layer=True, stochastic=True)(r)
    info = reg.get("r").info
    assert info.context == {"layer", "seed"} and info.cost == "backward"
    with pytest.warns(DeprecationWarning):
        reg.register("c", needs_grad=False)(lambda model, x, target: None)
        reg.register("z", model_free=True)(lambda model, x, target: None)
    assert reg.get("c").info.cost == "forward" and not reg.get("c").info.needs_grad
    assert reg.get("z").info.model_free
    with pytest.raises(ValueError, match="contradicts"), pytest.warns(DeprecationWarning):
        reg.register("bad", model_free=True, cost="backward")(lambda model, x, target: None)
    with pytest.raises(ValueError, match="contradicts"), pytest.warns(DeprecationWarning):
        reg.register("bad", needs_grad=True, cost="perturbation")(lambda model, x, target: None)
    mreg = Registry("metric", "faithbench.metrics", MetricInfo)
    with pytest.warns(DeprecationWarning):
        mreg.register("m", higher_is_better=True, needs_explain=True)(
            lambda model, x, heatmap, target, batch, explain=None: None)
    assert mreg.get("m").info.needs_explain and mreg.get("m").info.context == {"explain"}


# The capabilities each method declared on commit 5fa710c, before they were derived
# (needs_layer, needs_grad, stochastic, cost, model_free): what `faithbench list` printed.
DECLARED_BEFORE = {
    "ablation_cam": (True, False, False, "perturbation", False),
    "cam": (True, False, False, "forward", False),
    "captum": (False, True, False, "backward", False),
    "center": (False, False, False, "free", True),
    "counterfactual_grad_cam": (True, True, False, "backward", False),
    "deconvnet": (False, True, False, "backward", False),
    "edge": (False, False, False, "free", True),
    "grad_cam": (True, True, False, "backward", False),
    "grad_cam_pp": (True, True, False, "backward", False),
    "gradient_x_input": (False, True, False, "backward", False),
    "guided_backprop": (False, True, False, "backward", False),
    "guided_grad_cam": (True, True, False, "backward", False),
    "integrated_gradients": (False, True, False, "backward", False),
    "layer_cam": (True, True, False, "backward", False),
    "occlusion": (False, False, False, "perturbation", False),
    "pytorch_grad_cam": (True, True, False, "backward", False),
    "random": (False, False, True, "free", True),
    "rise": (False, False, True, "perturbation", False),
    "saliency": (False, True, False, "backward", False),
    "score_cam": (True, False, False, "perturbation", False),
    "smooth_grad": (False, True, True, "backward", False),
    "xgrad_cam": (True, True, False, "backward", False),
}


@pytest.mark.parametrize("name", sorted(DECLARED_BEFORE))
def test_derived_method_flags_equal_the_old_declarations(name):
    i = methods.get(name).info
    assert (i.needs_layer, i.needs_grad, i.stochastic, i.cost, i.model_free) == DECLARED_BEFORE[name]


@pytest.mark.parametrize("kind, name", [("method", n) for n in methods.names()]
                         + [("metric", n) for n in metrics.names()])
def test_every_context_parameter_is_declared(kind, name):
    """Before declarations, the runner filled any parameter with a context name; every
    built-in entry declares each such parameter, so it is still filled."""
    entry = (methods if kind == "method" else metrics).get(name)
    params = inspect.signature(entry.fn).parameters
    assert {c for c in typing.get_args(Context) if c in params} == entry.info.injected


def test_only_declared_context_is_filled_and_runner_context_is_not_config():
    def f(model, x, target, *, layer=None, seed=None, explain=None):
        pass

    out = fill_context(f, {"seed": None}, {"layer": "l4"}, "method 'f'")
    assert out == {"seed": None, "layer": "l4"}
    assert fill_context(f, {"layer": "l3"}, {"layer": "l4"}, "method 'f'") == {"layer": "l3"}
    with pytest.raises(ConfigError, match=r"method 'f': explain='mine' cannot be set; the runner fills explain"):
        fill_context(f, {"explain": "mine"}, {"explain": print}, "method 'f'")


def test_a_class_in_a_union_admits_only_its_instances():
    """Integrated gradients' baseline is a choice, a number or a tensor; ``zeros`` from a
    config is refused by its declaration (before any run opens), not inside the method."""
    import torch

    from faithbench.params import check_params

    ig = methods.get("integrated_gradients").fn
    for ok in ("blur", 0.5, 1, torch.zeros(3, 4, 4)):
        check_params(ig, {"baseline": ok}, "method 'integrated_gradients'")
    for bad in ("zeros", True, [0.0]):
        with pytest.raises(ConfigError, match=r"unknown baseline .*Valid choices: blur, uniform, zero"):
            check_params(ig, {"baseline": bad}, "method 'integrated_gradients'")
    assert ("method", "integrated_gradients", "baseline") in {c[:3] for c in _param_cases()}


def _param_cases():
    from test_params import CASES  # the walk over every entry's declared checks

    return CASES
