"""TLS on either leg (in the spirit of IEC 62351-3): a client speaking RFC 1006 inside TLS
through the relay to the plain libiec61850 server; mutual TLS; TLS toward the upstream,
and an upstream whose certificate does not verify (the client is refused, RF 0x82)."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import trustme
from tests.relay.conftest import MmsServer, run_mms_client
from tests.relay.helpers import run

import sessionlayer
from sessionlayer import ConnectRefused, Options, RefuseReason, SessionConfig
from sessionlayer.relay import start
from sessionlayer.spdu import decode_tsdu

PLAIN = Options(keepalive_interval=None, idle_timeout=None, resume=False)
FLOAT_42_5 = bytes.fromhex("08422a0000")


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def relay_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="module")
def client_tls(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(context)
    return context


def frame(vectors: list[dict[str, Any]], name: str) -> bytes:
    (hit,) = [v for v in vectors if v["name"].startswith(name)]
    return bytes.fromhex(hit["session"])


def user_data(vectors: list[dict[str, Any]], name: str) -> bytes:
    data = getattr(decode_tsdu(frame(vectors, name))[-1], "user_data", None)
    assert data is not None
    return bytes(data)


async def mms_dialogue(port: int, vectors: list[dict[str, Any]], tls: ssl.SSLContext,
                       cert_check: Any = None) -> None:  # fmt: skip
    """The captured libiec61850 client's CN, read, conclude and release, inside TLS."""
    session = await sessionlayer.connect(
        "127.0.0.1", port, tls=tls, user_data=user_data(vectors, "CN SPDU"),
        config=SessionConfig.libiec61850_profile(), options=PLAIN,
        calling_tsel=b"\x00\x01", called_tsel=b"\x00\x01",
    )  # fmt: skip
    assert session.peer_data and session.peer_data[:1] == b"\x31"  # the AARE's PPDU
    if cert_check is not None:
        cert_check()
    await session.send(frame(vectors, "GT+DT carrying MMS read request")[4:])
    assert FLOAT_42_5 in await asyncio.wait_for(session.receive(), 10)
    await session.send(frame(vectors, "GT+DT MMS conclude-request")[4:])
    assert (await asyncio.wait_for(session.receive(), 10)).endswith(bytes.fromhex("8c00"))
    dn = await session.release(user_data=user_data(vectors, "FN SPDU"))
    assert dn is not None and dn[:1] == b"\x61"  # ACSE RLRE


def test_a_tls_client_through_the_relay_to_the_plain_libiec61850_server(
    mms_server: MmsServer, libiec61850: list[dict[str, Any]], relay_tls: ssl.SSLContext,
    client_tls: ssl.SSLContext,
) -> None:  # fmt: skip
    async def main() -> None:
        async with await start(("127.0.0.1", mms_server.port), tls=relay_tls) as relay:
            def both_legs() -> None:
                (info,) = [s for s in relay.sessions if s.phase == "open"]
                assert info.client.tls and info.upstream is not None
                assert not info.upstream.tls  # the device behind the relay speaks plain

            await mms_dialogue(relay.port, libiec61850, client_tls, both_legs)
            assert relay.stats.relayed == 1

    run(main())


@pytest.fixture(scope="module")
def client_cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("client.example")


def test_mutual_tls_requires_a_client_certificate(
    mms_server: MmsServer, libiec61850: list[dict[str, Any]], ca: trustme.CA,
    client_tls: ssl.SSLContext, client_cert: trustme.LeafCert,
) -> None:  # fmt: skip
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    ca.configure_trust(server)
    server.verify_mode = ssl.CERT_REQUIRED
    with_cert = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(with_cert)
    client_cert.configure_cert(with_cert)

    async def main() -> None:
        async with await start(("127.0.0.1", mms_server.port), tls=server) as relay:
            with pytest.raises((ssl.SSLError, ConnectionError, sessionlayer.SessionAborted)):
                await mms_dialogue(relay.port, libiec61850, client_tls)
            assert relay.stats.relayed == 0  # nothing reached the upstream
            await mms_dialogue(relay.port, libiec61850, with_cert)
            assert relay.stats.relayed == 1

    run(main())


@pytest.fixture
def tls_upstream(relay_tls: ssl.SSLContext) -> Iterator[Any]:
    """A sessionlayer echo server speaking plain X.225 inside TLS."""

    async def echo(session: sessionlayer.Session) -> None:
        async for data in session:
            await session.send(data[::-1])

    def make() -> Any:
        return sessionlayer.serve(echo, tls=relay_tls, config=SessionConfig.kernel_duplex(),
                                  accept_data=lambda request: b"tls upstream",
                                  options=PLAIN)  # fmt: skip

    yield make


def test_tls_toward_the_upstream(tls_upstream: Any, client_tls: ssl.SSLContext) -> None:
    async def main() -> None:
        async with await tls_upstream() as upstream:
            async with await start(("127.0.0.1", upstream.port),
                                   upstream_tls=client_tls) as relay:  # fmt: skip
                async with await sessionlayer.connect(
                    "127.0.0.1", relay.port, user_data=b"plain client",
                    config=SessionConfig.kernel_duplex(), options=PLAIN,
                ) as session:  # fmt: skip
                    assert session.peer_data == b"tls upstream"
                    (info,) = relay.sessions
                    assert info.upstream is not None and info.upstream.tls
                    assert not info.client.tls
                    await session.send(b"through tls")
                    assert await asyncio.wait_for(session.receive(), 10) == b"slt hguorht"

    run(main())


