"""Replay and streaming engine: readers, the pure engine core, schedule,
compliance, CLI, and (later) the Faust agents."""
