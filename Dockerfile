# One image for the ML backend and the worker.  Only the runtime dependencies are installed
# (pyproject.toml [project] dependencies, pinned as in requirements.txt); the test tools are not.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml README.md /src/
COPY backend/ /src/backend/
COPY scoring/ /src/scoring/
COPY core/ /src/core/
COPY fakellm/ /src/fakellm/
RUN pip install --no-cache-dir /src && rm -rf /src
COPY prompts.example.yaml schedules.example.yaml ./
RUN useradd --create-home app && mkdir -p /app/var && chown app /app/var
USER app
EXPOSE 9090
# Also installed: the commands llm-prelabel-backend (= python -m backend) and llm-prelabel (= python -m scoring).
CMD ["gunicorn", "--workers", "2", "--threads", "8", "--timeout", "120", "--bind", "0.0.0.0:9090", "backend.wsgi:app"]
