//! A scanner for the commonest MLflow scoring body, `{"inputs": [[1.5, 2, ...], ...]}`
//! (or `"instances"`): one key, whose value is a rectangular nested array of JSON
//! numbers. It reads the numbers straight into `f64`s, without building serde's
//! values first (that took a tenth of a small model's request).
//!
//! Any other body is left to the general parser, so every answer and every error
//! stays the same: another key (`params`, a second input), strings, booleans,
//! `null`, an empty or ragged array, arrays nested past [`MAX_DEPTH`], a number JSON
//! does not allow (`+1`, `.5`, `01`, `NaN`), that overflows a double, or that has
//! more digits than a `u64` holds. Numbers come out bit for bit as serde_json makes
//! them.

/// Arrays nested deeper than this go to the general parser.
const MAX_DEPTH: usize = 32;

/// The shape and the numbers of a body of that one form, or `None`.
pub(crate) fn numeric_inputs(body: &[u8]) -> Option<(Vec<usize>, Vec<f64>)> {
    let mut s = Scan { s: body, i: 0 };
    s.ws();
    s.eat(b'{')?;
    s.ws();
    if !(s.lit(b"\"inputs\"") || s.lit(b"\"instances\"")) {
        return None;
    }
    s.ws();
    s.eat(b':')?;
    s.ws();
    let nest = s.nested(body.len())?;
    s.ws();
    s.eat(b'}')?;
    s.ws();
    if s.i != body.len() {
        return None;
    }
    nest.shaped()
}

/// The shape and the numbers of `text`, a rectangular nested array of numbers and
/// nothing else (as a V2 input's `data`), or `None`.
pub(crate) fn numeric_array(text: &[u8]) -> Option<(Vec<usize>, Vec<f64>)> {
    let mut s = Scan { s: text, i: 0 };
    s.ws();
    let nest = s.nested(text.len())?;
    s.ws();
    if s.i != text.len() {
        return None;
    }
    nest.shaped()
}

impl Nest {
    fn shaped(self) -> Option<(Vec<usize>, Vec<f64>)> {
        let leaf = self.leaf_depth?;
        let shape = self.dims[..=leaf].iter().map(|d| d.unwrap_or(0)).collect();
        Some((shape, self.values))
    }
}

/// What the arrays read so far say: each depth's length, where the numbers are.
#[derive(Default)]
struct Nest {
    dims: Vec<Option<usize>>,
    leaf_depth: Option<usize>,
    values: Vec<f64>,
}

struct Scan<'a> {
    s: &'a [u8],
    i: usize,
}

