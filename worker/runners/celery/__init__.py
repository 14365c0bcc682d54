"""The Celery runner: the app, the steps as tasks, monitors' events, the watchdog and the workers' slots."""
