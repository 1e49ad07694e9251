//! Reading predictions out of model servers' answers, for shadow comparison and
//! feedback labels. Only used when an environment mirrors requests or records
//! predictions: the plain proxy path never parses a body.
//!
//! Understood answers:
//! - Open Inference Protocol v2: `{"outputs": [{"name", "datatype", "shape", "data"}]}`.
//!   The label output is the first non-floating-point output (one named like `label`
//!   first); the probabilities are the first floating-point output. Without a label
//!   output, a row's label is the index of its largest probability.
//! - MLflow scoring: `{"predictions": …}` as a list of labels, a list of probability
//!   rows, a list of records (`{"label": …, "probabilities": […]}`), or columns
//!   (`{"label": […], "probabilities": [[…]]}`).
//!
//! Labels are compared as text: `1`, `1.0` and `"1"` are the same class.
//!
//! A regressor's answer (one number per row and no label output: an OIP output of
//! width 1 with no integer or string output beside it, or an MLflow list of numbers
//! not all whole) holds values, not classes: its rows are compared as numbers
//! ([`Comparison::values`]), never as labels or probabilities. A regressor whose
//! values are all whole numbers reads as a classifier.

use serde_json::Value;

/// One answer's predictions: a label per row and, where given, the probabilities
/// (flattened, `width` per row).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Predictions {
    pub(crate) labels: Vec<String>,
    pub(crate) probabilities: Vec<f64>,
    pub(crate) width: usize,
    /// A regressor's answer: one value per row (then no labels or probabilities).
    pub(crate) values: Vec<f64>,
}

/// Sums over the rows of two regressors' answers to the same requests: the
/// candidate's value minus stable's (`d`), for its mean, spread and bias.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ValueSums {
    /// Rows compared.
    pub rows: u64,
    /// Σd and Σd².
    pub diff_sum: f64,
    pub diff_squares: f64,
    /// Σ|d| and Σd² again is Σ|d|²: the absolute differences' spread.
    pub abs_diff_sum: f64,
    /// Σ|stable's value|: the scale relative limits use.
    pub stable_abs_sum: f64,
}

impl ValueSums {
    pub(crate) fn add(&mut self, o: &ValueSums) {
        self.rows += o.rows;
        self.diff_sum += o.diff_sum;
        self.diff_squares += o.diff_squares;
        self.abs_diff_sum += o.abs_diff_sum;
        self.stable_abs_sum += o.stable_abs_sum;
    }

    /// The sums between `earlier` and `self`.
    pub fn since(&self, earlier: &ValueSums) -> ValueSums {
        ValueSums {
            rows: self.rows.saturating_sub(earlier.rows),
            diff_sum: self.diff_sum - earlier.diff_sum,
            diff_squares: (self.diff_squares - earlier.diff_squares).max(0.0),
            abs_diff_sum: (self.abs_diff_sum - earlier.abs_diff_sum).max(0.0),
            stable_abs_sum: (self.stable_abs_sum - earlier.stable_abs_sum).max(0.0),
        }
    }
}

/// How two answers to the same request compare.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Comparison {
    pub(crate) rows: u64,
    pub(crate) agreeing_rows: u64,
    pub(crate) probabilities: u64,
    pub(crate) probability_diff_sum: f64,
    /// Regressors: the rows' values compared as numbers.
    pub(crate) values: ValueSums,
}

/// The predictions in a JSON answer; `None` when it holds none that can be read.
pub(crate) fn parse(body: &[u8]) -> Option<Predictions> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let p = match (v.get("outputs"), v.get("predictions")) {
        (Some(Value::Array(outputs)), _) => oip(outputs),
        (_, Some(p)) => mlflow(p).map(as_regression),
        _ => None,
    }?;
    (!p.labels.is_empty() || !p.values.is_empty()).then_some(p)
}

