"""Job-level hooks: what happens when a job starts and ends, around the pipeline's steps (metrics, schedule markers)."""
