import numpy as np
import pytest
import torch

from hemascope.augment import AugmentConfig, augment_batch
from hemascope.data.cache import load_cached
from hemascope.data.preprocess import letterbox_resize
from hemascope.io.image import write_image
from hemascope.synthetic import make_cell


@pytest.fixture
def batch():
    imgs = np.stack([make_cell(k, seed=i, size=48).image
                     for i, k in enumerate(["neutrophil", "monocyte", "lymphocyte", "basophil"])])
    return torch.from_numpy(imgs).permute(0, 3, 1, 2).float() / 255


def test_augment_keeps_shape_range_and_is_seeded(batch):
    cfg = AugmentConfig(degrade_p=1.0)
    a = augment_batch(batch, cfg, generator=torch.Generator().manual_seed(1))
    b = augment_batch(batch, cfg, generator=torch.Generator().manual_seed(1))
    c = augment_batch(batch, cfg, generator=torch.Generator().manual_seed(2))
    assert a.shape == batch.shape and a.dtype == batch.dtype
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a, batch)


def test_disabled_and_identity_configs(batch):
    assert augment_batch(batch, AugmentConfig.none()) is batch
    ident = AugmentConfig(scale=(1, 1), ratio=(1, 1), zoom=(1, 1), rotation=0, hflip=False,
                          vflip=False, brightness=0, contrast=0, saturation=0, hue=0, degrade_p=0)
    assert torch.allclose(augment_batch(batch, ident), batch, atol=1e-5)


def test_flip_only_gives_exact_flips(batch):
    cfg = AugmentConfig(scale=(1, 1), ratio=(1, 1), zoom=(1, 1), rotation=0, hflip=True,
                        vflip=False, brightness=0, contrast=0, saturation=0, hue=0, degrade_p=0)
    out = augment_batch(batch, cfg, generator=torch.Generator().manual_seed(0))
    for o, x in zip(out, batch):
        assert torch.allclose(o, x, atol=1e-5) or torch.allclose(o, x.flip(-1), atol=1e-5)


def test_letterbox_pads_without_distortion():
    img = np.zeros((20, 40, 3), np.uint8)
    img[:] = 200
    img[5:15, 15:25] = 10  # a dark square in the middle
    out = letterbox_resize(img, 40)
    assert out.shape == (40, 40, 3)
    assert (out[:8] == 200).all()  # padding uses the border colour
    dark = np.argwhere(out[..., 0] < 100)
    h, w = dark.max(0) - dark.min(0) + 1
    assert abs(h - w) <= 1  # still a square
    with pytest.raises(ValueError):
        letterbox_resize(np.zeros((4, 4), np.uint8), 8)


def test_cache_reports_unreadable_and_is_reused(tmp_path):
    good = [write_image(tmp_path / f"{i}.png", make_cell("eosinophil", seed=i).image) for i in range(3)]
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"junk")
    first = load_cached([good[0], bad, good[1], good[2]], 24, workers=1)
    assert first.images.shape == (3, 24, 24, 3)
    assert first.index.tolist() == [0, 2, 3] and list(first.errors) == [str(bad)]
    again = load_cached([good[0], bad, good[1], good[2]], 24, workers=1)
    assert np.array_equal(again.images, first.images)


def test_augment_keeps_the_batch_on_its_device(batch):
    """Random draws come from the CPU generator; every tensor they touch follows the batch
    (checked on the meta device, which needs no GPU)."""
    cfg = AugmentConfig(hue=0.05, degrade_p=1.0)
    out = augment_batch(batch.to("meta"), cfg, generator=torch.Generator().manual_seed(0))
    assert out.device.type == "meta" and out.shape == batch.shape


def test_stain_jitter_changes_stain_not_white_background(batch):
    """Optical-density scaling leaves pure white white and recolours stained pixels."""
    x = batch.clone()
    x[:, :, :4, :4] = 1.0  # a white corner
    off = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0), zoom=(1.0, 1.0), rotation=0.0, hflip=False,
               vflip=False, brightness=0, contrast=0, saturation=0, hue=0, degrade_p=0)
    cfg = AugmentConfig(**off, stain=0.4)
    out = augment_batch(x, cfg, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(out[:, :, 1:3, 1:3], torch.ones_like(out[:, :, 1:3, 1:3]), atol=1e-4)
    dark = x[:, :3].mean(1) < 0.6
    assert (out - x).abs().permute(1, 0, 2, 3)[:, dark].mean() > 0.02


def test_blur_removes_fine_detail(batch):
    off = dict(scale=(1.0, 1.0), ratio=(1.0, 1.0), zoom=(1.0, 1.0), rotation=0.0, hflip=False,
               vflip=False, brightness=0, contrast=0, saturation=0, hue=0, degrade_p=0)

    def detail(t):
        return (t[..., 1:] - t[..., :-1]).abs().mean()

    sharp = augment_batch(batch, AugmentConfig(**off), generator=torch.Generator().manual_seed(0))
    blurred = augment_batch(batch, AugmentConfig(**off, blur_p=1.0, blur_sigma=(1.5, 1.5)),
                            generator=torch.Generator().manual_seed(0))
    assert blurred.shape == batch.shape and detail(blurred) < 0.7 * detail(sharp)
    lab = AugmentConfig.cross_lab()
    assert lab.stain > 0 and lab.blur_p > 0 and lab.degrade_p > AugmentConfig().degrade_p
