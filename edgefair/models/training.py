"""Training, fine-tuning and knowledge distillation of FER models on CPU."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ProgressFn = Callable[[int, int, dict], None]


@dataclass
class TrainConfig:
    """Hyper-parameters of one training (or fine-tuning) run."""

    epochs: int = 12
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    augment: bool = True
    threads: int = 0  # 0: torch's default
    kd_temperature: float = 4.0
    kd_alpha: float = 0.9  # weight of the KL term; Simon Says: 0.1·CE + 0.9·KL·T²

    def to_dict(self) -> dict:
        return asdict(self)


def _augment(x: torch.Tensor, gen: torch.Generator, max_shift: int = 3) -> torch.Tensor:
    """Random horizontal flip and a shift of up to ``max_shift`` pixels per sample."""
    n, _, h, w = x.shape
    flip = torch.rand(n, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    padded = F.pad(x, (max_shift,) * 4, mode="replicate")
    dx = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    dy = torch.randint(0, 2 * max_shift + 1, (n,), generator=gen)
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor, *,
                      temperature: float, alpha: float) -> torch.Tensor:
    """(1 − alpha)·CE + alpha·KL(teacher_T ‖ student_T)·T² (Hinton et al.)."""
    t = temperature
    kl = F.kl_div(F.log_softmax(student_logits / t, 1), F.log_softmax(teacher_logits / t, 1), reduction="batchmean",
                  log_target=True)
    return (1 - alpha) * F.cross_entropy(student_logits, y) + alpha * kl * t * t


@torch.no_grad()
def predict_logits(model: nn.Module, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Logits of an NCHW float32 array, in eval mode."""
    model.eval()
    out = [model(torch.from_numpy(x[i:i + batch_size])).numpy() for i in range(0, len(x), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    return float((predict_logits(model, x).argmax(1) == y).mean()) if len(y) else float("nan")


def fit(
    model: nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray] | None,
    cfg: TrainConfig,
    *,
    teacher: nn.Module | None = None,
    progress: ProgressFn | None = None,
    keep_best: bool = True,
    after_step: Callable[[], None] | None = None,
    batch_progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Train ``model`` in place; with ``val`` and ``keep_best`` restore the best-validation weights.

    ``after_step`` runs after every optimiser step (pruning masks, sparsifier updates);
    ``batch_progress(step, steps)`` after every batch (steps: all epochs' batches).
    Returns the history: per-epoch loss, validation accuracy, and the best epoch.
    Selection uses the validation split only, never the test split.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    xs, ys = torch.from_numpy(train[0]), torch.from_numpy(train[1])
    n = len(ys)
    steps = max(1, cfg.epochs * ((n + cfg.batch_size - 1) // cfg.batch_size))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.2)
    if teacher is not None:
        teacher.eval()
    history: dict = {"epochs": [], "best_epoch": -1, "best_val_accuracy": None}
    best_state = None
    best_acc = -1.0
    step = 0
    for epoch in range(cfg.epochs):
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            xb, yb = xs[idx], ys[idx]
            if cfg.augment:
                xb = _augment(xb, gen)
            logits = model(xb)
            if teacher is not None:
                with torch.no_grad():
                    t_logits = teacher(xb)
                loss = distillation_loss(logits, t_logits, yb, temperature=cfg.kd_temperature, alpha=cfg.kd_alpha)
            else:
                loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            if after_step is not None:
                after_step()
            total += float(loss.detach()) * len(idx)
            step += 1
            if batch_progress is not None:
                batch_progress(step, steps)
        rec = {"epoch": epoch + 1, "loss": total / n, "seconds": time.perf_counter() - t0}
        if val is not None and len(val[1]):
            rec["val_accuracy"] = accuracy(model, *val)
            if rec["val_accuracy"] > best_acc:
                best_acc = rec["val_accuracy"]
                best_state = copy.deepcopy(model.state_dict())
                history["best_epoch"] = epoch + 1
                history["best_val_accuracy"] = best_acc
        history["epochs"].append(rec)
        if progress is not None:
            progress(epoch + 1, cfg.epochs, rec)
    if keep_best and best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return history
