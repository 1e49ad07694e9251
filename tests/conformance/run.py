#!/usr/bin/env python3
"""Differential conformance: hoist-server's `/invocations` against the real peer.

For every MLflow model directory under examples/zoo/ and examples/models/ (or the
directories given on the command line), this starts `mlflow models serve -m DIR
--env-manager local` from the pinned MLflow venv and `hoist-server --model DIR` beside
it, sends both the same bodies (every MLflow input form, one row and many, missing
values, a few malformed bodies) and checks:

  * both answer 2xx: the JSON answers are equal (compared structurally, numbers within
    1e-5, relative for large ones);
  * both refuse: both answer 4xx (hoist never 5xx);
  * otherwise the pair must be an intended difference (FRAME_FORMS below, and
    docs/mlflow.md, each with its reason); for those, hoist's answer is compared with
    MLflow's answer to the equivalent body MLflow does take.
A NaN in MLflow's answer (Python's json writes the non-JSON `NaN`) matches hoist's
`null` (JSON has no NaN), also listed in docs/mlflow.md.

Run with the MLflow venv's python: `bash tests/conformance/run.sh` (tools/test.sh does).
Environment: HOIST_SERVER_BIN (default target/debug/hoist-server), ORT_DYLIB_PATH (the
ONNX Runtime library hoist-server uses), HOIST_CONFORMANCE_PARALLEL (MLflow servers
started at once, default 4), HOIST_CONFORMANCE_VERBOSE=1 (print every comparison).
Prints one line per failure and `N passed, N failed` at the end; exits 1 on failure.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import onnx
import requests
import yaml

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
START_TIMEOUT_S = 180.0
TOL = 1e-5
VERBOSE = os.environ.get("HOIST_CONFORMANCE_VERBOSE") == "1"

# Where hoist answers and MLflow refuses, on purpose (docs/mlflow.md, "Intended
# differences"): a dataframe body (dataframe_split, dataframe_records, CSV) that
# MLflow's onnx flavor cannot feed or cannot answer:
#   * several inputs: the flavor feeds `df[name].values`, shape [n] (and a pandas
#     string array for a text column), to inputs declared [n, 1]; ONNX Runtime refuses;
#   * outputs of different lengths once flattened (a label [n] beside probabilities
#     [n, k]): the flavor's `pd.DataFrame.from_dict` refuses ("All arrays must be of
#     the same length").
# hoist answers such a body as records, as MLflow does for every dataframe it can
# answer. The check: hoist's records equal MLflow's answer to the same rows sent as
# `inputs` (which it takes), turned into records; rows with a missing value, which
# MLflow refuses in `inputs` too, must come back as records, one per row.
FRAME_FORMS = ("dataframe_split", "dataframe_records", "csv")

# What the pinned MLflow venv's ONNX Runtime says of a model whose IR version it does
# not take (examples/zoo/current_onnx_defaults): that model is skipped, not failed.
PEER_CANNOT_LOAD = "Unsupported model IR version"
# What tract says of an ONNX operator it does not implement: that runtime is skipped
# for the model (printed with the operator), ONNX Runtime must serve it.
TRACT_CANNOT = "Unimplemented("
# hoist's message when the runtime fails on tensors that fit the model's declared
# inputs: the model's fault, a 500 (MLflow answers any failure in predict with 400).
MODEL_FAILED = "inference failed"


# ---------------------------------------------------------------------------- models


class ModelInfo:
    """What the body generator needs: the model's ONNX inputs and its input example."""

    def __init__(self, path: Path):
        self.path = path
        self.name = path.name
        mlmodel = yaml.safe_load((path / "MLmodel").read_text())
        flavor = mlmodel["flavors"]["onnx"]
        proto = onnx.load(str(path / flavor["data"]), load_external_data=False)
        inits = {i.name for i in proto.graph.initializer}
        self.inputs = []  # (name, elem_type, rank)
        for i in proto.graph.input:
            if i.name in inits:
                continue
            t = i.type.tensor_type
            self.inputs.append((i.name, t.elem_type, len(t.shape.dim)))
        self.signature = mlmodel.get("signature")
        example = path / "input_example.json"
        self.example = json.loads(example.read_text()) if example.exists() else None

    @property
    def tensor_signature(self) -> bool:
        if not self.signature or not self.signature.get("inputs"):
            return False
        return any(s.get("type") == "tensor" for s in json.loads(self.signature["inputs"]))

    def columns(self) -> tuple[list[str], list[list]] | None:
        """The example as a table: column names and rows, or None when it is not one."""
        ex = self.example
        if isinstance(ex, dict) and "columns" in ex and "data" in ex:
            return list(ex["columns"]), [list(r) for r in ex["data"]]
        if isinstance(ex, dict) and len(self.inputs) > 1:
            names = list(ex)
            cols = [_flat(ex[n]) for n in names]
            if len({len(c) for c in cols}) != 1:
                return None
            return names, [list(r) for r in zip(*cols)]
        if isinstance(ex, list) and ex and isinstance(ex[0], list) and len(self.inputs) == 1:
            if any(isinstance(v, list) for v in ex[0]):
                return None  # images and other higher-rank inputs
            return [f"f{i}" for i in range(len(ex[0]))], [list(r) for r in ex]
        return None


