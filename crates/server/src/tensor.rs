//! Tensors as the server sees them: a name, a shape and a typed, row-major buffer.
//!
//! This module owns the datatypes of the Open Inference Protocol (`FP32`, `INT64`, …),
//! conversion from JSON values and from little-endian bytes (the binary tensor
//! extension), and the inverse. It knows nothing about HTTP or about runtimes.

use serde_json::Value;

/// A tensor element type, named as the Open Inference Protocol names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    Bool,
    U8,
    U16,
    U32,
    U64,
    I8,
    I16,
    I32,
    I64,
    F32,
    F64,
    Bytes,
}

impl DataType {
    /// The protocol's name for this type (`FP32`, `INT64`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::U8 => "UINT8",
            DataType::U16 => "UINT16",
            DataType::U32 => "UINT32",
            DataType::U64 => "UINT64",
            DataType::I8 => "INT8",
            DataType::I16 => "INT16",
            DataType::I32 => "INT32",
            DataType::I64 => "INT64",
            DataType::F32 => "FP32",
            DataType::F64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    /// Parses a protocol datatype name. `FP16` and `BF16` are not supported and give `None`.
    pub fn parse(s: &str) -> Option<DataType> {
        Some(match s {
            "BOOL" => DataType::Bool,
            "UINT8" => DataType::U8,
            "UINT16" => DataType::U16,
            "UINT32" => DataType::U32,
            "UINT64" => DataType::U64,
            "INT8" => DataType::I8,
            "INT16" => DataType::I16,
            "INT32" => DataType::I32,
            "INT64" => DataType::I64,
            "FP32" => DataType::F32,
            "FP64" => DataType::F64,
            "BYTES" => DataType::Bytes,
            _ => return None,
        })
    }

    /// Size in bytes of one element, `None` for `BYTES` (variable length).
    pub fn size(self) -> Option<usize> {
        Some(match self {
            DataType::Bool | DataType::U8 | DataType::I8 => 1,
            DataType::U16 | DataType::I16 => 2,
            DataType::U32 | DataType::I32 | DataType::F32 => 4,
            DataType::U64 | DataType::I64 | DataType::F64 => 8,
            DataType::Bytes => return None,
        })
    }
}

impl std::fmt::Display for DataType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The number of elements a shape holds, with checked arithmetic: a shape whose
/// product does not fit in `usize` is an error, never a wrap or a panic.
///
/// This is the one place element counts are computed from shapes a client sent;
/// every other size (bytes, rows, strides) is derived from a count it returned.
pub fn element_count(shape: &[usize]) -> Result<usize, TensorError> {
    shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| {
            TensorError::new(format!(
                "shape {shape:?} is too large: its element count overflows 64 bits"
            ))
        })
}

/// A client's shape (`i64` dimensions, as the protocols send them) as `usize`
/// dimensions: negative dimensions and shapes whose element count overflows are errors.
pub fn shape_from_i64(shape: &[i64]) -> Result<Vec<usize>, TensorError> {
    let dims = shape
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<usize>, _>>()
        .map_err(|_| {
            TensorError::new(format!(
                "shape {shape:?} has a negative dimension; dimensions must be 0 or more"
            ))
        })?;
    element_count(&dims)?;
    Ok(dims)
}

/// The byte size of `count` elements of `dt` (`None` for `BYTES`, which has no fixed
/// size), with checked arithmetic.
pub fn byte_size(dt: DataType, count: usize) -> Result<Option<usize>, TensorError> {
    match dt.size() {
        None => Ok(None),
        Some(size) => count.checked_mul(size).map(Some).ok_or_else(|| {
            TensorError::new(format!(
                "{count} elements of {dt} do not fit in memory: the byte size overflows 64 bits"
            ))
        }),
    }
}

/// Checks that a shape holds exactly `len` elements, naming both in the error.
pub fn check_shape_len(name: &str, shape: &[usize], len: usize) -> Result<(), TensorError> {
    let n = element_count(shape).map_err(|e| TensorError::new(format!("input '{name}': {e}")))?;
    if n != len {
        return Err(TensorError::new(format!(
            "input '{name}': shape {shape:?} holds {n} elements but {len} were sent"
        )));
    }
    Ok(())
}

/// A typed, row-major tensor buffer.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorData {
    Bool(Vec<bool>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    Bytes(Vec<Vec<u8>>),
}

