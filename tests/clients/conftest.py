"""Fixtures for the external-client tests: start the real hoist-server binary.

Each test gets a running server for one (model, runtime) pair. Servers are
started with `--port 0`; the fixture reads the `listening on http://HOST:PORT`
line from the server's stdout and stops the server (SIGTERM, then wait) when the
test session ends. One server per pair is shared by all tests of the session.

Environment:
  HOIST_SERVER_BIN   the binary (default: target/debug/hoist-server in the repo)
  ORT_DYLIB_PATH     libonnxruntime.so; when set (or when the file that
                     tools/fetch-onnxruntime.sh installs exists) the tests also
                     run with `--runtime onnxruntime`. `--runtime tract` always runs.
  HOIST_CLIENTS_MLFLOW_URL  optional: also run the MLflow scoring tests against
                     this URL (a real `mlflow models serve` of breast_cancer_lr),
                     to check that the request bodies used here are ones MLflow
                     itself accepts.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "examples" / "models"
START_TIMEOUT_S = float(os.environ.get("HOIST_START_TIMEOUT", "120"))
STOP_TIMEOUT_S = 15.0

# The model most tests use: 30 FP32 features in, `label` INT64 [-1] and
# `probabilities` FP32 [-1, 2] out.
LR = "breast_cancer_lr"


def server_bin() -> Path:
    p = Path(os.environ.get("HOIST_SERVER_BIN", "target/debug/hoist-server"))
    return p if p.is_absolute() else REPO / p


def ort_dylib() -> str | None:
    """The onnxruntime shared library to test with, or None to test tract only."""
    env = os.environ.get("ORT_DYLIB_PATH")
    if env:
        return env
    home = Path(os.environ.get("HOIST_HOME", Path.home() / ".hoist"))
    default = home / "lib" / "libonnxruntime.so.1.32.0"
    return str(default) if default.exists() else None


def runtimes() -> list[str]:
    return (["onnxruntime"] if ort_dylib() else []) + ["tract"]


class Server:
    """A running hoist-server process."""

    def __init__(self, model: str, runtime: str):
        self.model = model
        self.runtime = runtime
        binary = server_bin()
        if not binary.exists():
            pytest.fail(f"hoist-server binary not found at {binary} (set HOIST_SERVER_BIN)")
        model_dir = MODELS / model
        if not (model_dir / "MLmodel").exists():
            pytest.fail(f"example model {model_dir} is missing")
        self.logdir = Path(tempfile.mkdtemp(prefix=f"hoist-{model}-{runtime}-"))
        self.stdout_path = self.logdir / "stdout"
        self.stderr_path = self.logdir / "stderr"
        env = dict(os.environ)
        if runtime == "onnxruntime":
            env["ORT_DYLIB_PATH"] = ort_dylib() or ""
        cmd = [
            str(binary),
            "--model", str(model_dir),
            "--host", "127.0.0.1",
            "--port", "0",
            "--runtime", runtime,
        ]
        self.cmd = cmd
        # stdout goes to a file, not a pipe: a pipe nobody drains would block the
        # server once it fills.
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=REPO)
        self.url = self._wait_listening()
        self.host_port = self.url.split("://", 1)[1]
        self._wait_ready()

    def _wait_listening(self) -> str:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            for line in self.stdout_path.read_text(errors="replace").splitlines():
                if line.startswith("listening on "):
                    return line[len("listening on "):].strip().rstrip("/")
            if self.proc.poll() is not None:
                pytest.fail(
                    f"{' '.join(self.cmd)} exited with {self.proc.returncode} before listening\n"
                    f"stdout: {self.stdout_path.read_text(errors='replace')}\n"
                    f"stderr: {self.stderr_tail()}"
                )
            time.sleep(0.05)
        self.stop()
        pytest.fail(
            f"{' '.join(self.cmd)} printed no 'listening on' line in {START_TIMEOUT_S:.0f} s\n"
            f"stderr: {self.stderr_tail()}"
        )

    def _wait_ready(self):
        """After `listening on`, /v2/health/ready must turn 200 (the model may still be loading)."""
        deadline = time.monotonic() + START_TIMEOUT_S
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(
                    f"{' '.join(self.cmd)} printed 'listening on {self.url}' but then exited with "
                    f"{self.proc.returncode}\nstderr: {self.stderr_tail()}"
                )
            try:
                with urllib.request.urlopen(self.url + "/v2/health/ready", timeout=5) as r:
                    if r.status == 200:
                        return
                    last = r.status
            except urllib.error.HTTPError as e:
                last = e.code
            except OSError as e:
                last = repr(e)
            time.sleep(0.05)
        self.stop()
        pytest.fail(f"{self.url}/v2/health/ready not 200 after {START_TIMEOUT_S:.0f} s (last: {last})")

    def stderr_tail(self, n: int = 4000) -> str:
        text = re.sub(r"\x1b\[[0-9;]*m", "", self.stderr_path.read_text(errors="replace"))
        if "Error:" in text:  # anyhow's report, then a backtrace: the report matters
            return text[text.index("Error:"):][:n]
        return text[-n:]

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                print(f"warning: {' '.join(self.cmd)} ignored SIGTERM for {STOP_TIMEOUT_S} s; killed")
        return self.proc.returncode


@pytest.fixture(scope="session")
def servers():
    """Start servers on demand, one per (model, runtime); stop them all at the end."""
    started: dict[tuple[str, str], Server] = {}

    def get(model: str, runtime: str) -> Server:
        key = (model, runtime)
        if key not in started:
            started[key] = Server(model, runtime)
        s = started[key]
        if s.proc.poll() is not None:
            pytest.fail(
                f"hoist-server ({model}, {runtime}) died with {s.proc.returncode}\n"
                f"stderr: {s.stderr_tail()}"
            )
        return s

    yield get
    for s in started.values():
        s.stop()


@pytest.fixture(params=runtimes())
def runtime(request) -> str:
    return request.param


@pytest.fixture
def lr_server(servers, runtime) -> Server:
    return servers(LR, runtime)


def load_reference(model: str) -> dict:
    """reference.json of an example model: inputs and the outputs onnxruntime gave."""
    with open(MODELS / model / "reference.json") as f:
        return json.load(f)


_NP = {
    "FP32": np.float32, "FP64": np.float64, "FP16": np.float16,
    "INT8": np.int8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
    "UINT8": np.uint8, "UINT16": np.uint16, "UINT32": np.uint32, "UINT64": np.uint64,
    "BOOL": np.bool_,
}


def ref_array(tensor: dict) -> np.ndarray:
    """A reference tensor ({datatype, shape, data}) as a numpy array."""
    return np.asarray(tensor["data"], dtype=_NP[tensor["datatype"]]).reshape(tensor["shape"])


def assert_outputs_match(model: str, got: dict[str, np.ndarray], rows: slice | None = None):
    """Labels exactly, everything else within 1e-4, against reference.json."""
    ref = load_reference(model)
    for name, tensor in ref["outputs"].items():
        want = ref_array(tensor)
        if rows is not None:
            want = want[rows]
        assert name in got and got[name] is not None, f"output {name!r} missing; got {list(got)}"
        have = np.asarray(got[name])
        assert list(have.shape) == list(want.shape), f"{name}: shape {have.shape} != {want.shape}"
        if name == "label" or tensor["datatype"].startswith(("INT", "UINT", "BOOL")):
            np.testing.assert_array_equal(have, want, err_msg=name)
        else:
            np.testing.assert_allclose(have, want, rtol=0, atol=1e-4, err_msg=name)
