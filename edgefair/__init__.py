"""edgefair: edge-deployment benchmark harness for FER models, with subgroup fairness audits."""

__version__ = "0.1.0"
