//! The Prometheus analysis provider against a real Prometheus (the Debian package's
//! `prometheus`, started here on 127.0.0.1 with a 1 s scrape interval) scraping real
//! `hoist serve` processes and a real `hoist up` gateway under a fixed amount of load.
//! Everything listens on loopback; every wait has a deadline.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{model, production, register, with_v1};
use hoist_daemon::prometheus::{
    Judgement, Measured, PrometheusSource, Queries, judge_from_prometheus,
};
use hoist_release::config::Analysis;
use hoist_release::machine::Verdict;
use serde_json::{Value, json};

const SCRAPE: &str = "1s";

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `hoist serve` process on 127.0.0.1, killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(package: &str) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hoist"))
            .arg("serve")
            .arg("--model")
            .arg(model(package))
            .args(["--port", "0", "--runtime", "tract", "--workers", "1"])
            .args(["--log", "warn"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start hoist serve");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().expect("hoist serve printed nothing").unwrap();
        let addr = first
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("{first}"))
            .trim()
            .to_string();
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        // It listens before the model is loaded (503 until then): wait for ready.
        hoist_testkit::wait_until(
            Duration::from_secs(120),
            format!("{package} ready at {addr}"),
            || hoist_testkit::answers_200(&addr, "/v2/health/ready"),
        );
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Prometheus on 127.0.0.1 with its own storage, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    dir: PathBuf,
    http: reqwest::blocking::Client,
}

