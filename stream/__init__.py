"""Replay and streaming engine: readers, the pure engine core, schedule,
compliance, the two streaming stages and the worker that hosts them, metrics, CLI."""