def _flat(v):
    while isinstance(v, list) and v and isinstance(v[0], list) and len(v[0]) == 1:
        v = [x[0] for x in v]
    return v


def find_models(args: list[str]) -> list[Path]:
    if args:
        return [Path(a).resolve() for a in args]
    found = []
    for parent in (REPO / "examples" / "zoo", REPO / "examples" / "models"):
        if parent.is_dir():
            found += sorted(p for p in parent.iterdir() if (p / "MLmodel").exists())
    return found


# ---------------------------------------------------------------------------- bodies

JSON = "application/json"
CSV = "text/csv"


def _tile(rows: list[list], n: int) -> list[list]:
    return [list(rows[i % len(rows)]) for i in range(n)]


def _csv(cols: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow(["" if v is None else v for v in r])
    return buf.getvalue()


def _with_null(rows: list[list], col: int) -> list[list]:
    out = [list(r) for r in rows]
    out[0][col] = None
    return out


def reference(name: str) -> str | None:
    """The `inputs` body with the same rows as the dataframe body `name`, or None."""
    kind, form = name.split("/", 1)
    if "null" in form or not form.startswith(FRAME_FORMS):
        return None
    suffix = "_1row" if form.endswith("_1row") else ""
    return f"{kind}/{'inputs' if kind == 'single' else 'inputs_columns'}{suffix}"


def rows_of(body: str, ct: str) -> int:
    if ct == CSV:
        return len(body.strip().splitlines()) - 1
    b = json.loads(body)
    if "dataframe_split" in b:
        return len(b["dataframe_split"]["data"])
    return len(b["dataframe_records"])


def to_records(answer) -> list | None:
    """MLflow's `{"predictions": {output: [...]}}` as pandas records."""
    p = answer.get("predictions") if isinstance(answer, dict) else None
    if not isinstance(p, dict):
        return None
    n = len(next(iter(p.values())))
    unwrap = lambda v: v[0] if isinstance(v, list) and len(v) == 1 else v  # noqa: E731
    return {"predictions": [{k: unwrap(v[i]) for k, v in p.items()} for i in range(n)]}


def bodies(m: ModelInfo) -> list[tuple[str, str, str]]:
    """(name, content type, body) to send to both servers."""
    table = m.columns()
    out: list[tuple[str, str, object]] = []
    if table is None:
        if m.example is not None:
            out.append(("example/inputs", JSON, {"inputs": m.example}))
    elif len(m.inputs) == 1:
        cols, rows = table
        name = m.inputs[0][0]
        for suffix, rs in (("_1row", rows[:1]), ("", _tile(rows, 7))):
            out += [
                (f"single/inputs{suffix}", JSON, {"inputs": rs}),
                (f"single/inputs_named{suffix}", JSON, {"inputs": {name: rs}}),
                (f"single/instances{suffix}", JSON, {"instances": rs}),
                (f"single/instances_named{suffix}", JSON, {"instances": [{name: r} for r in rs]}),
                (f"single/params{suffix}", JSON, {"inputs": rs, "params": {}}),
            ]
            if m.tensor_signature:
                # A tensor signature takes the dataframe forms as one column per input.
                out += [
                    (f"single/dataframe_split_tensor{suffix}", JSON,
                     {"dataframe_split": {"columns": [name], "data": [[r] for r in rs]}}),
                    (f"single/dataframe_records_tensor{suffix}", JSON,
                     {"dataframe_records": [{name: r} for r in rs]}),
                ]
            else:
                out += [
                    (f"single/dataframe_split{suffix}", JSON,
                     {"dataframe_split": {"columns": cols, "data": rs}}),
                    (f"single/dataframe_split_nocolumns{suffix}", JSON,
                     {"dataframe_split": {"data": rs}}),
                    (f"single/dataframe_records{suffix}", JSON,
                     {"dataframe_records": [dict(zip(cols, r)) for r in rs]}),
                    (f"single/csv{suffix}", CSV, _csv(cols, rs)),
                ]
        numeric = [i for i, v in enumerate(rows[0]) if isinstance(v, float)]
        if numeric and not m.tensor_signature:
            rs = _with_null(_tile(rows, 3), numeric[0])
            out += [
                ("single/dataframe_split_null", JSON, {"dataframe_split": {"columns": cols, "data": rs}}),
                ("single/csv_null", CSV, _csv(cols, rs)),
            ]
        wide = [r + [r[-1]] for r in rows]
        out += [
            ("bad/too_wide", JSON, {"inputs": wide}),
            ("bad/unknown_input", JSON, {"inputs": {name + "_nope": rows}}),
        ]
    else:
        cols, rows = table
        rank = {n: r for n, _, r in m.inputs}

        def colwise(rs):
            return {c: [[r[i]] if rank.get(c, 2) == 2 else r[i] for r in rs] for i, c in enumerate(cols)}

        for suffix, rs in (("_1row", rows[:1]), ("", _tile(rows, 7))):
            out += [
                (f"multi/inputs_columns{suffix}", JSON, {"inputs": colwise(rs)}),
                (f"multi/instances_records{suffix}", JSON,
                 {"instances": [{c: ([r[i]] if rank.get(c, 2) == 2 else r[i]) for i, c in enumerate(cols)} for r in rs]}),
                (f"multi/params{suffix}", JSON, {"inputs": colwise(rs), "params": {}}),
                (f"multi/dataframe_split{suffix}", JSON, {"dataframe_split": {"columns": cols, "data": rs}}),
            ]
            if not suffix:
                out += [
                    ("multi/dataframe_records", JSON, {"dataframe_records": [dict(zip(cols, r)) for r in rs]}),
                    ("multi/csv", CSV, _csv(cols, rs)),
                ]
        numeric = [i for i, v in enumerate(rows[0]) if isinstance(v, float)]
        if numeric:
            rs = _with_null(_tile(rows, 3), numeric[0])
            out += [
                ("multi/dataframe_split_null", JSON, {"dataframe_split": {"columns": cols, "data": rs}}),
                ("multi/csv_null", CSV, _csv(cols, rs)),
            ]
        out += [
            ("bad/missing_input", JSON, {"inputs": {c: v for c, v in list(colwise(rows).items())[1:]}}),
        ]
    out += [
        ("bad/not_json", JSON, "{not json"),
        ("bad/list_body", JSON, [1, 2, 3]),
        ("bad/unknown_key", JSON, {"rows": [[1, 2]]}),
        ("bad/two_keys", JSON, {"inputs": [[1]], "instances": [[1]]}),
        ("bad/content_type", "text/plain", "1,2,3"),
    ]
    return [(n, ct, b if isinstance(b, str) else json.dumps(b)) for n, ct, b in out]


# ---------------------------------------------------------------------------- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    def __init__(self, label: str, cmd: list[str], env: dict, logdir: Path):
        self.label = label
        self.cmd = cmd
        self.log = logdir / f"{label}.log"
        self.fh = open(self.log, "w")
        self.proc = subprocess.Popen(cmd, stdout=self.fh, stderr=subprocess.STDOUT, env=env,
                                     cwd=REPO, start_new_session=True)
        self.url: str | None = None

    def wait_ready(self, url_of) -> str | None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return None
            url = url_of(self)
            if url:
                try:
                    if requests.get(url + "/ping", timeout=2).status_code == 200:
                        self.url = url
                        return url
                except requests.RequestException:
                    pass
            time.sleep(0.2)
        return None

    def tail(self) -> str:
        try:
            return "".join(self.log.read_text().splitlines(True)[-15:])
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.fh.close()


def start_mlflow(path: Path, logdir: Path) -> Proc:
    port = free_port()
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    cmd = [str(VENV_BIN / "mlflow"), "models", "serve", "-m", str(path),
           "--env-manager", "local", "-p", str(port), "-h", "127.0.0.1"]
    p = Proc(f"mlflow-{path.name}", cmd, env, logdir)
    p.port = port
    return p


def start_hoist(path: Path, runtime: str, logdir: Path) -> Proc:
    binary = os.environ.get("HOIST_SERVER_BIN", str(REPO / "target" / "debug" / "hoist-server"))
    cmd = [binary, "--model", str(path), "--host", "127.0.0.1", "--port", "0",
           "--runtime", runtime, "--max-batch-size", "1"]
    return Proc(f"hoist-{runtime}-{path.name}", cmd, dict(os.environ), logdir)


def hoist_url(p: Proc) -> str | None:
    for line in p.log.read_text().splitlines():
        if line.startswith("listening on "):
            return line[len("listening on "):].strip().rstrip("/")
    return None


# ---------------------------------------------------------------------------- compare


def same(a, b, path="$") -> str | None:
    """None when equal (numbers within TOL; MLflow's NaN is hoist's null), else where."""
    if isinstance(a, float) and math.isnan(a) and b is None:
        return None
    if isinstance(a, bool) or isinstance(b, bool):
        return None if a == b else f"{path}: {a!r} != {b!r}"
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) and math.isnan(a) and isinstance(b, float) and math.isnan(b):
            return None
        if abs(a - b) <= TOL * max(1.0, abs(a), abs(b)):
            return None
        return f"{path}: {a!r} != {b!r}"
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return f"{path}: keys {sorted(a)} != {sorted(b)}"
        for k in a:
            d = same(a[k], b[k], f"{path}.{k}")
            if d:
                return d
        return None
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            d = same(x, y, f"{path}[{i}]")
            if d:
                return d
        return None
    return None if a == b else f"{path}: {a!r} != {b!r}"


