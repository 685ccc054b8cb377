"""Errors of the scoring side; they extend the hierarchy drawn in ``backend/errors.py``::

    Error
    └── ScoringError            scoring could not be done; the message says how to fix it
        ├── ExportError         the file is not JSON / not a Label Studio export
        ├── NoReferenceError    no ground truth / the reference version has no predictions
        ├── LabelStudioError    Label Studio unreachable or answering 5xx after retries
        └── ScoringConfigError  scoring.yaml is malformed, or a custom metric cannot be loaded

The CLI prints ``str(err)`` on one line and exits 2; it never shows a traceback
for these.
"""
from __future__ import annotations

from backend.errors import Error


class ScoringError(Error):
    reason = "scoring"


class ExportError(ScoringError):
    reason = "export"


class NoReferenceError(ScoringError):
    reason = "no_reference"


class LabelStudioError(ScoringError):
    reason = "label_studio"


class ScoringConfigError(ScoringError):
    reason = "scoring_config"
