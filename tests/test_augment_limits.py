"""Per-modality augmentation limits: the synthetic SAR (which looks from the left) is never flipped
horizontally or turned unless the config asks; asking re-enables it; data without limits keeps exactly the
draws it had before limits existed; config mistakes are one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from store_helpers import write_store

from mmbench.data.augment import GEOMETRIC, AugmentConfig, JointAugment, modality_augment
from mmbench.data.loader import TileDataset
from mmbench.datasets.synthetic import SyntheticConfig, write_synthetic
from mmbench.engine.batches import training_augment
from mmbench.errors import ConfigError

SYNTHETIC = ("optical", "dsm", "sar")
GEOMETRY_ONLY = AugmentConfig(scale=None, brightness=None, contrast=None)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("augment") / "s.h5", SyntheticConfig(tiles=6, size=64))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("augment") / "t.h5", tiles=6, size=24)


def settings(**augment_modalities):
    return {"augment": True, "augment_modalities": augment_modalities}


def reference_augment(inputs, label, key, photometric=("optical",)):
    """JointAugment.__call__ as it was before per-modality limits (commit 9c50ce6), kept verbatim in
    substance: data without limits must get exactly these numbers."""
    import kornia.enhance

    config = AugmentConfig()
    rng = np.random.default_rng([*key, 0x5EED])
    names = list(inputs)
    channels = [inputs[name].shape[0] for name in names]
    stacked, mask = torch.cat([inputs[name] for name in names]), label
    if config.hflip and rng.random() < config.hflip:
        stacked, mask = stacked.flip(-1), mask.flip(-1)
    if config.vflip and rng.random() < config.vflip:
        stacked, mask = stacked.flip(-2), mask.flip(-2)
    if config.rot90:
        turns = int(rng.integers(4))
        stacked, mask = stacked.rot90(turns, (-2, -1)), mask.rot90(turns, (-2, -1))
    if config.scale is not None:
        height, width = stacked.shape[-2:]
        fraction = float(np.sqrt(rng.uniform(*config.scale)))
        crop_h, crop_w = max(1, round(height * fraction)), max(1, round(width * fraction))
        top, left = int(rng.integers(height - crop_h + 1)), int(rng.integers(width - crop_w + 1))
        if (crop_h, crop_w) != (height, width):
            region = stacked[None, :, top : top + crop_h, left : left + crop_w]
            stacked = F.interpolate(region, size=(height, width), mode="bilinear", align_corners=False)[0]
            labels = mask[None, None, top : top + crop_h, left : left + crop_w].float()
            mask = F.interpolate(labels, size=(height, width), mode="nearest")[0, 0].to(mask.dtype)
    outputs = dict(zip(names, torch.split(stacked, channels), strict=True))
    for name in photometric:
        if name in outputs:
            image = outputs[name].unsqueeze(0)
            image = kornia.enhance.adjust_contrast(image, float(rng.uniform(*config.contrast)))
            image = kornia.enhance.adjust_brightness(image, float(rng.uniform(*config.brightness)))
            outputs[name] = image.squeeze(0)
    return outputs, mask


def plain_and_augmented(store, modalities, augment, keys):
    """(plain, augmented) label crops of the same windows, for each key."""
    plain = TileDataset(store, modalities=modalities, crop_size=32, normalize=False)
    moved = TileDataset(store, modalities=modalities, crop_size=32, normalize=False, augment=augment)
    return [
        (plain.sample(k % len(plain), (0, k))["label"], moved.sample(k % len(plain), (0, k))["label"]) for k in keys
    ]


def test_a_store_without_limits_gets_exactly_the_draws_it_had_before(tiny):
    augment = training_augment(tiny, ("optical", "dsm"), settings())
    assert augment.geometry == {} and augment.photometric == ("optical",)
    plain = TileDataset(tiny, crop_size=16, normalize=False)
    for key in range(40):
        sample = plain.sample(key % len(plain), (7, key))
        scaled = {"optical": sample["inputs"]["optical"] / 255.0, "dsm": sample["inputs"]["dsm"]}
        got, got_label = augment(scaled, sample["label"], (7, key))
        want, want_label = reference_augment(scaled, sample["label"], (7, key))
        assert torch.equal(got_label, want_label)
        for name in want:
            assert torch.equal(got[name], want[name]), (key, name)


def test_the_synthetic_sar_is_never_flipped_horizontally_or_turned(synthetic):
    augment = training_augment(synthetic, SYNTHETIC, settings())
    assert augment.allowed(SYNTHETIC) == {"vflip", "zoom"}
    assert augment.allowed(("optical", "dsm")) == set(GEOMETRIC)
    limited = JointAugment(GEOMETRY_ONLY, geometry=augment.geometry)
    pairs = plain_and_augmented(synthetic, list(SYNTHETIC), limited, range(48))
    outcomes = {"same" if torch.equal(a, b) else "vflip" if torch.equal(a.flip(-2), b) else "other" for a, b in pairs}
    assert outcomes == {"same", "vflip"}
    # Without the SAR nothing is limited: some samples are turned or flipped horizontally.
    pairs = plain_and_augmented(synthetic, ["optical", "dsm"], limited, range(48))
    assert any(not torch.equal(a, b) and not torch.equal(a.flip(-2), b) for a, b in pairs)


def test_asking_re_enables_the_refused_transforms(synthetic):
    augment = training_augment(synthetic, SYNTHETIC, settings(sar={"hflip": True, "rot90": True}))
    assert augment.allowed(SYNTHETIC) == set(GEOMETRIC) and augment.geometry == {}
    assert training_augment(synthetic, SYNTHETIC, settings(sar={"hflip": True})).allowed(SYNTHETIC) == {
        "hflip",
        "vflip",
        "zoom",
    }
    # And a modality can be limited further, or given photometric changes (integer imagery only).
    narrower = training_augment(synthetic, SYNTHETIC, settings(dsm={"zoom": False}, optical={"photometric": False}))
    assert narrower.allowed(SYNTHETIC) == {"vflip"} and narrower.photometric == ()


def test_a_limit_changes_only_the_refused_transform():
    """Same key, same draws: the unlimited and limited results differ by exactly the refused flip."""
    inputs = {"a": torch.arange(64.0).view(1, 8, 8)}
    label = torch.arange(64).view(8, 8)
    config = AugmentConfig(vflip=0, rot90=False, scale=None, brightness=None, contrast=None)
    free, limited = JointAugment(config), JointAugment(config, geometry={"a": ("vflip", "rot90", "zoom")})
    flipped = 0
    for key in range(20):
        (_, free_label), (_, limited_label) = free(inputs, label, (key,)), limited(inputs, label, (key,))
        assert torch.equal(limited_label, label)
        flipped += int(torch.equal(free_label, label.flip(-1)))
        assert torch.equal(free_label, label) or torch.equal(free_label, label.flip(-1))
    assert 0 < flipped < 20
    assert torch.equal(limited(inputs, label, (3,))[1], limited(inputs, label, (3,))[1])


def test_modality_augment_combines_declared_limits_and_switches():
    geometry, photometric = modality_augment(
        SYNTHETIC, declared={"sar": ("vflip",)}, overrides={"sar": {"zoom": True}, "dsm": {"rot90": False}}
    )
    assert geometry == {"sar": {"vflip", "zoom"}, "dsm": {"hflip", "vflip", "zoom"}}
    assert photometric == ("optical",)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"radar": {"hflip": True}}, "names modality 'radar', which the store lacks"),
        ({"sar": {"hflop": True}}, r"sar\.hflop: unknown transform; use hflip, vflip, rot90, zoom, photometric"),
        ({"sar": {"hflip": "yes"}}, r"sar\.hflip='yes' must be true or false"),
        ({"sar": True}, r"augment_modalities\.sar=True must map transforms"),
        ({"dsm": {"photometric": True}}, "dsm is float32 data, and brightness/contrast changes need integer"),
    ],
)
def test_config_mistakes_are_one_line_errors(synthetic, overrides, message):
    with pytest.raises(ConfigError, match=message) as error:
        training_augment(synthetic, SYNTHETIC, settings(**overrides))
    assert "\n" not in str(error.value)
