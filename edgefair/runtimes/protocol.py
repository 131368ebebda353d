"""Host-side helpers around the device agent (``agent.py``): where it is, and which agent it is.

The agent itself is one self-contained file shipped to devices. The shapes it exchanges
with the host (its result, the measurement profiles) are in :mod:`edgefair.contracts`;
tests check the agent's own copies against them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["agent_path", "agent_sha256", "bare_loop_path"]


def agent_path() -> Path:
    """The agent file to copy to a device (run there as ``python3 agent.py ...``)."""
    return Path(__file__).with_name("agent.py")


def bare_loop_path() -> Path:
    """The bare-loop fidelity script (same runtime, same threads, no harness)."""
    return Path(__file__).with_name("bare_loop.py")


def agent_sha256() -> str:
    """sha256 of the agent file, to record exactly which agent produced a result."""
    return hashlib.sha256(agent_path().read_bytes()).hexdigest()
