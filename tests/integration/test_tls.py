"""The worker over TLS with a client certificate, through a TLS-terminating proxy in front of the broker.

Tansu's own TLS cannot be switched on (its ``--cert`` and ``--key`` flags
reject each other in this build), so Debian's stunnel4 terminates TLS in
front of it, asking every client for a certificate signed by the test CA;
the broker advertises the proxy's port, so clients come back through it.
The same run checks the privacy settings: officer ids pseudonymised in the
outputs, none in the log at the default level or in the metrics.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError

from stream.broker import EmbeddedBroker, _accepts, die_with_parent, free_port, stop_process
from stream.pseudonyms import Pseudonymiser
from stream.replay import replay
from tests.integration.conftest import WorkerProcess
from tests.integration.test_streaming import (HOTSPOTS, PARTITIONS, collect, day_records, replay_visit_rows, visit_rows,
                                              write_jsonl)

pytestmark = pytest.mark.integration

trustme = pytest.importorskip("trustme")


def stunnel_binary() -> str:
    found = shutil.which("stunnel4") or shutil.which("stunnel")
    if found is None:
        if os.environ.get("HOTSPOT_DWELL_CI"):
            pytest.fail("stunnel4 is not installed: .ci/run installs it (apt-get install stunnel4)")
        pytest.skip("stunnel4 is not installed (apt-get install stunnel4)")
    return found


class TlsKafka:
    """The embedded broker behind stunnel, which requires a client certificate from the test CA."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        ca = trustme.CA()
        self.ca = self._write(ca.cert_pem, "ca.pem")
        server = ca.issue_cert("127.0.0.1", "localhost")
        self.server_chain = self._write_chain(server, "server.pem")
        self.server_key = self._write(server.private_key_pem, "server.key")
        client = ca.issue_cert("hotspot-dwell-worker@example.police.uk")
        self.client_cert = self._write_chain(client, "client.pem")
        self.client_key = self._write(client.private_key_pem, "client.key")
        stranger = trustme.CA().issue_cert("someone-else@example.org")  # a certificate the proxy must not accept
        self.stranger_cert = self._write_chain(stranger, "stranger.pem")
        self.stranger_key = self._write(stranger.private_key_pem, "stranger.key")
        self.port = free_port()
        self.broker = EmbeddedBroker(advertised_port=self.port, log_path=workdir / "tansu.log")
        self.proxy: subprocess.Popen | None = None

    def _write(self, blob, name: str) -> str:
        path = self.dir / name
        blob.write_to_path(str(path))
        path.chmod(0o600)
        return str(path)

    def _write_chain(self, cert, name: str) -> str:
        path = self.dir / name
        path.write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
        return str(path)

    def start(self) -> "TlsKafka":
        self.broker.start()
        conf = self.dir / "stunnel.conf"
        conf.write_text(f"""foreground = yes
pid =
output = {self.dir / 'stunnel.log'}
[kafka]
accept = 127.0.0.1:{self.port}
connect = {self.broker.bootstrap}
cert = {self.server_chain}
key = {self.server_key}
CAfile = {self.ca}
requireCert = yes
verifyChain = yes
""")
        self.proxy = subprocess.Popen([stunnel_binary(), str(conf)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        deadline = time.monotonic() + 15
        while not _accepts("127.0.0.1", self.port):
            assert self.proxy.poll() is None, (self.dir / "stunnel.log").read_text(errors="replace")
            assert time.monotonic() < deadline, "stunnel did not listen within 15 s"
            time.sleep(0.05)
        return self

    def stop(self) -> None:
        stop_process(self.proxy, 10.0)
        self.broker.stop()

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client_kwargs(self, cert: bool = True) -> dict:
        context = ssl.create_default_context(cafile=self.ca)
        if cert:
            context.load_cert_chain(self.client_cert, self.client_key)
        return {"security_protocol": "SSL", "ssl_context": context}


@pytest.fixture(scope="module")
def tls_kafka(tmp_path_factory):
    kafka = TlsKafka(tmp_path_factory.mktemp("tls")).start()
    yield kafka
    kafka.stop()


def worker_args(kafka: TlsKafka, tmp_path: Path, name: str, *tls: str) -> list[str]:
    return ["--brokers", kafka.bootstrap, "--hotspots", str(HOTSPOTS), "--topic-prefix", f"{name}.",
            "--app-id", f"app-{name}", "--state-dir", str(tmp_path / f"state-{name}"), "--no-time-check",
            "--partitions", str(PARTITIONS), "--metrics-port", str(free_port()), "--security-protocol", "SSL",
            *tls]


def start(kafka: TlsKafka, tmp_path: Path, name: str, *tls: str, env: dict | None = None) -> WorkerProcess:
    args = worker_args(kafka, tmp_path, name, *tls)
    return WorkerProcess(args, tmp_path / f"{name}.log", int(args[args.index("--metrics-port") + 1]), env)


def test_worker_over_tls_with_a_client_certificate_pseudonymises_and_logs_no_officer_id(tls_kafka, tmp_path):
    key_file = tmp_path / "pseudonym.key"
    key_file.write_bytes(os.urandom(32))
    key_file.chmod(0o600)
    records = day_records(seed=29)
    real_ids = {k.decode() for k, _ in records if k.startswith(b"officer-")}
    assert real_ids
    # The default log level (no --loglevel): what a force runs.
    worker = start(tls_kafka, tmp_path, "tls", "--ssl-cafile", tls_kafka.ca, "--ssl-certfile", tls_kafka.client_cert,
                   "--ssl-keyfile", tls_kafka.client_key, "--pseudonym-key-file", str(key_file))
    worker.wait_ready(90)
    asyncio.run(_produce(tls_kafka, "tls.location-fixes", records))
    expected = replay(write_jsonl(records, tmp_path / "day.jsonl"), HOTSPOTS)
    pseudonym = Pseudonymiser(key_file.read_bytes()).one
    want = sorted((pseudonym(o), *rest) for o, *rest in replay_visit_rows(expected))
    assert want
    out = asyncio.run(collect(tls_kafka.bootstrap, "tls.", lambda o: len(visit_rows(o["dwell-intervals"])) >= len(want),
                              timeout_s=120, consumer_kwargs=tls_kafka.client_kwargs()))
    assert visit_rows(out["dwell-intervals"]) == want
    with urllib.request.urlopen(f"http://127.0.0.1:{worker.metrics_port}/metrics", timeout=10) as r:
        metrics = r.read().decode()
    assert "hotspot_dwell_ingest_records_total" in metrics
    # The outputs (the dead-letter topic is a copy of bad input, kept as briefly as the input).
    outputs = out["dwell-intervals"] + out["patrol-events"]
    everything = b"".join(m.value + (m.key or b"") + b"".join(v for _, v in m.headers) for m in outputs)
    assert worker.stop() == 0
    log = worker.log()
    for officer in real_ids:
        assert officer not in metrics
        assert officer not in log, officer
        assert officer.encode() not in everything  # outputs carry pseudonyms only


async def _produce(kafka: TlsKafka, topic: str, records) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, linger_ms=5, **kafka.client_kwargs())
    await producer.start()
    try:
        await asyncio.gather(*[await producer.send(topic, key=k, value=v) for k, v in records])
    finally:
        await producer.stop()


def test_worker_without_the_client_certificate_is_refused(tls_kafka, tmp_path):
    # The right CA, no client certificate: the proxy ends the handshake and the worker says why it stops.
    worker = start(tls_kafka, tmp_path, "nocert", "--ssl-cafile", tls_kafka.ca)
    assert worker.proc.wait(timeout=120) != 0
    assert "cannot reach Kafka" in worker.log(), worker.log()[-2000:]
    # A certificate from another CA is refused the same way.
    stranger = start(tls_kafka, tmp_path, "stranger", "--ssl-cafile", tls_kafka.ca, "--ssl-certfile",
                     tls_kafka.stranger_cert, "--ssl-keyfile", tls_kafka.stranger_key)
    assert stranger.proc.wait(timeout=120) != 0
    assert "cannot reach Kafka" in stranger.log(), stranger.log()[-2000:]


def test_plain_and_certificate_less_clients_cannot_use_the_broker(tls_kafka):
    async def connect(**kwargs) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=tls_kafka.bootstrap, request_timeout_ms=5000, **kwargs)
        try:
            await producer.start()
        finally:
            await producer.stop()

    with pytest.raises(KafkaConnectionError):
        asyncio.run(connect())  # no TLS at all
    with pytest.raises(KafkaConnectionError):
        asyncio.run(connect(**tls_kafka.client_kwargs(cert=False)))
    asyncio.run(connect(**tls_kafka.client_kwargs()))  # and the same client with its certificate gets in
