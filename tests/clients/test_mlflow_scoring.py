"""hoist-server's MLflow scoring endpoints, with the request bodies MLflow accepts.

Checked against `mlflow models serve` 3.17.2 serving breast_cancer_lr (signature:
one tensor named `input`, float32 [-1, 30]; outputs `label`, `probabilities`):
  * `{"inputs": [[30 floats], ...]}` and `{"inputs": {"input": [[...]]}}` work;
  * `{"instances": [[...]]}` and `{"instances": [{"input": [...]}, ...]}` work;
  * `dataframe_split` / `dataframe_records` work with ONE column named after the
    tensor, each cell holding a whole row: `{"columns": ["input"], "data": [[[30 floats]]]}`,
    `[{"input": [30 floats]}]`. Thirty scalar columns are refused by MLflow
    ("Failed to enforce schema"), so they are not tested here;
  * the answer is `{"predictions": {"label": [...], "probabilities": [[p0, p1], ...]}}`;
  * `text/csv` is refused by MLflow 3.17 for a tensor signature ("TensorSpec only
    supports numpy types"); hoist reads the pandas `to_csv(index=False)` form
    (a header line, then one line per row), so that test skips the MLflow peer;
  * bad JSON and bodies without exactly one known key: 400 with
    `{"error_code": "BAD_REQUEST", "message": ...}`; wrong shape: 400
    INVALID_PARAMETER_VALUE; an unknown Content-Type: 415.
  * `/ping`, `/health`, `/version` answer 200 (`/version` is the bare version text).
Set HOIST_CLIENTS_MLFLOW_URL to run these against a real MLflow server as well.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import requests

from conftest import LR, assert_outputs_match, load_reference, ref_array, runtimes

PEER = "mlflow-peer"


def _targets():
    t = list(runtimes())
    if os.environ.get("HOIST_CLIENTS_MLFLOW_URL"):
        t.append(PEER)
    return t


@pytest.fixture(params=_targets())
def target(request, servers):
    """(name, base URL) of the server under test."""
    if request.param == PEER:
        return PEER, os.environ["HOIST_CLIENTS_MLFLOW_URL"].rstrip("/")
    return request.param, servers(LR, request.param).url


def rows(n: int | None = None) -> list[list[float]]:
    x = ref_array(load_reference(LR)["inputs"]["input"])
    if n is not None:
        x = x[:n]
    return x.tolist()


def invoke(url: str, **kw) -> requests.Response:
    return requests.post(url + "/invocations", timeout=60, **kw)


def assert_predictions(resp: requests.Response, n: int | None = None, records_ok: bool = False):
    """`{"predictions": {"label": [...], "probabilities": [[...]]}}` matching the reference.

    records_ok: also accept pandas "records" orientation
    (`[{"label": 1, "probabilities": [...]}, ...]`), what MLflow gives for a DataFrame result.
    """
    assert resp.status_code == 200, (resp.status_code, resp.text[:2000])
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    body = resp.json()
    assert set(body) == {"predictions"}, body
    preds = body["predictions"]
    if records_ok and isinstance(preds, list) and all(isinstance(r, dict) for r in preds):
        preds = {k: [r.get(k) for r in preds] for k in ("label", "probabilities")}
    assert isinstance(preds, dict) and set(preds) == {"label", "probabilities"}, preds
    got = {"label": np.asarray(preds["label"], np.int64), "probabilities": np.asarray(preds["probabilities"], np.float32)}
    assert_outputs_match(LR, got, rows=slice(0, n) if n is not None else None)


def test_inputs_list(target):
    _, url = target
    assert_predictions(invoke(url, json={"inputs": rows()}))


def test_inputs_single_row(target):
    _, url = target
    assert_predictions(invoke(url, json={"inputs": rows(1)}), n=1)


def test_inputs_named(target):
    _, url = target
    assert_predictions(invoke(url, json={"inputs": {"input": rows()}}))


def test_instances_list(target):
    _, url = target
    assert_predictions(invoke(url, json={"instances": rows()}))


def test_instances_named(target):
    _, url = target
    assert_predictions(invoke(url, json={"instances": [{"input": r} for r in rows()]}))


def test_dataframe_split(target):
    _, url = target
    body = {"dataframe_split": {"columns": ["input"], "data": [[r] for r in rows()]}}
    assert_predictions(invoke(url, json=body))


def test_dataframe_split_with_index(target):
    """pandas `to_dict(orient="split")` also writes an index; MLflow ignores it."""
    _, url = target
    rs = rows(3)
    body = {"dataframe_split": {"index": [0, 1, 2], "columns": ["input"], "data": [[r] for r in rs]}}
    assert_predictions(invoke(url, json=body), n=3)


def test_dataframe_records(target):
    _, url = target
    assert_predictions(invoke(url, json={"dataframe_records": [{"input": r} for r in rows()]}))


def test_content_type_with_charset(target):
    _, url = target
    import json

    resp = invoke(
        url,
        data=json.dumps({"inputs": rows(2)}),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    assert_predictions(resp, n=2)


def test_csv(target):
    name, url = target
    if name == PEER:
        pytest.skip("MLflow 3.17 refuses CSV for tensor signatures")
    rs = rows()
    csv = ",".join(str(i) for i in range(30)) + "\n"
    csv += "".join(",".join(repr(v) for v in r) + "\n" for r in rs)
    # The first line is a header, as pandas.read_csv (which MLflow uses) reads it:
    # a server that took it for data would answer 21 rows instead of 20.
    assert_predictions(invoke(url, data=csv, headers={"Content-Type": "text/csv"}), records_ok=True)


def _assert_error(resp: requests.Response, status: int, code: str | None = None):
    assert resp.status_code == status, (resp.status_code, resp.text[:2000])
    body = resp.json()
    assert isinstance(body.get("error_code"), str) and body["error_code"], body
    assert isinstance(body.get("message"), str) and body["message"], body
    if code is not None:
        assert body["error_code"] == code, body


def test_malformed_json_is_400(target):
    _, url = target
    resp = invoke(url, data="{not json", headers={"Content-Type": "application/json"})
    _assert_error(resp, 400, "BAD_REQUEST")


def test_no_known_key_is_400(target):
    _, url = target
    _assert_error(invoke(url, json={"foo": rows(1)}), 400, "BAD_REQUEST")


def test_two_keys_is_400(target):
    _, url = target
    _assert_error(invoke(url, json={"inputs": rows(1), "instances": rows(1)}), 400, "BAD_REQUEST")


def test_json_list_body_is_400(target):
    _, url = target
    _assert_error(invoke(url, json=rows(1)), 400, "BAD_REQUEST")


def test_wrong_shape_is_400(target):
    _, url = target
    resp = invoke(url, json={"inputs": [[1.0, 2.0]]})
    _assert_error(resp, 400)
    assert "input" in resp.json()["message"], resp.json()


def test_unsupported_content_type_is_415(target):
    _, url = target
    resp = invoke(url, data="x", headers={"Content-Type": "text/plain"})
    assert resp.status_code == 415, (resp.status_code, resp.text[:500])


@pytest.mark.parametrize("path", ["/ping", "/health", "/version"])
def test_probes(target, path):
    _, url = target
    resp = requests.get(url + path, timeout=30)
    assert resp.status_code == 200, (path, resp.status_code, resp.text[:500])
    if path == "/version":
        assert resp.text.strip(), "empty /version"
