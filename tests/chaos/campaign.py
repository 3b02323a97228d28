"""The crash campaign: a simulated policing day through workers that are SIGKILLed and rebalanced.

    python -m tests.chaos.campaign --fixes 1000000 --workers 3 --min-kill-s 10 --max-kill-s 30 \\
        --seed 1 --out benchmarks/results/chaos-campaign

1. A seeded simulated day of at least ``--fixes`` fixes (:mod:`tests.chaos.campaign_load`) and its
   replay: what the stream must give.
2. The embedded broker on a free loopback port, the topics, ``--workers`` workers, all ready.
3. The day's records are produced at a steady rate, slow enough that the fix flow outlasts
   ``--min-kills`` kills even if every pause is ``--max-kill-s``; meanwhile a killer SIGKILLs a
   random live worker every uniform(``--min-kill-s``, ``--max-kill-s``) seconds and restarts it at
   once, one more worker is started at a third of the fixes and a random one stopped with SIGTERM at
   two thirds. A worker that exits on its own is restarted too (as a supervisor would) and reported.
4. After the last record there are no more kills: the campaign waits until every hot spot-day has
   closed, every worker is ready and the outputs have been still for ``--quiet-s``.
5. The workers are stopped; every output topic is read from the start, de-duplicated by event id and
   held against the replay.

Writes ``<out>.json`` and ``<out>.png`` (progress over time, kills and scaling marked). Exit status 0
only if nothing is lost, extra or different (visits, patrols, hot spot-days, dosage met, late dead
letters, and bodies of repeated ids) and there were at least ``--min-kills`` kills.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from stream.broker import EmbeddedBroker
from stream.settings import WorkerSettings
from stream.worker import ensure_topics
from tests.chaos.campaign_fleet import Fleet, Incarnation
from tests.chaos.campaign_load import CampaignDay, Expected, replay_campaign_day, simulate_campaign_day
from tests.chaos.campaign_outputs import OutputWatch, compare, differences, read_dead_letters, true_end_offsets

READY_TIMEOUT_S = 180.0  # first start of every worker, on two shared cores
# The records go out as a fix gateway writes them: everything due, every tick, so about one record
# batch per partition a tick. The embedded broker's fetches and writes slow down with every batch it
# holds (see stream/bench_latency.py); a batch per 100 records stalled the workers within ten minutes.
TICK_S = 0.5


@dataclass(frozen=True)
class CampaignSettings:
    fixes: int = 1_000_000
    workers: int = 3
    partitions: int = 6  # more than the most workers at once (workers + 1), so each one has a share
    min_kill_s: float = 10.0
    max_kill_s: float = 30.0
    min_kills: int = 20
    seed: int = 1
    rate: float | None = None  # records/s offered; None: the flow lasts (min_kills + 0.5) * max_kill_s
    quiet_s: float = 10.0  # outputs still this long, with every day closed and every worker ready: finished
    give_up_quiet_s: float = 90.0  # no new output this long after the last record: compare what there is
    settle_timeout_s: float = 900.0
    sample_s: float = 1.0
    progress_every_s: float = 10.0

    def flow_rate(self, records: int) -> float:
        """Records/s to offer, so that the flow lasts long enough for ``min_kills`` kills."""
        return self.rate or records / ((self.min_kills + 0.5) * self.max_kill_s)


class Campaign:
    """One run against a started broker: the fleet, the killer, the scaling, the monitor."""

    def __init__(self, settings: CampaignSettings, day: CampaignDay, expected: Expected, bootstrap: str,
                 prefix: str, app_id: str, fleet: Fleet, clock: Callable[[], float], say: Callable[[str], None]):
        self.settings = settings
        self.day = day
        self.expected = expected
        self.bootstrap = bootstrap
        self.prefix = prefix
        self.app_id = app_id
        self.fleet = fleet
        self.clock = clock
        self.say = say
        # Separate streams, so the victims do not depend on when the scaling happens to draw.
        self.kill_rng = random.Random(settings.seed)
        self.scale_rng = random.Random(settings.seed + 1)
        self.events: list[dict] = []
        self.samples: list[dict] = []
        self.produced = 0
        self.kills = 0
        self.outputs_changed_at = time.monotonic()
        self.watches: set[asyncio.Task] = set()

    def note(self, kind: str, inc: Incarnation | None = None, **detail) -> None:
        event = {"t_s": round(self.clock(), 2), "kind": kind, **({"worker": inc.name} if inc else {}), **detail}
        self.events.append(event)
        self.say(" ".join(f"{k}={v}" for k, v in event.items()))

    def start_worker(self, slot: str) -> Incarnation:
        inc = self.fleet.start(slot)
        task = asyncio.create_task(self.fleet.watch_ready(inc))
        self.watches.add(task)
        task.add_done_callback(self.watches.discard)
        return inc

    async def run(self) -> dict:
        s = self.settings
        watch = OutputWatch(self.bootstrap, self.prefix)
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await watch.start()
        await admin.start()
        monitor = None
        try:
            for w in range(s.workers):
                self.start_worker(f"w{w}")
            await self.until(lambda: all(i.ready_s is not None for i in self.fleet.live()), READY_TIMEOUT_S,
                             "the first workers to be ready")
            monitor = asyncio.create_task(self.monitor(watch, admin))
            flow_done = asyncio.Event()
            self.note("flow_start", rate_per_s=round(s.flow_rate(len(self.day.records)), 1))
            killer = asyncio.create_task(self.kill_until(flow_done))
            scaler = asyncio.create_task(self.scale_up_then_down())
            await self.produce_paced(s.flow_rate(len(self.day.records)))
            flow_done.set()
            self.note("flow_end", records=self.produced)
            await killer
            await scaler
            settled = await self.settle()
            codes = await self.fleet.stop_all()
            self.note("stopped", exit_codes=codes)
            monitor.cancel()
            input_records = await self.committed_and_ends(admin)
            fresh = OutputWatch(self.bootstrap, self.prefix)  # from the start, apart from the monitor's view
            await fresh.start()
            try:
                events = await fresh.read_to_end()
            finally:
                await fresh.stop()
            dead = await read_dead_letters(self.bootstrap, self.prefix)
            comparison = compare(self.expected, events, dead, self.day, s.partitions)
            return {"settle": settled, "exit_codes": codes, "input": input_records, "comparison": comparison}
        finally:
            if monitor is not None:
                monitor.cancel()
            for task in list(self.watches):
                task.cancel()
            await watch.stop()
            await admin.close()

    async def produce_paced(self, rate: float) -> None:
        """The day's records to location-fixes at ``rate`` a second, what is due sent every ``TICK_S``."""
        topic = self.prefix + "location-fixes"
        producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, linger_ms=20, max_batch_size=1 << 20)
        await producer.start()
        try:
            records, started = self.day.records, time.monotonic()
            while self.produced < len(records):
                due = min(len(records), int((time.monotonic() - started) * rate) + 1)
                sent = [await producer.send(topic, key=k, value=v) for k, v in records[self.produced:due]]
                await asyncio.gather(*sent)
                self.produced = due
                await asyncio.sleep(max(0.0, started + due / rate + TICK_S - time.monotonic()))
        finally:
            await producer.stop()

    async def until(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out after {timeout_s:.0f} s waiting for {what}; logs in "
                                   f"{self.fleet.workdir}")
            await asyncio.sleep(0.2)

    async def kill_until(self, flow_done: asyncio.Event) -> None:
        """SIGKILL a random live worker every uniform(min, max) s and restart it, until the flow ends."""
        s = self.settings
        while True:
            try:
                await asyncio.wait_for(flow_done.wait(), self.kill_rng.uniform(s.min_kill_s, s.max_kill_s))
                return
            except TimeoutError:
                pass
            victims = sorted((i for i in self.fleet.live() if not i.stopping), key=lambda i: i.slot)
            if not victims:
                continue
            victim = self.kill_rng.choice(victims)
            was_ready = victim.ready_s is not None
            self.fleet.kill(victim)
            self.kills += 1
            self.note("kill", victim, n=self.kills, was_ready=was_ready)
            self.note("restart", self.start_worker(victim.slot))

    async def scale_up_then_down(self) -> None:
        """One more worker at a third of the records; at two thirds a random ready one is stopped with
        SIGTERM (a rebalance that hands partitions over, not a worker that has not joined yet)."""
        total = len(self.day.records)
        await self.until(lambda: self.produced >= total / 3, 24 * 3600, "a third of the records")
        self.note("scale_up", self.start_worker(f"w{self.settings.workers}"))
        await self.until(lambda: self.produced >= 2 * total / 3, 24 * 3600, "two thirds of the records")
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.stoppable() and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        # A fleet where no worker gets ready (a wedged group) still loses one.
        victim = self.scale_rng.choice(self.stoppable() or self.stoppable(ready_only=False))
        victim.stopping = True  # before the thread runs: neither killed nor taken for a crash meanwhile
        self.note("scale_down", victim, was_ready=victim.ready_s is not None)
        started = time.monotonic()
        code = await asyncio.to_thread(self.fleet.stop, victim)
        self.note("scale_down_stopped", victim, exit_code=code, stop_s=round(time.monotonic() - started, 2))

    def stoppable(self, ready_only: bool = True) -> list[Incarnation]:
        return sorted((i for i in self.fleet.live() if not i.stopping and (i.ready_s is not None or not ready_only)),
                      key=lambda i: i.slot)

    async def committed_and_ends(self, admin: AIOKafkaAdminClient) -> dict:
        """Records on location-fixes, and how many stage 1 has committed (written a checkpoint for)."""
        topic = self.prefix + "location-fixes"
        tps = [TopicPartition(topic, p) for p in range(self.settings.partitions)]
        offsets = await admin.list_consumer_group_offsets(f"{self.app_id}-stage1", partitions=tps)
        return {"produced": self.produced, "on_topic": sum((await true_end_offsets(self.bootstrap, tps)).values()),
                "committed": sum(max(o.offset, 0) for o in offsets.values())}

    async def monitor(self, watch: OutputWatch, admin: AIOKafkaAdminClient) -> None:
        """Every ``sample_s``: restart workers that died on their own, and sample progress."""
        s = self.settings
        tps = [TopicPartition(self.prefix + "location-fixes", p) for p in range(s.partitions)]
        group = f"{self.app_id}-stage1"
        last_outputs, last_said = -1, 0.0
        while True:
            started = time.monotonic()
            for inc in self.fleet.reap_exited():
                self.note("exited", inc, exit_code=inc.exit_code, log=str(inc.log_path))
                self.note("restart", self.start_worker(inc.slot))
            committed = await admin.list_consumer_group_offsets(group, partitions=tps)
            outputs = await watch.end_offsets()
            await watch.poll(100)
            if outputs != last_outputs:
                last_outputs, self.outputs_changed_at = outputs, time.monotonic()
            live = self.fleet.live()
            ready = await asyncio.gather(*(asyncio.to_thread(i.ready_now) for i in live))
            e = watch.events
            sample = {"t_s": round(self.clock(), 2), "produced": self.produced,
                      "checkpointed": sum(max(o.offset, 0) for o in committed.values()),
                      "output_messages": outputs, "visits": e.distinct("visit.closed"),
                      "patrols": e.distinct("patrol.completed"), "days_closed": e.distinct("hotspot.day_closed"),
                      "live": len(live), "ready": sum(ready), "kills": self.kills}
            self.samples.append(sample)
            if sample["t_s"] - last_said >= s.progress_every_s:
                last_said = sample["t_s"]
                self.say(f"[{sample['t_s']:7.1f} s] records {self.produced:,}/{len(self.day.records):,}, "
                         f"checkpointed {sample['checkpointed']:,}, visits {sample['visits']:,}, "
                         f"patrols {sample['patrols']:,}, days closed {sample['days_closed']}, "
                         f"kills {self.kills}, workers {sum(ready)}/{len(live)} ready")
            await asyncio.sleep(max(0.0, s.sample_s - (time.monotonic() - started)))

    async def settle(self) -> dict:
        """Wait for every hot spot-day closed, every worker ready and the outputs still; or give up."""
        s = self.settings
        started = time.monotonic()
        want_days = len(self.expected.hotspot_days)
        while True:
            await asyncio.sleep(s.sample_s)
            last = self.samples[-1]
            quiet = time.monotonic() - self.outputs_changed_at
            done = last["days_closed"] >= want_days and last["ready"] == last["live"]
            if done and quiet >= s.quiet_s:
                return {"settled": True, "seconds": round(time.monotonic() - started, 1)}
            # A fleet that stalled during the flow gets the whole give-up time after it to catch up.
            stalled = time.monotonic() - max(self.outputs_changed_at, started)
            if stalled >= s.give_up_quiet_s or time.monotonic() - started > s.settle_timeout_s:
                self.say(f"not settled: {last['days_closed']} of {want_days} hot spot-days closed, "
                         f"{last['ready']}/{last['live']} workers ready, outputs still for {quiet:.0f} s")
                return {"settled": False, "seconds": round(time.monotonic() - started, 1),
                        "days_closed": last["days_closed"], "ready": last["ready"], "live": last["live"]}


