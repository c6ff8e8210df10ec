"""Pictures of a run's labels (docs/method.md section 5.6), drawn with matplotlib's Agg backend.

    base_images.png          every base image with its top-3 labels
    label_mass_heatmap.png   mean label mass per (source class, target class)
    validation_curve.png     validation error and step count over the run
    label_statistics.png     label entropy, and mass left on the true class

Each PNG is rendered in memory and written atomically.
"""

from __future__ import annotations

import io
import math
import os

import numpy as np

from kerasdistill.files import write_bytes_atomic


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # no screen; must precede the pyplot import
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: str):
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    write_bytes_atomic(path, buffer.getvalue())


def plot_base_images(images, top3, class_names, source_labels, source_class_names, path,
                     max_images: int = 100):
    """A grid of base images, each titled with its source class and top-3 labels."""
    plt = _pyplot()
    count = min(len(images), max_images)
    columns = min(10, count)
    rows = math.ceil(count / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(1.9 * columns, 2.35 * rows),
                             squeeze=False, layout="constrained")
    for index, ax in enumerate(axes.flat):
        ax.axis("off")
        if index >= count:
            continue
        image = images[index]
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray",
                  vmin=0, vmax=255, interpolation="nearest")
        lines = [f"[{source_class_names[source_labels[index]]}]"] + [
            f"{class_names[c]}: {p:.2f}" for c, p in top3[index]]
        ax.set_title("\n".join(lines), fontsize=7, loc="left")
    fig.suptitle("Base images: [own class], then the top-3 learned labels")
    _save(fig, path)


def plot_mass_heatmap(mass_by_source_class, class_names, source_class_names, path,
                      source_dataset: str, target_dataset: str):
    """Mean label (rows: the images' own classes; columns: target classes)."""
    plt = _pyplot()
    mass = np.asarray(mass_by_source_class)
    rows, columns = mass.shape
    # At most ~16 inches a side: 100 or 200 classes (CIFAR-100, CUB) get smaller cells
    # and every k-th tick label, not a 90-inch picture that takes minutes to draw.
    fig, ax = plt.subplots(figsize=(1.0 + min(0.55 * columns, 15.0),
                                    1.0 + min(0.45 * rows, 15.0)))
    shown = ax.imshow(mass, cmap="viridis", vmin=0, vmax=max(float(mass.max()), 1e-6),
                      aspect="auto")
    column_step, row_step = max(1, columns // 40), max(1, rows // 40)
    ax.set_xticks(range(0, columns, column_step),
                  labels=class_names[:columns:column_step], rotation=60, ha="right",
                  fontsize=8)
    ax.set_yticks(range(0, rows, row_step), labels=source_class_names[:rows:row_step],
                  fontsize=8)
    ax.set_xlabel(f"target class ({target_dataset})")
    ax.set_ylabel(f"class of the base image ({source_dataset})")
    if rows * columns <= 400:
        for r in range(rows):
            for c in range(columns):
                ax.text(c, r, f"{mass[r, c]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if mass[r, c] < 0.6 * mass.max() else "black")
    fig.colorbar(shown, ax=ax, label="mean label mass")
    ax.set_title("Mean learned label per class of base image")
    _save(fig, path)


def plot_validation_curve(curve, path, best_steps: int | None = None):
    """Validation error and step count per validation point (LD), or validation
    error per training step count (baselines' step search)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    if curve and "epoch" in curve[0]:
        epochs = [p["epoch"] for p in curve]
        ax.plot(epochs, [100 * p["validation_error"] for p in curve], color="tab:blue")
        ax.set_xlabel("epoch")
        ax.set_ylabel("validation error %", color="tab:blue")
        steps_ax = ax.twinx()
        steps_ax.plot(epochs, [p["num_train_steps"] for p in curve], color="tab:orange")
        steps_ax.set_ylabel("training steps (from resets)", color="tab:orange")
        # The selected labels: the lowest validation error, ties to the later point.
        best = min(reversed(curve), key=lambda p: p["validation_error"])
        ax.plot([best["epoch"]], [100 * best["validation_error"]], "o", color="tab:red",
                label=f"selected: epoch {best['epoch']}, {best['num_train_steps']} steps")
        ax.legend(loc="upper right")
        ax.set_title("Validation error and learned step count over the run")
    else:
        steps = [p["steps"] for p in curve]
        ax.plot(steps, [100 * p["validation_error"] for p in curve], marker="o")
        if best_steps is not None:
            ax.axvline(best_steps, color="grey", linestyle="--", label=f"chosen: {best_steps}")
            ax.legend()
        ax.set_xlabel("training steps")
        ax.set_ylabel("validation error %")
        ax.set_title("Step-count search on the validation split")
    ax.grid(alpha=0.3)
    _save(fig, path)


def plot_label_statistics(analysis: dict, path):
    """Histogram of label entropy, and (within a dataset) of true-class mass."""
    plt = _pyplot()
    within = analysis["within_dataset"]
    fig, axes = plt.subplots(1, 2 if within else 1, figsize=(11 if within else 5.5, 3.8),
                             squeeze=False)
    ax = axes[0, 0]
    ax.hist(analysis["entropy_nats"], bins=20, range=(0, analysis["max_entropy_nats"]),
            color="tab:blue")
    ax.set_xlabel(f"label entropy, nats (uniform = {analysis['max_entropy_nats']:.2f})")
    ax.set_ylabel("base images")
    ax.set_title(f"Entropy: mean {analysis['entropy_summary']['mean']:.2f}")
    if within:
        ax = axes[0, 1]
        ax.hist(analysis["true_class_mass"], bins=20, range=(0, 1), color="tab:green")
        ax.set_xlabel("mass on the image's true class")
        ax.set_ylabel("base images")
        ax.set_title(f"True-class mass: mean {analysis['true_class_mass_summary']['mean']:.2f};"
                     f" top label true for {100 * analysis['top_label_is_true_class']:.0f}%")
    _save(fig, path)


def write_plots(distilled, analysis: dict, validation_curve, plots_dir: str) -> list[str]:
    """All pictures of one run into `plots_dir`; returns the file names."""
    os.makedirs(plots_dir, exist_ok=True)
    metadata = distilled.metadata
    class_names = metadata["class_names"]
    source_class_names = metadata["source_class_names"]
    plot_base_images(distilled.images, analysis["top3"], class_names, distilled.source_labels,
                     source_class_names, os.path.join(plots_dir, "base_images.png"))
    plot_mass_heatmap(analysis["mass_by_source_class"], class_names, source_class_names,
                      os.path.join(plots_dir, "label_mass_heatmap.png"),
                      metadata["source"], metadata["target"])
    names = ["base_images.png", "label_mass_heatmap.png"]
    if validation_curve:
        plot_validation_curve(validation_curve, os.path.join(plots_dir, "validation_curve.png"),
                              metadata["num_train_steps"])
        names.append("validation_curve.png")
    plot_label_statistics(analysis, os.path.join(plots_dir, "label_statistics.png"))
    return names + ["label_statistics.png"]
