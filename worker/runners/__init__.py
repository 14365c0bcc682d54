"""What carries the pipeline's steps: this process (``local``) or Celery tasks on workers (``celery``)."""
