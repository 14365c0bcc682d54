"""Scheduled syncs: schedule files into beat entries, and one run at a time per entry (ticks)."""

from worker.schedule.entries import load_schedule

__all__ = ["load_schedule"]
