"""Drive the real Dagster UI: ``dagster dev`` on loopback and Debian's headless Chromium.

``dagster dev`` started by a non-interactive process ignores SIGINT/SIGTERM unless it leads its
own process group, so it is started in a new session and stopped by signalling the whole group
(SIGINT, then SIGKILL after a bounded wait): the webserver, the daemon, the code server and any
run worker go with it.

Chromium runs headless with a new empty profile and with background networking, component
updates, sync and QUIC off, and every host name resolving to nothing: the only traffic is to
the UI on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--no-proxy-server",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",  # no host name resolves; the UI is on 127.0.0.1
    "--window-size=1440,900",
)


def free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except FileNotFoundError:
        return "(no log)"


@dataclass
class DagsterDev:
    """A ``dagster dev`` process group serving the UI on ``http://127.0.0.1:<port>``."""

    process: subprocess.Popen
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, *, workspace: Path, env: dict[str, str], log_path: Path, timeout: float = 120.0) -> DagsterDev:
        """``dagster dev -w <workspace>``."""
        port = free_port()
        argv = [sys.executable, "-m", "dagster", "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)]
        return cls._spawn(argv, port, cwd=workspace.parent, env=env, log_path=log_path, timeout=timeout)

    @classmethod
    def start_offload_assets_dev(
        cls, *, cwd: Path, env: dict[str, str], log_path: Path, timeout: float = 180.0
    ) -> DagsterDev:
        """``offload-assets dev``, as a user starts it from the checkout."""
        port = free_port()
        argv = [sys.executable, "-m", "offload_assets.cli.main", "dev", "--port", str(port)]
        return cls._spawn(argv, port, cwd=cwd, env=env, log_path=log_path, timeout=timeout)

    @classmethod
    def _spawn(cls, argv: list[str], port: int, *, cwd: Path, env: dict[str, str], log_path: Path, timeout: float):
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a signal to the group stops it all
            )
        dev = cls(process=process, port=port, log_path=log_path)
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(f"{argv[2]} dev exited with code {process.returncode}:\n{tail(log_path)}")
            with contextlib.suppress(urllib.error.URLError, OSError):
                with opener.open(f"{dev.url}/server_info", timeout=2) as resp:
                    if resp.status == 200:
                        return dev
            time.sleep(0.5)
        dev.stop()
        raise RuntimeError(f"{argv[2]} dev did not serve {dev.url} within {timeout:.0f} s:\n{tail(log_path)}")

    def stop(self, timeout: float = 30.0) -> None:
        pgid = self.process.pid  # session leader: its pid is the group id
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGINT)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        # Whatever is left of the group (a run worker, the code server) does not outlive the test.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=10)


def start_chromium(user_data_dir: Path):
    """A headless Chromium driven through Debian's chromedriver (Selenium Manager is never used)."""
    os.environ.setdefault("SE_AVOID_STATS", "true")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if missing:
        raise RuntimeError(
            f"{', '.join(missing)} not found: install Debian's chromium and chromium-driver packages "
            "(`apt-get install chromium chromium-driver`; .ci/run does it)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={user_data_dir}")
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


@dataclass(frozen=True)
class GraphNode:
    label: str  # what the node shows: the last part of the asset key
    asset_path: str | None  # "s3/parquet/reviews" from the node's link; None for an external asset
    text: str
    x: float
    y: float
    width: float
    height: float

    @property
    def name(self) -> str:
        return self.asset_path or self.label


_PATH_RE = re.compile(r"M\s*([-\d.]+)[ ,]([-\d.]+).*?([-\d.]+)[ ,]([-\d.]+)\s*$")


def read_asset_graph(driver) -> tuple[list[GraphNode], set[tuple[str, str]]]:
    """The asset nodes on screen and the edges drawn between them, as (upstream, downstream) names.

    Nodes are the graph's ``foreignObject`` boxes (their link gives the asset key); an edge is an
    SVG path with an arrow head, matched to the node whose right side it leaves and the node
    whose left side it reaches.
    """
    from selenium.webdriver.common.by import By

    nodes = []
    for fo in driver.find_elements(By.TAG_NAME, "foreignObject"):
        hrefs = [a.get_attribute("href") or "" for a in fo.find_elements(By.TAG_NAME, "a")]
        paths = {m.group(1) for h in hrefs if (m := re.search(r"/assets/([^?#]+)", h))}
        text = fo.text
        nodes.append(
            GraphNode(
                label=text.split("\n", 1)[0].strip(),
                asset_path=sorted(paths)[0] if paths else None,
                text=text,
                x=float(fo.get_attribute("x")),
                y=float(fo.get_attribute("y")),
                width=float(fo.get_attribute("width")),
                height=float(fo.get_attribute("height")),
            )
        )
    edges = set()
    for path in driver.find_elements(By.XPATH, "//*[local-name()='path'][@marker-end]"):
        m = _PATH_RE.match(path.get_attribute("d") or "")
        if not m:
            continue
        x1, y1, x2, y2 = map(float, m.groups())
        start = _nearest(nodes, x1, y1, side="right")
        end = _nearest(nodes, x2, y2, side="left")
        if start and end and start is not end:
            edges.add((start.name, end.name))
    return nodes, edges


def _nearest(nodes: list[GraphNode], x: float, y: float, *, side: str) -> GraphNode | None:
    best, best_d = None, 40.0  # an arrow ends a few pixels off its node
    for n in nodes:
        edge_x = n.x + n.width if side == "right" else n.x
        dy = 0.0 if n.y <= y <= n.y + n.height else min(abs(y - n.y), abs(y - n.y - n.height))
        d = abs(x - edge_x) + dy
        if d < best_d:
            best, best_d = n, d
    return best
