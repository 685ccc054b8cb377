"""Every error this project raises on purpose, in one hierarchy.

Each message says what went wrong *and what to do about it*; none ever
contains an API key.  Lower-layer errors (``openai.*``, ``anthropic.*``,
``httpx.*``, ``yaml.*``, ``lxml.*``) are caught at the edge that calls the
library and re-raised as one of these, with the original kept as
``__cause__``::

    Error                       base class: catch this to catch everything
    ├── ConfigError             the project is set up wrongly; fix a file or env var
    │   ├── VersionError        prompts file malformed, or an unknown version id
    │   └── LabelConfigError    the Label Studio label config cannot be used
    ├── TaskError               one task cannot be pre-labelled; the batch goes on
    │   ├── MissingDataError    the task lacks a data field the instruction uses
    │   ├── MediaError          an image URL is not allowed or cannot be fetched
    │   ├── DeadlineError       PREDICT_DEADLINE passed while the task waited for a rate-limit slot
    │   ├── OutputError         the model answered, but the answer is unusable
    │   │   ├── RefusalError    the model refused to answer
    │   │   ├── TruncatedError  the answer was cut off (max tokens reached)
    │   │   └── AllDroppedError the answer named regions, but every one was dropped
    │   └── ProviderError       the provider call failed after its retries
    │       ├── AuthError       bad or missing API key
    │       ├── RateLimitError  429 from the provider, retries exhausted
    │       └── ProviderTimeout no answer within the version's timeout
    ├── LabelStudioError        Label Studio unreachable or answering 5xx after retries
    │                           (the message names the URL, never the key)
    └── ScoringError            scoring could not be done; the message says how to fix it
        ├── ExportError         the file is not JSON / not a Label Studio export
        ├── NoReferenceError    no ground truth / the reference version has no predictions
        └── ScoringConfigError  scoring.yaml is malformed, or a custom metric cannot be loaded

Both the backend and the scoring side import this module (``core`` is the small shared
package; ``backend`` never imports ``scoring``).  The CLIs print ``str(err)`` on one line
and exit 2; they never show a traceback for these.

A ``TaskError`` never escapes a batch: the predictor turns it into an empty
result for that task and records ``error.reason`` (a short machine-readable
slug) in the usage ledger, so one bad task never fails the rest.
"""
from __future__ import annotations


class Error(Exception):
    """Base class.  ``str(err)`` is a message meant for the user."""

    reason = "error"


class ConfigError(Error):
    reason = "config"


class VersionError(ConfigError):
    reason = "version"


class LabelConfigError(ConfigError):
    reason = "label_config"


class TaskError(Error):
    """One task failed.  ``usage`` (a ``backend.providers.base.Usage``) is set when
    tokens were spent before the failure (a truncated or invalid answer still costs)."""

    reason = "task"

    def __init__(self, message: str, *, usage=None):
        super().__init__(message)
        self.usage = usage


class MissingDataError(TaskError):
    reason = "missing_data"


class MediaError(TaskError):
    reason = "media"


class DeadlineError(TaskError):
    reason = "deadline"


class OutputError(TaskError):
    reason = "invalid_output"


class RefusalError(OutputError):
    reason = "refusal"


class TruncatedError(OutputError):
    reason = "truncated"


class AllDroppedError(OutputError):
    """Every region the answer named was dropped (passages not in the text, unknown labels, paths
    not in the taxonomy...).  ``stats`` keeps the counts of what was dropped (``backend.controls.base``)."""

    reason = "all_dropped"

    def __init__(self, message: str, *, usage=None, stats: dict | None = None):
        super().__init__(message, usage=usage)
        self.stats = stats or {}


class ProviderError(TaskError):
    reason = "provider"


class AuthError(ProviderError):
    reason = "auth"


class RateLimitError(ProviderError):
    reason = "rate_limited"


class ProviderTimeout(ProviderError):
    reason = "timeout"


class LabelStudioError(Error):
    """Label Studio refused a request or did not answer; ``status`` is the HTTP status of a refusal
    (a 4xx other than 429), None when it did not answer properly."""

    reason = "label_studio"

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.status = status


class ScoringError(Error):
    reason = "scoring"


class ExportError(ScoringError):
    reason = "export"


class NoReferenceError(ScoringError):
    reason = "no_reference"


class ScoringConfigError(ScoringError):
    reason = "scoring_config"
