"""Numbers as a person reads them, the same in every table: binary units (KiB, MiB), ms, %."""

from __future__ import annotations

DASH = "—"


def size(n: float | None) -> str:
    """Bytes in B, KiB or MiB."""
    if n is None:
        return DASH
    if n < 1024:
        return f"{n:.0f} B"
    if n < 1024 * 1024:
        return f"{n / 1024:.0f} KiB" if n >= 10 * 1024 else f"{n / 1024:.1f} KiB"
    return f"{n / 1024 / 1024:.2f} MiB"


def rss_mib(kb: float | None) -> str:
    """kB (as /proc reports, KiB) in MiB."""
    return DASH if kb is None else f"{kb / 1024:.1f} MiB"


def ms(seconds: float | None) -> str:
    """Seconds as milliseconds with three significant-ish digits."""
    if seconds is None:
        return DASH
    v = 1000 * seconds
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def pct(x: float | None, digits: int = 1) -> str:
    return DASH if x is None else f"{100 * x:.{digits}f}%"


def points(x: float | None) -> str:
    """A difference of fractions in accuracy points."""
    return DASH if x is None else f"{100 * x:.1f}"
