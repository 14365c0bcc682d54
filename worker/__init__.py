"""shardsync's runner: the demo adapters and the command line for now; the Celery pipeline builds on these."""
