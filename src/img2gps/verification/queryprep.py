"""Query preparation for photos as people share them (docs/shared-photos.md): find the photo inside a screenshot
or a padded image, and the extra views tried when nothing verifies (upsampled, contrast-normalised, turned).

All functions take and return upright RGB PIL images (no metadata) and never read anything but pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

RETRY_STEPS = ("upsample", "clahe", "rotate")
CROPS = "crops"
PREP_STEPS = ("border",) + RETRY_STEPS + (CROPS,)  # every rerank:prep step, in the order they run
CROP_FRACTIONS = (0.6, 0.4)  # the centre crops tried, as a fraction of each side


@dataclass(frozen=True)
class Region:
    """The part of the delivered image that holds the photo: pixel box [x0, x1) x [y0, y1)."""
    x0: int
    y0: int
    x1: int
    y1: int

    def as_tuple(self) -> tuple[int, int, int, int]:
        return (self.x0, self.y0, self.x1, self.y1)


def find_photo(image: Image.Image, work_side: int = 400, tol: int = 24, content_tol: int = 10,
               min_frame: float = 0.6, min_area: float = 0.12, max_area: float = 0.9,
               min_fill: float = 0.85) -> Region | None:
    """The photo inside a screenshot of a post or an image padded with a plain border, or None.

    Method: the border colour is the median of two opposite outer pixel rows (top and bottom, else left and
    right columns); when at least `min_frame` of each of the two is within `tol` levels of it, pixels farther
    than `content_tol` from it are content (tighter than `tol`: a dark photo in a dark app keeps its shadows).
    After a small morphological closing, the largest connected content block (OpenCV connected components) is
    the photo when it covers between min_area and max_area of the image and its convex hull fills at least
    `min_fill` of its bounding box (a photo is a solid block even where some of its pixels match the screen's
    colour; text lines and icons are thin, separate blocks). Works at `work_side` px (cheap); each edge is then
    moved in at full resolution past the lines that are still mostly border colour (the resampled edge).
    A camera photo has no two uniform opposite edges, so it returns None after one look at its border.
    Measured on penn91's 91 photos as the bench's `--query-as screenshot` (seed 0): with content at `tol` one
    photo (a black car in a dark-grey app) filled 0.73 of its box and was missed; now the least fill is 0.97.
    """
    W, H = image.size
    if W < 16 or H < 16:
        return None

    def edge(box) -> np.ndarray:  # one outer row or column, read without touching the rest of the image
        return np.asarray(image.crop(box), np.int16).reshape(-1, 3)

    bg = None
    for side_a, side_b in ((edge((0, 0, W, 1)), edge((0, H - 1, W, H))),  # top + bottom (a post, a letterbox)
                           (edge((0, 0, 1, H)), edge((W - 1, 0, W, H)))):  # left + right (a pillarbox)
        colour = np.median(np.concatenate([side_a, side_b]), axis=0)
        if all(np.mean(np.abs(side - colour).max(1) <= tol) >= min_frame for side in (side_a, side_b)):
            bg = colour
            break
    if bg is None:
        return None
    s = min(1.0, work_side / max(W, H))
    small = image if s >= 1.0 else image.resize((max(1, round(W * s)), max(1, round(H * s))),
                                                Image.Resampling.BILINEAR)
    a = np.asarray(small, np.int16)
    h, w = a.shape[:2]
    content = (np.abs(a - bg).max(2) > content_tol).astype(np.uint8)
    content = cv2.morphologyEx(content, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    n, labels, stats, _ = cv2.connectedComponentsWithStats(content, connectivity=8)
    if n < 2:
        return None
    best = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, bw, bh, _ = (int(v) for v in stats[best])
    hull = cv2.contourArea(cv2.convexHull(cv2.findNonZero((labels == best).astype(np.uint8))))
    if not (min_area <= bw * bh / (w * h) <= max_area) or hull < min_fill * bw * bh:
        return None
    box = [round(x / s), round(y / s), min(W, round((x + bw) / s)), min(H, round((y + bh) / s))]
    return _trimmed(image, box, bg, content_tol, steps=int(np.ceil(2 / s)))


def _trimmed(image: Image.Image, box: list[int], bg: np.ndarray, content_tol: int, steps: int,
             inset: int = 2) -> Region | None:
    """box (x0, y0, x1, y1) with each edge moved inwards, at most `steps` pixels, past lines at least half of
    whose pixels are within content_tol of the border colour bg, then `inset` more (a JPEG blurs the edge)."""
    x0, y0, x1, y1 = box
    a = np.asarray(image.crop((x0, y0, x1, y1)), np.int16)
    border = np.abs(a - bg).max(2) <= content_tol
    rows, cols = border.mean(1), border.mean(0)

    def cut(share: np.ndarray) -> int:
        k = 0
        while k < min(steps, len(share)) and share[k] >= 0.5:
            k += 1
        return k
    x0, x1 = x0 + cut(cols) + inset, x1 - cut(cols[::-1]) - inset
    y0, y1 = y0 + cut(rows) + inset, y1 - cut(rows[::-1]) - inset
    return Region(x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def upsampled(image: Image.Image, target_side: int, below: float = 0.7, max_scale: float = 2.5) -> Image.Image | None:
    """The image enlarged (Lanczos) towards a long side of target_side px, when it is smaller than below x that,
    else None: SIFT then detects features at the scales the gallery's were detected at."""
    side = max(image.size)
    if side >= below * target_side:
        return None
    s = min(max_scale, target_side / side)
    return image.resize((round(image.width * s), round(image.height * s)), Image.Resampling.LANCZOS)


