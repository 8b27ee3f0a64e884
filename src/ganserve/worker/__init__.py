"""The Celery worker: receives `ganserve.train` messages and runs the engine."""
