//! Gate verdicts: given what a gate measured, pass or fail and why. Pure; the daemon
//! scores the candidate (and stable) and runs commands, then asks here.

use std::collections::BTreeMap;

/// Fraction of `pred` equal to `truth`, row by row.
pub fn accuracy(pred: &[String], truth: &[String]) -> f64 {
    let right = pred.iter().zip(truth).filter(|(p, t)| p == t).count();
    right as f64 / truth.len().max(1) as f64
}

/// The limits of a golden-set gate.
#[derive(Debug, Clone, Copy)]
pub struct GoldenLimits<'a> {
    pub min_accuracy: Option<f64>,
    /// Most accuracy the candidate may lose against stable.
    pub max_drop: Option<f64>,
    pub min_recall: &'a BTreeMap<String, f64>,
    pub max_log_loss: Option<f64>,
}

/// What a golden-set gate measured: the true labels, the candidate's predictions
/// (and class probabilities, when it gives them), and stable's predictions when
/// stable was scored.
#[derive(Debug, Clone, Copy)]
pub struct GoldenScores<'a> {
    pub truth: &'a [String],
    pub candidate: &'a [String],
    pub probabilities: Option<&'a [Vec<f64>]>,
    /// `None`: no stable version to compare with (or no `max_drop`).
    pub stable: Option<&'a [String]>,
}

/// A golden-set gate's numbers and its failures (none: passed).
#[derive(Debug, Clone, PartialEq)]
pub struct GoldenVerdict {
    pub accuracy: f64,
    /// Recall of each class the labels hold.
    pub recall: BTreeMap<String, f64>,
    /// Mean log-loss, when every label indexes the probabilities.
    pub log_loss: Option<f64>,
    pub stable_accuracy: Option<f64>,
    pub failures: Vec<String>,
}

pub fn judge_golden(limits: &GoldenLimits<'_>, s: &GoldenScores<'_>) -> GoldenVerdict {
    let acc = accuracy(s.candidate, s.truth);
    let mut failures = Vec::new();
    if let Some(min) = limits.min_accuracy
        && acc < min
    {
        failures.push(format!("accuracy {acc:.3} is below {min}"));
    }
    let recall = recalls(s.truth, s.candidate);
    for (c, min) in limits.min_recall {
        let r = recall.get(c).copied().unwrap_or(0.0);
        if r < *min {
            failures.push(format!("recall of class {c} {r:.3} is below {min}"));
        }
    }
    let log_loss = s.probabilities.and_then(|p| log_loss(p, s.truth));
    match (s.probabilities, log_loss, limits.max_log_loss) {
        (Some(_), Some(ll), Some(max)) if ll > max => {
            failures.push(format!("log-loss {ll:.3} is above {max}"));
        }
        (None, _, Some(_)) => {
            failures.push("max_log_loss is set but the model gives no probabilities".into());
        }
        _ => {}
    }
    let stable_accuracy = s.stable.map(|st| accuracy(st, s.truth));
    if let (Some(drop), Some(sacc)) = (limits.max_drop, stable_accuracy)
        && sacc - acc > drop
    {
        failures.push(format!(
            "accuracy {acc:.3} is {:.3} below stable's {sacc:.3} (max drop {drop})",
            sacc - acc
        ));
    }
    GoldenVerdict {
        accuracy: acc,
        recall,
        log_loss,
        stable_accuracy,
        failures,
    }
}

/// Recall of each class in `truth`.
fn recalls(truth: &[String], pred: &[String]) -> BTreeMap<String, f64> {
    let mut classes: Vec<&String> = truth.iter().collect();
    classes.sort();
    classes.dedup();
    classes
        .into_iter()
        .map(|c| {
            let total = truth.iter().filter(|l| *l == c).count();
            let hit = truth
                .iter()
                .zip(pred)
                .filter(|(l, p)| *l == c && *p == c)
                .count();
            (c.clone(), hit as f64 / total as f64)
        })
        .collect()
}

/// Mean log-loss; classes are indexed by their label when labels are 0..k-1
/// (`None` when a label indexes no probability).
fn log_loss(probs: &[Vec<f64>], truth: &[String]) -> Option<f64> {
    let mut ll = 0.0;
    for (p, t) in probs.iter().zip(truth) {
        let q = t.parse::<usize>().ok().and_then(|i| p.get(i))?;
        ll -= q.clamp(1e-15, 1.0).ln();
    }
    Some(ll / probs.len().max(1) as f64)
}

/// p50 and p99 of latencies in ms (sorted here); `None` without any.
pub fn latency_quantiles(times_ms: &mut [f64]) -> Option<(f64, f64)> {
    if times_ms.is_empty() {
        return None;
    }
    times_ms.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| times_ms[((times_ms.len() as f64 - 1.0) * p).round() as usize];
    Some((q(0.5), q(0.99)))
}