def test_an_upstream_certificate_that_does_not_verify_refuses_the_client(
    tls_upstream: Any,
) -> None:
    other_ca = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    trustme.CA().configure_trust(other_ca)

    async def main() -> None:
        async with await tls_upstream() as upstream:
            async with await start(("127.0.0.1", upstream.port),
                                   upstream_tls=other_ca) as relay:  # fmt: skip
                with pytest.raises(ConnectRefused) as info:
                    await sessionlayer.connect("127.0.0.1", relay.port, user_data=b"x",
                                               config=SessionConfig.kernel_duplex(),
                                               options=PLAIN)  # fmt: skip
                assert info.value.reason == RefuseReason.USER_NOT_ATTACHED

    run(main())


def test_upstream_ca_is_the_only_ca_trusted(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--upstream-ca FILE`` trusts that file's CAs only: it was loaded beside the system's
    CAs, so an upstream with a certificate of any public CA verified too."""
    import argparse

    from sessionlayer.commands.tls import upstream_context

    pinned, system = trustme.CA(), trustme.CA()
    pinned.cert_pem.write_to_path(str(tmp_path / "pinned.pem"))
    system.cert_pem.write_to_path(str(tmp_path / "system.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "system.pem"))  # (the "system" store)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    ns = argparse.Namespace(upstream_tls=True, upstream_ca=str(tmp_path / "pinned.pem"),
                            upstream_name=None, upstream_cert=None, upstream_key=None)
    context = upstream_context(ns)
    assert context is not None and context.cert_store_stats()["x509_ca"] == 1
    (only,) = context.get_ca_certs()
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    without = upstream_context(argparse.Namespace(upstream_tls=True, upstream_ca=None,
                                                  upstream_name=None, upstream_cert=None,
                                                  upstream_key=None))  # fmt: skip
    assert without is not None and only not in without.get_ca_certs()  # (the system's only)


def cli_namespace(**given: Any) -> Any:
    """The options of ``sessionlayer relay`` that make its TLS contexts (commands/tls.py)."""
    import argparse

    names = ("tls_cert", "tls_key", "client_ca", "upstream_tls", "upstream_ca", "upstream_name",
             "upstream_cert", "upstream_key")  # fmt: skip
    return argparse.Namespace(**{name: given.get(name) for name in names})


def test_libiec61850s_tls_client_through_the_relay(mms_server: MmsServer, ca: trustme.CA,
                                                   tmp_path: Any) -> None:  # fmt: skip
    """The context ``relay --tls-cert --tls-key`` (and ``serve``) makes takes libiec61850's
    TLS client (mbedtls): before, the TLS 1.3 session ticket sent after the handshake was a
    failed read there (-0x7B00) and the connect failed."""
    from sessionlayer.commands.tls import server_context

    leaf = ca.issue_cert("127.0.0.1")
    leaf.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    leaf.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    (tmp_path / "key.pem").chmod(0o600)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    context = server_context(cli_namespace(tls_cert=str(tmp_path / "cert.pem"),
                                           tls_key=str(tmp_path / "key.pem")))  # fmt: skip
    assert context is not None and context.num_tickets == 0

    async def main() -> None:
        async with await start(("127.0.0.1", mms_server.port), tls=context) as relay:
            result = await asyncio.to_thread(run_mms_client, relay.port, "read,release",
                                             tls_ca=str(tmp_path / "ca.pem"))  # fmt: skip
            assert result.returncode == 0, result
            assert result.get("read") == 42.5
            assert relay.stats.relayed == 1

    run(main())


def test_a_client_certificate_toward_an_upstream_that_asks_for_one(
    ca: trustme.CA, client_cert: trustme.LeafCert, tmp_path: Any,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """``--upstream-cert`` / ``--upstream-key``: an IEC 62351-3 upstream asks for the
    relay's certificate (mutual TLS); without them the client is refused."""
    from sessionlayer.commands.tls import upstream_context

    caplog.set_level(logging.INFO, "sessionlayer")
    upstream_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(upstream_side)
    ca.configure_trust(upstream_side)
    upstream_side.verify_mode = ssl.CERT_REQUIRED
    client_cert.cert_chain_pems[0].write_to_path(str(tmp_path / "relay.pem"))
    client_cert.private_key_pem.write_to_path(str(tmp_path / "relay.key"))
    (tmp_path / "relay.key").chmod(0o600)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    common = {"upstream_tls": True, "upstream_ca": str(tmp_path / "ca.pem")}
    with_cert = upstream_context(cli_namespace(**common, upstream_cert=str(tmp_path / "relay.pem"),
                                               upstream_key=str(tmp_path / "relay.key")))
    without = upstream_context(cli_namespace(**common))

    async def echo(session: sessionlayer.Session) -> None:
        async for data in session:
            await session.send(data)

    async def main() -> None:
        async with await sessionlayer.serve(echo, tls=upstream_side, options=PLAIN,
                                            config=SessionConfig.kernel_duplex()) as upstream:
            for context, works in ((without, False), (with_cert, True)):
                async with await start(("127.0.0.1", upstream.port),
                                       upstream_tls=context) as relay:  # fmt: skip
                    connecting = sessionlayer.connect("127.0.0.1", relay.port, options=PLAIN,
                                                      config=SessionConfig.kernel_duplex())
                    if not works:
                        with pytest.raises(ConnectRefused):
                            await connecting
                        # (the relay says why: before, "the upstream closed the connection")
                        assert "ask for a client certificate" in caplog.text, caplog.text
                        continue
                    async with await connecting as session:
                        await session.send(b"mutual")
                        assert await asyncio.wait_for(session.receive(), 10) == b"mutual"

    run(main())
