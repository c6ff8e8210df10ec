"""What learned labels say (docs/method.md section 5.6): how much mass leaves the true class, how
uncertain the labels are, and which classes mix.

Pure numpy, so the same numbers go into results.json, distilled_set.json and the
pictures.
"""

from __future__ import annotations

import numpy as np


def label_entropy(soft_labels: np.ndarray) -> np.ndarray:
    """Entropy of each row in nats (0: one-hot; log C: uniform)."""
    p = np.clip(np.asarray(soft_labels, np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log(p), 0.0)
    return terms.sum(axis=1)


def top_k(soft_labels: np.ndarray, k: int = 3) -> list[list[list]]:
    """Per row, the k largest [class, probability] pairs, largest first (ties by class)."""
    labels = np.asarray(soft_labels)
    order = np.lexsort((np.broadcast_to(np.arange(labels.shape[1]), labels.shape), -labels))
    return [[[int(c), float(labels[i, c])] for c in order[i, :k]] for i in range(len(labels))]


def _summary(values: np.ndarray) -> dict:
    return {"mean": float(np.mean(values)), "median": float(np.median(values)),
            "min": float(np.min(values)), "max": float(np.max(values))}


def analyse_labels(soft_labels: np.ndarray, source_labels: np.ndarray, num_source_classes: int,
                   within_dataset: bool) -> dict:
    """Statistics of a label set.

    Args:
      soft_labels: n x C rows summing to 1.
      source_labels: each base example's class in its own (source) dataset.
      num_source_classes: number of classes of the source dataset.
      within_dataset: whether source and target classes are the same classes;
        only then is there a "true class" whose mass can be measured.

    Returns a JSON-ready dict: entropy (per example and summary, nats, with the
    uniform maximum), top-3 labels per example, the mean label per source class
    (a num_source_classes x C matrix, rows for classes without examples are
    NaN-free zeros with count 0), and within a dataset the mass on the true class,
    how often the top label is the true class, and the largest off-diagonal mass.
    """
    labels = np.asarray(soft_labels, np.float64)
    source_labels = np.asarray(source_labels, np.int64)
    num_classes = labels.shape[1]
    entropy = label_entropy(labels)
    counts = np.bincount(source_labels, minlength=num_source_classes)
    mass = np.zeros((num_source_classes, num_classes))
    np.add.at(mass, source_labels, labels)
    mean_mass = mass / np.maximum(counts, 1)[:, None]
    analysis = {
        "num_examples": int(len(labels)),
        "entropy_nats": [float(e) for e in entropy],
        "entropy_summary": _summary(entropy),
        "max_entropy_nats": float(np.log(num_classes)),
        "top3": top_k(labels, 3),
        "mean_top_mass": float(labels.max(axis=1).mean()),
        "mass_by_source_class": mean_mass.tolist(),
        "source_class_counts": counts.tolist(),
        "within_dataset": bool(within_dataset),
    }
    if within_dataset:
        true_mass = labels[np.arange(len(labels)), source_labels]
        off_diagonal = mean_mass.copy()
        np.fill_diagonal(off_diagonal, -1.0)
        source, target = np.unravel_index(np.argmax(off_diagonal), off_diagonal.shape)
        analysis.update({
            "true_class_mass": [float(m) for m in true_mass],
            "true_class_mass_summary": _summary(true_mass),
            "top_label_is_true_class": float(np.mean(labels.argmax(axis=1) == source_labels)),
            "largest_off_diagonal": {"source_class": int(source), "target_class": int(target),
                                     "mean_mass": float(mean_mass[source, target])},
        })
    return analysis
