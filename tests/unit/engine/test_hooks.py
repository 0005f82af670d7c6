"""i2am.engine.hooks: the one interception lifecycle, and every reader / perturber built on it (captures, knockouts,
traces, the toy Kontext probe, the training loss probe) leaving each processor, method, hook and backend function
the very object it was, after a normal exit and after an exception."""
from __future__ import annotations

import sys
import types

import pytest
import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, AttnProcessor2_0, IPAdapterAttnProcessor2_0
from helpers.faithfulness_models import BareUNetAdapter, bare_sample
from torch import nn

import i2am
from i2am import toy
from i2am.adapters.toy_kontext import AttentionProbe
from i2am.engine import AttributionCapture, CaptureConfig
from i2am.engine.hooks import Hooks
from i2am.engine.joint import JointAttentionCapture
from i2am.engine.joint_knockout import JointTokenKnockout
from i2am.engine.knockout import TokenKnockout
from i2am.training.tryon import LossLayerProbe

HOOK_DICTS = ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs",
              "_forward_hooks_always_called")


# ---------------------------------------------------------------- snapshots of everything an interception may touch
def _instance_callables(obj) -> dict:
    return {k: v for k, v in vars(obj).items() if callable(v) and not isinstance(v, (nn.Module, torch.Tensor))}


def snapshot(*roots) -> dict:
    """Every processor, forward-hook list and callable instance attribute of the modules under ``roots`` (modules
    or other objects, e.g. a pipeline), and the globals of diffusers' model modules and torch.nn.functional."""
    state = {}
    for i, root in enumerate(roots):
        for k, v in _instance_callables(root).items():
            state[("attr", i, "", k)] = v
        for name, module in root.named_modules() if isinstance(root, nn.Module) else ():
            state[("processor", i, name)] = getattr(module, "processor", None)
            for kind in HOOK_DICTS:
                state[("hooks", i, name, kind)] = tuple(getattr(module, kind).items())
            for k, v in _instance_callables(module).items():
                state[("attr", i, name, k)] = v
    modules = {n: m for n, m in sys.modules.items() if n.startswith("diffusers.models")} | {"F": F}
    for name, module in modules.items():
        for k, v in vars(module).items():
            if not k.startswith("__"):
                state[("global", name, k)] = v
    return state


def _same(key, a, b) -> bool:
    if key[0] == "hooks":   # (hook id, hook) pairs
        return len(a) == len(b) and all(x[0] == y[0] and x[1] is y[1] for x, y in zip(a, b))
    return a is b


def differences(before: dict, after: dict) -> list:
    changed = [k for k in before if k not in after or not _same(k, before[k], after[k])]
    added = [k for k in after if k not in before and not isinstance(after[k], types.ModuleType)]   # lazy imports
    return changed + added


# ---------------------------------------------------------------- one tiny model per user
def _adapter_case(make):
    adapter = BareUNetAdapter(num_steps=1)
    inputs = adapter.prepare(bare_sample())
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))

    def run(ctx):
        adapter.denoise(x, torch.tensor(500), inputs, guidance=2.0)   # CFG: the denoise watch is exercised

    return (adapter,), lambda: make(adapter), run


def _capture():
    return _adapter_case(lambda adapter: AttributionCapture(adapter, CaptureConfig(num_steps=1, time_groups=1)))


def _knockout():
    def make(adapter):
        knockout = TokenKnockout(adapter)
        return knockout

    roots, new, run = _adapter_case(make)

    def run_knocked(ctx):
        ctx.delete(torch.rand(1, *BareUNetAdapter.REF_GRID, generator=torch.Generator().manual_seed(1)), 0.5)
        run(ctx)

    return roots, new, run_knocked


def _kontext_call(pipe):
    pipe(image=toy.image(96, 64), **toy.prompt(pipe), height=64, width=64, _auto_resize=False, max_area=64 * 64,
         num_inference_steps=1, output_type="pt", generator=torch.Generator().manual_seed(0))


