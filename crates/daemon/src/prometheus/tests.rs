use super::*;

const Q: &str = "sum by (variant) (increase(x[1m]))";

#[test]
fn parses_a_vector() {
    let body = r#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"variant":"stable"},"value":[1435781451.781,"120"]},
        {"metric":{"variant":"candidate","le":"+Inf"},"value":[1435781451.781,"7.5"]}]}}"#;
    let r = parse_response(200, body, Q).unwrap();
    let QueryResult::Vector(v) = r else {
        panic!("{r:?}")
    };
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].labels["variant"], "stable");
    assert_eq!(v[0].value, 120.0);
    assert_eq!(v[1].labels["le"], "+Inf");
    assert_eq!(v[1].value, 7.5);
}

#[test]
fn parses_a_scalar_and_special_values() {
    let r = parse_response(
        200,
        r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"+Inf"]}}"#,
        Q,
    )
    .unwrap();
    assert_eq!(r, QueryResult::Scalar(f64::INFINITY));
    let r = parse_response(
        200,
        r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"NaN"]}}"#,
        Q,
    )
    .unwrap();
    assert!(matches!(r, QueryResult::Scalar(x) if x.is_nan()));
    assert_eq!(
        r.samples().len(),
        1,
        "a scalar is one series without labels"
    );
}

#[test]
fn an_error_answer_names_the_query_and_prometheus_error() {
    let body = r#"{"status":"error","errorType":"bad_data","error":"invalid parameter \"query\": 1:5: parse error: unexpected end of input inside braces"}"#;
    let e = parse_response(400, body, "bad{").unwrap_err();
    assert!(
        matches!(e, PromError::Query { status: 400, ref error_type, .. } if error_type == "bad_data")
    );
    let msg = e.to_string();
    for part in ["HTTP 400", "`bad{`", "bad_data", "parse error"] {
        assert!(msg.contains(part), "{part:?} not in {msg:?}");
    }
    // A proxy's HTML error page.
    let e = parse_response(502, "<html>Bad Gateway</html>", Q).unwrap_err();
    assert!(e.to_string().contains("HTTP 502"), "{e}");
    // 200 with garbage.
    assert!(matches!(
        parse_response(200, "{\"status\":\"success\",\"data\":{\"resultType\":\"matrix\",\"result\":[]}}", Q),
        Err(PromError::Malformed { ref message, .. }) if message.contains("matrix")
    ));
    assert!(matches!(
        parse_response(200, "not json", Q),
        Err(PromError::Malformed { .. })
    ));
}

#[test]
fn empty_results_and_nan_are_not_numbers_for_the_judges() {
    let empty = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
    assert_eq!(
        parse_response(200, empty, Q).unwrap(),
        QueryResult::Vector(vec![])
    );
    let nan = Sample {
        labels: [("variant".to_string(), "stable".to_string())].into(),
        value: f64::NAN,
    };
    let e = check_number(Q, &nan).unwrap_err();
    assert!(
        e.to_string().contains(Q) && e.to_string().contains("NaN"),
        "{e}"
    );
    let e = PromError::NoData {
        query: Q.into(),
        what: "requests of variant \"candidate\"".into(),
    };
    assert!(e.to_string().contains(Q), "{e}");
}

#[test]
fn templates_render_to_promql() {
    let g = Queries::gateway();
    let q = render(
        &g.requests,
        "env=\"production\"",
        Duration::from_secs(30),
        "variant",
    );
    assert_eq!(
        q,
        "sum by (variant) (increase(hoist_gateway_requests_total{ env=\"production\" }[30s]))"
    );
    let e = render(&g.errors, "", Duration::from_millis(1500), "variant");
    assert!(
        e.starts_with("sum by (variant) (increase(hoist_gateway_requests_total{class=~\"5xx|upstream\",}[1500ms])) or 0 * sum by (variant)"),
        "{e}"
    );
    let s = Queries::server();
    let b = render(
        &s.latency_buckets,
        "job=\"m\"",
        Duration::from_secs(60),
        "v",
    );
    assert_eq!(
        b,
        "sum by (v, le) (increase(hoist_request_duration_seconds_bucket{route=~\"/v2/models/:model/infer|/invocations|/predict-image|/inference.GRPCInferenceService/ModelInfer\",job=\"m\"}[60s]))"
    );
    for t in [
        &s.requests,
        &s.errors,
        &s.latency_buckets,
        s.predictions.as_ref().unwrap(),
        s.client_errors.as_ref().unwrap(),
        g.client_errors.as_ref().unwrap(),
    ] {
        let r = render(t, "a=\"b\"", Duration::from_secs(5), "variant");
        assert!(!r.contains("{{") && !r.contains("}}}"), "{r}");
    }
    assert_eq!(promql_duration(Duration::ZERO), "1ms");
}

fn hist(pairs: &[(f64, f64)]) -> Histogram {
    Histogram::from_cumulative(pairs.to_vec()).unwrap()
}