/// An MLflow answer read as a regressor's values: rows of one number (read as
/// probabilities of one class), or labels that are all numbers and not all
/// whole (an MLflow list of values).
fn as_regression(mut p: Predictions) -> Predictions {
    let one_float_per_row = p.width == 1 && !p.probabilities.is_empty();
    if one_float_per_row && p.labels.iter().all(|l| l == "0") {
        p.values = std::mem::take(&mut p.probabilities);
    } else if p.width == 0 && !p.labels.is_empty() {
        let numbers: Option<Vec<f64>> = p.labels.iter().map(|l| l.parse::<f64>().ok()).collect();
        match numbers {
            Some(v) if v.iter().any(|x| x.fract() != 0.0) => p.values = v,
            _ => return p,
        }
    } else {
        return p;
    }
    p.labels.clear();
    p.width = 0;
    p
}

/// A label as text: integral numbers without a fraction, strings as they are.
pub(crate) fn label(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Some(i.to_string())
            } else if let Some(u) = n.as_u64() {
                Some(u.to_string())
            } else {
                let f = n.as_f64()?;
                if f.fract() == 0.0 && f.abs() < 9.0e15 {
                    Some((f as i64).to_string())
                } else {
                    Some(f.to_string())
                }
            }
        }
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn is_float(datatype: &str) -> bool {
    matches!(datatype, "FP16" | "FP32" | "FP64" | "BF16")
}

fn oip(outputs: &[Value]) -> Option<Predictions> {
    fn datatype(o: &Value) -> &str {
        o.get("datatype").and_then(Value::as_str).unwrap_or("")
    }
    fn name(o: &Value) -> &str {
        o.get("name").and_then(Value::as_str).unwrap_or("")
    }
    let label_output = outputs
        .iter()
        .filter(|o| !is_float(datatype(o)))
        .max_by_key(|o| name(o).contains("label"));
    let prob_output = outputs.iter().find(|o| is_float(datatype(o)));
    let rows_of = |o: &Value| -> Option<usize> {
        let shape = o.get("shape")?.as_array()?;
        shape.first()?.as_u64().map(|n| n as usize)
    };
    let mut p = Predictions::default();
    if let Some(o) = prob_output {
        let data: Vec<f64> = flat_numbers(o.get("data")?)?;
        let rows = rows_of(o).unwrap_or(data.len()).max(1);
        if data.len().is_multiple_of(rows) {
            p.width = data.len() / rows;
            p.probabilities = data;
        }
    }
    match label_output {
        Some(o) => {
            let mut data = Vec::new();
            flat_labels(o.get("data")?, &mut data)?;
            let rows = rows_of(o).unwrap_or(data.len()).max(1);
            if !data.len().is_multiple_of(rows) {
                return None;
            }
            let k = data.len() / rows;
            p.labels = data.into_iter().step_by(k.max(1)).collect();
        }
        // One float per row and no label output: a regressor's values.
        None if p.width == 1 => p.values = std::mem::take(&mut p.probabilities),
        None => p.labels = argmax_rows(&p.probabilities, p.width),
    }
    if !p.values.is_empty() {
        p.width = 0;
    }
    Some(p)
}

fn mlflow(v: &Value) -> Option<Predictions> {
    let mut p = Predictions::default();
    match v {
        Value::Array(rows) => {
            for row in rows {
                match row {
                    Value::Array(probs) => {
                        let r = flat_numbers(&Value::Array(probs.clone()))?;
                        if p.width != 0 && p.width != r.len() {
                            return None;
                        }
                        p.width = r.len();
                        p.labels.push(argmax_rows(&r, r.len()).pop()?);
                        p.probabilities.extend(r);
                    }
                    Value::Object(fields) => {
                        let l = fields
                            .get("label")
                            .or_else(|| fields.values().find(|x| label_like(x)))?;
                        p.labels.push(label(l)?);
                        if let Some(probs) =
                            fields.values().find(|x| x.is_array() || is_zipmap_row(x))
                        {
                            let r = flat_numbers(probs)?;
                            p.width = r.len();
                            p.probabilities.extend(r);
                        }
                    }
                    other => p.labels.push(label(other)?),
                }
            }
        }
        Value::Object(columns) => {
            let probs = columns
                .iter()
                .find(|(_, c)| {
                    c.as_array().is_some_and(|a| {
                        a.iter().all(Value::is_array)
                            || (!a.is_empty() && a.iter().all(is_zipmap_row))
                    })
                })
                .map(|(_, c)| c);
            if let Some(probs) = probs {
                let rows = probs.as_array()?.len().max(1);
                p.probabilities = flat_numbers(probs)?;
                p.width = p.probabilities.len() / rows;
            }
            let labels = columns.get("label").or_else(|| {
                columns.values().find(|c| {
                    c.as_array()
                        .is_some_and(|a| !a.is_empty() && a.iter().all(label_like))
                })
            });
            match labels {
                Some(l) => {
                    for x in l.as_array()? {
                        p.labels.push(label(x)?);
                    }
                }
                None => p.labels = argmax_rows(&p.probabilities, p.width),
            }
        }
        _ => return None,
    }
    Some(p)
}