def clahe(image: Image.Image, clip: float = 2.0, tiles: int = 8) -> Image.Image:
    """Contrast-limited adaptive histogram equalisation (Zuiderveld 1994, OpenCV) of the luminance (L of CIELAB)
    only: dark and filtered photos get back local contrast without a colour shift."""
    lab = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=clip, tileGridSize=(tiles, tiles)).apply(lab[..., 0])
    return Image.fromarray(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB))


def is_dark(image: Image.Image, mean_below: float = 80.0) -> bool:
    """Mean luminance (0..255) under mean_below: a dusk or underexposed photo."""
    return float(np.asarray(image.convert("L").reduce(8) if min(image.size) >= 64 else image.convert("L")).mean()) \
        < mean_below


def retry_views(image: Image.Image, gallery_side: int, no_metadata: bool,
                steps: tuple[str, ...] = RETRY_STEPS) -> list[tuple[str, Image.Image]]:
    """The views of a query to try, in order, when nothing verified on the image as given.

    - "upsample": a small query (long side < 0.7 x gallery_side) enlarged to the gallery's scale;
    - "clahe": luminance CLAHE (of the enlarged view when there is one), for photos without camera metadata
      (shared, possibly filtered) or dark ones;
    - "rotate": the (enlarged) view turned by 90 degrees either way, only for photos without camera metadata:
      their orientation tag may have been lost. A turned answer counts only if it verifies (the caller's rule).
    Returns [(name, image)], cheapest and likeliest first; empty when no step applies (a camera file that
    simply did not verify pays nothing extra).
    """
    views: list[tuple[str, Image.Image]] = []
    base = image
    if "upsample" in steps:
        up = upsampled(image, gallery_side)
        if up is not None:
            views.append(("upsampled", up))
            base = up
    if "clahe" in steps and (no_metadata or is_dark(image)):
        views.append(("clahe", clahe(base)))
    if "rotate" in steps and no_metadata:
        views.append(("turned 90 clockwise", base.transpose(Image.Transpose.ROTATE_270)))
        views.append(("turned 90 anticlockwise", base.transpose(Image.Transpose.ROTATE_90)))
    return views


def centre_crops(image: Image.Image, fractions: tuple[float, ...] = CROP_FRACTIONS,
                 min_side: int = 64) -> list[tuple[str, float, Region]]:
    """Centre crops of a query, widest first: [(name, fraction of each side kept, pixel box)]; crops whose short
    side would fall under min_side px are left out. Retrieval and verification on a crop see the middle of the
    photo at the gallery's feature scale: a photo whose subject fills only its centre (a wide shot around a
    gallery view, a photo pasted in a larger frame) can verify there when it does not as a whole."""
    W, H = image.size
    out = []
    for f in fractions:
        w, h = round(W * f), round(H * f)
        if min(w, h) < min_side:
            continue
        x0, y0 = (W - w) // 2, (H - h) // 2
        out.append((f"centre crop {round(100 * f)}%", f, Region(x0, y0, x0 + w, y0 + h)))
    return out