def _sd3_call(pipe):
    pipe(**toy.prompt(pipe, negative=True), guidance_scale=2.0, height=64, width=64, num_inference_steps=1,
         output_type="pt", generator=torch.Generator().manual_seed(0))


def _kontext():
    return toy.pipeline("FluxKontextPipeline")


def _sd3():
    return toy.pipeline("StableDiffusion3Pipeline")


def _joint_case(make_pipe, call, new):
    pipe = make_pipe()
    return (pipe, pipe.transformer), lambda: new(pipe), lambda ctx: call(pipe)


def _joint_capture_flux():
    return _joint_case(_kontext, _kontext_call,
                       lambda pipe: JointAttentionCapture(pipe.transformer, CaptureConfig(num_steps=1, time_groups=1)))


def _joint_capture_sd3():   # SD3's processor calls F.scaled_dot_product_attention: the module's F is proxied
    return _joint_case(_sd3, _sd3_call,
                       lambda pipe: JointAttentionCapture(pipe.transformer, CaptureConfig(num_steps=1, time_groups=1)))


def _joint_knockout():
    def new(pipe):
        knockout = JointTokenKnockout(pipe.transformer)
        knockout.delete(torch.rand(1, 4, 4, generator=torch.Generator().manual_seed(1)), 0.5)
        return knockout

    return _joint_case(_kontext, _kontext_call, new)


def _unet_trace():
    pipe = toy.pipeline("StableDiffusionPipeline")
    prompt = toy.prompt(pipe)

    def run(ctx):
        pipe(**prompt, num_inference_steps=1, height=64, width=64, output_type="pt",
             generator=torch.Generator().manual_seed(0))

    return (pipe, pipe.unet), lambda: i2am.trace(pipe), run


def _joint_trace():
    return _joint_case(_kontext, _kontext_call, i2am.trace)


def _toy_kontext_probe():   # AttentionProbe reads any Flux block: here the tiny Kontext pipeline's first one
    return _joint_case(_kontext, _kontext_call, lambda pipe: AttentionProbe(pipe.transformer,
                                                                              "transformer_blocks.0.attn"))


def _loss_probe():
    unet = toy.pipeline("StableDiffusionPipeline").unet
    layer = unet.get_submodule("up_blocks.1.attentions.0.transformer_blocks.0.attn2")
    x = torch.randn(1, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    context = torch.randn(1, 12, unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1))

    def run(ctx):
        unet(x, 500, context)

    return (unet,), lambda: LossLayerProbe(layer, (3, 4)).armed(), run


USERS = {"AttributionCapture": _capture, "TokenKnockout": _knockout, "JointAttentionCapture": _joint_capture_flux,
         "JointAttentionCapture/sd3": _joint_capture_sd3, "JointTokenKnockout": _joint_knockout,
         "PipelineTrace": _unet_trace, "JointPipelineTrace": _joint_trace, "AttentionProbe": _toy_kontext_probe,
         "LossLayerProbe": _loss_probe}


class Boom(Exception):
    pass


@pytest.mark.parametrize("user", list(USERS))
def test_every_interception_restores_the_very_objects(user):
    roots, new, run = USERS[user]()
    before = snapshot(*roots)
    with pytest.raises(Boom), torch.no_grad(), new() as ctx:
        run(ctx)
        assert differences(before, snapshot(*roots))   # something was installed (and is still in place)
        raise Boom
    assert differences(before, snapshot(*roots)) == []
    with torch.no_grad(), new() as ctx:   # a normal exit, on the same model
        run(ctx)
    assert differences(before, snapshot(*roots)) == []


# ---------------------------------------------------------------- hooks.py itself
class Target:
    def method(self):
        return "class"