def post(url: str, ct: str, body: str) -> tuple[int, object]:
    r = requests.post(url + "/invocations", data=body.encode(), headers={"Content-Type": ct}, timeout=60)
    try:
        return r.status_code, r.json()
    except ValueError:
        return r.status_code, r.text


def short(v) -> str:
    s = json.dumps(v) if not isinstance(v, str) else v
    return s if len(s) < 300 else s[:300] + "..."


# Defects of hoist's own that are known and not yet fixed: counted as skipped, printed
# with the reason, and listed in docs/mlflow.md ("Known defects"). Each entry: model
# names, runtime, a substring of the case name.
# (models, runtime, case, why): none today. (k-NN rows with a missing value on tract
# were one until hoist's own TopK ordered NaN as ONNX Runtime does.)
KNOWN_DEFECTS: list = []


def known_defect(model: str, ok, msg: str):
    if ok is False:
        for models, runtime, case, why in KNOWN_DEFECTS:
            if model in models and msg.startswith(f"{model} [{runtime}]") and case in msg.split(":", 1)[0]:
                return (None, f"{msg.splitlines()[0]} -- known defect: {why}")
    return (ok, msg)


def compare_model(m: ModelInfo, mlflow_url: str, hoist_urls: dict[str, str]) -> list[tuple[bool, str]]:
    results = []
    sent = {}
    for name, ct, body in bodies(m):
        sent[name] = (ct, body, post(mlflow_url, ct, body))
    if os.environ.get("HOIST_CONFORMANCE_DUMP"):
        with open(Path(os.environ["HOIST_CONFORMANCE_DUMP"]) / f"{m.name}.json", "w") as f:
            json.dump({n: {"body": b, "status": r[0], "answer": r[1]} for n, (c, b, r) in sent.items()}, f, indent=1)
    for runtime, url in hoist_urls.items():
        for name, (ct, body, (ms, mj)) in sent.items():
            hs, hj = post(url, ct, body)
            label = f"{m.name} [{runtime}] {name}"
            ok, why = True, ""
            if hs >= 500 and 400 <= ms < 500 and MODEL_FAILED in str(hj):
                # The model itself fails on a well-formed body (breast_cancer_batch2's
                # hard-coded batch size): MLflow says 400, hoist 500 (docs/mlflow.md).
                why = "(intended difference: the model fails; MLflow 400, hoist 500)"
            elif hs >= 500:
                ok, why = False, f"hoist answered {hs}: {short(hj)}"
            elif 200 <= ms < 300 and 200 <= hs < 300:
                d = same(mj, hj)
                if d:
                    ok, why = False, f"answers differ at {d}\n    mlflow: {short(mj)}\n    hoist:  {short(hj)}"
            elif 400 <= ms < 500 and 400 <= hs < 500:
                pass
            elif 400 <= ms < 500 and 200 <= hs < 300 and name.split("/", 1)[1].startswith(FRAME_FORMS):
                ok, why = intended(name, ct, body, hj, sent)
            elif 400 <= ms < 500 and 200 <= hs < 300 and not name.startswith("bad/") and "null" in body:
                ok, why = intended_null(name, hj, sent)
            else:
                ok, why = False, f"mlflow {ms}, hoist {hs}\n    mlflow: {short(mj)}\n    hoist:  {short(hj)}"
            results.append((ok, f"{label}: {why}" if why else label))
    return results


