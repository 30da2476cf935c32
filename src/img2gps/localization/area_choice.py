"""Which area of a multi-area gallery (area.GalleryPlane) a query photo is answered in, when no verified geometry
decides it (issue 30).

The most similar gallery photo is weak evidence of the area: an area with many photos offers many near misses.
What separates the areas is the whole embedding: a linear classifier of the gallery's unit vectors into their areas,
its classes weighted by the inverse of their photo counts so the dense area is not favoured. Where the classifier
is less than `UNSURE_GAP` surer (in probability) of its area than of the top photo's, the top photo's area is kept.
Measured by bench/two_areas_area_cv.py on penn91 (91 photos) + bgu-west (775), every photo a query with its
same-spot siblings left out (the classifier cross-validated in 10 folds of whole 30 m cells), photos sent to the
wrong area (bgu-west + penn91): the top photo 0 + 18; the top similarity as a per-area z-score 155 + 0, as a
per-area percentile 157 + 1; the classifier alone 7 + 5; the classifier with the gap 3 + 7. (The gap was chosen on
a cross-validation that kept same-spot siblings in training, so on these two data sets.) A photo whose spot the
gallery holds (bench/two_areas.py's random hold-out) is easier.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# the classifier decides only when it is this much surer (in probability) of its area than of the top photo's
UNSURE_GAP = 0.3
# inverse regularisation strength: the areas are nearly linearly separable in the embedding, so the fit is barely
# regularised
C_INVERSE = 100.0
FILE = "area_classifier.npz"


@dataclass(frozen=True)
class AreaClassifier:
    """A linear classifier of unit vectors (D,) into A areas: weights (A, D), bias (A,). Probabilities are the
    softmax of weights @ v + bias."""

    weights: np.ndarray
    bias: np.ndarray

    @classmethod
    def fit(cls, vectors: np.ndarray, label: np.ndarray, n_areas: int) -> "AreaClassifier":
        """Fitted on gallery vectors (N, D; scaled to unit length here) and their area indices label (N,) in
        0..n_areas-1 (each area at least one photo), classes weighted by inverse photo count. Deterministic (lbfgs)."""
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=C_INVERSE, class_weight="balanced", max_iter=5000)
        v = np.asarray(vectors, np.float64)
        clf.fit(v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12), np.asarray(label, int))
        w, b = clf.coef_, clf.intercept_
        if n_areas == 2:  # sklearn's binary form: one logit for class 1
            w, b = np.vstack([np.zeros_like(w[0]), w[0]]), np.array([0.0, b[0]])
        return cls(np.asarray(w, np.float32), np.asarray(b, np.float32))

    def proba(self, v: np.ndarray) -> np.ndarray:
        """(A,) probability of each area for one vector (D,), or (M, A) for (M, D). Vectors are scaled to unit
        length first, as the gallery's were (an encoder's raw output is not)."""
        v = np.asarray(v, np.float32)
        v = v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)
        z = v @ self.weights.T + self.bias
        z = z - z.max(-1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(-1, keepdims=True)

    def choose(self, v: np.ndarray, top_area: int) -> int:
        """The area for a query vector v (D,) whose most similar (allowed) gallery photo lies in top_area: the
        classifier's area unless it is less than UNSURE_GAP surer of it than of top_area."""
        p = self.proba(v)
        best = int(np.argmax(p))
        return best if p[best] - p[top_area] >= UNSURE_GAP else int(top_area)

    def save(self, d: Path) -> None:
        np.savez(d / FILE, weights=self.weights, bias=self.bias)

    @classmethod
    def load(cls, d: Path) -> "AreaClassifier | None":
        """The classifier saved in folder d, or None when there is none (a one-area gallery, or an older model)."""
        if not (d / FILE).exists():
            return None
        with np.load(d / FILE) as z:
            return cls(z["weights"], z["bias"])
