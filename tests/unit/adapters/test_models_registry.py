"""The model registry: one name per factory, the three standard sizes registered by one call."""
import pytest

from i2am.adapters import _registry, create_model, list_models
from i2am.adapters._registry import TOY_IMAGE_SIZE, SizedFactory, model_factory, register_model, register_sizes


@pytest.fixture(autouse=True)
def _registry_restored():
    """The probes registered here leave the registry as it was (other tests list every registered model)."""
    list_models()   # the package's own models registered first (they are imported on first use)
    before = dict(_registry._FACTORIES)
    yield
    _registry._FACTORIES.clear()
    _registry._FACTORIES.update(before)


class _Probe:
    def __init__(self, size, device="cpu", **kwargs):
        self.size, self.device, self.kwargs = size, device, kwargs


def test_register_sizes_builds_each_size_with_its_defaults_and_lets_overrides_win():
    register_sizes("probe-family", _Probe, {"image_size": (512, 384)})
    assert model_factory("probe-family")().kwargs == {"image_size": (512, 384)}
    tiny = model_factory("probe-family-tiny")(device="meta", image_size=(64, 48))
    assert (tiny.size, tiny.device, tiny.kwargs) == ("tiny", "meta", {"image_size": (64, 48)})
    assert model_factory("probe-family-small")().kwargs == {"image_size": TOY_IMAGE_SIZE}
    register_sizes("probe-family", _Probe, {"image_size": (512, 384)})      # an equal factory again: accepted


def test_a_name_taken_by_another_factory_is_refused_naming_both_modules():
    register_model("probe-taken")(SizedFactory(_Probe, "tiny"))
    with pytest.raises(ValueError, match=r"'probe-taken' is registered twice \(.*test_models_registry and "):
        register_model("probe-taken")(lambda device="cpu": None)


@pytest.mark.parametrize("family", ["pbe", "dcivton", "stableviton", "custom"])
def test_every_sized_family_registers_full_tiny_and_small(family):
    assert {family, f"{family}-tiny", f"{family}-small"} <= set(list_models())
    assert create_model(f"{family}-small", device="meta").name == f"{family}-small"
