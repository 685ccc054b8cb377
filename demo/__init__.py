"""The demo: ``python -m demo`` (live, in a real Label Studio) and ``python -m demo --offline``."""
