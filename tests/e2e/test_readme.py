"""The README's own commands, run as written: `make run` (on free ports, through the
Makefile's overridable addresses), then every `dig` and `curl` line of its quick start.
An example that drifts from what the seed serves fails here."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from tests.e2e.kdns_process import ROOT, free_port, require_tool

pytestmark = pytest.mark.e2e

README = ROOT / "README.md"


def quick_start() -> list[str]:
    """The shell lines of the README's first block after "Then, in another shell"."""
    text = README.read_text()
    start = text.index("Then, in another shell")
    block = text[text.index("```sh", start) + 5 : text.index("```", text.index("```sh", start) + 5)]
    return [line.strip() for line in block.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def make_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    require_tool("make")
    ports = {
        "dns": free_port(),
        "health": free_port(),
        "ready": free_port(),
        "metrics": free_port(),
    }
    log = tmp_path_factory.mktemp("readme") / "make-run.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("KDNS_")}
    cmd = [
        "make",
        "--no-print-directory",
        "run",
        f"DNS_ADDR=127.0.0.1:{ports['dns']}",
        f"HEALTH_ADDR=127.0.0.1:{ports['health']}",
        f"READY_ADDR=127.0.0.1:{ports['ready']}",
        f"METRICS_ADDR=127.0.0.1:{ports['metrics']}",
    ]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 120  # make run may install first
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{ports['ready']}/ready", timeout=1
                ) as r:
                    if r.status == 200:
                        break
            except (OSError, urllib.error.URLError):
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield ports
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


def _localise(line: str, ports: dict[str, int]) -> str:
    for name, default in (("dns", 1053), ("health", 8080), ("ready", 8181), ("metrics", 9153)):
        line = line.replace(f"-p {default}", f"-p {ports[name]}") if name == "dns" else line
        line = line.replace(f"127.0.0.1:{default}", f"127.0.0.1:{ports[name]}")
    return line


def test_the_quick_start_has_examples() -> None:
    lines = quick_start()
    assert sum(line.startswith("dig ") for line in lines) >= 3
    assert any(line.startswith("curl ") for line in lines)


@pytest.mark.parametrize("line", [line for line in quick_start() if line.startswith("dig ")])
def test_each_dig_line_answers_what_its_comment_says(make_run: dict[str, int], line: str) -> None:
    require_tool("dig")
    command, _, comment = line.partition("#")
    out = subprocess.run(
        [*shlex.split(_localise(command, make_run)), "+time=2", "+tries=1"],
        capture_output=True,
        text=True,
        timeout=15,
    ).stdout
    assert "status: NOERROR" in out, out
    answers = [
        rr for rr in out.split(";; ANSWER SECTION:")[1].split("\n\n")[0].splitlines() if rr.strip()
    ]
    assert answers, out
    # A value the comment quotes (an SRV target line) must be in the answer as written.
    quoted = re.search(r"(\d+ \d+ \d+ \S+\.)", comment)
    if quoted:
        assert any(quoted.group(1) in rr for rr in answers), out


def test_the_curl_lines_answer(make_run: dict[str, int]) -> None:
    for line in quick_start():
        if not line.startswith("curl "):
            continue
        for part in line.split(";"):
            url = _localise(part.strip(), make_run).split()[-1]
            with urllib.request.urlopen(f"http://{url}", timeout=2) as r:
                assert r.status == 200
