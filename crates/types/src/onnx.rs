//! Finds every external-data location an `.onnx` file names, without an ONNX or
//! protobuf library: a minimal walk of the protobuf wire format over the messages
//! that can hold a `TensorProto`.
//!
//! Field numbers (from `onnx.proto`):
//! - `ModelProto`: graph = 7, training_info = 20, functions = 25
//! - `TrainingInfoProto`: initialization = 1, algorithm = 2 (graphs)
//! - `GraphProto`: node = 1, initializer = 5, sparse_initializer = 15
//! - `FunctionProto`: node = 7, attribute_proto = 11
//! - `NodeProto`: attribute = 5
//! - `AttributeProto`: t = 5, g = 6, tensors = 10, graphs = 11, sparse_tensor = 22,
//!   sparse_tensors = 23
//! - `SparseTensorProto`: values = 1, indices = 2
//! - `TensorProto`: external_data = 13 (`StringStringEntryProto`: key = 1, value = 2)
//!
//! Conservative by design: every occurrence of a field is visited (protobuf merges a
//! repeated singular message, so a second `graph` counts), the value of every entry
//! whose key is `location` is reported whatever the tensor's `data_location` says,
//! and anything the walk cannot read (truncated lengths, invalid wire types: no
//! protobuf parser reads those) is [`ScanError::Malformed`], while what protobuf
//! would read but hoist will not (nesting deeper than [`MAX_DEPTH`], a location that
//! is not UTF-8) is [`ScanError::Refused`]: an error either way, never a guess. The file
//! is read through a buffer and large fields (raw tensor bytes) are skipped by
//! seeking, so a multi-gigabyte model costs no memory.

use std::io::{BufReader, Read, Seek};
use std::path::Path;

/// How deeply messages may nest (protobuf's own default limit is 100).
pub const MAX_DEPTH: usize = 100;

/// The longest `StringStringEntryProto` key or value read (a path is far shorter).
const MAX_ENTRY_STRING: u64 = 64 * 1024;

/// Why an `.onnx` file could not be walked.
#[derive(Debug)]
pub enum ScanError {
    Io(std::io::Error),
    /// Not a protobuf message at all (truncated, a length past the end, an invalid
    /// wire type): no protobuf parser, and so no runtime, can read it.
    Malformed(String),
    /// A protobuf message hoist will not accept: nesting deeper than [`MAX_DEPTH`], an
    /// external-data entry that is not UTF-8 or is longer than 64 KiB.
    Refused(String),
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanError::Io(e) => write!(f, "{e}"),
            ScanError::Malformed(m) => write!(f, "not a well-formed ONNX model: {m}"),
            ScanError::Refused(m) => write!(f, "refused ONNX model: {m}"),
        }
    }
}

impl std::error::Error for ScanError {}

impl From<std::io::Error> for ScanError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ScanError::Malformed("the file ends in the middle of a field".into())
        } else {
            ScanError::Io(e)
        }
    }
}

/// Every `location` of a tensor's external data in the `.onnx` file at `path`, in
/// file order (duplicates kept).
pub fn external_data_locations(path: &Path) -> Result<Vec<String>, ScanError> {
    let f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    scan(f, len)
}

/// [`external_data_locations`] of `len` bytes read from `r`.
pub fn scan<R: Read + Seek>(r: R, len: u64) -> Result<Vec<String>, ScanError> {
    let mut w = Walker {
        r: BufReader::new(r),
        pos: 0,
        out: Vec::new(),
    };
    w.message(Kind::Model, len, 0)?;
    Ok(w.out)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Model,
    TrainingInfo,
    Graph,
    Function,
    Node,
    Attribute,
    SparseTensor,
    Tensor,
    Entry,
}

impl Kind {
    /// The message kind field `field` of a `self` holds, if it is one that can lead to
    /// a tensor.
    fn child(self, field: u64) -> Option<Kind> {
        use Kind::*;
        Some(match (self, field) {
            (Model, 7) => Graph,
            (Model, 20) => TrainingInfo,
            (Model, 25) => Function,
            (TrainingInfo, 1 | 2) => Graph,
            (Graph, 1) => Node,
            (Graph, 5) => Tensor,
            (Graph, 15) => SparseTensor,
            (Function, 7) => Node,
            (Function, 11) => Attribute,
            (Node, 5) => Attribute,
            (Attribute, 5 | 10) => Tensor,
            (Attribute, 6 | 11) => Graph,
            (Attribute, 22 | 23) => SparseTensor,
            (SparseTensor, 1 | 2) => Tensor,
            (Tensor, 13) => Entry,
            _ => return None,
        })
    }
}

