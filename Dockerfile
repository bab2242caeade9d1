# Production image for the one-shot migrate service, web, worker and beat (compose.yaml).
# Only the runtime requirements: the embedded development services (requirements-dev.txt) are not installed,
# so DATABASE_URL, CELERY_BROKER_URL and EMBEDDING_BASE_URL must be set (compose.yaml sets them).
FROM python:3.11.14-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DEBUG=false
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
RUN useradd --create-home --uid 10001 app
# Code and collected static files belong to root and are read-only for the app; the one folder it writes
# (var/: beat's schedule) is its own. .dockerignore keeps local data, secrets, .git and dev tooling out.
COPY . .
RUN DEBUG=false SECRET_KEY=build-only ALLOWED_HOSTS=build DATABASE_URL=postgres://build@localhost/build \
    CELERY_BROKER_URL=redis://localhost:6379/0 EMBEDDING_BASE_URL=http://localhost:30000/v1 \
    python manage.py collectstatic --no-input \
 && mkdir -p /app/var && chown app:app /app/var
USER app
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "4", "--timeout", "60"]