def test_replace_restores_module_attributes_and_instance_attributes():
    module = types.ModuleType("backend")
    module.attend = original = lambda: "original"
    target, own = Target(), Target()
    own.method = held = lambda: "instance"
    with Hooks() as hooks:
        assert hooks.replace(module, "attend", lambda: "patched") is original
        assert hooks.replace(target, "method", lambda: "patched")() == "class"   # the bound class method
        hooks.replace(own, "method", lambda: "patched")
        assert module.attend() == target.method() == own.method() == "patched"
    assert module.attend is original
    assert "method" not in vars(target) and target.method() == "class"   # not copied onto the instance
    assert own.method is held


def test_an_instance_attribute_deleted_by_an_inner_wrapper_stays_deleted():
    target = Target()
    with Hooks() as hooks:
        hooks.replace(target, "method", lambda: "patched")
        del target.method   # e.g. a sampler that wrapped the method too and deletes it on its way out
    assert "method" not in vars(target) and target.method() == "class"


def test_processor_and_hooks_are_restored_as_they_were():
    attn = Attention(query_dim=8, cross_attention_dim=6, heads=2, dim_head=4)
    ip = IPAdapterAttnProcessor2_0(hidden_size=8, cross_attention_dim=6, num_tokens=(2,))   # a submodule processor
    attn.set_processor(ip)
    calls = []
    with Hooks() as hooks:
        assert hooks.processor(attn, lambda inner: AttnProcessor2_0()) is ip
        assert "processor" not in attn._modules
        hooks.hook(attn.to_q, lambda *_: calls.append("q"))
        early = hooks.hook(attn, lambda *_: calls.append("pre"), pre=True)
        early.remove()   # removed before the restoration: removing it again is harmless
        attn(torch.randn(1, 3, 8), torch.randn(1, 4, 6))
    assert calls == ["q"]
    assert attn.processor is ip and attn._modules["processor"] is ip
    assert not attn.to_q._forward_hooks and not attn._forward_pre_hooks


def test_restores_in_reverse_order_once():
    log = []

    class Logged:
        def __setattr__(self, name, value):
            log.append((name, value))
            super().__setattr__(name, value)

    target = Logged()
    target.a, target.b = 0, 0
    hooks = Hooks()
    hooks.activate(lambda h: (h.replace(target, "a", 1), h.replace(target, "b", 2)))
    log.clear()
    hooks.restore()
    assert log == [("b", 0), ("a", 0)] and hooks.installed == 0
    hooks.restore()
    assert log == [("b", 0), ("a", 0)]


def test_double_installation_on_one_target_is_refused_and_unwound():
    attn = Attention(query_dim=8, heads=2, dim_head=4)
    original = attn.processor

    def install(hooks):
        hooks.processor(attn, lambda inner: AttnProcessor2_0())
        hooks.processor(attn, lambda inner: AttnProcessor2_0())

    hooks = Hooks("Reader")
    with pytest.raises(RuntimeError, match="Attention.processor is intercepted twice by one Reader"):
        hooks.activate(install)
    assert attn.processor is original and hooks.installed == 0
    hooks.activate(lambda h: h.processor(attn, lambda inner: AttnProcessor2_0()))   # usable again after unwinding
    with pytest.raises(RuntimeError, match="this Reader is already active"):
        hooks.activate(lambda h: None)
    hooks.restore()
    assert attn.processor is original


def test_failing_installation_and_failing_undo_still_unwind_everything():
    module = types.ModuleType("backend")
    module.x, module.y = "x", "y"

    def install(hooks):
        hooks.replace(module, "x", "patched")
        raise Boom

    with pytest.raises(Boom):
        Hooks().activate(install)
    assert module.x == "x"

    class Fragile:   # its attribute cannot be set back: the undo of the newest change raises
        frozen = False

        def __setattr__(self, name, value):
            if self.frozen:
                raise Boom
            super().__setattr__(name, value)

    fragile = Fragile()
    fragile.a = "a"
    hooks = Hooks()
    hooks.replace(module, "x", "patched")
    hooks.replace(fragile, "a", "patched")
    object.__setattr__(fragile, "frozen", True)
    with pytest.raises(Boom):
        hooks.restore()
    assert module.x == "x" and hooks.installed == 0