struct Walker<R> {
    r: BufReader<R>,
    pos: u64,
    out: Vec<String>,
}

fn malformed<T>(msg: String) -> Result<T, ScanError> {
    Err(ScanError::Malformed(msg))
}

fn refused<T>(msg: String) -> Result<T, ScanError> {
    Err(ScanError::Refused(msg))
}

impl<R: Read + Seek> Walker<R> {
    fn byte(&mut self, end: u64) -> Result<u8, ScanError> {
        if self.pos >= end {
            return malformed(format!("a field overruns its message at byte {}", self.pos));
        }
        let mut b = [0u8];
        self.r.read_exact(&mut b)?;
        self.pos += 1;
        Ok(b[0])
    }

    fn varint(&mut self, end: u64) -> Result<u64, ScanError> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = self.byte(end)?;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        malformed(format!(
            "a varint longer than 10 bytes at byte {}",
            self.pos
        ))
    }

    fn skip(&mut self, n: u64, end: u64) -> Result<(), ScanError> {
        if n > end - self.pos {
            return malformed(format!(
                "a field of {n} bytes at byte {} overruns its message",
                self.pos
            ));
        }
        let n_i64 = i64::try_from(n).map_err(|_| ScanError::Malformed("huge field".into()))?;
        self.r.seek_relative(n_i64)?;
        self.pos += n;
        Ok(())
    }

    fn string(&mut self, n: u64) -> Result<String, ScanError> {
        if n > MAX_ENTRY_STRING {
            return refused(format!(
                "an external-data entry of {n} bytes at byte {} (at most {MAX_ENTRY_STRING})",
                self.pos
            ));
        }
        let mut buf = vec![0u8; n as usize];
        self.r.read_exact(&mut buf)?;
        self.pos += n;
        String::from_utf8(buf).or_else(|_| {
            refused(format!(
                "an external-data entry before byte {} is not UTF-8",
                self.pos
            ))
        })
    }

    /// Skips a group whose start tag (field `field`) was just read, up to its end tag.
    fn skip_group(&mut self, field: u64, end: u64, depth: usize) -> Result<(), ScanError> {
        if depth > MAX_DEPTH {
            return refused(format!("messages nest more than {MAX_DEPTH} deep"));
        }
        loop {
            let tag = self.varint(end)?;
            let (f, wire) = (tag >> 3, tag & 7);
            match wire {
                0 => {
                    self.varint(end)?;
                }
                1 => self.skip(8, end)?,
                5 => self.skip(4, end)?,
                2 => {
                    let n = self.varint(end)?;
                    self.skip(n, end)?;
                }
                3 => self.skip_group(f, end, depth + 1)?,
                4 if f == field => return Ok(()),
                w => {
                    return malformed(format!(
                        "wire type {w} (field {f}) in a group at byte {}",
                        self.pos
                    ));
                }
            }
        }
    }

    /// Walks one message of kind `kind` that ends at byte `end`.
    fn message(&mut self, kind: Kind, end: u64, depth: usize) -> Result<(), ScanError> {
        if depth > MAX_DEPTH {
            return refused(format!("messages nest more than {MAX_DEPTH} deep"));
        }
        let mut keys = Vec::new();
        let mut values = Vec::new();
        while self.pos < end {
            let tag = self.varint(end)?;
            let (field, wire) = (tag >> 3, tag & 7);
            if field == 0 {
                return malformed(format!("field number 0 at byte {}", self.pos));
            }
            match wire {
                0 => {
                    self.varint(end)?;
                }
                1 => self.skip(8, end)?,
                5 => self.skip(4, end)?,
                2 => {
                    let n = self.varint(end)?;
                    if n > end - self.pos {
                        return malformed(format!(
                            "a field of {n} bytes at byte {} overruns its message",
                            self.pos
                        ));
                    }
                    let child_end = self.pos + n;
                    if let Some(child) = kind.child(field) {
                        self.message(child, child_end, depth + 1)?;
                    } else if kind == Kind::Entry && field == 1 {
                        keys.push(self.string(n)?);
                    } else if kind == Kind::Entry && field == 2 {
                        values.push(self.string(n)?);
                    } else {
                        self.skip(n, end)?;
                    }
                }
                // A group (not used by ONNX, skipped as protobuf skips unknown ones).
                3 => self.skip_group(field, end, depth + 1)?,
                w => {
                    return malformed(format!(
                        "wire type {w} (field {field}) at byte {}",
                        self.pos
                    ));
                }
            }
        }
        if self.pos != end {
            return malformed(format!("a field overruns its message at byte {}", self.pos));
        }
        if kind == Kind::Entry && keys.iter().any(|k| k == "location") {
            if values.is_empty() {
                self.out.push(String::new());
            }
            self.out.extend(values);
        }
        Ok(())
    }
}

