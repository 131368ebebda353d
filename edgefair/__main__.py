"""``python -m edgefair`` is the ``bench`` CLI."""

from edgefair.bench.cli import main

if __name__ == "__main__":
    main()