impl Prometheus {
    fn start(tag: &str, scrape_configs: &str) -> Prometheus {
        let dir = std::env::temp_dir().join(format!("hoist-prom-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let config = format!(
            "global:\n  scrape_interval: {SCRAPE}\n  scrape_timeout: 900ms\n  evaluation_interval: {SCRAPE}\nscrape_configs:\n{scrape_configs}"
        );
        std::fs::write(dir.join("prometheus.yml"), &config).unwrap();
        let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus (Debian package `prometheus`; tools/debian-tools.sh)");
        let mut p = Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            dir,
            http: reqwest::blocking::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = p.child.try_wait() {
                panic!("prometheus exited ({status}): {}", p.log());
            }
            if p.http
                .get(format!("{}/-/ready", p.url))
                .send()
                .is_ok_and(|r| r.status().is_success())
            {
                return p;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus not ready: {}",
                p.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// An instant query's vector as `{label values joined by '/': value}`, over `keys`.
    fn values(&self, query: &str, keys: &[&str]) -> BTreeMap<String, f64> {
        let mut url = reqwest::Url::parse(&format!("{}/api/v1/query", self.url)).unwrap();
        url.query_pairs_mut().append_pair("query", query);
        let v: Value = self.http.get(url).send().unwrap().json().unwrap();
        assert_eq!(v["status"], "success", "{query}: {v}");
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                let key = keys
                    .iter()
                    .map(|k| s["metric"][*k].as_str().unwrap_or("").to_string())
                    .collect::<Vec<_>>()
                    .join("/");
                let value = s["value"][1].as_str().unwrap().parse::<f64>().unwrap();
                (key, value)
            })
            .collect()
    }

    /// Polls `query` until it gives exactly `want`.
    fn wait_for(&self, query: &str, keys: &[&str], want: &BTreeMap<String, f64>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.values(query, keys);
            if &got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Prometheus did not reach {want:?} for `{query}`: {got:?}\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The 20 rows of `breast_cancer_lr`'s reference set (the same for every breast
/// cancer model): 11 are class 0 and 9 class 1 for `breast_cancer_lr`, 2 and 18 for
/// `breast_cancer_skewed`.
fn reference_rows() -> Vec<Value> {
    let r: Value = serde_json::from_str(
        &std::fs::read_to_string(model("breast_cancer_lr").join("reference.json")).unwrap(),
    )
    .unwrap();
    let data = r["inputs"]["input"]["data"].as_array().unwrap();
    data.chunks(30)
        .map(|row| Value::Array(row.to_vec()))
        .collect()
}

/// `n` one-row `/invocations` requests to `url`, cycling over the reference rows,
/// one at a time, `pace` apart; every answer must be 200. Returns the `x-hoist-variant` header of
/// each answer (`none` without one).
fn send(url: &str, n: usize, pace: Duration) -> Vec<String> {
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let rows = reference_rows();
    (0..n)
        .map(|i| {
            let body = json!({ "inputs": [rows[i % rows.len()]] }).to_string();
            let r = http
                .post(format!("{url}/invocations"))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .unwrap();
            assert!(r.status().is_success(), "{url}: {}", r.status());
            std::thread::sleep(pace);
            r.headers()
                .get("x-hoist-variant")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("none")
                .to_string()
        })
        .collect()
}

/// What Prometheus's `increase` may report for `n` requests sent inside a window of
/// `window` seconds whose both ends are quiet: at least `n`, and at most `n` scaled by
/// the extrapolation to the window's ends (up to 1.1 scrape intervals each, over a
/// sampled span at least two intervals shorter than the window).
fn within_extrapolation(got: f64, n: f64, window: f64) -> bool {
    n - 0.5 <= got && got <= n * (1.0 + 2.2 / (window - 2.0)) + 0.5
}

fn analysis() -> Analysis {
    Analysis {
        min_requests: 20,
        // The absolute p99 budget is not what these tests judge: a debug build of the
        // slow model on two shared cores may take hundreds of milliseconds.
        max_p99_ms: 5000.0,
        max_error_rate: 0.01,
        compare_latency: true,
        confidence: 0.95,
        tolerance: 0.5,
        latency_slack_ms: 5.0,
        drift: true,
        max_psi: 0.25,
        ..Analysis::default()
    }
}

fn run<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn reason(j: &Judgement) -> &str {
    match &j.verdict {
        Verdict::Pass => "",
        Verdict::Fail { reason } | Verdict::Inconclusive { reason } => reason,
    }
}

/// Three pairs of real hoist-server processes (stable `breast_cancer_lr` against a
/// 10× slower model, a model with a different class mix, and itself), each pair a
/// scrape job whose targets carry a static `variant` label; the `server` queries.
#[test]
fn judges_real_servers_from_a_real_prometheus() {
    const WARM: usize = 20;
    const N: usize = 400;
    let stable = Server::start("breast_cancer_lr");
    let candidates = [
        ("slow", Server::start("breast_cancer_slow")),
        ("skewed", Server::start("breast_cancer_skewed")),
        ("same", Server::start("breast_cancer_lr")),
    ];
    let mut jobs = String::new();
    for (job, c) in &candidates {
        jobs.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: ['{}']\n        labels: {{variant: stable}}\n      - targets: ['{}']\n        labels: {{variant: candidate}}\n",
            stable.addr, c.addr
        ));
    }
    let prom = Prometheus::start("servers", &jobs);
    let raw = "sum by (job, variant) (hoist_requests_total{route=\"/invocations\"})";
    let keys = ["job", "variant"];
    let expect = |n: usize| -> BTreeMap<String, f64> {
        candidates
            .iter()
            .flat_map(|(job, _)| {
                [
                    (format!("{job}/stable"), n as f64),
                    (format!("{job}/candidate"), n as f64),
                ]
            })
            .collect()
    };
    let urls: Vec<String> = std::iter::once(&stable)
        .chain(candidates.iter().map(|(_, c)| c))
        .map(|s| format!("http://{}", s.addr))
        .collect();

    // Warm up (every series exists with a known value), and let Prometheus see it.
    for u in &urls {
        send(u, WARM, Duration::ZERO);
    }
    prom.wait_for(raw, &keys, &expect(WARM));
    // The window starts here; a scrape of the warm-up value falls inside it before
    // the load starts.
    let t0 = now();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // When the last scrape of one target (the `same` job's candidate) happened.
    let same = PrometheusSource::new(&prom.url, Queries::server(), "job=\"same\"").unwrap();
    let last_scrape = |at: f64| -> f64 {
        let q = "timestamp(hoist_requests_total{route=\"/invocations\",job=\"same\",variant=\"candidate\"})";
        rt.block_on(same.query_instant(q, Some(at)))
            .unwrap()
            .samples()[0]
            .value
    };
    let t_first = last_scrape(t0);
    std::thread::sleep(Duration::from_millis(1500));
    let loaders: Vec<_> = urls
        .iter()
        .cloned()
        .map(|u| std::thread::spawn(move || send(&u, N, Duration::ZERO)))
        .collect();
    for l in loaders {
        assert_eq!(l.join().unwrap().len(), N);
    }
    // Prometheus has every request: the raw counters equal what was sent, exactly.
    prom.wait_for(raw, &keys, &expect(WARM + N));
    // One more scrape after the load, then judge the window [t0, at].
    std::thread::sleep(Duration::from_millis(1200));
    let at = now();
    let window = Duration::from_secs_f64(at - t0);
    let w = window.as_secs_f64();
    eprintln!("window: {w:.3} s");

    // A window from one scrape of that target to another has nothing to extrapolate
    // (Prometheus 2.x selects both ends): exactly the requests sent.
    let t_last = last_scrape(at);
    let aligned = Duration::from_millis(((t_last - t_first) * 1000.0).round() as u64);
    let m = rt.block_on(same.measure(aligned, Some(t_last))).unwrap();
    eprintln!(
        "same/candidate between scrapes {t_first:.3} and {t_last:.3}: {} requests",
        m.candidate.requests
    );
    assert!(
        (m.candidate.requests - N as f64).abs() < 0.01,
        "{} requests between two scrapes, {N} sent",
        m.candidate.requests
    );
    assert_eq!(m.candidate.window().requests, N as u64);
    assert!((m.candidate.latency.count() - N as f64).abs() < 0.01);

    let a = analysis();
    let mut verdicts = BTreeMap::new();
    for (job, _) in &candidates {
        let src =
            PrometheusSource::new(&prom.url, Queries::server(), &format!("job=\"{job}\"")).unwrap();
        let m: Measured = rt.block_on(src.measure(window, Some(at))).unwrap();
        for (name, v) in [("stable", &m.stable), ("candidate", &m.candidate)] {
            eprintln!(
                "{job}/{name}: requests {:.2} errors {:.2} p50 {:?} ms p99 {:?} ms",
                v.requests,
                v.errors,
                v.latency.quantile(0.5).map(|x| x * 1000.0),
                v.latency.quantile(0.99).map(|x| x * 1000.0)
            );
            assert!(
                within_extrapolation(v.requests, N as f64, w),
                "{job}/{name}: {} requests from Prometheus, {N} sent, window {w:.1} s",
                v.requests
            );
            assert_eq!(v.errors, 0.0, "{job}/{name}");
            assert!(
                within_extrapolation(v.latency.count(), N as f64, w),
                "{job}/{name}: {} latencies",
                v.latency.count()
            );
            // The p99 is Prometheus's own histogram_quantile over the same buckets.
            let q = format!(
                "histogram_quantile(0.99, {})",
                src.render(&src.queries().latency_buckets, window)
            );
            let theirs: f64 = match rt.block_on(src.query_instant(&q, Some(at))).unwrap() {
                hoist_daemon::prometheus::QueryResult::Vector(v) => {
                    v.iter()
                        .find(|s| s.labels.get("variant").map(String::as_str) == Some(name))
                        .unwrap()
                        .value
                }
                other => panic!("{other:?}"),
            };
            let ours = v.window().p99_seconds.unwrap();
            assert!(
                (ours - theirs).abs() <= 1e-9 * theirs.abs().max(1e-3),
                "{job}/{name}: p99 {ours} here, histogram_quantile {theirs}"
            );
        }
        let j = rt.block_on(judge_from_prometheus(&src, &a, window, Some(at)));
        eprintln!(
            "{job}: {:?}\n  {}",
            j.verdict,
            serde_json::to_string(&j.numbers).unwrap()
        );
        verdicts.insert(*job, j);
    }

    // The slow candidate fails the latency comparison, with the numbers.
    let slow = &verdicts["slow"];
    assert!(
        matches!(&slow.verdict, Verdict::Fail { reason } if reason.contains("medians")),
        "{:?}",
        slow.verdict
    );
    let cmp = &slow.numbers["latency_comparison"];
    assert!(cmp["p"].as_f64().unwrap() < 0.05, "{cmp}");
    assert!(cmp["median_ratio"].as_f64().unwrap() > 3.0, "{cmp}");
    assert!(cmp["median_slower_ms"].as_f64().unwrap() > 5.0, "{cmp}");
    assert_eq!(slow.window.requests, slow.numbers["candidate"]["requests"]);

    // The skewed candidate passes on latency and fails on drift.
    let skewed = &verdicts["skewed"];
    assert!(
        matches!(&skewed.verdict, Verdict::Fail { reason } if reason.contains("PSI")),
        "{:?}",
        skewed.verdict
    );
    let d = &skewed.numbers["drift"];
    assert!(d["psi"].as_f64().unwrap() > 0.25, "{d}");
    let share1 = |v: &Value| {
        let c: Vec<f64> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap())
            .collect();
        c[1] / c.iter().sum::<f64>()
    };
    // 9 of 20 reference rows are class 1 for breast_cancer_lr, 18 of 20 skewed.
    assert!((share1(&d["stable_classes"]) - 0.45).abs() < 0.02, "{d}");
    assert!((share1(&d["candidate_classes"]) - 0.9).abs() < 0.02, "{d}");