impl Scan<'_> {
    /// A nested array of numbers at the cursor.
    fn nested(&mut self, hint: usize) -> Option<Nest> {
        let mut nest = Nest::default();
        nest.values.reserve(hint / 4);
        self.array(0, &mut nest)?;
        Some(nest)
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    /// JSON's whitespace: space, tab, line feed, carriage return.
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    fn lit(&mut self, l: &[u8]) -> bool {
        let found = self.s[self.i..].starts_with(l);
        if found {
            self.i += l.len();
        }
        found
    }

    /// A non-empty array at `depth`: of arrays, or of numbers.
    fn array(&mut self, depth: usize, nest: &mut Nest) -> Option<()> {
        if depth >= MAX_DEPTH {
            return None;
        }
        self.eat(b'[')?;
        self.ws();
        let nested = self.peek()? == b'[';
        let mut n = 0;
        loop {
            if nested {
                self.array(depth + 1, nest)?;
            } else {
                let v = self.number()?;
                nest.values.push(v);
            }
            n += 1;
            self.ws();
            match self.peek()? {
                b',' => {
                    self.i += 1;
                    self.ws();
                }
                b']' => {
                    self.i += 1;
                    break;
                }
                _ => return None,
            }
        }
        if !nested {
            match nest.leaf_depth {
                Some(d) if d != depth => return None,
                _ => nest.leaf_depth = Some(depth),
            }
        }
        if nest.dims.len() <= depth {
            nest.dims.resize(depth + 1, None);
        }
        match nest.dims[depth] {
            Some(m) if m != n => None,
            _ => {
                nest.dims[depth] = Some(n);
                Some(())
            }
        }
    }

    /// A JSON number, `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, as serde_json
    /// makes it (`f64_from_parts`, without its `float_roundtrip` feature): the digits
    /// as one integer, then one multiplication or division by a power of ten. Numbers
    /// with more digits than a `u64` holds, or a 5-digit exponent, go to serde_json.
    fn number(&mut self) -> Option<f64> {
        let negative = self.eat(b'-').is_some();
        let mut significand: u64 = 0;
        let mut push = |c: u8| -> Option<()> {
            significand = significand
                .checked_mul(10)?
                .checked_add(u64::from(c - b'0'))?;
            Some(())
        };
        match self.peek()? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                while let Some(c @ b'0'..=b'9') = self.peek() {
                    push(c)?;
                    self.i += 1;
                }
            }
            _ => return None,
        }
        let mut exponent: i32 = 0;
        if self.peek() == Some(b'.') {
            self.i += 1;
            let start = self.i;
            while let Some(c @ b'0'..=b'9') = self.peek() {
                push(c)?;
                self.i += 1;
                exponent -= 1;
            }
            if self.i == start {
                return None;
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            let sign = match self.peek() {
                Some(b'-') => -1,
                Some(b'+') => 1,
                _ => 0,
            };
            if sign != 0 {
                self.i += 1;
            }
            let start = self.i;
            let mut e: i32 = 0;
            while let Some(c @ b'0'..=b'9') = self.peek() {
                e = e * 10 + i32::from(c - b'0');
                self.i += 1;
                if self.i - start > 4 {
                    return None;
                }
            }
            if self.i == start {
                return None;
            }
            exponent += if sign < 0 { -e } else { e };
        }
        let mut f = significand as f64;
        loop {
            match POW10.get(exponent.unsigned_abs() as usize) {
                Some(&pow) => {
                    if exponent >= 0 {
                        f *= pow;
                        if f.is_infinite() {
                            return None;
                        }
                    } else {
                        f /= pow;
                    }
                    break;
                }
                None => {
                    if f == 0.0 {
                        break;
                    }
                    if exponent >= 0 {
                        return None;
                    }
                    f /= 1e308;
                    exponent += 308;
                }
            }
        }
        Some(if negative { -f } else { f })
    }
}