def run_campaign(settings: CampaignSettings, out: Path | None, workdir: Path | None = None,
                 say: Callable[[str], None] = print) -> dict:
    """The whole campaign; returns the report (also written to ``<out>.json``, drawn to ``<out>.png``)."""
    workdir = workdir or Path(tempfile.mkdtemp(prefix="chaos-campaign-"))
    workdir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    say(f"simulating a day of at least {settings.fixes:,} fixes (work in {workdir})")
    day = simulate_campaign_day(settings.fixes, settings.partitions, settings.seed, workdir)
    expected = replay_campaign_day(day, workdir)
    say(f"{day.fixes:,} fixes of {day.officers} officers; the replay has {len(expected.visits):,} visits, "
        f"{len(expected.patrols):,} patrols, {len(expected.hotspot_days)} hot spot-days")
    tag = uuid.uuid4().hex[:8]
    prefix, app_id = f"chaos{tag}.", f"chaos-{tag}"
    with EmbeddedBroker(log_path=workdir / "broker.log") as broker:
        asyncio.run(ensure_topics(WorkerSettings(brokers=broker.bootstrap, topic_prefix=prefix, app_id=app_id,
                                                 partitions=settings.partitions)))
        origin = time.monotonic()
        fleet = Fleet(broker.bootstrap, prefix, app_id, day.hotspots_path, day.schedule_path, settings.partitions,
                      workdir, lambda: time.monotonic() - origin)
        campaign = Campaign(settings, day, expected, broker.bootstrap, prefix, app_id, fleet, fleet.clock, say)
        try:
            result = asyncio.run(campaign.run())
        finally:
            fleet.kill_all()
    report = make_report(settings, day, campaign, result, time.monotonic() - began, workdir)
    if out is not None:
        from tests.chaos.campaign_chart import draw_campaign

        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_suffix(".json").write_text(json.dumps(report, indent=1) + "\n")
        draw_campaign(report, out.with_suffix(".png"))
    return report


