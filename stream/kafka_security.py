"""How the worker's Kafka clients authenticate: TLS (with a client certificate when given) and SASL.

One place turns the settings into what each client takes, so both stages'
consumers and producers and the admin client all connect the same way:
:func:`aiokafka_security` gives the keyword arguments of aiokafka's clients
(``security_protocol``, ``ssl_context``, ``sasl_*``).

The TLS context is built once with aiokafka's own helper: it verifies the
brokers' certificates against ``ssl_cafile`` (the system's CAs when unset)
and their host names, and presents the client certificate when one is set.
"""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

from stream.settings import WorkerSettings

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class SecurityError(ValueError):
    """The security settings are incomplete or contradictory."""


def uses_tls(settings: WorkerSettings) -> bool:
    return settings.security_protocol in ("SSL", "SASL_SSL")


def uses_sasl(settings: WorkerSettings) -> bool:
    return settings.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")


def check_security(settings: WorkerSettings) -> None:
    """Raise :class:`SecurityError` naming what is wrong, before any client tries to connect."""
    s = settings
    if s.security_protocol not in PROTOCOLS:
        raise SecurityError(f"security_protocol {s.security_protocol!r} is not one of {', '.join(PROTOCOLS)}")
    tls_files = {"ssl_cafile": s.ssl_cafile, "ssl_certfile": s.ssl_certfile, "ssl_keyfile": s.ssl_keyfile}
    given = [name for name, path in tls_files.items() if path]
    if given and not uses_tls(s):
        raise SecurityError(f"{', '.join(given)} given but security_protocol is {s.security_protocol}: "
                            "use SSL or SASL_SSL")
    if bool(s.ssl_certfile) != bool(s.ssl_keyfile):
        raise SecurityError("a client certificate needs both ssl_certfile and ssl_keyfile")
    for name in given:
        if not Path(tls_files[name]).is_file():
            raise SecurityError(f"{name} {tls_files[name]!r} is not a readable file")
    if uses_sasl(s):
        if s.sasl_mechanism not in SASL_MECHANISMS:
            raise SecurityError(f"sasl_mechanism {s.sasl_mechanism!r} is not one of {', '.join(SASL_MECHANISMS)}")
        if s.sasl_mechanism == "PLAIN" and not uses_tls(s):
            # PLAIN sends the password as it is: only inside TLS.
            raise SecurityError("SASL PLAIN sends the password in clear: use security_protocol SASL_SSL")
        if not s.sasl_username:
            raise SecurityError(f"security_protocol {s.security_protocol} needs sasl_username")
        if sasl_password(s) is None:
            raise SecurityError("SASL needs a password: HOTSPOT_DWELL_SASL_PASSWORD, sasl_password in the "
                                "--config file, or sasl_password_file")
    elif s.sasl_username or s.sasl_password or s.sasl_password_file:
        raise SecurityError(f"SASL credentials given but security_protocol is {s.security_protocol}: "
                            "use SASL_PLAINTEXT or SASL_SSL")


def sasl_password(settings: WorkerSettings) -> str | None:
    """The password itself, or the first line of ``sasl_password_file``."""
    if settings.sasl_password is not None:
        return settings.sasl_password
    if settings.sasl_password_file:
        try:
            text = Path(settings.sasl_password_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise SecurityError(f"sasl_password_file: {exc.strerror}: {settings.sasl_password_file}") from None
        return text.splitlines()[0] if text else ""
    return None


def ssl_context(settings: WorkerSettings) -> ssl.SSLContext | None:
    """The TLS context every client shares, or None without TLS."""
    if not uses_tls(settings):
        return None
    from aiokafka.helpers import create_ssl_context

    try:
        context = create_ssl_context(cafile=settings.ssl_cafile, certfile=settings.ssl_certfile,
                                     keyfile=settings.ssl_keyfile,
                                     password=os.environ.get("HOTSPOT_DWELL_SSL_KEY_PASSWORD"))
    except (ssl.SSLError, OSError) as exc:
        raise SecurityError(f"cannot load the TLS files ({exc})") from None
    context.check_hostname = settings.ssl_check_hostname
    return context


def aiokafka_security(settings: WorkerSettings, context: ssl.SSLContext | None = None) -> dict[str, Any]:
    """Keyword arguments for aiokafka's consumer, producer and admin client."""
    check_security(settings)
    kwargs: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if uses_tls(settings):
        kwargs["ssl_context"] = context or ssl_context(settings)
    if uses_sasl(settings):
        kwargs.update(sasl_mechanism=settings.sasl_mechanism, sasl_plain_username=settings.sasl_username,
                      sasl_plain_password=sasl_password(settings))
    return kwargs
