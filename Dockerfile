# One image for the ML backend and the worker.
FROM python:3.11-slim
WORKDIR /app
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY backend/ backend/
COPY scoring/ scoring/
COPY prompts.example.yaml schedules.example.yaml ./
RUN useradd --create-home app && mkdir -p /app/var && chown app /app/var
USER app
EXPOSE 9090
CMD ["gunicorn", "--workers", "2", "--threads", "8", "--timeout", "120", "--bind", "0.0.0.0:9090", "backend.wsgi:app"]