def first_row_fallback(ref: str, sent) -> tuple[int, object]:
    """MLflow's answer to `ref`; for a one-row body MLflow refuses, the first row of its
    answer to the seven-row body (its rows start with the same one). pandas reads a
    one-row column holding only a missing value as an object column, which ONNX
    Runtime refuses; seven rows make it a float column with a NaN."""
    status, answer = sent[ref][2]
    if 200 <= status < 300 or not ref.endswith("_1row"):
        return status, answer
    status, answer = sent[ref[: -len("_1row")]][2]
    p = answer.get("predictions") if isinstance(answer, dict) else None
    if isinstance(p, list):
        return status, {"predictions": p[:1]}
    if isinstance(p, dict):
        return status, {"predictions": {k: v[:1] for k, v in p.items()}}
    return status, answer


def intended_null(name, hoist_answer, sent) -> tuple[bool, str]:
    """An intended difference: a missing value in `inputs`/`instances`, which MLflow
    refuses (an object array reaches ONNX Runtime) and hoist reads as NaN, as both do
    in a dataframe. hoist's answer, as records, must equal MLflow's answer to the same
    rows sent as `dataframe_split`."""
    kind, form = name.split("/", 1)
    ref = f"{kind}/dataframe_split{'_1row' if form.endswith('_1row') else ''}"
    if ref not in sent:
        return False, f"MLflow refuses a missing value; hoist answers, and there is no {ref} to compare"
    status, answer = first_row_fallback(ref, sent)
    if not 200 <= status < 300:
        return False, f"intended difference (missing value), but MLflow refused {ref} too ({status})"
    mine = to_records(hoist_answer)
    if mine is None:
        return False, f"intended difference (missing value), but hoist's answer is no object of outputs: {short(hoist_answer)}"
    d = same(answer, mine)
    if d:
        return False, f"intended difference (missing value): hoist differs from MLflow's {ref} at {d}"
    return True, f"(intended difference: MLflow refuses a missing value; hoist matches its {ref})"


