"""predictors/trained/batch_augment.py: the PIL augmentation's distribution, on batches of tensors (what full fine-tuning on a
GPU uses), checked against the PIL version it stands in for."""
import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance

from img2gps.predictors.trained.batch_augment import augment_batch, colour_jitter, crop_boxes, jitter_factors, stash
from img2gps.predictors.trained.trunk import AugmentConfig, random_resized_crop_box

from trainable_data import grid_image

NO_JITTER = AugmentConfig(brightness=0, contrast=0, saturation=0, hue=0)


def photo(w=96, h=64, seed=0) -> Image.Image:
    rng = np.random.default_rng(seed)
    base = np.asarray(grid_image(seed % 12, max(w, h)).resize((w, h)), float)
    return Image.fromarray(np.clip(base + rng.normal(0, 10, base.shape), 0, 255).astype(np.uint8))


def to_unit(im: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(im, np.float32) / 255.0).permute(2, 0, 1)[None]


def test_crop_boxes_follow_the_pil_sampler_distribution():
    cfg = AugmentConfig()
    sizes = torch.tensor([[256.0, 192.0]]).repeat(4000, 1)
    box = crop_boxes(sizes, cfg, torch.Generator().manual_seed(0)).numpy()
    area = box[:, 2] * box[:, 3]
    ratio = box[:, 2] * 256 / (box[:, 3] * 192)
    assert (box[:, :2] >= 0).all() and (box[:, 0] + box[:, 2] <= 1 + 1e-9).all() and (box[:, 1] + box[:, 3] <= 1 + 1e-9).all()
    assert area.min() >= cfg.crop_scale_min - 0.02 and area.max() <= 1
    assert ratio.min() >= 0.74 and ratio.max() <= 1.34
    rng = np.random.default_rng(0)
    pil = np.array([random_resized_crop_box(256, 192, rng, cfg) for _ in range(4000)], float)
    pil_area = (pil[:, 2] - pil[:, 0]) * (pil[:, 3] - pil[:, 1]) / (256 * 192)
    # same sampler, different random streams: the area fractions agree in distribution
    assert abs(np.mean(area) - np.mean(pil_area)) < 0.01
    assert abs(np.quantile(area, 0.1) - np.quantile(pil_area, 0.1)) < 0.02


def test_a_photo_no_crop_fits_is_taken_whole():
    box = crop_boxes(torch.tensor([[1000.0, 10.0]]), AugmentConfig(), torch.Generator().manual_seed(1))
    assert torch.equal(box, torch.tensor([[0.0, 0.0, 1.0, 1.0]], dtype=torch.float64))


def test_crop_matches_pil_crop_then_squash():
    im = photo(96, 64)
    squares, sizes = stash([im], 96)
    gen = torch.Generator().manual_seed(3)
    out = augment_batch(squares, sizes, 48, NO_JITTER, gen)[0]
    x0, y0, cw, ch = crop_boxes(sizes, NO_JITTER, torch.Generator().manual_seed(3))[0].tolist()
    x0, y0, cw, ch = round(x0 * 96), round(y0 * 64), round(cw * 96), round(ch * 64)
    ref = to_unit(im.crop((x0, y0, x0 + cw, y0 + ch)).resize((48, 48), Image.Resampling.BILINEAR))[0]
    assert out.shape == (3, 48, 48) and out.dtype == torch.float32
    assert float((out - ref).abs().mean()) < 0.02  # bilinear from the stashed square vs from the photo (whole: 0.2)


def test_whole_photo_without_jitter_is_the_stashed_square():
    squares, sizes = stash([photo(64, 64)], 64)
    cfg = AugmentConfig(crop_scale_min=1.0, crop_ratio=(1.0, 1.0), brightness=0, contrast=0, saturation=0, hue=0)
    out = augment_batch(squares, sizes, 64, cfg, torch.Generator().manual_seed(0))
    assert torch.allclose(out, squares.float() / 255, atol=1e-5)


@pytest.mark.parametrize("kind", ["brightness", "contrast", "saturation"])
def test_jitter_uses_pil_image_enhance_formulas(kind):
    im = photo(40, 40, seed=5)
    f = 1.27
    factors = torch.tensor([[f if kind == "brightness" else 1, f if kind == "contrast" else 1,
                             f if kind == "saturation" else 1, 0.0]], dtype=torch.float64)
    ours = colour_jitter(to_unit(im), factors)[0]
    enh = {"brightness": ImageEnhance.Brightness, "contrast": ImageEnhance.Contrast,
           "saturation": ImageEnhance.Color}[kind]
    ref = to_unit(enh(im).enhance(f))[0]
    assert float((ours - ref).abs().max()) <= 3 / 255  # PIL rounds to 8 bits at each step


def test_hue_shift_matches_pil_hsv_rotation():
    im = photo(40, 40, seed=7)
    shift = 8  # of PIL's 256 hue steps
    factors = torch.tensor([[1, 1, 1, shift / 255]], dtype=torch.float64)
    ours = colour_jitter(to_unit(im), factors)[0]
    hsv = np.asarray(im.convert("HSV")).copy()
    hsv[..., 0] = (hsv[..., 0].astype(np.int16) + shift) % 256
    ref = to_unit(Image.fromarray(hsv, "HSV").convert("RGB"))[0]
    assert float((ours - ref).abs().mean()) < 3 / 255


def test_same_seed_same_batch_and_factors_in_range():
    squares, sizes = stash([photo(96, 64, s) for s in range(6)], 80)
    a = augment_batch(squares, sizes, 32, AugmentConfig(), torch.Generator().manual_seed(11))
    b = augment_batch(squares, sizes, 32, AugmentConfig(), torch.Generator().manual_seed(11))
    c = augment_batch(squares, sizes, 32, AugmentConfig(), torch.Generator().manual_seed(12))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1
    f = jitter_factors(5000, AugmentConfig(), torch.Generator().manual_seed(0))
    assert f[:, :3].min() >= 0.7 and f[:, :3].max() <= 1.3 and f[:, 3].abs().max() <= 0.03 + 1 / 255