/// A latency gate's failures (none: passed).
pub fn judge_latency(
    p50: f64,
    p99: f64,
    max_p50_ms: Option<f64>,
    max_p99_ms: Option<f64>,
) -> Vec<String> {
    let mut failures = Vec::new();
    if let Some(m) = max_p50_ms
        && p50 > m
    {
        failures.push(format!("p50 {p50:.1} ms is above {m} ms"));
    }
    if let Some(m) = max_p99_ms
        && p99 > m
    {
        failures.push(format!("p99 {p99:.1} ms is above {m} ms"));
    }
    failures
}

/// One tensor of a model's signature: name, datatype, shape.
pub type Tensor = (String, String, String);

/// The signature gate: where stable's and the candidate's inputs and outputs differ,
/// and whether that passes (`allowed`: why a breaking change is allowed, if it is).
pub fn judge_signature(
    stable: [&[Tensor]; 2],
    candidate: [&[Tensor]; 2],
    allowed: Option<&str>,
) -> (bool, String) {
    let mut diffs = Vec::new();
    for (i, key) in ["inputs", "outputs"].into_iter().enumerate() {
        let (a, b) = (stable[i], candidate[i]);
        if a != b {
            let show = |v: &[Tensor]| {
                v.iter()
                    .map(|(n, d, s)| format!("{n} {d} {s}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            diffs.push(format!(
                "{key}: stable has [{}], the candidate [{}]",
                show(a),
                show(b)
            ));
        }
    }
    let passed = diffs.is_empty() || allowed.is_some();
    let summary = if diffs.is_empty() {
        "inputs and outputs match stable's".into()
    } else if let Some(why) = allowed {
        format!("breaking change allowed ({why}): {}", diffs.join("; "))
    } else {
        format!("incompatible with stable: {}", diffs.join("; "))
    };
    (passed, summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn golden_set_fails_on_accuracy_recall_and_drop_with_the_numbers() {
        let truth = s(&["0", "0", "1", "1"]);
        let cand = s(&["0", "0", "0", "1"]);
        let stable = s(&["0", "0", "1", "1"]);
        let min_recall = BTreeMap::from([("1".to_string(), 0.9)]);
        let limits = GoldenLimits {
            min_accuracy: Some(0.9),
            max_drop: Some(0.1),
            min_recall: &min_recall,
            max_log_loss: None,
        };
        let v = judge_golden(
            &limits,
            &GoldenScores {
                truth: &truth,
                candidate: &cand,
                probabilities: None,
                stable: Some(&stable),
            },
        );
        assert_eq!(v.accuracy, 0.75);
        assert_eq!(v.recall["1"], 0.5);
        assert_eq!(v.stable_accuracy, Some(1.0));
        assert_eq!(
            v.failures,
            vec![
                "accuracy 0.750 is below 0.9",
                "recall of class 1 0.500 is below 0.9",
                "accuracy 0.750 is 0.250 below stable's 1.000 (max drop 0.1)",
            ]
        );
    }

    #[test]
    fn log_loss_needs_probabilities() {
        let truth = s(&["0", "1"]);
        let none = BTreeMap::new();
        let limits = GoldenLimits {
            min_accuracy: None,
            max_drop: None,
            min_recall: &none,
            max_log_loss: Some(0.5),
        };
        let scores = GoldenScores {
            truth: &truth,
            candidate: &truth,
            probabilities: None,
            stable: None,
        };
        assert_eq!(
            judge_golden(&limits, &scores).failures,
            vec!["max_log_loss is set but the model gives no probabilities"]
        );
        let probs = vec![vec![0.9, 0.1], vec![0.1, 0.9]];
        let v = judge_golden(
            &limits,
            &GoldenScores {
                probabilities: Some(&probs),
                ..scores
            },
        );
        assert!(v.failures.is_empty(), "{:?}", v.failures);
        assert!((v.log_loss.unwrap() - 0.10536).abs() < 1e-4);
    }

    #[test]
    fn latency_limits() {
        let mut t: Vec<f64> = (1..=100).map(f64::from).collect();
        let (p50, p99) = latency_quantiles(&mut t).unwrap();
        assert_eq!((p50, p99), (51.0, 99.0));
        assert!(judge_latency(p50, p99, Some(60.0), Some(100.0)).is_empty());
        assert_eq!(
            judge_latency(p50, p99, None, Some(50.0)),
            vec!["p99 99.0 ms is above 50 ms"]
        );
        assert_eq!(latency_quantiles(&mut []), None);
    }

    #[test]
    fn signature_differences_pass_only_when_allowed() {
        let x = vec![("x".to_string(), "FP32".to_string(), "[-1,4]".to_string())];
        let y = vec![("x".to_string(), "FP32".to_string(), "[-1,5]".to_string())];
        let (ok, summary) = judge_signature([&x, &x], [&x, &x], None);
        assert!(ok && summary == "inputs and outputs match stable's");
        let (ok, summary) = judge_signature([&x, &x], [&y, &x], None);
        assert!(!ok);
        assert_eq!(
            summary,
            "incompatible with stable: inputs: stable has [x FP32 [-1,4]], the candidate [x FP32 [-1,5]]"
        );
        let (ok, summary) = judge_signature([&x, &x], [&y, &x], Some("allow_breaking = true"));
        assert!(ok && summary.starts_with("breaking change allowed (allow_breaking = true)"));
    }
}