def intended(name, ct, body, hoist_answer, sent) -> tuple[bool, str]:
    """An intended difference (see FRAME_FORMS): hoist's records against MLflow's
    answer to the same rows as `inputs`. A model with a tensor signature is answered
    as tensors (hoist reads the frame into the signature's tensor first, as MLflow does
    when it accepts the frame): that answer must equal MLflow's `inputs` answer as is."""
    preds = hoist_answer.get("predictions") if isinstance(hoist_answer, dict) else None
    records = isinstance(preds, list) and all(isinstance(r, dict) for r in preds)
    if not records and not isinstance(preds, dict):
        return False, f"intended difference, but hoist answered neither records nor tensors: {short(hoist_answer)}"
    if records and len(preds) != rows_of(body, ct):
        return False, f"intended difference, but hoist answered {len(preds)} records for {rows_of(body, ct)} rows"
    # MLflow's answer to the same rows as `inputs` (as records), else, for one row, the
    # first record of its answer to the seven-row body of this form.
    candidates = []
    if reference(name):
        candidates.append((reference(name), True))
    if name.endswith("_1row"):
        candidates.append((name[: -len("_1row")], False))
    for ref, as_inputs in candidates:
        status, answer = first_row_fallback(ref, sent)
        if 200 <= status < 300:
            break
    else:
        if "null" in body or "null" in name:
            return True, "(intended difference: MLflow refuses a missing value; hoist answered one record per row)"
        return False, f"intended difference, but MLflow refused every equivalent body ({[c for c, _ in candidates]})"
    if not records and not as_inputs:
        return False, f"intended difference, but hoist answered tensors and MLflow has no `inputs` answer to compare: {short(hoist_answer)}"
    want = (to_records(answer) if records else answer) if as_inputs else answer
    if not as_inputs and name.endswith("_1row"):
        want = {"predictions": answer["predictions"][:1]}
    d = same(want, hoist_answer)
    if d:
        return False, f"intended difference: hoist's answer differs from MLflow's {ref} at {d}"
    kind = "records" if records else "tensors"
    return True, f"(intended difference: MLflow refuses; hoist's {kind} match MLflow's {ref})"


