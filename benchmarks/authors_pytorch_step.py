#!/usr/bin/env python
"""Time the AUTHORS' PyTorch second-order label-distillation meta step (CPU or GPU).

Reference implementation: github.com/ondrejbohdal/label-distillation
(Bohdal, Yang, Hospedales 2020, "Flexible Dataset Distillation: Learn Labels
Instead of Images").  Nothing of theirs is copied here: their files are read
at run time from --repo_dir (an extracted copy of their repository) and their
LeNet (`model_architectures.LeNetMeta`, with the fast-weight `Conv2d_fw` /
`Linear_fw` layers) is imported from there.

Two modes:

* ``--mode=reproduced`` (default).  Their meta step is not a function: it is
  the body of the batch loop inside ``train()`` in ``label_distillation_or2.py``
  (lines 565-600 at commit 7ebc088c57a90d0b92c95b15f01ebfe1db163d54).
  ``meta_step`` below reproduces exactly those lines, statement for
  statement, on their model class.  The per-step bookkeeping that follows in
  their loop (lines 602-660: ``.item()`` calls, top-1 error, moving-average
  early-restart logic) is NOT timed in this mode.
* ``--mode=authors_train``.  Imports ``label_distillation_or2`` itself
  (torchvision/tqdm/PIL/data_providers are replaced by empty stub modules if
  they are not installed; the step never uses them) and calls their own
  ``train()`` over an in-memory "loader" of random batches, timing each
  iteration of their loop.  This includes their bookkeeping.

``--check_equivalence`` runs one step of both from identical state and
reports the max abs difference of the labels and learner parameters.

No TensorFlow imports.  Random data (MNIST shapes) is used.

Extract the authors' files (once):
    python benchmarks/authors_pytorch_step.py \
        --extract_from_git_dir=/work/.mirror/ondrejbohdal+label-distillation/repo/.git \
        --repo_dir=/work/authors_label_distillation --extract_only
which is equivalent to
    mkdir -p /work/authors_label_distillation && \
    git --git-dir=<GIT_DIR> archive HEAD | tar -x -C /work/authors_label_distillation && \
    git --git-dir=<GIT_DIR> rev-parse HEAD > /work/authors_label_distillation/AUTHORS_COMMIT
"""

import argparse
import ast
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
import types

import torch
import torch.nn as nn

from machine import cpu_model  # benchmarks/machine.py, beside this script

AUTHORS_REPO = "ondrejbohdal/label-distillation"
# Commit against which meta_step() was written; and the sha256 of the source
# text of their train() function at that commit (used to warn if the
# extracted copy differs from what this reproduction follows).
REFERENCE_COMMIT = "7ebc088c57a90d0b92c95b15f01ebfe1db163d54"
MODEL_FILE = "model_architectures.py"
STEP_FILE = "label_distillation_or2.py"
COMMIT_MARKER = "AUTHORS_COMMIT"


# --------------------------------------------------------------------------
# Getting the authors' code
# --------------------------------------------------------------------------
def extract_from_git_dir(git_dir, repo_dir, rev="HEAD"):
    """`git archive <rev> | tar -x -C repo_dir`, plus a commit marker file."""
    os.makedirs(repo_dir, exist_ok=True)
    commit = subprocess.check_output(
        ["git", "--git-dir", git_dir, "rev-parse", rev], text=True).strip()
    archive = subprocess.Popen(
        ["git", "--git-dir", git_dir, "archive", commit], stdout=subprocess.PIPE)
    subprocess.check_call(["tar", "-x", "-C", repo_dir], stdin=archive.stdout)
    archive.stdout.close()
    if archive.wait() != 0:
        raise RuntimeError("git archive failed")
    with open(os.path.join(repo_dir, COMMIT_MARKER), "w") as f:
        f.write(commit + "\n")
    return commit


def read_commit(repo_dir, override=None):
    if override:
        return override
    marker = os.path.join(repo_dir, COMMIT_MARKER)
    if os.path.exists(marker):
        with open(marker) as f:
            return f.read().strip()
    try:  # repo_dir might be a real clone
        return subprocess.check_output(
            ["git", "-C", repo_dir, "rev-parse", "HEAD"], text=True,
            stderr=subprocess.DEVNULL).strip()
    except Exception:
        return None


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def train_function_source(path):
    """Source text and line range of `def train(...)` in their step file."""
    with open(path) as f:
        text = f.read()
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef) and node.name == "train":
            return ast.get_source_segment(text, node), node.lineno, node.end_lineno
    raise RuntimeError("no train() in %s" % path)


