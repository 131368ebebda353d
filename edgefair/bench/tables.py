"""Rich tables printed at the end of commands (stderr)."""

from __future__ import annotations

from typing import Any

from rich.table import Table

from edgefair.bench.console import err


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def print_train_summary(result: dict[str, Any]) -> None:
    """Overall test accuracy and macro-F1, then accuracy with n for each group of each attribute."""
    test = result["test"]
    err.print(f"[bold]{result['arch']}[/] on {result['dataset']}: {result['params']:,} parameters, "
              f"{result['epochs']} epochs in {result['train_seconds']:.0f} s; best val accuracy "
              f"{_pct(result['best_val_accuracy'])} at epoch {result['best_epoch']}")
    err.print(f"test accuracy [bold]{_pct(test['accuracy'])}[/], macro-F1 {test['macro_f1']:.3f} (n={test['n']})")
    table = Table(title="test accuracy by group", show_lines=False)
    for col in ("attribute", "group", "n", "accuracy", "gap to best"):
        table.add_column(col, justify="right" if col in ("n", "accuracy", "gap to best") else "left")
    for attr, groups in test["groups"].items():
        best = max(g["accuracy"] for g in groups.values())
        for name, g in sorted(groups.items(), key=lambda kv: -kv[1]["n"]):
            table.add_row(attr, name, str(g["n"]), _pct(g["accuracy"]), f"{100 * (best - g['accuracy']):.1f} pt")
    err.print(table)
    err.print(f"wrote {result['run']}/model.pt and model.json")