def make_report(settings: CampaignSettings, day: CampaignDay, campaign: Campaign, result: dict, seconds: float,
                workdir: Path) -> dict:
    events = campaign.events
    at = {e["kind"]: e["t_s"] for e in reversed(events)}  # the first of each kind
    workers = [i.summary() for i in campaign.fleet.incarnations]
    restarted = [w for w in workers if int(w["worker"].split(".")[1]) > 0]
    ready_after = [w["ready_after_s"] for w in restarted if w["ready_after_s"] is not None]
    comparison = result["comparison"]
    n_differences = differences(comparison)
    return {
        "settings": asdict(settings),
        "passed": n_differences == 0 and campaign.kills >= settings.min_kills,
        "differences": n_differences,
        "kills": campaign.kills,
        "restarts": sum(1 for e in events if e["kind"] == "restart"),
        "unexpected_exits": sum(1 for e in events if e["kind"] == "exited"),
        "kills_of_workers_not_yet_ready": sum(1 for e in events if e["kind"] == "kill" and not e["was_ready"]),
        "restart_ready_after_s": {"median": statistics.median(ready_after) if ready_after else None,
                                  "max": max(ready_after, default=None), "count": len(ready_after)},
        "scale_up_s": at.get("scale_up"), "scale_down_s": at.get("scale_down"),
        "flow_start_s": at.get("flow_start"), "flow_end_s": at.get("flow_end"),
        "flow_s": round(at["flow_end"] - at["flow_start"], 1),
        "fixes": day.fixes, "records": len(day.records), "officers": day.officers,
        "offered_records_per_s": round(settings.flow_rate(len(day.records)), 1),
        "settle": result["settle"],
        "duration_s": round(seconds, 1),
        "input": result["input"],
        "final_exit_codes": result["exit_codes"],
        "restored_partitions": sum(w["restored_partitions"] for w in workers),
        **comparison,
        "workers": workers,
        "events": events,
        "samples": campaign.samples,
        "workdir": str(workdir),
    }


