"""Synthetic scenes with real geometry for the local-feature tests: textured images and perspective views."""
from __future__ import annotations

import cv2
import numpy as np
from PIL import Image


def textured(seed: int, w: int = 400, h: int = 300) -> np.ndarray:
    """A feature-rich RGB image: smooth colour noise plus random discs and boxes (corners and blobs for SIFT)."""
    rng = np.random.default_rng(seed)
    img = cv2.resize((rng.random((h // 8, w // 8, 3)) * 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_CUBIC)
    for _ in range(70):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        if rng.random() < 0.5:
            cv2.circle(img, (x, y), int(rng.integers(3, 25)), colour, -1)
        else:
            cv2.rectangle(img, (x, y), (x + int(rng.integers(5, 45)), y + int(rng.integers(5, 45))), colour, -1)
    return img


def perspective(img: np.ndarray, seed: int, strength: float = 0.1) -> np.ndarray:
    """The same planar scene seen from elsewhere: a random homography moving each corner by up to `strength`."""
    rng = np.random.default_rng(seed)
    h, w = img.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = src + (rng.uniform(-strength, strength, (4, 2)) * np.float32([w, h])).astype(np.float32)
    H = cv2.getPerspectiveTransform(src, dst)
    return cv2.warpPerspective(img, H, (w, h), borderMode=cv2.BORDER_REFLECT)


def turned(img: np.ndarray, seed: int, max_deg: float = 6.0) -> np.ndarray:
    """The same scene from the same spot with the camera turned (yaw, pitch, roll up to max_deg): the
    homography K R K^-1 of a pure rotation, K the default phone intrinsics the pose stage assumes."""
    from img2gps.localization.pose import intrinsics

    rng = np.random.default_rng(seed)
    h, w = img.shape[:2]
    K = intrinsics(w, h)
    R, _ = cv2.Rodrigues(np.radians(rng.uniform(-max_deg, max_deg, 3)))
    H = K @ R @ np.linalg.inv(K)
    return cv2.warpPerspective(img, H, (w, h), borderMode=cv2.BORDER_REFLECT)


def pil(a: np.ndarray) -> Image.Image:
    return Image.fromarray(a)
