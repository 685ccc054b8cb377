"""The small package both sides share: ``backend`` (the ML backend) and ``scoring`` (the
worker and CLI) import it; it imports neither.

``core.errors``       the one error hierarchy
``core.settings``     the one module that reads environment variables
``core.labelstudio``  the Label Studio SDK edge (retries, secret masking)
``core.secrets``      secret masking in text and in every log record
``core.stores``       the Redis key prefix, opening Redis and SQLite
``core.queue``        enqueueing RQ jobs so that repeats fold into one pending job
"""
