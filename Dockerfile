# Production image for web, worker and beat (compose.yaml). The embedded defaults are not used:
# compose sets DATABASE_URL, CELERY_BROKER_URL and EMBEDDING_BASE_URL.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN useradd --create-home app && DEBUG=false SECRET_KEY=build-only DATABASE_URL=postgres://build@localhost/build \
    CELERY_BROKER_URL=redis://localhost:6379/0 EMBEDDING_BASE_URL=http://localhost:30000/v1 \
    python manage.py collectstatic --no-input
USER app
EXPOSE 8000
CMD ["gunicorn", "config.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "4", "--timeout", "60"]