def summary_lines(report: dict) -> list[str]:
    c = report
    held = ", ".join(f"{k} {c[k]['got']:,}/{c[k]['expected']:,} (lost {c[k]['lost']}, extra {c[k]['extra']}, "
                     f"different {c[k]['different']})" for k in ("visits", "patrols", "hotspot_days", "dosage_met",
                                                                 "late_dead_letters"))
    return [(f"{'PASSED' if c['passed'] else 'FAILED'}: {c['kills']} kills (min {c['settings']['min_kills']}), "
             f"{c['restarts']} restarts, {c['unexpected_exits']} unexpected exits, scale up at {c['scale_up_s']} s, "
             f"down at {c['scale_down_s']} s; {c['fixes']:,} fixes over {c['flow_s']} s, {c['duration_s']} s in all"),
            f"duplicates (messages - distinct ids): {c['duplicates']}; dead letters {c['dead_letter_duplicates']}",
            f"same id, different body: {c['same_id_different_body']}",
            held,
            f"partitions restored from checkpoints: {c['restored_partitions']}; settled: {c['settle']}"]


def main(argv: list[str] | None = None) -> int:
    d = CampaignSettings()
    p = argparse.ArgumentParser(prog="python -m tests.chaos.campaign", description=__doc__.split("\n\n")[0])
    p.add_argument("--fixes", type=int, default=d.fixes, help="at least this many fixes (default %(default)s)")
    p.add_argument("--workers", type=int, default=d.workers)
    p.add_argument("--partitions", type=int, default=d.partitions)
    p.add_argument("--min-kill-s", type=float, default=d.min_kill_s)
    p.add_argument("--max-kill-s", type=float, default=d.max_kill_s)
    p.add_argument("--min-kills", type=int, default=d.min_kills, help="fewer kills fail the run")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--rate", type=float, help="records/s (default: a flow of (min kills + 0.5) x max kill s)")
    p.add_argument("--quiet-s", type=float, default=d.quiet_s)
    p.add_argument("--out", type=Path, default=Path("benchmarks/results/chaos-campaign"),
                   help="writes <out>.json and <out>.png")
    p.add_argument("--workdir", type=Path, help="logs and files (default: a new temporary directory)")
    args = p.parse_args(argv)
    settings = CampaignSettings(fixes=args.fixes, workers=args.workers, partitions=args.partitions,
                                min_kill_s=args.min_kill_s, max_kill_s=args.max_kill_s, min_kills=args.min_kills,
                                seed=args.seed, rate=args.rate, quiet_s=args.quiet_s)
    report = run_campaign(settings, args.out, args.workdir, say=lambda line: print(line, flush=True))
    for line in summary_lines(report):
        print(line)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
