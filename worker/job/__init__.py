"""A sync job as data: its spec, its report, its history and per-object log, a plan's review, the delete guardrail."""