    // The same model passes everything.
    let same = &verdicts["same"];
    assert_eq!(same.verdict, Verdict::Pass, "{}", same.numbers);
    assert!(same.numbers["drift"]["psi"].as_f64().unwrap() < 0.01);
    assert!(same.numbers["latency_comparison"]["p"].as_f64().is_some());

    // A metric nobody exports: inconclusive, naming the query, never a pass.
    let missing = Queries {
        requests: "sum by ({{variant}}) (increase(hoist_no_such_metric_total{ {{selector}} }[{{window}}]))".into(),
        ..Queries::server()
    };
    let src = PrometheusSource::new(&prom.url, missing, "job=\"same\"").unwrap();
    let j = rt.block_on(judge_from_prometheus(&src, &a, window, Some(at)));
    assert!(
        matches!(&j.verdict, Verdict::Inconclusive { reason } if reason.contains("hoist_no_such_metric_total") && reason.contains("no data")),
        "{:?}",
        j.verdict
    );
    eprintln!("missing metric: {}", reason(&j));
    // The same for the predictions query, once everything else passed.
    let missing = Queries {
        predictions: Some("sum by ({{variant}}, class) (increase(hoist_no_such_predictions_total{ {{selector}} }[{{window}}]))".into()),
        ..Queries::server()
    };
    let src = PrometheusSource::new(&prom.url, missing, "job=\"same\"").unwrap();
    let j = rt.block_on(judge_from_prometheus(&src, &a, window, Some(at)));
    assert!(
        matches!(&j.verdict, Verdict::Inconclusive { reason } if reason.contains("hoist_no_such_predictions_total")),
        "{:?}",
        j.verdict
    );
    assert!(
        j.numbers["latency_comparison"]["p"].is_number(),
        "{}",
        j.numbers
    );
    // A selector matching no target.
    let src = PrometheusSource::new(&prom.url, Queries::server(), "job=\"nobody\"").unwrap();
    let j = rt.block_on(judge_from_prometheus(&src, &a, window, Some(at)));
    assert!(
        matches!(&j.verdict, Verdict::Inconclusive { reason } if reason.contains("job=\"nobody\"")),
        "{:?}",
        j.verdict
    );
    // A query Prometheus refuses: its errorType and message.
    let broken = Queries {
        latency_buckets: "sum by (le (".into(),
        ..Queries::server()
    };
    let src = PrometheusSource::new(&prom.url, broken, "job=\"same\"").unwrap();
    let j = rt.block_on(judge_from_prometheus(&src, &a, window, Some(at)));
    assert!(
        matches!(&j.verdict, Verdict::Inconclusive { reason } if reason.contains("HTTP 400") && reason.contains("bad_data") && reason.contains("sum by (le (")),
        "{:?}",
        j.verdict
    );
    eprintln!("refused query: {}", reason(&j));
    // NaN from Prometheus is reported, not judged.
    let nan = Queries {
        errors: "sum by ({{variant}}) (increase(hoist_requests_total{route=\"/invocations\",{{selector}}}[{{window}}])) / 0 * 0".into(),
        ..Queries::server()
    };
    let src = PrometheusSource::new(&prom.url, nan, "job=\"same\"").unwrap();
    let j = rt.block_on(judge_from_prometheus(&src, &a, window, Some(at)));
    assert!(
        matches!(&j.verdict, Verdict::Inconclusive { reason } if reason.contains("NaN")),
        "{:?}",
        j.verdict
    );
}