/// One row of a `ZipMap` output as MLflow answers it: `{"<class>": probability, ...}`
/// (read as the row's probabilities, in the order sent).
fn is_zipmap_row(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|m| !m.is_empty() && m.values().all(Value::is_number))
}

/// A value that reads as a class label: an integer, a string or a boolean.
fn label_like(v: &Value) -> bool {
    v.is_i64() || v.is_u64() || v.is_string() || v.is_boolean()
}

fn flat_numbers(v: &Value) -> Option<Vec<f64>> {
    fn walk(v: &Value, out: &mut Vec<f64>) -> Option<()> {
        match v {
            Value::Array(a) => a.iter().try_for_each(|x| walk(x, out)),
            // A ZipMap row (see `is_zipmap_row`).
            Value::Object(m) => m.values().try_for_each(|x| walk(x, out)),
            Value::Number(n) => {
                out.push(n.as_f64()?);
                Some(())
            }
            _ => None,
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out)?;
    Some(out)
}

fn flat_labels(v: &Value, out: &mut Vec<String>) -> Option<()> {
    match v {
        Value::Array(a) => a.iter().try_for_each(|x| flat_labels(x, out)),
        other => {
            out.push(label(other)?);
            Some(())
        }
    }
}

/// The index of each row's largest value, as a label.
fn argmax_rows(values: &[f64], width: usize) -> Vec<String> {
    if width == 0 {
        return Vec::new();
    }
    values
        .chunks(width)
        .map(|row| {
            row.iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .map(|(i, _)| i.to_string())
                .unwrap_or_default()
        })
        .collect()
}

/// Row by row agreement and probability differences; rows or values only one side
/// has are not compared.
pub(crate) fn compare(stable: &Predictions, candidate: &Predictions) -> Comparison {
    let rows = stable.labels.len().min(candidate.labels.len());
    let agreeing = stable
        .labels
        .iter()
        .zip(&candidate.labels)
        .filter(|(a, b)| a == b)
        .count();
    let (mut n, mut sum) = (0u64, 0.0);
    if stable.width == candidate.width && stable.width > 0 {
        for (a, b) in stable.probabilities.iter().zip(&candidate.probabilities) {
            if a.is_finite() && b.is_finite() {
                n += 1;
                sum += (a - b).abs();
            }
        }
    }
    let mut values = ValueSums::default();
    for (a, b) in stable.values.iter().zip(&candidate.values) {
        if a.is_finite() && b.is_finite() {
            let d = b - a;
            values.rows += 1;
            values.diff_sum += d;
            values.diff_squares += d * d;
            values.abs_diff_sum += d.abs();
            values.stable_abs_sum += a.abs();
        }
    }
    Comparison {
        rows: rows as u64,
        agreeing_rows: agreeing as u64,
        probabilities: n,
        probability_diff_sum: sum,
        values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_inference_answers() {
        let body = br#"{"model_name":"m","outputs":[{"name":"label","datatype":"INT64","shape":[2],"data":[1,0]},{"name":"probabilities","datatype":"FP32","shape":[2,2],"data":[0.1,0.9,0.8,0.2]}]}"#;
        let p = parse(body).unwrap();
        assert_eq!(p.labels, ["1", "0"]);
        assert_eq!(p.width, 2);
        assert_eq!(p.probabilities, [0.1, 0.9, 0.8, 0.2]);
        // Probabilities only: the label is the largest one's index.
        let body = br#"{"outputs":[{"name":"p","datatype":"FP32","shape":[2,3],"data":[0.1,0.2,0.7,0.5,0.3,0.2]}]}"#;
        assert_eq!(parse(body).unwrap().labels, ["2", "0"]);
    }

    #[test]
    fn mlflow_answers() {
        let cols = br#"{"predictions":{"label":[1,0],"probabilities":[[0.1,0.9],[0.8,0.2]]}}"#;
        let p = parse(cols).unwrap();
        assert_eq!(p.labels, ["1", "0"]);
        assert_eq!(p.width, 2);
        assert_eq!(
            parse(br#"{"predictions":[1,0,1.0]}"#).unwrap().labels,
            ["1", "0", "1"]
        );
        assert_eq!(
            parse(br#"{"predictions":[[0.1,0.9],[0.7,0.3]]}"#)
                .unwrap()
                .labels,
            ["1", "0"]
        );
        let records = br#"{"predictions":[{"label":"cat","probabilities":[0.9,0.1]}]}"#;
        assert_eq!(parse(records).unwrap().labels, ["cat"]);
        for bad in [
            &b"not json"[..],
            b"{}",
            b"{\"predictions\":[]}",
            b"{\"error\":\"x\"}",
        ] {
            assert_eq!(parse(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn zipmap_answers_as_mlflow_sends_them() {
        // Columns (a tensor body) and records (a DataFrame body), string labels too.
        let cols = br#"{"predictions":{"output_label":[0,2],"output_probability":[{"0":0.9,"1":0.1,"2":0.0},{"0":0.1,"1":0.2,"2":0.7}]}}"#;
        let p = parse(cols).unwrap();
        assert_eq!(p.labels, ["0", "2"]);
        assert_eq!((p.width, p.probabilities.len()), (3, 6));
        let recs = br#"{"predictions":[{"output_label":"setosa","output_probability":{"setosa":0.9,"virginica":0.1}}]}"#;
        let p = parse(recs).unwrap();
        assert_eq!(p.labels, ["setosa"]);
        assert_eq!(p.probabilities, [0.9, 0.1]);
    }

    #[test]
    fn regressor_answers_are_values_compared_as_numbers() {
        let oip = br#"{"outputs":[{"name":"variable","datatype":"FP32","shape":[2,1],"data":[151.5,80.25]}]}"#;
        let a = parse(oip).unwrap();
        assert_eq!(
            (a.values.clone(), a.labels.len(), a.width),
            (vec![151.5, 80.25], 0, 0)
        );
        let mlflow = br#"{"predictions":[161.5,70.25]}"#;
        let b = parse(mlflow).unwrap();
        assert_eq!(b.values, [161.5, 70.25]);
        let c = compare(&a, &b);
        assert_eq!((c.rows, c.probabilities, c.values.rows), (0, 0, 2));
        assert_eq!(c.values.diff_sum, 0.0);
        assert_eq!(c.values.abs_diff_sum, 20.0);
        assert_eq!(c.values.diff_squares, 200.0);
        assert_eq!(c.values.stable_abs_sum, 231.75);
        // Whole numbers are labels; a classifier's probabilities stay probabilities.
        assert!(
            parse(br#"{"predictions":[1,0]}"#)
                .unwrap()
                .values
                .is_empty()
        );
        let two = br#"{"outputs":[{"name":"p","datatype":"FP32","shape":[1,2],"data":[0.1,0.9]}]}"#;
        assert!(parse(two).unwrap().values.is_empty());
    }

    #[test]
    fn comparing_answers() {
        let a = parse(br#"{"predictions":{"label":[1,0,1,1],"probabilities":[[0.1,0.9],[0.8,0.2],[0.3,0.7],[0.4,0.6]]}}"#).unwrap();
        let b = parse(br#"{"predictions":{"label":[1,1,1,0],"probabilities":[[0.1,0.9],[0.2,0.8],[0.3,0.7],[0.6,0.4]]}}"#).unwrap();
        let c = compare(&a, &b);
        assert_eq!((c.rows, c.agreeing_rows, c.probabilities), (4, 2, 8));
        assert!((c.probability_diff_sum - 1.6).abs() < 1e-9, "{c:?}");
        assert_eq!(compare(&a, &a).agreeing_rows, 4);
        assert_eq!(compare(&a, &a).probability_diff_sum, 0.0);
    }
}