/// Applies `$body` to the inner vector of any [`TensorData`] variant.
macro_rules! each_variant {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::Bool($v) => $body,
            TensorData::U8($v) => $body,
            TensorData::U16($v) => $body,
            TensorData::U32($v) => $body,
            TensorData::U64($v) => $body,
            TensorData::I8($v) => $body,
            TensorData::I16($v) => $body,
            TensorData::I32($v) => $body,
            TensorData::I64($v) => $body,
            TensorData::F32($v) => $body,
            TensorData::F64($v) => $body,
            TensorData::Bytes($v) => $body,
        }
    };
}

impl TensorData {
    pub fn datatype(&self) -> DataType {
        match self {
            TensorData::Bool(_) => DataType::Bool,
            TensorData::U8(_) => DataType::U8,
            TensorData::U16(_) => DataType::U16,
            TensorData::U32(_) => DataType::U32,
            TensorData::U64(_) => DataType::U64,
            TensorData::I8(_) => DataType::I8,
            TensorData::I16(_) => DataType::I16,
            TensorData::I32(_) => DataType::I32,
            TensorData::I64(_) => DataType::I64,
            TensorData::F32(_) => DataType::F32,
            TensorData::F64(_) => DataType::F64,
            TensorData::Bytes(_) => DataType::Bytes,
        }
    }

