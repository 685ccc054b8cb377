"""``python -m scoring``: the scoring CLI (also installed as the ``llm-prelabel`` command)."""
import sys

from scoring.cli import main

if __name__ == "__main__":
    sys.exit(main())