/// A candidate that answers 400 to requests stable serves (`breast_cancer_batch1`
/// takes one row per request; stable takes any number): the `server` queries count
/// its 4xx from `hoist_requests_total{code}`, and the judgement fails naming the
/// status code, though no 5xx was ever answered.
#[test]
fn counts_4xx_a_candidate_answers_to_requests_stable_serves() {
    const N: usize = 240;
    let stable = Server::start("breast_cancer_lr");
    let candidate = Server::start("breast_cancer_batch1");
    let jobs = format!(
        "  - job_name: batch\n    static_configs:\n      - targets: ['{}']\n        labels: {{variant: stable}}\n      - targets: ['{}']\n        labels: {{variant: candidate}}\n",
        stable.addr, candidate.addr
    );
    let prom = Prometheus::start("batch", &jobs);
    let raw = "sum by (variant) (hoist_requests_total{route=\"/invocations\"})";
    // Warm up (as a release's smoke test does) and let Prometheus see every series,
    // the 400 series at 0 among them.
    const WARM: usize = 10;
    for s in [&stable, &candidate] {
        send(&format!("http://{}", s.addr), WARM, Duration::ZERO);
    }
    let warm: BTreeMap<String, f64> = [
        ("candidate".to_string(), WARM as f64),
        ("stable".to_string(), WARM as f64),
    ]
    .into();
    prom.wait_for(raw, &["variant"], &warm);
    prom.wait_for(
        "count by (variant) (hoist_requests_total{route=\"/invocations\",code=\"400\"} == 0)",
        &["variant"],
        &[("candidate".to_string(), 1.0), ("stable".to_string(), 1.0)].into(),
    );
    let t0 = now();
    std::thread::sleep(Duration::from_millis(1500));
    // Every fourth request a batch of two rows: stable answers all of them 200, the
    // candidate answers the batches 400.
    let rows = reference_rows();
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let mut refused = 0;
    for i in 0..N {
        let batch = if i % 4 == 3 { 2 } else { 1 };
        let inputs: Vec<Value> = (0..batch)
            .map(|k| rows[(i + k) % rows.len()].clone())
            .collect();
        let body = json!({ "inputs": inputs }).to_string();
        for (server, is_candidate) in [(&stable, false), (&candidate, true)] {
            let r = http
                .post(format!("http://{}/invocations", server.addr))
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .unwrap();
            if is_candidate && batch == 2 {
                assert_eq!(r.status().as_u16(), 400, "the candidate takes one row");
                refused += 1;
            } else {
                assert!(r.status().is_success(), "{}: {}", server.addr, r.status());
            }
        }
    }
    let want: BTreeMap<String, f64> = [
        ("candidate".to_string(), (WARM + N) as f64),
        ("stable".to_string(), (WARM + N) as f64),
    ]
    .into();
    prom.wait_for(raw, &["variant"], &want);
    std::thread::sleep(Duration::from_millis(1200));
    let at = now();
    let window = Duration::from_secs_f64(at - t0);
    let src = PrometheusSource::new(&prom.url, Queries::server(), "job=\"batch\"").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let m = rt.block_on(src.measure(window, Some(at))).unwrap();
    eprintln!(
        "candidate: {:.1} requests, {:.1} 5xx, {:.1} 4xx {:?}; stable {:.1} 4xx",
        m.candidate.requests,
        m.candidate.errors,
        m.candidate.client_errors,
        m.candidate.client_error_codes,
        m.stable.client_errors
    );
    assert_eq!(m.candidate.errors, 0.0, "no 5xx");
    assert_eq!(m.stable.client_errors, 0.0);
    let w = window.as_secs_f64();
    assert!(
        within_extrapolation(m.candidate.client_errors, refused as f64, w),
        "{} 4xx from Prometheus, {refused} answered",
        m.candidate.client_errors
    );
    assert_eq!(m.candidate.client_error_codes.len(), 1);
    assert_eq!(m.candidate.client_error_codes[0].0, 400);
    let j = rt.block_on(judge_from_prometheus(&src, &analysis(), window, Some(at)));
    eprintln!("verdict: {:?}", j.verdict);
    assert!(
        matches!(&j.verdict, Verdict::Fail { reason } if reason.contains("400 on")),
        "{:?} {}",
        j.verdict,
        j.numbers
    );
    // Without the client errors query (a query set written before 4xx were counted),
    // the same window passes: 4xx are what the new query adds.
    let five_only = Queries {
        client_errors: None,
        ..Queries::server()
    };
    let src = PrometheusSource::new(&prom.url, five_only, "job=\"batch\"").unwrap();
    let j = rt.block_on(judge_from_prometheus(&src, &analysis(), window, Some(at)));
    assert!(
        !matches!(j.verdict, Verdict::Fail { .. }),
        "{:?}",
        j.verdict
    );
}

