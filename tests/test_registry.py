import pytest

from faithbench.errors import ConfigError
from faithbench.registry import Registry
from faithbench.types import MethodInfo


def test_unknown_name_lists_choices_and_close_matches():
    reg = Registry("method", "faithbench.methods", MethodInfo)
    reg._loaded = True

    @reg.register(needs_layer=True)
    def grad_cam():
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