/// Protobuf writing for tests (here and in other crates' tests): enough to build
/// `.onnx` files with external data by hand.
#[doc(hidden)]
pub mod build {
    /// A varint.
    pub fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A length-delimited field `field` holding `bytes`.
    pub fn field(field: u64, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint(field << 3 | 2, &mut out);
        varint(bytes.len() as u64, &mut out);
        out.extend_from_slice(bytes);
        out
    }

    /// A varint field.
    pub fn int_field(field: u64, v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        varint(field << 3, &mut out);
        varint(v, &mut out);
        out
    }

    /// A `TensorProto` named `name` whose data is in `location` (EXTERNAL).
    pub fn external_tensor(name: &str, location: &str) -> Vec<u8> {
        let mut t = field(8, name.as_bytes());
        let entry = [field(1, b"location"), field(2, location.as_bytes())].concat();
        t.extend(field(13, &entry));
        t.extend(int_field(14, 1));
        t
    }

    /// A `ValueInfoProto` for a float tensor `[-1, 2]` (the batch dimension named `N`).
    fn float_n_by_2(name: &str) -> Vec<u8> {
        let dims = [field(1, &field(2, b"N")), field(1, &int_field(1, 2))].concat();
        let tensor_type = [int_field(1, 1), field(2, &dims)].concat();
        [field(1, name.as_bytes()), field(2, &field(1, &tensor_type))].concat()
    }

    /// A complete, loadable model `Y = X + W` (X and Y float `[-1, 2]`) whose
    /// initializer `W` (two floats, 8 bytes) is read from the external file
    /// `location`. Write the data with [`weights`].
    pub fn add_model_with_external_weights(location: &str) -> Vec<u8> {
        let node = [
            field(1, b"X"),
            field(1, b"W"),
            field(2, b"Y"),
            field(4, b"Add"),
        ]
        .concat();
        let entry = |k: &str, v: &str| {
            field(
                13,
                &[field(1, k.as_bytes()), field(2, v.as_bytes())].concat(),
            )
        };
        let w = [
            int_field(1, 2),
            int_field(2, 1),
            field(8, b"W"),
            entry("location", location),
            entry("offset", "0"),
            entry("length", "8"),
            int_field(14, 1),
        ]
        .concat();
        let graph = [
            field(1, &node),
            field(2, b"add"),
            field(5, &w),
            field(11, &float_n_by_2("X")),
            field(12, &float_n_by_2("Y")),
        ]
        .concat();
        let opset = [field(1, b""), int_field(2, 13)].concat();
        [
            int_field(1, 8),
            field(2, b"hoist-test"),
            field(8, &opset),
            field(7, &graph),
        ]
        .concat()
    }

