"""The Faust app that hosts a worker: its services, timers, signals and crash handling.

Both stages read Kafka through consumers of their own
(:mod:`stream.stage1_consumer`, :mod:`stream.stage2_consumer`), which own
their positions and checkpoints; Faust's own Kafka consumer and producer
are not started (a consumer with nothing to read would still join a group
and hold a connection).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import faust
from faust.app.base import BootStrategy

log = logging.getLogger(__name__)

STAGE_STOP_TIMEOUT_S = 30.0  # a stage finishes its batch, checkpoints and leaves its group well within this


class _HostOnly(BootStrategy):
    enable_kafka = False


class DwellApp(faust.App):
    """A Faust app without Kafka clients of its own.

    ``early_tasks`` start with the app (``@app.task`` waits for table
    recovery, which a worker without tables has no use for). Stages added
    with :meth:`add_stage` start with it too and, on shutdown, are asked to
    stop and awaited before anything else stops: Faust cancels its tasks
    without waiting, which would cut a stage off between sending events and
    checkpointing.
    """

    BootStrategy = _HostOnly

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.early_tasks: list = []
        self._stages: list[tuple[Callable[[], Awaitable], Callable[[], None]]] = []
        self._stage_futures: list[asyncio.Future] = []

    def add_stage(self, run: Callable[[], Awaitable], stop: Callable[[], None]) -> None:
        self._stages.append((run, stop))

    async def on_start(self) -> None:
        await super().on_start()
        for task in self.early_tasks:
            self.add_future(task())
        self._stage_futures = [self.add_future(run()) for run, _ in self._stages]

    async def on_stop(self) -> None:
        for _, stop in self._stages:
            stop()
        running = [f for f in self._stage_futures if not f.done()]
        if running:
            _, late = await asyncio.wait(running, timeout=STAGE_STOP_TIMEOUT_S)
            if late:
                log.error("%d stage(s) did not stop within %.0f s; their last checkpoints stand", len(late),
                          STAGE_STOP_TIMEOUT_S)
        await super().on_stop()