# ---------------------------------------------------------------------------- main


def main() -> int:
    models = find_models(sys.argv[1:])
    if not models:
        print("conformance: no models found", file=sys.stderr)
        return 1
    runtimes = os.environ.get("HOIST_CONFORMANCE_RUNTIMES", "onnxruntime,tract").split(",")
    runtimes = [r for r in runtimes if r]
    parallel = int(os.environ.get("HOIST_CONFORMANCE_PARALLEL", "4"))
    logdir = Path(tempfile.mkdtemp(prefix="hoist-conformance-"))
    passed = failed = skipped = 0
    t0 = time.monotonic()

    def run_one(path: Path) -> list[tuple[bool, str]]:
        m = ModelInfo(path)
        ml = start_mlflow(path, logdir)
        hoists = {rt: start_hoist(path, rt, logdir) for rt in runtimes}
        try:
            started = time.monotonic()
            if not ml.wait_ready(lambda p: f"http://127.0.0.1:{p.port}"):
                if ml.proc.poll() is not None and PEER_CANNOT_LOAD in ml.log.read_text():
                    # The peer cannot load the model at all (its pinned ONNX Runtime
                    # refuses the model's IR version): nothing to compare with. Said
                    # so in the output, counted as skipped.
                    return [(None, f"{m.name}: skipped: mlflow models serve cannot load it "
                                   f"({PEER_CANNOT_LOAD})")]
                return [(False, f"{m.name}: mlflow models serve did not start\n{ml.tail()}")]
            startup = time.monotonic() - started
            urls = {}
            res = []
            for rt, h in hoists.items():
                if h.wait_ready(hoist_url):
                    urls[rt] = h.url
                elif rt == "tract" and TRACT_CANNOT in h.log.read_text():
                    op = h.log.read_text().split(TRACT_CANNOT, 1)[1].split(")", 1)[0]
                    res.append((None, f"{m.name} [tract]: skipped: tract has no {op} operator"))
                else:
                    res.append((False, f"{m.name} [{rt}]: hoist-server did not start\n{h.tail()}"))
            res += [known_defect(m.name, ok, msg) for ok, msg in compare_model(m, ml.url, urls)]
            print(f"  {m.name}: mlflow ready in {startup:.1f}s, {len(res)} checks", flush=True)
            return res
        finally:
            ml.stop()
            for h in hoists.values():
                h.stop()

    with ThreadPoolExecutor(max_workers=parallel) as pool:
        for res in pool.map(run_one, models):
            for ok, msg in res:
                if ok is None:
                    skipped += 1
                    print(f"SKIP {msg}")
                elif ok:
                    passed += 1
                    if VERBOSE:
                        print(f"ok   {msg}")
                else:
                    failed += 1
                    print(f"FAIL {msg}")
    print(f"conformance: {len(models)} models, {passed} passed, {failed} failed, {skipped} skipped "
          f"in {time.monotonic() - t0:.0f}s (logs in {logdir})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