#[test]
fn quantiles_interpolate_as_histogram_quantile() {
    // 100 observations: 50 in (0, 0.01], 40 in (0.01, 0.1], 10 in (0.1, 1].
    let h = hist(&[
        (1.0, 100.0),
        (0.01, 50.0),
        (f64::INFINITY, 100.0),
        (0.1, 90.0),
    ]);
    assert_eq!(h.count(), 100.0);
    // rank 50 is the top of the first bucket.
    assert!((h.quantile(0.5).unwrap() - 0.01).abs() < 1e-12);
    // rank 25: half-way through (0, 0.01].
    assert!((h.quantile(0.25).unwrap() - 0.005).abs() < 1e-12);
    // rank 70: 20 of 40 into (0.01, 0.1].
    assert!((h.quantile(0.7).unwrap() - 0.055).abs() < 1e-12);
    // rank 99: 9 of 10 into (0.1, 1].
    assert!((h.quantile(0.99).unwrap() - 0.91).abs() < 1e-12);
    // In the +Inf bucket: the largest finite bound.
    let h = hist(&[(0.1, 5.0), (f64::INFINITY, 10.0)]);
    assert_eq!(h.quantile(0.99), Some(0.1));
    // Nothing observed, no +Inf bucket, one bucket: no quantile.
    assert_eq!(
        hist(&[(0.1, 0.0), (f64::INFINITY, 0.0)]).quantile(0.5),
        None
    );
    assert!(Histogram::from_cumulative(vec![(0.1, 3.0)]).is_none());
    assert_eq!(hist(&[(f64::INFINITY, 3.0)]).quantile(0.5), None);
    // Equal bounds merge; a non-monotonic count (scrape skew) is raised.
    let h = hist(&[(0.1, 2.0), (0.1, 2.0), (0.2, 3.0), (f64::INFINITY, 4.0)]);
    assert_eq!(
        h.buckets,
        vec![(0.1, 4.0), (0.2, 4.0), (f64::INFINITY, 4.0)]
    );
}

#[test]
fn samples_are_bucket_midpoints_capped_at_ten_thousand() {
    let h = hist(&[
        (0.001, 3.0),
        (0.002, 5.4),
        (0.004, 5.4),
        (f64::INFINITY, 7.0),
    ]);
    let s = h.samples();
    // 3 × 0.5 ms, 2 (2.4 rounded) × 1.5 ms, 2 (1.6 rounded) × 4 ms (+Inf: the largest bound).
    assert_eq!(
        s,
        vec![0.0005, 0.0005, 0.0005, 0.0015, 0.0015, 0.004, 0.004]
    );
    let big = hist(&[
        (0.001, 20_000.0),
        (0.01, 30_000.0),
        (f64::INFINITY, 30_000.0),
    ]);
    let s = big.samples();
    assert_eq!(s.len(), 10_000);
    let low = s.iter().filter(|&&x| x == 0.0005).count();
    assert_eq!(low, 6_667);
    assert!(s[low..].iter().all(|&x| x == 0.0055));
}

fn measure(requests: f64, errors: f64, scale: f64) -> VariantMeasure {
    // Latencies 1..=4 ms, 1/4 each, times `scale`.
    let b = |ms: f64, n: f64| (ms * scale / 1000.0, n * requests / 4.0);
    VariantMeasure {
        requests,
        errors,
        latency: hist(&[
            b(1.0, 1.0),
            b(2.0, 2.0),
            b(3.0, 3.0),
            b(4.0, 4.0),
            (f64::INFINITY, requests),
        ]),
        ..VariantMeasure::default()
    }
}

#[test]
fn judging_numbers_from_prometheus_as_the_engine() {
    let a = Analysis {
        min_requests: 20,
        max_p99_ms: 500.0,
        tolerance: 0.5,
        latency_slack_ms: 5.0,
        ..Analysis::default()
    };
    let same = Measured {
        stable: measure(400.0, 0.0, 1.0),
        candidate: measure(100.4, 0.0, 1.0),
    };
    let classes = Classes {
        stable: vec![300, 100],
        candidate: vec![75, 25],
    };
    let j = judge_measured(&a, &same, Some(&classes));
    assert_eq!(j.verdict, Verdict::Pass, "{}", j.numbers);
    assert_eq!(j.window.requests, 100);
    assert_eq!(j.numbers["candidate"]["requests"], 100);
    assert!(j.numbers["latency_comparison"]["p"].as_f64().unwrap() > 0.05);
    assert_eq!(j.numbers["drift"]["psi"], 0.0);

    let slow = Measured {
        candidate: measure(100.0, 0.0, 20.0),
        ..same.clone()
    };
    let j = judge_measured(&a, &slow, Some(&classes));
    assert!(
        matches!(&j.verdict, Verdict::Fail { reason } if reason.contains("medians")),
        "{j:?}"
    );
    assert!(
        j.numbers["latency_comparison"]["median_ratio"]
            .as_f64()
            .unwrap()
            > 10.0
    );
    assert!(
        j.numbers.get("drift").is_none(),
        "drift is judged only after a pass"
    );

    let errors = Measured {
        candidate: measure(100.0, 30.0, 1.0),
        ..same.clone()
    };
    assert!(matches!(
        judge_measured(&a, &errors, None).verdict,
        Verdict::Fail { reason } if reason.contains("30 of 100")
    ));

    let skewed = Classes {
        stable: vec![300, 100],
        candidate: vec![5, 95],
    };
    let j = judge_measured(&a, &same, Some(&skewed));
    assert!(
        matches!(&j.verdict, Verdict::Fail { reason } if reason.contains("PSI")),
        "{j:?}"
    );
    assert!(j.numbers["drift"]["psi"].as_f64().unwrap() > 0.25);
}

#[tokio::test]
async fn an_unreachable_prometheus_is_inconclusive_naming_the_query() {
    // A port nothing listens on: bind, take the port, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let src = PrometheusSource::new(
        &format!("http://127.0.0.1:{port}"),
        Queries::gateway(),
        "env=\"production\"",
    )
    .unwrap();
    let j = judge_from_prometheus(&src, &Analysis::default(), Duration::from_secs(30), None).await;
    match &j.verdict {
        Verdict::Inconclusive { reason } => {
            assert!(reason.contains("unreachable"), "{reason}");
            assert!(reason.contains("hoist_gateway_"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert!(PrometheusSource::new("ftp://x", Queries::gateway(), "").is_err());
    assert!(PrometheusSource::new("not a url", Queries::gateway(), "").is_err());
}
