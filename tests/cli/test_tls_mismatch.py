"""TLS on one side only, or a CA that did not sign the server's certificate: one line
that says which (a TLS client of a plain server said "Connection reset by peer", and
``send`` and ``get`` named a wrong CA "CERTIFICATE_VERIFY_FAILED" where ``tunnel`` said
why it did not verify)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from .files_helpers import ENV, LIMIT, Serve, cli


async def _run(*argv: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *cli(*argv), env=ENV, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    async with asyncio.timeout(LIMIT):
        out, err = await proc.communicate()
    assert out == b"", out
    return proc.returncode or 0, err.decode()


def test_tls_on_one_side_only_or_a_wrong_ca_is_one_line_that_says_so(tmp_path: Path) -> None:
    import trustme

    ca, other = trustme.CA(), trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    pem = str(tmp_path / "server.pem")
    cert.private_key_and_cert_chain_pem.write_to_path(pem)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    other.cert_pem.write_to_path(str(tmp_path / "other.pem"))
    (tmp_path / "f.txt").write_text("hi")
    out = tmp_path / "out"
    out.mkdir()

    def commands(where: str, ca_file: str) -> list[list[str]]:
        tls = ["--tls", "--ca", str(tmp_path / ca_file)]
        return [["send", str(tmp_path / "f.txt"), where, "--state-dir", str(tmp_path), *tls],
                ["get", "f.txt", where, "-o", str(out), "--state-dir", str(tmp_path), *tls],
                ["tunnel", "--listen", "0", "--via", where, *tls]]

    async def main() -> None:
        plain = await Serve(tmp_path / "plain").start()
        secure = await Serve(tmp_path / "tls", "--tls-cert", pem, "--tls-key", pem).start()
        try:
            for argv in commands(f"127.0.0.1:{plain.port}", "ca.pem"):
                status, err = await _run(*argv)
                assert status == 1, err
                assert err.endswith(": the connection was closed in the TLS handshake (does"
                                    " the server use TLS?)\n"), err  # fmt: skip
                assert err.count("\n") == 1, err
            for argv in commands(f"127.0.0.1:{secure.port}", "other.pem"):
                status, err = await _run(*argv)
                assert status == 1, err
                assert err.endswith("certificate verify failed: unable to get local issuer"
                                    " certificate\n"), err  # fmt: skip
                assert err.count("\n") == 1, err
        finally:
            await plain.stop()
            await secure.stop()

    asyncio.run(main())