def import_authors_model_module(repo_dir):
    sys.path.insert(0, os.path.abspath(repo_dir))
    import model_architectures as M  # their file, from repo_dir
    if not os.path.abspath(M.__file__).startswith(os.path.abspath(repo_dir)):
        raise RuntimeError("model_architectures imported from %s, not from "
                           "--repo_dir" % M.__file__)
    return M


def _stub_missing(name, attrs, added):
    """Install an empty module `name` (and parents) if it cannot be imported."""
    try:
        __import__(name)
        return
    except Exception:
        pass
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        sub = ".".join(parts[:i])
        if sub not in sys.modules:
            sys.modules[sub] = types.ModuleType(sub)
            added.append(sub)
        if i > 1:
            setattr(sys.modules[".".join(parts[:i - 1])], parts[i - 1],
                    sys.modules[sub])
    for a in attrs:
        setattr(sys.modules[name], a, type(a, (), {}))


def import_authors_step_module(repo_dir):
    """Import label_distillation_or2 itself, stubbing unneeded dependencies.

    The stubs live in sys.modules only while their file is imported and are
    removed afterwards (torch._dynamo, imported lazily by torch.optim, chokes
    on spec-less modules in sys.modules).
    """
    import torch._dynamo  # noqa: F401  (import before any stub exists)
    added = []
    for name, attrs in [("torchvision.datasets", ()), ("torchvision.models", ()),
                        ("torchvision.transforms", ("ToPILImage",)),
                        ("tqdm", ()), ("PIL", ("Image",)),
                        # needs PIL + torchvision, for K49 only
                        ("data_providers", ("K49Dataset",))]:
        _stub_missing(name, attrs, added)
    try:
        import label_distillation_or2 as LD
    finally:
        for name in added:
            sys.modules.pop(name, None)
    return LD, added


# --------------------------------------------------------------------------
# The step
# --------------------------------------------------------------------------
def soft_cross_entropy(pred, soft_targets):
    # Same computation as their soft_cross_entropy (label_distillation_or2.py
    # lines 681-684); their nn.LogSoftmax() has no dim, which resolves to
    # dim=1 for 2-D input, given explicitly here to avoid the warning.
    logsoftmax = nn.LogSoftmax(dim=1)
    return torch.mean(torch.sum(- soft_targets * logsoftmax(pred), 1))


def meta_step(model, fixed_input, labels, labels_opt, optimizer, criterion,
              input_, target, inner_batch_size, inner_lr):
    """One second-order LD meta step.

    Follows label_distillation_or2.py lines 565-600 (function train(), commit
    7ebc088c57a90d0b92c95b15f01ebfe1db163d54) statement for statement.
    """
    # sample a minibatch of n_i base examples (lines 565-569)
    perm = torch.randperm(fixed_input.size(0))
    idx = perm[:inner_batch_size]
    fi_i = fixed_input[idx]
    lb_i = labels[idx]

    # inner loop (lines 571-580): one SGD step on fast weights, keeping the
    # graph (create_graph=True) so the outer loss is differentiable w.r.t.
    # the labels through the inner update (second-order).
    for weight in model.parameters():
        weight.fast = None
    fi_o = model(fi_i)
    loss = soft_cross_entropy(fi_o, lb_i)
    optimizer.zero_grad()
    grad = torch.autograd.grad(loss, model.parameters(), create_graph=True)
    for k, weight in enumerate(model.parameters()):
        weight.fast = weight - inner_lr * grad[k]

    # outer loop (lines 582-591): target-batch CE with the fast weights, Adam
    # step on the labels.  (This backward also fills the learner params'
    # .grad, which is then discarded by optimizer.zero_grad() below.)
    logit = model(input_)
    label_loss = criterion(logit, target)
    labels_opt.zero_grad()
    label_loss.backward(retain_graph=True)
    labels_opt.step()

    # clip to [0, 1] and renormalise rows (lines 593-595)
    labels.data = torch.clamp(labels.data, 0, 1)
    labels.data = labels.data / labels.data.sum(dim=1).unsqueeze(1)

    # the learner's own Adam update on the inner loss (lines 597-600)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss, label_loss, logit


