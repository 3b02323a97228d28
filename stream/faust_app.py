"""The Faust app that hosts a worker: its services, timers, signals and crash handling.

Both stages read Kafka through consumers of their own
(:mod:`stream.stage1_consumer`, :mod:`stream.stage2_consumer`), which own
their positions and checkpoints; Faust's own Kafka consumer and producer
are not started (a consumer with nothing to read would still join a group
and hold a connection).
"""

from __future__ import annotations

import faust
from faust.app.base import BootStrategy


class _HostOnly(BootStrategy):
    enable_kafka = False


class DwellApp(faust.App):
    """A Faust app without Kafka clients of its own.

    ``early_tasks`` start with the app (``@app.task`` waits for table
    recovery, which a worker without tables has no use for).
    """

    BootStrategy = _HostOnly

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.early_tasks: list = []

    async def on_start(self) -> None:
        await super().on_start()
        for task in self.early_tasks:
            self.add_future(task())
