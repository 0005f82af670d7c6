"""The engine on model adapters: "auto" follows the CFG layout of the UNet call in progress."""
import torch

from i2am.attribution import AttributionCapture, CaptureConfig
from i2am.data.toy import write_toy_vitonhd
from i2am.data.vitonhd import VitonHDDataset
from i2am.models import create_model
from i2am.models.sampler import Sampler


def toy_batch(tmp_path, n=2):
    root = write_toy_vitonhd(tmp_path / "toy", n_train=1, n_test=n, size=(128, 96), seed=0)
    data = VitonHDDataset(root, split="test", size=(128, 96), extras=("agnostic", "densepose"))
    samples = [data[i] for i in range(n)]
    return {k: (torch.stack([s[k] for s in samples]) if torch.is_tensor(samples[0][k]) else [s[k] for s in samples])
            for k in samples[0]}


def test_auto_layout_follows_the_guidance_of_each_call(tmp_path):
    torch.manual_seed(0)
    adapter = create_model("custom-tiny").eval()            # CFG order [cond, uncond], default guidance 5
    batch = toy_batch(tmp_path)
    layer = adapter.decoder_layer_name(2)
    runs = {}
    for name, guidance, layout in (("auto5", 5.0, "auto"), ("explicit5", 5.0, "cond_uncond"),
                                   ("auto1", 1.0, "auto"), ("explicit1", 1.0, "none")):
        cfg = CaptureConfig(num_steps=2, time_groups=1, sram_layers=(layer,), cfg_layout=layout)
        with AttributionCapture(adapter, cfg) as cap:
            adapter.sample(batch, sampler=Sampler(num_steps=2, guidance=guidance, seed=0))
        runs[name] = cap.maps()
    for a, b in (("auto5", "explicit5"), ("auto1", "explicit1")):
        assert runs[a].batch_size == 2
        for key in runs[b].raw:
            torch.testing.assert_close(runs[a].raw[key], runs[b].raw[key])
    assert not torch.allclose(runs["auto5"].g2r.ulam, runs["auto1"].g2r.ulam)
