"""End to end with dig: `kdns serve --corefile` with hosts, rewrite, template, any and
bufsize, on free loopback ports, dnsmasq on loopback as the upstream `forward` relays to.
Expected behaviour is each plugin's CoreDNS README (docs/operations.md, "Corefile")."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.e2e.kdns_process import ROOT, DigResult, dig, free_port

pytestmark = pytest.mark.e2e

CLUSTER = ROOT / "tests" / "data" / "e2e-cluster"
BIG = 50  # A records of big.example.org: about 830 octets, over bufsize 600


@dataclass
class Served:
    port: int
    hosts: Path
    upstream_log: Path

    def dig(self, name: str, qtype: str = "A", *extra: str, tcp: bool = False) -> DigResult:
        return dig(self.port, name, qtype, tcp=tcp, extra=extra)


def corefile(port: int, ready: int, upstream: int, hosts: Path) -> str:
    return f"""\
.:{port} {{
    bufsize 600
    any
    errors
    ready 127.0.0.1:{ready}
    rewrite name exact alias.example.org web.testns.svc.cluster.local
    rewrite name suffix .up.example. .upstream.example. answer auto
    template IN A tmpl.example {{
        match ^ip-(?P<a>[0-9]+)-(?P<b>[0-9]+)[.]tmpl[.]example[.]$
        answer "{{{{ .Name }}}} 60 IN A 10.0.{{{{ .Group.a }}}}.{{{{ .Group.b }}}}"
        fallthrough
    }}
    template ANY AAAA tmpl.example {{
        rcode NOERROR
    }}
    template ANY ANY blocked.tmpl.example {{
        rcode NXDOMAIN
        authority "blocked.tmpl.example. 60 IN SOA ns.tmpl.example. hm.tmpl.example. 1 60 60 60 30"
    }}
    hosts {hosts} example.org {{
        ttl 60
        fallthrough
    }}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        fallthrough in-addr.arpa ip6.arpa
    }}
    forward . 127.0.0.1:{upstream}
}}
nofall.example:{port} {{
    hosts {{
        192.0.2.99 known.nofall.example
    }}
}}
"""


@contextlib.contextmanager
def dnsmasq(tmp: Path) -> Iterator[tuple[int, Path]]:
    exe = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
    if not Path(exe).exists():
        if os.environ.get("KDNS_E2E") == "required":
            pytest.fail("dnsmasq is required (KDNS_E2E=required) but not installed")
        pytest.skip("dnsmasq not installed")
    port = free_port()
    log = tmp / "upstream.log"
    proc = subprocess.Popen(
        [exe, "--no-daemon", "--conf-file=/dev/null", f"--port={port}",
         "--listen-address=127.0.0.1", "--bind-interfaces", "--no-resolv", "--no-hosts",
         "--pid-file=", "--user=root", "--log-queries", f"--log-facility={log}",
         "--address=/upstream.example/192.0.2.7", "--address=/db.example.org/192.0.2.200",
         "--local-ttl=60"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        for _ in range(100):  # bounded: dnsmasq binds within a few ms
            if dig(port, "upstream.example").status == "NOERROR":
                break
            time.sleep(0.05)
        yield port, log
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("newplugins")
    hosts = tmp / "hosts"
    hosts.write_text(
        "192.0.2.10 db.example.org\n2001:db8::10 db.example.org\n"
        + "".join(f"192.0.2.{100 + i} big.example.org\n" for i in range(BIG))
    )
    port, ready = free_port(), free_port()
    with dnsmasq(tmp) as (upstream, upstream_log):
        path = tmp / "Corefile"
        path.write_text(corefile(port, ready, upstream, hosts))
        log = tmp / "kdns.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("KDNS_")}
        cmd = [sys.executable, "-m", "kdns", "serve", "--corefile", str(path),
               "--manifests", str(CLUSTER)]  # fmt: skip
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        try:
            deadline = time.monotonic() + 20
            while True:
                if proc.poll() is not None:
                    raise AssertionError(f"kdns exited with {proc.returncode}:\n{log.read_text()}")
                with (
                    contextlib.suppress(OSError, http.client.HTTPException),  # (kdns_process)
                    urllib.request.urlopen(f"http://127.0.0.1:{ready}/ready", timeout=2),
                ):
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"kdns not ready after 20 s:\n{log.read_text()}")
                time.sleep(0.05)
            yield Served(port, hosts, upstream_log)
        finally:
            proc.terminate()
            proc.wait(15)


def test_hosts_answers_its_names_and_others_fall_through(served: Served) -> None:
    a = served.dig("db.example.org")
    assert (a.status, a.answer, "aa" in a.flags) == (
        "NOERROR", ["db.example.org. 60 IN A 192.0.2.10"], True,
    )  # fmt: skip
    assert served.dig("db.example.org", "AAAA").answer == [
        "db.example.org. 60 IN AAAA 2001:db8::10"
    ]
    nodata = served.dig("db.example.org", "MX")
    assert (nodata.status, nodata.answer) == ("NOERROR", [])
    assert served.dig("-x", "192.0.2.10").answer == [
        "10.2.0.192.in-addr.arpa. 60 IN PTR db.example.org."
    ]
    # A name hosts does not have goes on down the chain, to the upstream.
    assert served.dig("upstream.example").answer == ["upstream.example. 60 IN A 192.0.2.7"]


def test_hosts_without_fallthrough_does_not_pass_misses_on(served: Served) -> None:
    known = served.dig("known.nofall.example")
    assert known.answer == ["known.nofall.example. 3600 IN A 192.0.2.99"]
    assert served.dig("other.nofall.example").status == "SERVFAIL"  # as CoreDNS's hosts.go


def test_hosts_file_changes_are_served_after_a_reload(served: Served) -> None:
    text = served.hosts.read_text()
    served.hosts.write_text(text + "192.0.2.55 new.example.org\n")
    for _ in range(100):  # bounded: the file is checked every 5 s
        if served.dig("new.example.org").answer:
            break
        time.sleep(0.1)
    assert served.dig("new.example.org").answer == ["new.example.org. 60 IN A 192.0.2.55"]


def test_a_rewritten_name_reads_back_as_asked(served: Served) -> None:
    cluster = served.dig("alias.example.org")
    assert cluster.answer == ["alias.example.org. 5 IN A 10.96.0.20"]
    relayed = served.dig("www.up.example")
    assert relayed.answer == ["www.up.example. 60 IN A 192.0.2.7"]
    assert "www.upstream.example" in served.upstream_log.read_text()  # what went upstream
    again = served.dig("WWW.Up.Example")  # the forward cache's copy, the client's spelling
    assert re.search(r"^;WWW\.Up\.Example\.\s+IN\s+A$", again.raw, re.MULTILINE)
    assert [line.split()[-1] for line in again.answer] == ["192.0.2.7"]


def test_template_answers_and_rcodes(served: Served) -> None:
    a = served.dig("ip-3-4.tmpl.example")
    assert (a.answer, "aa" in a.flags) == (["ip-3-4.tmpl.example. 60 IN A 10.0.3.4"], True)
    aaaa = served.dig("ip-3-4.tmpl.example", "AAAA")
    assert (aaaa.status, aaaa.answer) == ("NOERROR", [])
    blocked = served.dig("x.blocked.tmpl.example", "TXT")
    assert (blocked.status, blocked.authority) == (
        "NXDOMAIN",
        ["blocked.tmpl.example. 60 IN SOA ns.tmpl.example. hm.tmpl.example. 1 60 60 60 30"],
    )


def test_any_gets_an_rfc8482_hinfo(served: Served) -> None:
    r = served.dig("web.testns.svc.cluster.local", "ANY")
    assert r.answer == [
        'web.testns.svc.cluster.local. 8482 IN HINFO "ANY obsoleted" "See RFC 8482"'
    ]


def test_bufsize_truncates_udp_replies_over_its_size(served: Served) -> None:
    udp = served.dig("big.example.org", "A", "+bufsize=4096", "+ignore")
    assert "tc" in udp.flags
    assert 0 < udp.msg_size <= 600
    assert "; EDNS: version: 0, flags:; udp: 600" in udp.raw
    tcp = served.dig("big.example.org", "A", "+bufsize=4096", tcp=True)
    assert ("tc" not in tcp.flags, len(tcp.answer)) == (True, BIG)
