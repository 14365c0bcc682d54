"""Scheduled syncs: schedule files into beat entries (``entries``), and one run at a time per entry (``ticks``)."""
