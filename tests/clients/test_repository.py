"""tritonclient's model repository calls against one hoist-server serving many models
(`--model-repository`): the index, unload and load (with the admin token in the
headers), readiness per model, and inference on each model by name."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from conftest import LR, MODELS, load_reference, ref_array, server_bin

TOKEN = "repository-test-token"


@pytest.fixture(scope="module")
def repo_server():
    root = Path(tempfile.mkdtemp(prefix="hoist-repository-"))
    for name, src in [("lr", LR), ("gbt", "breast_cancer_gbt")]:
        shutil.copytree(MODELS / src, root / "models" / name)
    out = root / "stdout"
    env = dict(os.environ, HOIST_ADMIN_TOKEN=TOKEN)
    with open(out, "wb") as o, open(root / "stderr", "wb") as e:
        proc = subprocess.Popen(
            [str(server_bin()), "--model-repository", str(root / "models"),
             "--host", "127.0.0.1", "--port", "0", "--runtime", "tract"],
            stdout=o, stderr=e, env=env,
        )
    deadline = time.monotonic() + 120
    url = None
    while time.monotonic() < deadline and url is None:
        for line in out.read_text().splitlines():
            if line.startswith("listening on http://"):
                url = line[len("listening on http://"):].strip()
        time.sleep(0.05)
    assert url, (root / "stderr").read_text()
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{url}/v2/health/ready", timeout=5) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        time.sleep(0.05)
    yield url
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=15)
    shutil.rmtree(root, ignore_errors=True)


def infer(c: httpclient.InferenceServerClient, model: str) -> np.ndarray:
    x = ref_array(load_reference(LR)["inputs"]["input"])[:2]
    inp = httpclient.InferInput("input", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return c.infer(model, [inp]).as_numpy("label")


def test_repository_index_unload_and_load(repo_server):
    c = httpclient.InferenceServerClient(url=repo_server)
    index = c.get_model_repository_index()
    assert [(m["name"], m["state"]) for m in index] == [("gbt", "READY"), ("lr", "READY")]
    assert c.is_model_ready("lr") and c.is_model_ready("gbt")
    want = np.array(load_reference(LR)["outputs"]["label"]["data"][:2])
    assert (infer(c, "lr") == want).all()

    # Without the admin token the call is refused and nothing changes.
    with pytest.raises(InferenceServerException, match="X-Admin-Token"):
        c.unload_model("gbt")
    assert c.is_model_ready("gbt")

    headers = {"X-Admin-Token": TOKEN}
    c.unload_model("gbt", headers=headers)
    assert not c.is_model_ready("gbt")
    assert c.is_model_ready("lr")
    states = {m["name"]: (m["state"], m.get("reason")) for m in c.get_model_repository_index()}
    assert states["gbt"] == ("UNAVAILABLE", "unloaded")
    with pytest.raises(InferenceServerException, match="not loaded"):
        infer(c, "gbt")
    assert (infer(c, "lr") == want).all()

    c.load_model("gbt", headers=headers)
    assert c.is_model_ready("gbt")
    assert len(infer(c, "gbt")) == 2
    with pytest.raises(InferenceServerException, match="no model 'nope'"):
        c.load_model("nope", headers=headers)
