"""Incremental sync pairs: runs that read only what changed (``runs``), along a tree of paths (``paths``).

The pair's kept stores and cursors themselves are job state (``worker.state.pairs``).
"""
