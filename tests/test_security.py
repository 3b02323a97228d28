"""Security settings reach every Kafka client; pseudonyms are keyed, stable and need a private key."""

from __future__ import annotations

import asyncio
import os
import ssl

import numpy as np
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from stream.kafka_security import SecurityError, aiokafka_security, check_security, sasl_password
from stream.pseudonyms import Pseudonymiser, PseudonymKeyError, read_key
from stream.settings import WorkerSettings, load_settings


def made_in_a_loop(client, **kwargs):
    async def make():
        return client(**kwargs)

    return asyncio.run(make())


def sasl(**values) -> WorkerSettings:
    return WorkerSettings().with_overrides(**values)


def test_plaintext_by_default():
    assert aiokafka_security(WorkerSettings()) == {"security_protocol": "PLAINTEXT"}


def test_sasl_settings_reach_the_aiokafka_clients():
    s = sasl(security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-256", sasl_username="dwell",
             sasl_password="s3cret")
    kwargs = aiokafka_security(s)
    assert kwargs == {"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "SCRAM-SHA-256",
                      "sasl_plain_username": "dwell", "sasl_plain_password": "s3cret"}
    # The clients take them as they are (constructing one does not connect).
    consumer = made_in_a_loop(AIOKafkaConsumer, bootstrap_servers="127.0.0.1:1", **kwargs)
    assert consumer._client._sasl_mechanism == "SCRAM-SHA-256"
    assert consumer._client._sasl_plain_username == "dwell"
    assert consumer._client._security_protocol == "SASL_PLAINTEXT"
    assert "s3cret" not in repr(s)


def test_sasl_ssl_with_ca_gives_one_context_to_every_client(tmp_path):
    import trustme

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    cert = ca.issue_cert("worker")
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "c.pem"))
    cert.private_key_pem.write_to_path(str(tmp_path / "c.key"))
    (tmp_path / "pw").write_text("from-a-file\n")
    s = sasl(security_protocol="SASL_SSL", sasl_mechanism="PLAIN", sasl_username="dwell",
             sasl_password_file=str(tmp_path / "pw"), ssl_cafile=str(tmp_path / "ca.pem"),
             ssl_certfile=str(tmp_path / "c.pem"), ssl_keyfile=str(tmp_path / "c.key"))
    kwargs = aiokafka_security(s)
    assert kwargs["sasl_plain_password"] == "from-a-file"
    context = kwargs["ssl_context"]
    assert isinstance(context, ssl.SSLContext) and context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    producer = made_in_a_loop(AIOKafkaProducer, bootstrap_servers="127.0.0.1:1", **kwargs)
    assert producer.client._ssl_context is context


@pytest.mark.parametrize("values, message", [
    ({"security_protocol": "TLS"}, "not one of"),
    ({"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": "p", "sasl_mechanism": "GSSAPI"},
     "sasl_mechanism"),
    ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN", "sasl_username": "u", "sasl_password": "p"},
     "in clear"),
    ({"security_protocol": "SASL_SSL", "sasl_password": "p"}, "sasl_username"),
    ({"security_protocol": "SASL_SSL", "sasl_username": "u"}, "needs a password"),
    ({"sasl_username": "u"}, "SASL credentials given"),
    ({"ssl_cafile": "/etc/hostname"}, "use SSL or SASL_SSL"),
    ({"security_protocol": "SSL", "ssl_certfile": "/etc/hostname"}, "both ssl_certfile and ssl_keyfile"),
    ({"security_protocol": "SSL", "ssl_cafile": "/no/such/ca.pem"}, "not a readable file"),
])
def test_incomplete_or_contradictory_settings_are_refused_with_the_reason(values, message):
    with pytest.raises(SecurityError, match=message):
        check_security(sasl(**values))


def test_security_settings_from_the_environment():
    s = load_settings(environ={"HOTSPOT_DWELL_SECURITY_PROTOCOL": "SASL_SSL", "HOTSPOT_DWELL_SASL_USERNAME": "u",
                               "HOTSPOT_DWELL_SASL_PASSWORD": "pw", "HOTSPOT_DWELL_SSL_CHECK_HOSTNAME": "false"})
    assert (s.security_protocol, s.sasl_username, sasl_password(s), s.ssl_check_hostname) == (
        "SASL_SSL", "u", "pw", False)
    with pytest.raises(ValueError, match="HOTSPOT_DWELL_SSL_CHECK_HOSTNAME"):
        load_settings(environ={"HOTSPOT_DWELL_SSL_CHECK_HOSTNAME": "maybe"})


def test_pseudonyms_are_keyed_stable_and_distinct():
    a = Pseudonymiser(b"k" * 32)
    assert a.one("officer-0001") == a.one("officer-0001")
    assert a.one("officer-0001") != a.one("officer-0002")
    assert a.one("officer-0001") != Pseudonymiser(b"j" * 32).one("officer-0001")  # the key matters
    assert Pseudonymiser(b"k" * 32, version=2).one("officer-0001").startswith("p2-")
    p = a.one("officer-0001")
    assert p.startswith("p1-") and len(p) == 3 + 32 and "officer" not in p
    many = a.many(np.array(["officer-0002", "officer-0001"], dtype=object))
    assert many.tolist() == [a.one("officer-0002"), p]
    assert "k" * 32 not in repr(a)


def test_pseudonym_key_file_must_be_private_and_long_enough(tmp_path):
    path = tmp_path / "key"
    path.write_bytes(os.urandom(32))
    path.chmod(0o644)
    with pytest.raises(PseudonymKeyError, match="chmod 600"):
        read_key(path)
    path.chmod(0o600)
    assert len(read_key(path)) == 32
    path.write_text(os.urandom(32).hex() + "\n")  # openssl rand -hex 32
    assert len(read_key(path)) == 32
    path.write_bytes(b"short")
    with pytest.raises(PseudonymKeyError, match="at least 32"):
        read_key(path)
    with pytest.raises(PseudonymKeyError, match="No such file"):
        read_key(tmp_path / "missing")
    with pytest.raises(PseudonymKeyError):
        Pseudonymiser(b"short")