/// The `gateway` queries on a real daemon's gateway: a canary at 50% of
/// `breast_cancer_lr` against `breast_cancer_gbt`, fixed traffic through the
/// environment's gateway, per-variant counts from Prometheus.
#[test]
fn counts_a_real_daemons_gateway_traffic_per_variant() {
    const WARM: usize = 20;
    const N: usize = 200;
    let d = with_v1(
        "prometheus-gateway",
        &production("steps = [{ weight = 50, pause = \"300s\" }]\nanalysis = { enabled = false }"),
    );
    register(&d.home, "breast_cancer_lr", Some("champion"));
    d.wait_for("the canary at 50%", Duration::from_secs(60), |s| {
        s["environments"][0]["weight"] == 50 && !s["environments"][0]["candidate"].is_null()
    });
    let gw = d.env("production");
    let target = gw.trim_start_matches("http://").to_string();
    let prom = Prometheus::start(
        "gateway",
        &format!("  - job_name: gateway\n    static_configs:\n      - targets: ['{target}']\n"),
    );
    let raw = "sum by (variant) (hoist_gateway_requests_total{env=\"production\"})";
    let gateway_counts = || -> BTreeMap<String, f64> {
        let text = reqwest::blocking::get(format!("{gw}/metrics"))
            .unwrap()
            .text()
            .unwrap();
        let mut out = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| l.starts_with("hoist_gateway_requests_total{"))
        {
            let variant = line
                .split("variant=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            let n: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
            *out.entry(variant.to_string()).or_insert(0.0) += n;
        }
        out
    };
    // Both variants have served and Prometheus has what the gateway counted.
    let warm = send(&gw, WARM, Duration::ZERO);
    assert!(
        warm.iter().any(|v| v == "stable") && warm.iter().any(|v| v == "candidate"),
        "{warm:?}"
    );
    let before = gateway_counts();
    prom.wait_for(raw, &["variant"], &before);
    let t0 = now();
    std::thread::sleep(Duration::from_millis(1500));
    // Spread over about 8 s, so the window is many scrapes long.
    let variants = send(&gw, N, Duration::from_millis(40));
    let sent = |v: &str| variants.iter().filter(|x| *x == v).count();
    let (n_stable, n_candidate) = (sent("stable"), sent("candidate"));
    assert_eq!(n_stable + n_candidate, N, "{variants:?}");
    eprintln!("sent through the gateway: stable {n_stable}, candidate {n_candidate}");
    let mut after = before.clone();
    *after.get_mut("stable").unwrap() += n_stable as f64;
    *after.get_mut("candidate").unwrap() += n_candidate as f64;
    assert_eq!(gateway_counts(), after, "the gateway's own counters");
    prom.wait_for(raw, &["variant"], &after);
    std::thread::sleep(Duration::from_millis(1200));
    let at = now();
    let window = Duration::from_secs_f64(at - t0);
    let w = window.as_secs_f64();

    let src = PrometheusSource::new(&prom.url, Queries::gateway(), "env=\"production\"").unwrap();
    let m = run(src.measure(window, Some(at))).unwrap();
    for (name, v, n) in [
        ("stable", &m.stable, n_stable),
        ("candidate", &m.candidate, n_candidate),
    ] {
        eprintln!(
            "gateway {name}: requests {:.2} (sent {n}) errors {:.2} p50 {:?} ms p99 {:?} ms, window {w:.2} s",
            v.requests,
            v.errors,
            v.latency.quantile(0.5).map(|x| x * 1000.0),
            v.latency.quantile(0.99).map(|x| x * 1000.0)
        );
        assert!(
            within_extrapolation(v.requests, n as f64, w),
            "{name}: {} from Prometheus, {n} sent",
            v.requests
        );
        assert!(
            within_extrapolation(v.latency.count(), n as f64, w),
            "{name}"
        );
        assert_eq!(v.errors, 0.0, "{name}");
    }
    let j = run(judge_from_prometheus(&src, &analysis(), window, Some(at)));
    eprintln!("gateway: {:?} {}", j.verdict, j.numbers);
    assert!(
        !matches!(j.verdict, Verdict::Inconclusive { .. }),
        "{:?}",
        j.verdict
    );
    assert!(
        j.numbers["latency_comparison"]["p"].is_number(),
        "{}",
        j.numbers
    );
    assert!(
        j.numbers["drift"]["skipped"].as_str().is_some(),
        "the gateway does not see predictions: {}",
        j.numbers
    );
    // A selector for an environment that does not exist: no data, inconclusive.
    let src = PrometheusSource::new(&prom.url, Queries::gateway(), "env=\"staging\"").unwrap();
    let j = run(judge_from_prometheus(&src, &analysis(), window, Some(at)));
    assert!(
        matches!(&j.verdict, Verdict::Inconclusive { reason } if reason.contains("env=\"staging\"")),
        "{:?}",
        j.verdict
    );
}
