"""Start a real ``bentoml serve service:PtBrTTS`` on 127.0.0.1 for the served tests, and stop it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServedService:
    env: dict[str, str]
    log_path: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    readyz_statuses: list[int] = field(default_factory=list)
    command: list[str] | None = None  # default: bentoml serve service:PtBrTTS on self.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServedService:
        bentoml_cli = Path(sys.executable).parent / "bentoml"
        command = self.command or [
            str(bentoml_cli), "serve", "service:PtBrTTS", "--host", "127.0.0.1", "--port", str(self.port)
        ]
        env = {**os.environ, **self.env}
        if "BENTOML_HOME" not in self.env and "BENTOML_HOME" in os.environ:
            env["BENTOML_HOME"] = self._own_home(Path(os.environ["BENTOML_HOME"]))
        self.started_at = time.perf_counter()
        self.process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=self.log_path.open("wb"),
            stderr=subprocess.STDOUT, start_new_session=True,
        )
        return self

    def _own_home(self, session_home: Path) -> str:
        """A BentoML home of this server's own that shares the session's model store. `bentoml serve` keeps its
        metrics files in $BENTOML_HOME/prometheus_multiproc_dir and empties that folder when it starts, so servers
        sharing a home wipe each other's metrics (the service's own series live there too)."""
        home = self.log_path.parent / f"bentoml-home-{self.port}"
        home.mkdir(exist_ok=True)
        home.chmod(0o755)
        models = home / "models"
        if not models.is_symlink():
            models.symlink_to(session_home / "models", target_is_directory=True)
        return str(home)

    def wait_listening(self, timeout: float = 120.0) -> None:
        self._wait(lambda response: True, timeout, "/livez")

    def wait_ready(self, timeout: float = 180.0) -> float:
        """Seconds from process start until /readyz said 200; records every /readyz status seen on the way."""
        self._wait(lambda response: response.status_code == 200, timeout, "/readyz")
        return time.perf_counter() - self.started_at

    def _wait(self, done, timeout: float, path: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"bentoml serve exited with {self.process.returncode}:\n{self.log_tail()}")
            response = self._get(path)
            if response is not None:
                if path == "/readyz":
                    self.readyz_statuses.append(response.status_code)
                if done(response):
                    return
            time.sleep(0.1)
        raise TimeoutError(f"{path} not satisfied within {timeout} s:\n{self.log_tail()}")

    def _get(self, path: str) -> httpx.Response | None:
        """None while nothing listens yet (connection refused)."""
        try:
            return httpx.get(self.url + path, timeout=2.0)
        except httpx.TransportError:
            return None

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


_IMPORTED: dict[str, str] = {}


def import_demo(name: str = "f5tts-ptbr") -> str:
    """Import the project's tiny demo model into the test session's BentoML store; returns its tag.

    Once per name and test session (the import is a subprocess of 5-10 s and its tag depends only on the demo
    model's bytes, so every module got the same tag anyway); again when a test removed it from the store."""
    tag = _IMPORTED.get(name)
    if tag is not None and _store_path(tag).is_dir():
        return tag
    command = [sys.executable, str(REPO_ROOT / "scripts" / "import_model.py"), "--demo", "--name", name]
    tag = subprocess.run(command, capture_output=True, text=True, timeout=180, check=True).stdout.strip()
    _IMPORTED[name] = tag
    return tag


def _store_path(tag: str) -> Path:
    name, version = tag.split(":", 1)
    return Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml")) / "models" / name / version


def start_demo(tag: str, log_path: Path, **env: str) -> ServedService:
    """A ready `bentoml serve` of ``tag`` with extra PTBR_* settings."""
    served = ServedService(env={"PTBR_MODEL_TAG": tag, "PTBR_LOG_FORMAT": "json", **env}, log_path=log_path).start()
    try:
        served.wait_listening()
        served.cold_start_seconds = served.wait_ready()
    except BaseException:
        served.stop()
        raise
    return served


def start_replicas(tag: str, data_dir: Path, log_dir: Path, count: int = 2, **env: str) -> list[ServedService]:
    """``count`` ready `bentoml serve` processes of ``tag`` on one data directory, started together (their cold
    starts overlap); logs ``log_dir/replica-<n>.log``. Stops them all when one fails to come up."""
    replicas = [ServedService(env={"PTBR_MODEL_TAG": tag, "PTBR_LOG_FORMAT": "json", "PTBR_DATA_DIR": str(data_dir),
                                   **env}, log_path=log_dir / f"replica-{n}.log") for n in range(count)]
    try:
        for served in replicas:
            served.start()
        for served in replicas:
            served.wait_listening()
            served.cold_start_seconds = served.wait_ready()
    except BaseException:
        for served in replicas:
            served.stop()
        raise
    return replicas


def kill_tree(served: ServedService) -> None:
    """SIGKILL the server and every worker it started (workers run in their own sessions)."""
    if served.process is None:
        return
    import psutil

    try:
        parent = psutil.Process(served.process.pid)
        family = [parent, *parent.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for process in family:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(family, timeout=10)
    served.process.wait(timeout=10)
