"""The embedded Tansu broker: starts on a free port, speaks Kafka, stops cleanly."""

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from stream.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration


def test_produce_and_consume_through_the_embedded_broker():
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    async def roundtrip(bootstrap):
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for i in range(10):
                await producer.send_and_wait("probe", key=b"k", value=str(i).encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer("probe", bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                    group_id="probe-group")
        await consumer.start()
        got = []
        try:
            while len(got) < 10:
                batch = await consumer.getmany(timeout_ms=5000)
                assert batch, "no messages within 5 s"
                got += [m.value for msgs in batch.values() for m in msgs]
        finally:
            await consumer.stop()
        return got

    with EmbeddedBroker() as broker:
        assert broker.port != 9092 or free_port() != 9092
        assert asyncio.run(roundtrip(broker.bootstrap)) == [str(i).encode() for i in range(10)]
        pid = broker.pid
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # stopped and reaped


def test_broker_command_prints_address_and_stops_on_sigterm():
    exe = [sys.executable, "-m", "stream.cli", "broker"]
    proc = subprocess.Popen(exe, stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
    try:
        first = proc.stdout.readline()
        assert first.startswith("bootstrap servers: 127.0.0.1:")
        port = int(first.rsplit(":", 1)[1])
        import socket

        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=1)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_broker_dies_with_a_parent_killed_by_sigkill():
    code = ("import sys; from stream.broker import EmbeddedBroker; b = EmbeddedBroker().start(); "
            "print(b.pid, flush=True); sys.stdin.read()")
    parent = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parent.parent)
    broker_pid = int(parent.stdout.readline())
    os.kill(broker_pid, 0)  # running
    parent.kill()
    parent.wait()
    import time

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(broker_pid, 0)
        except ProcessLookupError:
            break
        try:  # reap if it became our zombie (it is not our child; init reaps it)
            os.waitpid(broker_pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.05)
    else:
        raise AssertionError("the broker outlived its parent")
