"""The job pipeline: each step declared once, run by one dispatcher on any runner (Celery tasks or this process)."""
