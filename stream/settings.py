"""One frozen settings object for a worker: CLI flags over environment over TOML.

Environment variables are ``HOTSPOT_DWELL_<FIELD>`` (``HOTSPOT_DWELL_BROKERS``,
``HOTSPOT_DWELL_MAX_GAP_S``, ...); a TOML file given with ``--config`` may
set any field, rules included, at top level.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from stream.engine import RuleSettings

ENV_PREFIX = "HOTSPOT_DWELL_"

TOPICS = ("location-fixes", "officer-checkpoints", "visit-batches", "presence-checkpoints", "dwell-intervals",
          "patrol-events", "location-fixes-dead-letter")
# Topics that keep only the latest value per key.
COMPACTED_TOPICS = ("officer-checkpoints", "presence-checkpoints")
# Between the stages of one app: named after the app id too (as Kafka Streams and
# Faust name changelogs), so two apps on the same input never share them.
INTERNAL_TOPICS = ("officer-checkpoints", "visit-batches", "presence-checkpoints")


@dataclass(frozen=True)
class WorkerSettings:
    """Everything a worker needs; times in seconds, sizes in fixes or bytes."""

    brokers: str = "127.0.0.1:9092"
    hotspots: str = ""
    schedule: str | None = None
    crs: str = "EPSG:27700"
    app_id: str = "hotspot-dwell"
    topic_prefix: str = ""
    partitions: int = 4  # for topics the worker creates
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"  # 0.0.0.0 in a container, so Prometheus can reach it
    state_dir: str = "hotspot-dwell-data"
    # Stage 1: records per fetch and how long a fetch may wait (Faust's own
    # consumer waits 1.5 s, which would put a second on every fix's latency),
    # and how long its producer holds a batch before sending it. Stage 1 hands
    # over whole batches (stream/batched_sender.py) that grow while the
    # previous request is in flight, so lingering would only add delay.
    ingest_max_records: int = 20_000
    fetch_max_wait_ms: int = 5
    producer_linger_ms: int = 0
    # Stage 2 and its outputs are not latency-critical: stage 1 feeds it at
    # most this often per input partition (one message per stage-2 partition
    # with everything since), and it waits longer for a fetch. Every message
    # costs the broker, whatever it holds.
    stage2_feed_interval_s: float = 0.05
    stage2_fetch_max_wait_ms: int = 50
    checkpoint_interval_s: float = 2.0
    metrics_refresh_s: float = 2.0  # how often the per-hot-spot series are rebuilt for scrapes
    # Above this many owned hot spots, per-hot-spot series only for those scheduled or active today.
    metrics_every_hotspot_up_to: int = 5_000
    # Event-time bounds relative to the wall clock; None turns the check off
    # (simulated days run in compressed event time).
    max_future_s: float | None = 300.0
    max_age_s: float | None = 7 * 86_400.0
    # A policing day is closed when the partition's event time passes its
    # end by this much: open visits end and reorder buffers are released.
    day_close_grace_s: float = 900.0
    # A partition that has received nothing for this long (wall clock) moves its event time on with the
    # wall clock, so silent officers' visits and policing days close on it too: with live data to the
    # wall clock less the reorder window, with historical data (time checks off) from its newest fix at
    # the wall clock's pace.
    idle_advance_s: float = 30.0
    # How every Kafka client of the worker connects (stream/kafka_security.py): PLAINTEXT, SSL,
    # SASL_PLAINTEXT or SASL_SSL. TLS verifies the brokers against ssl_cafile (the system's CAs when
    # unset) and presents ssl_certfile/ssl_keyfile to brokers that ask for a client certificate.
    security_protocol: str = "PLAINTEXT"
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True
    sasl_mechanism: str = "SCRAM-SHA-512"  # or SCRAM-SHA-256, PLAIN (PLAIN only over SSL)
    sasl_username: str | None = None
    # From the environment, the TOML file or sasl_password_file; never a flag (flags show in ps).
    sasl_password: str | None = field(default=None, repr=False)
    sasl_password_file: str | None = None
    # A file holding a secret key (>= 32 bytes): officer ids in the outputs become keyed hashes
    # (stream/pseudonyms.py); pseudonym_key_version names the key, so a rotated key is told apart.
    pseudonym_key_file: str | None = None
    pseudonym_key_version: int = 1
    rules: RuleSettings = field(default_factory=RuleSettings)

    @property
    def live_event_time(self) -> bool:
        """Event time is real time (the time checks are on); off, fixes are history played at any speed."""
        return self.max_future_s is not None

    def topic(self, name: str) -> str:
        if name not in TOPICS:
            raise ValueError(f"unknown topic {name!r}")
        if name in INTERNAL_TOPICS:
            return f"{self.topic_prefix}{self.app_id}-{name}"
        return f"{self.topic_prefix}{name}"

    def with_overrides(self, **values: Any) -> "WorkerSettings":
        rule_names = {f.name for f in fields(RuleSettings)}
        rules = {k: v for k, v in values.items() if k in rule_names}
        top = {k: v for k, v in values.items() if k not in rule_names}
        unknown = set(top) - {f.name for f in fields(self)}
        if unknown:
            raise ValueError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return dataclasses.replace(self, rules=dataclasses.replace(self.rules, **rules), **top)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _coerce(name: str, text: str, like: Any) -> Any:
    if isinstance(like, bool):  # bool("false") is True
        if text.strip().lower() in _TRUE + _FALSE:
            return text.strip().lower() in _TRUE
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={text!r} is not one of {'/'.join(_TRUE + _FALSE)}")
    target = type(like) if like is not None else str
    if name in ("metrics_port",):
        target = int
    if name in ("max_future_s", "max_age_s", "schedule"):
        if text.strip().lower() in ("", "none", "off"):
            return None
        target = float if name != "schedule" else str
    try:
        return target(text)
    except ValueError:
        raise ValueError(f"{ENV_PREFIX}{name.upper()}={text!r} is not a {target.__name__}") from None


def load_settings(cli: dict[str, Any] | None = None, config: str | Path | None = None,
                  environ: dict[str, str] | None = None) -> WorkerSettings:
    """Settings from a TOML file, then ``HOTSPOT_DWELL_*``, then CLI values (flags not given are left out)."""
    settings = WorkerSettings()
    if config:
        with open(config, "rb") as fh:
            settings = settings.with_overrides(**tomllib.load(fh))
    env = os.environ if environ is None else environ
    defaults = {f.name: getattr(settings, f.name) for f in fields(settings) if f.name != "rules"}
    defaults.update({f.name: getattr(settings.rules, f.name) for f in fields(RuleSettings)})
    from_env = {name: _coerce(name, env[ENV_PREFIX + name.upper()], like)
                for name, like in defaults.items() if ENV_PREFIX + name.upper() in env}
    settings = settings.with_overrides(**from_env)
    return settings.with_overrides(**(cli or {}))
