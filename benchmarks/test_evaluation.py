"""Cost of scenario evaluation: `subsets` (7 scenarios on three modalities) vs one `full` pass.

Run: `pytest benchmarks/test_evaluation.py --benchmark-only --benchmark-columns=median,iqr,rounds`
The method is a small encoder-heavy late-fusion network (per-modality 3-stage CNN encoders, a light
fusion decoder), evaluated on the test part of the default synthetic store (8 tiles of 192 px) on CPU.
With the split interface the engine encodes each modality once per window and decodes per scenario;
without it, the whole network runs per scenario. `extra_info["ratio_to_full_*"]` is the min (median) time
relative to the `full` benchmark of the same variant (the target for the split interface is <= 1.5); the
ratio of the minima is the robust one on a shared machine.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmbench.config import load_defaults
from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic
from mmbench.evaluation.engine import evaluate
from mmbench.method import SegmentationMethod
from mmbench.registry import PROTOCOLS

TIMES: dict[tuple[str, str], tuple[float, float]] = {}


class EncoderHeavyFusion(SegmentationMethod):
    def __init__(self, modalities, num_classes, config):
        super().__init__(modalities, num_classes, config)
        width = config["width"]

        def block(inp, out, stride):
            return nn.Sequential(nn.Conv2d(inp, out, 3, stride=stride, padding=1), nn.BatchNorm2d(out), nn.ReLU())

        self.encoders = nn.ModuleDict(
            {
                name: nn.Sequential(
                    block(channels, width, 1),
                    block(width, width, 1),
                    block(width, 2 * width, 2),
                    block(2 * width, 2 * width, 1),
                    block(2 * width, 4 * width, 2),
                    block(4 * width, 4 * width, 1),
                )
                for name, channels in modalities.items()
            }
        )
        self.head = nn.Conv2d(4 * width, num_classes, 1)

    def encode(self, name, x):
        return self.encoders[name](x)

    def decode(self, features, available):
        total, count = 0, 0
        for index, name in enumerate(self.modality_names):
            if name in features:
                mask = available[:, index].view(-1, 1, 1, 1)
                total = total + torch.where(mask, features[name], 0.0)
                count = count + mask.float()
        logits = self.head(total / torch.as_tensor(count).clamp_min(1))
        return nn.functional.interpolate(logits, scale_factor=4, mode="bilinear", align_corners=False)

    def forward(self, inputs, available):
        return self.decode({name: self.encode(name, inputs[name]) for name in self.modality_names}, available)


class EncoderHeavyFusionPlain(EncoderHeavyFusion):
    encode = SegmentationMethod.encode

    def forward(self, inputs, available):
        return self.decode({name: self.encoders[name](inputs[name]) for name in self.modality_names}, available)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("eval-bench") / "s.h5", SyntheticConfig())


@pytest.mark.parametrize("variant", ["split", "plain"])
@pytest.mark.parametrize("protocol_name", ["full", "subsets"])
def test_scenario_cost(benchmark, store, protocol_name, variant):
    torch.manual_seed(0)
    torch.set_num_threads(2)
    cls = EncoderHeavyFusion if variant == "split" else EncoderHeavyFusionPlain
    method = cls({"optical": 3, "dsm": 1, "sar": 1}, 6, {"width": 16}).eval()
    spec = PROTOCOLS.get(protocol_name)
    protocol = spec.load()(load_defaults(spec.defaults, protocol_name))
    benchmark.pedantic(
        evaluate, args=(method, store, protocol), kwargs={"show_progress": False}, rounds=7, warmup_rounds=1
    )
    stats = benchmark.stats.stats
    TIMES[(protocol_name, variant)] = (stats.min, stats.median)
    if ("full", variant) in TIMES:
        full_min, full_median = TIMES[("full", variant)]
        benchmark.extra_info["ratio_to_full_min"] = round(stats.min / full_min, 2)
        benchmark.extra_info["ratio_to_full_median"] = round(stats.median / full_median, 2)