# Their two models of the paper's tables, by the dataset shapes they take: LeNet on
# MNIST (their --target=mnist), AlexNet on CIFAR-10 (--target=cifar10).
ARCHITECTURES = {"lenet": ("LeNetMeta", "mnist", (1, 28, 28)),
                 "alexnet": ("AlexCifarNetMeta", "cifar10", (3, 32, 32))}


def build_state(M, num_base, num_classes, label_lr, learner_lr, seed,
                architecture="lenet", device="cpu"):
    """Mirror their setup (label_distillation_or2.py lines 281-313)."""
    model_class, target, image_shape = ARCHITECTURES[architecture]
    torch.manual_seed(seed)
    fixed_input = torch.randn(num_base, *image_shape).to(device=device)
    criterion = nn.CrossEntropyLoss().to(device=device)
    labels = torch.full((num_base, num_classes), 1.0 / num_classes,
                        requires_grad=True, device=device)  # uniform init, l. 285-288
    labels_opt = torch.optim.Adam([labels], lr=label_lr)  # l. 290 (default lr)
    getattr(M, model_class).meta = True               # l. 295: fast-weight layers
    model_args = argparse.Namespace(target=target)    # their models read .target
    model = getattr(M, model_class)(model_args).to(device=device)  # l. 308-311
    optimizer = torch.optim.Adam(model.parameters(), lr=learner_lr)  # l. 313
    model.train()
    return dict(model=model, fixed_input=fixed_input, labels=labels,
                labels_opt=labels_opt, optimizer=optimizer, criterion=criterion)


def make_batches(n, outer_batch, num_classes, seed, architecture="lenet", device="cpu"):
    """Random outer batches, made on the CPU (the same values on every device) and
    held on `device`, as their loop moves each batch before the step (l. 562-563)."""
    image_shape = ARCHITECTURES[architecture][2]
    g = torch.Generator().manual_seed(seed + 1)
    return [(torch.randn(outer_batch, *image_shape, generator=g).to(device=device),
             torch.randint(0, num_classes, (outer_batch,), generator=g).to(device=device))
            for _ in range(n)]


