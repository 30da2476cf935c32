"""Which area of a multi-area gallery (area.GalleryPlane) a query photo is answered in, when no verified geometry
decides it (issue 30).

The most similar gallery photo is weak evidence of the area: an area with many photos offers many near misses, so on
penn91 (91 photos) + bgu-west (775) 18 of 91 Penn photos (same-spot siblings left out) have a Ben-Gurion photo as
their most similar one. Per-area z-scores or percentiles of the top-k similarity only move the mistakes to the other
area (7 + 12 and 1 + 157). What separates the areas is the whole embedding: a linear classifier of the gallery's
unit vectors into their areas, its classes weighted by the inverse of their photo counts so the dense area is not
favoured, gets 3 + 5 wrong in 10-fold cross-validation over those 866 photos. Its remaining Ben-Gurion mistakes are
unsure ones (top probability 0.52-0.63) whose most similar photo was right, so where the classifier's probability of
its area exceeds that of the top photo's area by less than `UNSURE_GAP`, the top photo's area is kept: 3 + 0 wrong
(all three Penn photos whose classifier and top photo both point to Ben-Gurion). The gap was chosen on that
cross-validation, so it is tuned on these two data sets.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

# the classifier decides only when it is this much surer (in probability) of its area than of the top photo's
UNSURE_GAP = 0.3
# inverse regularisation strength: the areas are linearly separable in the embedding up to a few photos, so the
# fit is barely regularised (C=10 and C=100 made the same choices within 2 of 866 in cross-validation)
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
        """Fitted on gallery vectors (N, D) and their area indices label (N,) in 0..n_areas-1 (each area at least
        one photo), classes weighted by inverse photo count. Deterministic (lbfgs)."""
        from sklearn.linear_model import LogisticRegression

        clf = LogisticRegression(C=C_INVERSE, class_weight="balanced", max_iter=5000)
        clf.fit(np.asarray(vectors, np.float64), np.asarray(label, int))
        w, b = clf.coef_, clf.intercept_
        if n_areas == 2:  # sklearn's binary form: one logit for class 1
            w, b = np.vstack([np.zeros_like(w[0]), w[0]]), np.array([0.0, b[0]])
        return cls(np.asarray(w, np.float32), np.asarray(b, np.float32))

    def proba(self, v: np.ndarray) -> np.ndarray:
        """(A,) probability of each area for one vector (D,), or (M, A) for (M, D)."""
        z = np.asarray(v, np.float32) @ self.weights.T + self.bias
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