/// 1e0 to 1e308, each the double nearest to it, as serde_json's table.
static POW10: std::sync::LazyLock<[f64; 309]> = std::sync::LazyLock::new(|| {
    std::array::from_fn(|i| format!("1e{i}").parse().expect("a power of ten"))
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::FlatJson;

    /// What the general parser (serde_json into `FlatJson`) makes of the same body.
    fn general(body: &str) -> Option<(Vec<usize>, Vec<f64>)> {
        #[derive(serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            #[serde(alias = "instances")]
            inputs: FlatJson,
        }
        let b: Body = serde_json::from_str(body).ok()?;
        let values = b
            .inputs
            .values
            .iter()
            .map(|v| v.as_f64())
            .collect::<Option<Vec<f64>>>()?;
        Some((b.inputs.shape, values))
    }

    #[test]
    fn reads_numeric_bodies_exactly_as_serde_json_does() {
        for body in [
            r#"{"inputs": [[1.5, 2, -3e2, 0.1, 4E-1]]}"#,
            r#" { "instances" :[[ 1 ,2],[3,4] ,[5, 6]] } "#,
            "{\"inputs\":\n[[[1,2],[3,4]],[[5,6],[7,8]]]\r\n}",
            r#"{"inputs": [1, 2, 3]}"#,
            r#"{"inputs": [[-0, 0.0, -0.0, 18446744073709551615, -9223372036854775808]]}"#,
            r#"{"inputs": [[1e-400, 0.0000000000000000000000000000001e-300, 12345678901234567e-5]]}"#,
            r#"{"inputs": [[0.1234567890123456789, 9007199254740993, 1.7976931348623157e+308]]}"#,
            r#"{"inputs": [[2.2250738585072014e-308, 1.7976931348623157e308, 5e-324]]}"#,
            r#"{"inputs": [[0.30000000000000004, 13.68, 87.76, 575.5, 0.09277]]}"#,
        ] {
            let fast = numeric_inputs(body.as_bytes()).unwrap_or_else(|| panic!("{body}"));
            let want = general(body).unwrap();
            assert_eq!(fast.0, want.0, "{body}");
            let bits = |v: &[f64]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast.1), bits(&want.1), "{body}");
        }
    }

    #[test]
    fn random_doubles_come_out_as_serde_json_makes_them() {
        // Random bit patterns, written as Rust and Python write floats, and as
        // integers: every one either read bit for bit as serde_json does, or left to it.
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (mut fast, mut total) = (0, 0);
        for _ in 0..3000 {
            let f = f64::from_bits(next());
            if !f.is_finite() {
                continue;
            }
            let small = (next() % 2_000_000) as f64 / 1000.0 - 1000.0;
            for text in [
                format!("{f}"),
                format!("{f:e}"),
                format!("{small}"),
                format!("{}", next() as i64 >> (next() % 64)),
            ] {
                let body = format!("{{\"inputs\": [[{text}, {text}]]}}");
                total += 1;
                if let Some(got) = numeric_inputs(body.as_bytes()) {
                    fast += 1;
                    let want = general(&body).unwrap_or_else(|| panic!("{body}"));
                    assert_eq!(got.1[0].to_bits(), want.1[0].to_bits(), "{text}");
                }
            }
        }
        // Most bodies take the fast path (not only the easy ones).
        assert!(fast * 2 > total, "{fast} of {total}");
    }

    #[test]
    fn leaves_every_other_body_to_the_general_parser() {
        for body in [
            r#"{"inputs": [[1, 2]], "params": {"k": 1}}"#,
            r#"{"inputs": [[1, "2"]]}"#,
            r#"{"inputs": [[1, null]]}"#,
            r#"{"inputs": [[true]]}"#,
            r#"{"inputs": []}"#,
            r#"{"inputs": [[]]}"#,
            r#"{"inputs": [[1, 2], [3]]}"#,
            r#"{"inputs": [[1, 2], 3]}"#,
            r#"{"inputs": [1, [2]]}"#,
            r#"{"inputs": [[+1]]}"#,
            r#"{"inputs": [[.5]]}"#,
            r#"{"inputs": [[1.]]}"#,
            r#"{"inputs": [[01]]}"#,
            r#"{"inputs": [[1e]]}"#,
            r#"{"inputs": [[NaN]]}"#,
            r#"{"inputs": [[1e400]]}"#,
            r#"{"inputs": [[123456789012345678901234]]}"#,
            r#"{"inputs": [[1e00001]]}"#,
            r#"{"inputs": [[1,]]}"#,
            r#"{"inputs": [[1 2]]}"#,
            r#"{"inputs": 5}"#,
            r#"{"\u0069nputs": [[1]]}"#,
            r#"{"inputs": [[1]]} x"#,
            "{\"inputs\": [[1]]}\u{c}",
            r#"{"dataframe_split": {"columns": ["a"], "data": [[1]]}}"#,
            r#"[[1, 2]]"#,
            "",
        ] {
            assert_eq!(numeric_inputs(body.as_bytes()), None, "{body}");
        }
        let deep = format!("{{\"inputs\": {}1{}}}", "[".repeat(40), "]".repeat(40));
        assert_eq!(numeric_inputs(deep.as_bytes()), None);
    }
}