def wait_for(device):
    """Blocks until the device's queued work is done: a CUDA step returns at once."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


class TimedLoader:
    """A 'train_loader' for their train(): yields batches, stamps each pull."""

    def __init__(self, batches, total):
        self.batches, self.total, self.stamps = batches, total, []

    def __len__(self):
        return self.total

    def __iter__(self):
        for i in range(self.total):
            self.stamps.append(time.perf_counter())
            yield self.batches[i % len(self.batches)]
        self.stamps.append(time.perf_counter())


def authors_args(a):
    # Only the fields their train() reads (target, num_base_examples,
    # inner_batch_size, inner_lr, print_freq, verbose, epochs).
    return argparse.Namespace(
        target=ARCHITECTURES[a.architecture][1], num_base_examples=a.num_base, inner_batch_size=a.inner_batch,
        inner_lr=a.inner_lr, print_freq=1, verbose=False, epochs=1, resnet=False)


def run_authors_train(LD, st, loader, a):
    LD.args = authors_args(a)
    LD.device = torch.device(a.device)
    LD.num_classes = a.num_classes
    return LD.train(loader, st["model"], st["fixed_input"], st["labels"],
                    st["criterion"], st["labels_opt"], 0, st["optimizer"],
                    [], 0, 999999999, 0, [], 0)


def check_equivalence(M, LD, a):
    batches = make_batches(1, a.outer_batch, a.num_classes, a.seed, a.architecture, a.device)
    s1 = build_state(M, a.num_base, a.num_classes, a.label_lr, a.learner_lr, a.seed,
                     a.architecture, a.device)
    s2 = build_state(M, a.num_base, a.num_classes, a.label_lr, a.learner_lr, a.seed,
                     a.architecture, a.device)
    s2["model"].load_state_dict(s1["model"].state_dict())
    torch.manual_seed(a.seed + 7)
    meta_step(s1["model"], s1["fixed_input"], s1["labels"], s1["labels_opt"],
              s1["optimizer"], s1["criterion"], batches[0][0], batches[0][1],
              a.inner_batch, a.inner_lr)
    torch.manual_seed(a.seed + 7)
    run_authors_train(LD, s2, TimedLoader(batches, 1), a)
    dl = (s1["labels"] - s2["labels"]).abs().max().item()
    dp = max((p1 - p2).abs().max().item() for p1, p2 in
             zip(s1["model"].parameters(), s2["model"].parameters()))
    moved = (s1["labels"] - 1.0 / a.num_classes).abs().max().item()
    return dict(max_abs_diff_labels=dl, max_abs_diff_params=dp,
                labels_moved_from_uniform=moved)


# --------------------------------------------------------------------------


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repo_dir", default="/work/authors_label_distillation",
                   help="extracted copy of ondrejbohdal/label-distillation")
    p.add_argument("--extract_from_git_dir", default=None,
                   help="bare git dir of their repo; extract into --repo_dir first")
    p.add_argument("--rev", default="HEAD", help="revision to extract")
    p.add_argument("--extract_only", action="store_true")
    p.add_argument("--authors_commit", default=None,
                   help="override the commit recorded in the JSON")
    p.add_argument("--mode", choices=["reproduced", "authors_train"],
                   default="reproduced")
    p.add_argument("--check_equivalence", action="store_true",
                   help="compare one reproduced step with their train() step")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--outer_batch", type=int, default=1024)  # their --batch_size
    p.add_argument("--inner_batch", type=int, default=50)    # --inner_batch_size
    p.add_argument("--num_base", type=int, default=100)      # --num_base_examples
    p.add_argument("--num_classes", type=int, default=10)
    p.add_argument("--inner_lr", type=float, default=0.01)   # --inner_lr
    p.add_argument("--label_lr", type=float, default=1e-3)   # Adam default
    p.add_argument("--learner_lr", type=float, default=1e-3)  # Adam default
    p.add_argument("--num_batches", type=int, default=8,
                   help="distinct random outer batches, cycled")
    p.add_argument("--num_threads", type=int, default=None,
                   help="torch.set_num_threads (default: torch's default)")
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--architecture", choices=sorted(ARCHITECTURES), default="lenet",
                   help="lenet: MNIST shapes; alexnet: CIFAR-10 shapes")
    p.add_argument("--device", default="cpu",
                   help="torch device: cpu, cuda, or auto (cuda where available)")
    p.add_argument("--output_json", default=None)
    a = p.parse_args()

    if a.extract_from_git_dir:
        c = extract_from_git_dir(a.extract_from_git_dir, a.repo_dir, a.rev)
        print("extracted %s@%s into %s" % (AUTHORS_REPO, c, a.repo_dir))
        if a.extract_only:
            return
    for fn in (MODEL_FILE, STEP_FILE):
        if not os.path.exists(os.path.join(a.repo_dir, fn)):
            sys.exit("missing %s in --repo_dir=%s (extract their repo first; "
                     "see --extract_from_git_dir)" % (fn, a.repo_dir))
    if a.num_threads:
        torch.set_num_threads(a.num_threads)
    if a.device == "auto":
        a.device = "cuda" if torch.cuda.is_available() else "cpu"
    if torch.device(a.device).type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device=%s: torch %s sees no CUDA device" % (a.device, torch.__version__))
    gpu_name = (torch.cuda.get_device_name(torch.device(a.device))
                if torch.device(a.device).type == "cuda" else None)

    commit = read_commit(a.repo_dir, a.authors_commit)
    M = import_authors_model_module(a.repo_dir)
    files_used = [MODEL_FILE, STEP_FILE]
    src, lo, hi = train_function_source(os.path.join(a.repo_dir, STEP_FILE))
    train_sha = hashlib.sha256(src.encode()).hexdigest()
    if train_sha != _TRAIN_SHA_AT_REFERENCE:
        print("WARNING: their train() (lines %d-%d) differs from commit %s, "
              "which meta_step() follows; use --mode=authors_train or update "
              "the reproduction." % (lo, hi, REFERENCE_COMMIT))

    print("torch %s, torch.get_num_threads() = %d, cpu: %s, device: %s%s"
          % (torch.__version__, torch.get_num_threads(), cpu_model(), a.device,
             " (%s)" % gpu_name if gpu_name else ""))
    print("authors' code: %s@%s from %s" % (AUTHORS_REPO, commit, a.repo_dir))
    print("architecture=%s mode=%s outer_batch=%d inner_batch=%d num_base=%d classes=%d "
          "inner_lr=%g label_lr=%g learner_lr=%g"
          % (a.architecture, a.mode, a.outer_batch, a.inner_batch, a.num_base, a.num_classes,
             a.inner_lr, a.label_lr, a.learner_lr))

    LD, stubbed, equiv = None, [], None
    if a.mode == "authors_train" or a.check_equivalence:
        LD, stubbed = import_authors_step_module(a.repo_dir)
        for mod in ("arg_extractor", "data_providers"):  # imported by it
            f = getattr(sys.modules.get(mod), "__file__", None) or ""
            if os.path.abspath(f).startswith(os.path.abspath(a.repo_dir)):
                files_used.append(mod + ".py")
        if stubbed:
            print("stubbed (unused by the step): %s" % ", ".join(stubbed))
    if a.check_equivalence:
        equiv = check_equivalence(M, LD, a)
        print("equivalence (reproduced vs their train(), 1 step): %s" % equiv)

    st = build_state(M, a.num_base, a.num_classes, a.label_lr, a.learner_lr, a.seed,
                     a.architecture, a.device)
    batches = make_batches(min(a.num_batches, a.warmup + a.steps),
                           a.outer_batch, a.num_classes, a.seed, a.architecture, a.device)
    if gpu_name:
        torch.cuda.reset_peak_memory_stats(torch.device(a.device))
    total = a.warmup + a.steps
    if a.mode == "reproduced":
        times = []
        for i in range(total):
            x, y = batches[i % len(batches)]
            t0 = time.perf_counter()
            loss, label_loss, _ = meta_step(
                st["model"], st["fixed_input"], st["labels"], st["labels_opt"],
                st["optimizer"], st["criterion"], x, y, a.inner_batch, a.inner_lr)
            wait_for(a.device)
            times.append(time.perf_counter() - t0)
        last = (loss.item(), label_loss.item())
    else:
        loader = TimedLoader(batches, total)
        out = run_authors_train(LD, st, loader, a)
        s = loader.stamps
        times = [s[i + 1] - s[i] for i in range(total)]
        last = (out[3], out[1])  # model_losses.avg, losses.avg
    timed = [t * 1e3 for t in times[a.warmup:]]
    med = statistics.median(timed)
    print("step ms: " + " ".join("%.1f" % t for t in timed))
    print("inner loss %.4f, label (outer) loss %.4f%s" % (
        last + (" (last step)" if a.mode == "reproduced" else " (run averages)",)))
    print("median ms/step over %d timed steps (after %d warmup): %.2f"
          % (len(timed), a.warmup, med))

    if a.output_json:
        res = {
            "ms_per_step_median": med,
            "timed_steps": len(timed),
            "warmup_steps": a.warmup,
            "ms_per_step_all": timed,
            "mode": a.mode,
            "torch_version": torch.__version__,
            "num_threads": torch.get_num_threads(),
            "cpu_model": cpu_model(),
            "architecture": a.architecture,
            "device": a.device,
            "gpu_name": gpu_name,
            # The CUDA caching allocator's peak while the timed model lived.
            "peak_gpu_memory_gib": (torch.cuda.max_memory_allocated(torch.device(a.device))
                                    / 2 ** 30 if gpu_name else None),
            "authors_repo": AUTHORS_REPO,
            "authors_commit": commit,
            "files_used": files_used,
            "files_sha256": {f: sha256_file(os.path.join(a.repo_dir, f))
                             for f in files_used},
            "step_follows": "%s train() lines 565-600 @ %s"
                            % (STEP_FILE, REFERENCE_COMMIT),
            "shapes": {"outer_batch": a.outer_batch, "inner_batch": a.inner_batch,
                       "num_base": a.num_base, "num_classes": a.num_classes,
                       "image": list(ARCHITECTURES[a.architecture][2])},
            "lrs": {"inner_lr": a.inner_lr, "label_lr": a.label_lr,
                    "learner_lr": a.learner_lr},
            "stubbed_modules": stubbed,
            "equivalence": equiv,
        }
        d = os.path.dirname(os.path.abspath(a.output_json))
        os.makedirs(d, exist_ok=True)
        with open(a.output_json, "w") as f:
            json.dump(res, f, indent=2)
        print("wrote %s" % a.output_json)


# sha256 of the source text of train() in label_distillation_or2.py at
# REFERENCE_COMMIT (ast.get_source_segment of the FunctionDef).
_TRAIN_SHA_AT_REFERENCE = "21e2378a7c685a548e71942ecd75d558d88806c6a5af2e54bde609efd14a4d70"

if __name__ == "__main__":
    main()
