"""The ``bench`` commands, one module each; :mod:`edgefair.bench.cli` adds them to the group."""
