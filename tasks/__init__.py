"""Celery tasks, one module per domain; each task parses its arguments and calls one service."""