    /// The external data file for [`add_model_with_external_weights`]: `W` as
    /// little-endian floats.
    pub fn weights(w: [f32; 2]) -> Vec<u8> {
        w.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    /// Writes a model package into `dir`: an `MLmodel` whose onnx flavor names
    /// `data`, `model.onnx` from [`add_model_with_external_weights`] reading
    /// `location`, and `weights.bin` holding `w`. Returns `dir`.
    pub fn write_package(
        dir: &std::path::Path,
        data: &str,
        location: &str,
        w: [f32; 2],
    ) -> std::path::PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(
            dir.join("MLmodel"),
            format!("flavors:\n  onnx:\n    data: '{data}'\n"),
        )
        .unwrap();
        std::fs::write(
            dir.join("model.onnx"),
            add_model_with_external_weights(location),
        )
        .unwrap();
        std::fs::write(dir.join("weights.bin"), weights(w)).unwrap();
        dir.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::build::*;
    use super::*;

    fn scan_bytes(b: &[u8]) -> Result<Vec<String>, ScanError> {
        scan(std::io::Cursor::new(b), b.len() as u64)
    }

    fn model(graph: &[u8]) -> Vec<u8> {
        [int_field(1, 8), field(7, graph)].concat()
    }

    #[test]
    fn locations_are_found_wherever_a_tensor_can_be() {
        let init = field(5, &external_tensor("w", "main.bin"));
        let sparse = field(
            15,
            &[
                field(1, &external_tensor("v", "sparse_values.bin")),
                field(2, &external_tensor("i", "sparse_indices.bin")),
            ]
            .concat(),
        );
        // A node whose attribute holds a tensor, tensors, and a subgraph with its own
        // initializer.
        let sub = field(5, &external_tensor("s", "sub/graph.bin"));
        let attr = [
            field(1, b"value"),
            field(5, &external_tensor("t", "attr_t.bin")),
            field(10, &external_tensor("ts", "attr_ts.bin")),
            field(6, &sub),
            field(22, &field(1, &external_tensor("sv", "attr_sparse.bin"))),
        ]
        .concat();
        let node = field(1, &field(5, &attr));
        let graph = [init, sparse, node].concat();
        let func_node = field(
            7,
            &field(5, &field(11, &field(5, &external_tensor("f", "func.bin")))),
        );
        let training = field(
            20,
            &field(2, &field(5, &external_tensor("tr", "training.bin"))),
        );
        let m = [model(&graph), field(25, &func_node), training].concat();
        let locs = scan_bytes(&m).unwrap();
        assert_eq!(
            locs,
            [
                "main.bin",
                "sparse_values.bin",
                "sparse_indices.bin",
                "attr_t.bin",
                "attr_ts.bin",
                "sub/graph.bin",
                "attr_sparse.bin",
                "func.bin",
                "training.bin",
            ]
        );
    }

    #[test]
    fn a_model_without_external_data_has_no_locations() {
        // raw_data (field 9) and other fields are skipped.
        let t = [field(8, b"w"), field(9, &[0u8; 1000]), int_field(2, 1)].concat();
        assert!(scan_bytes(&model(&field(5, &t))).unwrap().is_empty());
        assert!(scan_bytes(&[]).unwrap().is_empty());
    }

    #[test]
    fn malformed_input_is_an_error_never_a_panic() {
        let good = model(&field(5, &external_tensor("w", "x.bin")));
        // Every truncation of a good file either scans or errors.
        for n in 0..good.len() {
            let _ = scan_bytes(&good[..n]);
        }
        assert!(scan_bytes(&good[..good.len() - 1]).is_err());
        // A length that overruns the file.
        assert!(scan_bytes(&[0x3a, 0xff, 0xff, 0x03]).is_err());
        // An unterminated group; a group is skipped like any unknown field.
        assert!(scan_bytes(&[0x0b]).is_err());
        let group = [0x0b, 0x08, 0x01, 0x0c];
        let m = [
            &group[..],
            &model(&field(5, &external_tensor("w", "g.bin"))),
        ]
        .concat();
        assert_eq!(scan_bytes(&m).unwrap(), ["g.bin"]);
        // An endless varint.
        assert!(
            scan_bytes(&[
                0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
            ])
            .is_err()
        );
        // Nesting deeper than the limit: graph → node → attribute → graph → …
        let mut g = field(5, &external_tensor("w", "deep.bin"));
        for _ in 0..60 {
            g = field(1, &field(5, &field(6, &g)));
        }
        let err = scan_bytes(&model(&g)).unwrap_err();
        assert!(matches!(err, ScanError::Refused(_)), "{err}");
        assert!(err.to_string().contains("nest"), "{err}");
        // A location that is not UTF-8.
        let entry = [field(1, b"location"), field(2, &[0xff, 0xfe])].concat();
        let t = field(13, &entry);
        let err = scan_bytes(&model(&field(5, &t))).unwrap_err();
        assert!(matches!(err, ScanError::Refused(_)), "{err}");
    }

    #[test]
    fn every_location_value_counts_and_a_missing_one_is_reported_empty() {
        let entry = [
            field(2, b"first.bin"),
            field(1, b"location"),
            field(2, b"second.bin"),
        ]
        .concat();
        let t = field(13, &entry);
        let no_value = field(13, &field(1, b"location"));
        let other_key = field(13, &[field(1, b"offset"), field(2, b"0")].concat());
        let g = [field(5, &t), field(5, &no_value), field(5, &other_key)].concat();
        // A second `graph` field is merged by protobuf: it is walked too.
        let m = [
            model(&g),
            field(7, &field(5, &external_tensor("w", "2nd.bin"))),
        ]
        .concat();
        assert_eq!(
            scan_bytes(&m).unwrap(),
            ["first.bin", "second.bin", "", "2nd.bin"]
        );
    }
}