    pub fn len(&self) -> usize {
        each_variant!(self, v => v.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty buffer of the given type with room for `n` elements.
    pub fn with_capacity(dt: DataType, n: usize) -> TensorData {
        match dt {
            DataType::Bool => TensorData::Bool(Vec::with_capacity(n)),
            DataType::U8 => TensorData::U8(Vec::with_capacity(n)),
            DataType::U16 => TensorData::U16(Vec::with_capacity(n)),
            DataType::U32 => TensorData::U32(Vec::with_capacity(n)),
            DataType::U64 => TensorData::U64(Vec::with_capacity(n)),
            DataType::I8 => TensorData::I8(Vec::with_capacity(n)),
            DataType::I16 => TensorData::I16(Vec::with_capacity(n)),
            DataType::I32 => TensorData::I32(Vec::with_capacity(n)),
            DataType::I64 => TensorData::I64(Vec::with_capacity(n)),
            DataType::F32 => TensorData::F32(Vec::with_capacity(n)),
            DataType::F64 => TensorData::F64(Vec::with_capacity(n)),
            DataType::Bytes => TensorData::Bytes(Vec::with_capacity(n)),
        }
    }

    /// Appends all of `other`'s elements; both must have the same type.
    pub fn extend_from(&mut self, other: &TensorData) -> Result<(), TensorError> {
        macro_rules! ext {
            ($($var:ident),*) => {
                match (self, other) {
                    $((TensorData::$var(a), TensorData::$var(b)) => { a.extend_from_slice(b); Ok(()) })*
                    (a, b) => Err(TensorError::new(format!(
                        "cannot concatenate {} with {}", a.datatype(), b.datatype()
                    ))),
                }
            };
        }
        ext!(Bool, U8, U16, U32, U64, I8, I16, I32, I64, F32, F64, Bytes)
    }

    /// Elements `[start, end)` as a new buffer.
    pub fn slice(&self, start: usize, end: usize) -> TensorData {
        macro_rules! sl {
            ($($var:ident),*) => {
                match self { $(TensorData::$var(v) => TensorData::$var(v[start..end].to_vec()),)* }
            };
        }
        sl!(Bool, U8, U16, U32, U64, I8, I16, I32, I64, F32, F64, Bytes)
    }

    /// Element `i` as a JSON value (numbers, booleans, or UTF-8 strings for `BYTES`).
    pub fn json_at(&self, i: usize) -> Value {
        match self {
            TensorData::Bool(v) => Value::Bool(v[i]),
            TensorData::F32(v) => json_f64(v[i] as f64),
            TensorData::F64(v) => json_f64(v[i]),
            TensorData::Bytes(v) => Value::String(String::from_utf8_lossy(&v[i]).into_owned()),
            TensorData::U8(v) => Value::from(v[i]),
            TensorData::U16(v) => Value::from(v[i]),
            TensorData::U32(v) => Value::from(v[i]),
            TensorData::U64(v) => Value::from(v[i]),
            TensorData::I8(v) => Value::from(v[i]),
            TensorData::I16(v) => Value::from(v[i]),
            TensorData::I32(v) => Value::from(v[i]),
            TensorData::I64(v) => Value::from(v[i]),
        }
    }

    /// Encodes the buffer as the binary tensor extension lays it out: little-endian
    /// elements, `BYTES` elements each preceded by a 4-byte little-endian length.
    pub fn to_le_bytes(&self, out: &mut Vec<u8>) {
        match self {
            TensorData::Bool(v) => out.extend(v.iter().map(|&b| b as u8)),
            TensorData::U8(v) => out.extend_from_slice(v),
            TensorData::I8(v) => out.extend(v.iter().map(|&x| x as u8)),
            TensorData::U16(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::U32(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::U64(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::I16(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::I32(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::I64(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::F32(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::F64(v) => v
                .iter()
                .for_each(|x| out.extend_from_slice(&x.to_le_bytes())),
            TensorData::Bytes(v) => v.iter().for_each(|b| {
                out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                out.extend_from_slice(b);
            }),
        }
    }

    /// Decodes `bytes` laid out as [`TensorData::to_le_bytes`] writes them.
    pub fn from_le_bytes(dt: DataType, bytes: &[u8]) -> Result<TensorData, TensorError> {
        if let Some(size) = dt.size()
            && !bytes.len().is_multiple_of(size)
        {
            return Err(TensorError::new(format!(
                "binary data of {} bytes is not a whole number of {dt} elements ({size} bytes each)",
                bytes.len()
            )));
        }
        macro_rules! num {
            ($var:ident, $t:ty, $n:expr) => {
                TensorData::$var(
                    bytes
                        .chunks_exact($n)
                        .map(|c| <$t>::from_le_bytes(c.try_into().expect("chunk size")))
                        .collect(),
                )
            };
        }
        Ok(match dt {
            DataType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
            DataType::U8 => TensorData::U8(bytes.to_vec()),
            DataType::I8 => TensorData::I8(bytes.iter().map(|&b| b as i8).collect()),
            DataType::U16 => num!(U16, u16, 2),
            DataType::U32 => num!(U32, u32, 4),
            DataType::U64 => num!(U64, u64, 8),
            DataType::I16 => num!(I16, i16, 2),
            DataType::I32 => num!(I32, i32, 4),
            DataType::I64 => num!(I64, i64, 8),
            DataType::F32 => num!(F32, f32, 4),
            DataType::F64 => num!(F64, f64, 8),
            DataType::Bytes => {
                let mut out = Vec::new();
                let mut rest = bytes;
                while !rest.is_empty() {
                    if rest.len() < 4 {
                        return Err(TensorError::new("truncated BYTES element length prefix"));
                    }
                    let n = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
                    rest = &rest[4..];
                    if rest.len() < n {
                        return Err(TensorError::new("BYTES element longer than the data sent"));
                    }
                    out.push(rest[..n].to_vec());
                    rest = &rest[n..];
                }
                TensorData::Bytes(out)
            }
        })
    }

    /// Builds a buffer of type `dt` from flat JSON scalars. Numbers are converted to
    /// `dt` when they fit exactly (integers) or are finite (floats); anything else is
    /// an error that says which element is wrong.
    pub fn from_json_scalars<V: std::borrow::Borrow<Value>>(
        dt: DataType,
        values: &[V],
    ) -> Result<TensorData, TensorError> {
        let mut out = TensorData::with_capacity(dt, values.len());
        for (i, v) in values.iter().enumerate() {
            out.push_json(v.borrow())
                .map_err(|e| TensorError::new(format!("element {i}: {e}")))?;
        }
        Ok(out)
    }

    fn push_json(&mut self, v: &Value) -> Result<(), String> {
        fn int<T: TryFrom<i64> + TryFrom<u64>>(v: &Value) -> Result<T, String> {
            let r = if let Some(i) = v.as_i64() {
                T::try_from(i).ok()
            } else if let Some(u) = v.as_u64() {
                T::try_from(u).ok()
            } else if let Some(f) = v.as_f64().filter(|f| f.fract() == 0.0) {
                // `as` saturates: only floats inside i64's range convert exactly.
                (f >= i64::MIN as f64 && f < i64::MAX as f64)
                    .then(|| T::try_from(f as i64).ok())
                    .flatten()
            } else if let Some(b) = v.as_bool() {
                T::try_from(b as i64).ok()
            } else {
                return Err(format!("expected an integer, got {}", short(v)));
            };
            r.ok_or_else(|| format!("{} is out of range", short(v)))
        }
        fn float(v: &Value) -> Result<f64, String> {
            match v {
                Value::Number(n) => n.as_f64().ok_or_else(|| format!("bad number {n}")),
                Value::Bool(b) => Ok(*b as u8 as f64),
                // pandas/MLflow clients send NaN as null.
                Value::Null => Ok(f64::NAN),
                Value::String(s) => match s.as_str() {
                    "NaN" | "nan" => Ok(f64::NAN),
                    "Infinity" | "inf" => Ok(f64::INFINITY),
                    "-Infinity" | "-inf" => Ok(f64::NEG_INFINITY),
                    _ => s
                        .trim()
                        .parse::<f64>()
                        .map_err(|_| format!("expected a number, got {}", short(v))),
                },
                _ => Err(format!("expected a number, got {}", short(v))),
            }
        }
        match self {
            TensorData::Bool(o) => o.push(match v {
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
                _ => return Err(format!("expected a boolean, got {}", short(v))),
            }),
            TensorData::U8(o) => o.push(int(v)?),
            TensorData::U16(o) => o.push(int(v)?),
            TensorData::U32(o) => o.push(int(v)?),
            TensorData::U64(o) => o.push(int(v)?),
            TensorData::I8(o) => o.push(int(v)?),
            TensorData::I16(o) => o.push(int(v)?),
            TensorData::I32(o) => o.push(int(v)?),
            TensorData::I64(o) => o.push(int(v)?),
            TensorData::F32(o) => o.push(float(v)? as f32),
            TensorData::F64(o) => o.push(float(v)?),
            TensorData::Bytes(o) => o.push(match v {
                Value::String(s) => s.as_bytes().to_vec(),
                other => other.to_string().into_bytes(),
            }),
        }
        Ok(())
    }
}

/// A JSON number for a float; non-finite values become `null`, as JSON has no NaN.
fn json_f64(f: f64) -> Value {
    serde_json::Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

/// A short rendering of a JSON value for error messages.
fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!("{}…", &s[..s.floor_char_boundary(40)])
    } else {
        s
    }
}

/// Serializes a buffer as a flat JSON array, straight from the typed data.
pub struct FlatSer<'a>(pub &'a TensorData);

impl serde::Serialize for FlatSer<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        match self.0 {
            TensorData::F32(v) => v
                .iter()
                .try_for_each(|x| seq.serialize_element(&finite(*x as f64)))?,
            TensorData::F64(v) => v
                .iter()
                .try_for_each(|x| seq.serialize_element(&finite(*x)))?,
            TensorData::I64(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::I32(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            TensorData::Bool(v) => v.iter().try_for_each(|x| seq.serialize_element(x))?,
            other => (0..other.len()).try_for_each(|i| seq.serialize_element(&other.json_at(i)))?,
        }
        seq.end()
    }
}

/// Serializes a tensor as nested JSON arrays following its shape, straight from the
/// typed data (MLflow's `predictions`).
pub struct NestedSer<'a> {
    data: &'a TensorData,
    shape: &'a [usize],
    /// First element of this sub-tensor.
    start: usize,
}

impl<'a> NestedSer<'a> {
    pub fn new(t: &'a Tensor) -> Self {
        NestedSer {
            data: &t.data,
            shape: &t.shape,
            start: 0,
        }
    }
}

impl serde::Serialize for NestedSer<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let Some((&n, rest)) = self.shape.split_first() else {
            return serde::Serialize::serialize(&self.data.json_at(self.start), s);
        };
        let stride = saturating_count(rest);
        let mut seq = s.serialize_seq(Some(n))?;
        if rest.is_empty()
            && let TensorData::F32(v) = self.data
        {
            for x in &v[self.start..self.start + n] {
                seq.serialize_element(&finite(*x as f64))?;
            }
            return seq.end();
        }
        for i in 0..n {
            seq.serialize_element(&NestedSer {
                data: self.data,
                shape: rest,
                start: self.start + i * stride,
            })?;
        }
        seq.end()
    }
}

/// The element count of a shape that is known to be valid (a [`Tensor`]'s), saturating
/// rather than overflowing where a zero dimension hides a huge product of the others.
pub(crate) fn saturating_count(shape: &[usize]) -> usize {
    shape.iter().fold(1usize, |n, &d| n.saturating_mul(d))
}

/// A float, or `null` when not finite (JSON has no NaN).
fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

/// Nested JSON arrays read straight into their scalars and shape, without building
/// the tree of arrays: the fast path for the `data` of an inference request.
#[derive(Debug, Default)]
pub struct FlatJson {
    pub shape: Vec<usize>,
    pub values: Vec<Value>,
}

impl<'de> serde::Deserialize<'de> for FlatJson {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};

        #[derive(Default)]
        struct State {
            dims: Vec<Option<usize>>,
            leaf_depth: Option<usize>,
            values: Vec<Value>,
        }
        struct Level<'a> {
            st: &'a mut State,
            depth: usize,
        }
        impl Level<'_> {
            fn leaf<E: de::Error>(self, v: Value) -> Result<(), E> {
                match self.st.leaf_depth {
                    Some(d) if d != self.depth => {
                        return Err(E::custom(
                            "ragged nested arrays: every row must have the same length",
                        ));
                    }
                    _ => self.st.leaf_depth = Some(self.depth),
                }
                if matches!(v, Value::Array(_) | Value::Object(_)) {
                    return Err(E::custom("expected numbers, booleans or strings in data"));
                }
                self.st.values.push(v);
                Ok(())
            }
        }
        impl<'de> DeserializeSeed<'de> for Level<'_> {
            type Value = ();
            fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_any(self)
            }
        }
        impl<'de> Visitor<'de> for Level<'_> {
            type Value = ();
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a (nested) array of scalars")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                let depth = self.depth;
                let mut n = 0;
                while seq
                    .next_element_seed(Level {
                        st: &mut *self.st,
                        depth: depth + 1,
                    })?
                    .is_some()
                {
                    n += 1;
                }
                if self.st.dims.len() <= depth {
                    self.st.dims.resize(depth + 1, None);
                }
                match self.st.dims[depth] {
                    Some(m) if m != n => Err(de::Error::custom(
                        "ragged nested arrays: every row must have the same length",
                    )),
                    _ => {
                        self.st.dims[depth] = Some(n);
                        Ok(())
                    }
                }
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
                self.leaf(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
                self.leaf(Value::from(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
                self.leaf(Value::from(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
                self.leaf(Value::Bool(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
                self.leaf(Value::String(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<(), E> {
                self.leaf(Value::Null)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
                Err(de::Error::custom(
                    "expected numbers, booleans or strings in data, found an object",
                ))
            }
        }

        let mut st = State::default();
        Level {
            st: &mut st,
            depth: 0,
        }
        .deserialize(d)?;
        // Dimensions down to the scalars; an empty array has no deeper ones.
        let depth = st.leaf_depth.unwrap_or(st.dims.len());
        let shape = st.dims[..depth.min(st.dims.len())]
            .iter()
            .map(|d| d.unwrap_or(0))
            .collect();
        Ok(FlatJson {
            shape,
            values: st.values,
        })
    }
}

/// A named tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: TensorData,
}

impl Tensor {
    pub fn new(
        name: impl Into<String>,
        shape: Vec<usize>,
        data: TensorData,
    ) -> Result<Tensor, TensorError> {
        let name = name.into();
        check_shape_len(&name, &shape, data.len())?;
        Ok(Tensor { name, shape, data })
    }

    /// Number of rows (the first dimension), 1 for a scalar.
    pub fn rows(&self) -> usize {
        self.shape.first().copied().unwrap_or(1)
    }

    /// The tensor as nested JSON arrays following its shape.
    pub fn to_nested_json(&self) -> Value {
        fn build(data: &TensorData, shape: &[usize], offset: &mut usize) -> Value {
            match shape.split_first() {
                None => {
                    let v = data.json_at(*offset);
                    *offset += 1;
                    v
                }
                Some((&n, rest)) => {
                    Value::Array((0..n).map(|_| build(data, rest, offset)).collect())
                }
            }
        }
        build(&self.data, &self.shape, &mut 0)
    }

    /// Row `i` as JSON: a scalar for a 1-D tensor, nested arrays otherwise.
    pub fn row_json(&self, i: usize) -> Value {
        let Some((_, rest)) = self.shape.split_first() else {
            return if i < self.data.len() {
                self.data.json_at(i)
            } else {
                Value::Null
            };
        };
        let row_len = saturating_count(rest);
        let (start, end) = (i.saturating_mul(row_len), (i + 1).saturating_mul(row_len));
        if end > self.data.len() {
            return Value::Null;
        }
        let sub = Tensor {
            name: String::new(),
            shape: rest.to_vec(),
            data: self.data.slice(start, end),
        };
        sub.to_nested_json()
    }
}

/// Flattens nested JSON arrays into their scalars, returning the shape found.
/// Ragged arrays are an error.
pub fn flatten_json(v: &Value) -> Result<(Vec<usize>, Vec<&Value>), TensorError> {
    let mut shape = Vec::new();
    let mut cur = v;
    while let Value::Array(a) = cur {
        shape.push(a.len());
        match a.first() {
            Some(first) => cur = first,
            None => break,
        }
    }
    // The shape is read off the first element at each level: its product is what a
    // regular array would hold, not what this one does (a ragged body can claim far
    // more than it has). Overflow means it cannot be regular; the capacity is capped.
    let n = element_count(&shape).map_err(|_| {
        TensorError::new("ragged nested arrays: every row must have the same length")
    })?;
    let mut out = Vec::with_capacity(n.min(1 << 16));
    fn walk<'a>(
        v: &'a Value,
        shape: &[usize],
        out: &mut Vec<&'a Value>,
    ) -> Result<(), TensorError> {
        match (shape.split_first(), v) {
            (None, Value::Array(_)) => Err(TensorError::new("ragged nested arrays")),
            (None, scalar) => {
                out.push(scalar);
                Ok(())
            }
            (Some((&n, rest)), Value::Array(a)) if a.len() == n => {
                a.iter().try_for_each(|x| walk(x, rest, out))
            }
            (Some(_), _) => Err(TensorError::new(
                "ragged nested arrays: every row must have the same length",
            )),
        }
    }
    walk(v, &shape, &mut out)?;
    Ok((shape, out))
}

/// A problem with tensor data sent by a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TensorError(pub String);

impl TensorError {
    pub fn new(msg: impl Into<String>) -> Self {
        TensorError(msg.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn le_bytes_round_trip_for_every_type() {
        let cases = vec![
            TensorData::Bool(vec![true, false]),
            TensorData::U8(vec![1, 255]),
            TensorData::I16(vec![-3, 7]),
            TensorData::I64(vec![i64::MIN, 42]),
            TensorData::F32(vec![1.5, -0.25]),
            TensorData::F64(vec![1e300, -2.0]),
            TensorData::Bytes(vec![b"ab".to_vec(), vec![], b"xyz".to_vec()]),
        ];
        for data in cases {
            let mut buf = Vec::new();
            data.to_le_bytes(&mut buf);
            assert_eq!(
                TensorData::from_le_bytes(data.datatype(), &buf).unwrap(),
                data
            );
        }
    }

    #[test]
    fn truncated_binary_data_is_an_error() {
        let err = TensorData::from_le_bytes(DataType::F32, &[0, 0, 0]).unwrap_err();
        assert!(err.0.contains("not a whole number of FP32"), "{err}");
        assert!(TensorData::from_le_bytes(DataType::Bytes, &[5, 0, 0, 0, 1]).is_err());
    }

    #[test]
    fn nested_json_flattens_with_its_shape() {
        let v = json!([[1, 2, 3], [4, 5, 6]]);
        let (shape, flat) = flatten_json(&v).unwrap();
        assert_eq!(shape, vec![2, 3]);
        let data = TensorData::from_json_scalars(DataType::F32, &flat).unwrap();
        assert_eq!(data, TensorData::F32(vec![1., 2., 3., 4., 5., 6.]));
        assert!(flatten_json(&json!([[1, 2], [3]])).is_err());
        assert!(flatten_json(&json!([[1, 2], 3])).is_err());
    }

    #[test]
    fn flat_json_reads_nested_arrays_without_the_tree() {
        let f: FlatJson = serde_json::from_str("[[1, 2.5, 3], [4, 5, 6]]").unwrap();
        assert_eq!(f.shape, vec![2, 3]);
        assert_eq!(f.values.len(), 6);
        assert_eq!(f.values[1], json!(2.5));
        let f: FlatJson = serde_json::from_str("[1, 2]").unwrap();
        assert_eq!(f.shape, vec![2]);
        assert!(serde_json::from_str::<FlatJson>("[[1, 2], [3]]").is_err());
        assert!(serde_json::from_str::<FlatJson>("[[1, 2], 3]").is_err());
        assert!(serde_json::from_str::<FlatJson>("[{\"a\": 1}]").is_err());
        let data = TensorData::from_json_scalars(DataType::I64, &f.values).unwrap();
        assert_eq!(data, TensorData::I64(vec![1, 2]));
        let out = serde_json::to_string(&FlatSer(&TensorData::F32(vec![0.5, f32::NAN]))).unwrap();
        assert_eq!(out, "[0.5,null]");
        let t = Tensor::new("p", vec![2, 2], TensorData::F32(vec![0.5, 0.5, 1.0, 0.0])).unwrap();
        let nested = serde_json::to_value(NestedSer::new(&t)).unwrap();
        assert_eq!(nested, t.to_nested_json());
    }

    #[test]
    fn json_conversion_rejects_what_does_not_fit() {
        let v = [json!(300)];
        let refs: Vec<&Value> = v.iter().collect();
        assert!(TensorData::from_json_scalars(DataType::U8, &refs).is_err());
        let v = [json!("abc")];
        let refs: Vec<&Value> = v.iter().collect();
        let err = TensorData::from_json_scalars(DataType::F32, &refs).unwrap_err();
        assert!(err.0.contains("element 0"), "{err}");
    }

    #[test]
    fn sizes_from_client_shapes_are_checked() {
        assert_eq!(element_count(&[2, 3, 4]), Ok(24));
        assert_eq!(element_count(&[]), Ok(1));
        assert_eq!(element_count(&[0, usize::MAX, usize::MAX]), Ok(0));
        let err = element_count(&[1 << 32, 1 << 32]).unwrap_err();
        assert!(err.0.contains("overflows"), "{err}");
        // 614891469123651721 * 30 wraps to 14 in release builds: not here.
        assert!(shape_from_i64(&[614891469123651721, 30]).is_err());
        assert!(shape_from_i64(&[1, -1]).unwrap_err().0.contains("negative"));
        assert_eq!(shape_from_i64(&[2, 15]), Ok(vec![2, 15]));
        assert_eq!(byte_size(DataType::F32, 3), Ok(Some(12)));
        assert_eq!(byte_size(DataType::Bytes, 3), Ok(None));
        assert!(byte_size(DataType::F64, usize::MAX / 4).is_err());
        let err = Tensor::new("x", vec![1 << 32, 1 << 32], TensorData::F32(vec![])).unwrap_err();
        assert!(
            err.0.contains("input 'x'") && err.0.contains("overflows"),
            "{err}"
        );
        let err = check_shape_len("x", &[1_000_000_000, 1_000_000_000], 1).unwrap_err();
        assert!(
            err.0.contains("1000000000000000000 elements but 1"),
            "{err}"
        );
    }

    #[test]
    fn a_ragged_array_claiming_a_huge_shape_reserves_nothing_for_it() {
        // The first element at each level says 1000 x 1000 x 1000; the body holds 1002
        // scalars. Reserving the claimed product would ask for gigabytes.
        let inner = Value::Array(vec![json!(0); 1000]);
        let mid = Value::Array(
            std::iter::once(inner)
                .chain((0..999).map(|_| json!([])))
                .collect(),
        );
        let v = Value::Array(
            std::iter::once(mid)
                .chain((0..999).map(|_| json!(1)))
                .collect(),
        );
        assert!(flatten_json(&v).unwrap_err().0.contains("ragged"));
        // 1000^7 overflows 64 bits: still a plain 400, with nothing reserved.
        let mut deep = json!(0);
        for _ in 0..7 {
            deep = Value::Array(
                std::iter::once(deep)
                    .chain((0..999).map(|_| json!([])))
                    .collect(),
            );
        }
        assert!(flatten_json(&deep).unwrap_err().0.contains("ragged"));
    }

    #[test]
    fn nested_output_follows_shape() {
        let t = Tensor::new("p", vec![2, 2], TensorData::F32(vec![0.5, 0.5, 1.0, 0.0])).unwrap();
        assert_eq!(t.to_nested_json(), json!([[0.5, 0.5], [1.0, 0.0]]));
        assert_eq!(t.row_json(1), json!([1.0, 0.0]));
        assert!(Tensor::new("p", vec![3], TensorData::F32(vec![1.0])).is_err());
    }
}
