//! ONNX Runtime through the `ort` crate, loading `libonnxruntime.so` at run time.
//!
//! The library is not linked: `tools/fetch-onnxruntime.sh` takes it from the official
//! wheel, and [`find_library`] finds it (flag, `ORT_DYLIB_PATH`, `$HOIST_HOME/lib`, …).
//! `ort`'s `Session::run` takes `&mut self`, so a runtime holds one session per worker
//! and hands each call a free one.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use ort::session::{Session, SessionInputValue, SessionInputs};
use ort::value::{DynValue, TensorElementType, TensorRef, ValueType};

use super::{IoSpec, Runtime, RuntimeError, RuntimeKind};
use crate::tensor::{DataType, Tensor, TensorData};

/// The file names the library goes by, newest naming first.
const LIB_NAMES: &[&str] = &["libonnxruntime.so", "libonnxruntime.so.1"];

/// Finds `libonnxruntime.so`. An explicit path (flag or `ORT_DYLIB_PATH`) must exist;
/// otherwise the usual places are searched and [`RuntimeError::OrtNotFound`] lists them.
pub fn find_library(explicit: Option<&Path>) -> Result<PathBuf, RuntimeError> {
    // An empty ORT_DYLIB_PATH (as `ORT_DYLIB_PATH= cmd` sets it) means unset.
    let env = std::env::var_os("ORT_DYLIB_PATH")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from);
    if let Some(p) = explicit.map(Path::to_path_buf).or(env) {
        return if p.is_file() {
            Ok(p)
        } else {
            Err(RuntimeError::OrtLoad {
                path: p,
                message: "no such file".into(),
            })
        };
    }
    let mut dirs = Vec::new();
    if let Some(home) = std::env::var_os("HOIST_HOME") {
        dirs.push(PathBuf::from(home).join("lib"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".hoist/lib"));
    }
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe.parent()
    {
        dirs.push(dir.to_path_buf());
        dirs.push(dir.join("../lib"));
    }
    dirs.push("/usr/local/lib".into());
    dirs.push("/usr/lib".into());
    for dir in &dirs {
        for name in LIB_NAMES {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
        }
        // Versioned names as the wheel ships them: libonnxruntime.so.1.32.0.
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("libonnxruntime.so."))
                })
                .collect();
            found.sort();
            if let Some(p) = found.pop() {
                return Ok(p);
            }
        }
    }
    Err(RuntimeError::OrtNotFound {
        looked: dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// The process-wide ONNX Runtime environment: the library can be loaded once only.
static ENVIRONMENT: OnceLock<Result<(PathBuf, ort::environment::Environment), String>> =
    OnceLock::new();

fn environment(lib: &Path) -> Result<&'static ort::environment::Environment, RuntimeError> {
    let env = ENVIRONMENT.get_or_init(|| {
        let builder = ort::init_from(lib).map_err(|e| e.to_string())?;
        let env = builder
            .with_name("hoist-server")
            .build()
            .map_err(|e| e.to_string())?;
        Ok((lib.to_path_buf(), env))
    });
    match env {
        Ok((_, env)) => Ok(env),
        Err(message) => Err(RuntimeError::OrtLoad {
            path: lib.to_path_buf(),
            message: message.clone(),
        }),
    }
}

/// Loads the library at `lib` into this process (once; a process holds one ONNX
/// Runtime) and reports whether that worked: `hoist runtime install` checks a
/// freshly extracted library with it.
pub fn check_library(lib: &Path) -> Result<(), RuntimeError> {
    environment(lib).map(|_| ())
}

/// A model loaded into ONNX Runtime.
pub struct OrtRuntime {
    /// One session per concurrent caller (`Session::run` needs `&mut`).
    sessions: Vec<Mutex<Session>>,
    /// Round-robin start for picking a session.
    next: AtomicUsize,
    inputs: Vec<IoSpec>,
    outputs: Vec<IoSpec>,
}

/// The loaded library's version (`1.32.0`): from its file name as the wheel ships it,
/// else its build info (`git-branch=rel-1.32.0`), else its path.
pub fn library_version() -> String {
    let Some(Ok((path, _))) = ENVIRONMENT.get() else {
        return "(not loaded)".into();
    };
    let from_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("libonnxruntime.so."))
        .filter(|v| v.contains('.'))
        .map(str::to_string);
    from_name
        .or_else(|| {
            let info = ort::info();
            let at = info.find("rel-")? + 4;
            let v: String = info[at..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            (!v.is_empty()).then_some(v)
        })
        .unwrap_or_else(|| format!("at {}", path.display()))
}

impl OrtRuntime {
    pub fn load(model: &Path, lib: &Path, parallelism: usize) -> Result<Self, RuntimeError> {
        Self::load_from(model, None, lib, parallelism)
    }

    /// Loads `model`, or `bytes` when given (a model hoist rewrote; `model` then names
    /// it in messages).
    pub fn load_from(
        model: &Path,
        bytes: Option<&[u8]>,
        lib: &Path,
        parallelism: usize,
    ) -> Result<Self, RuntimeError> {
        let env = environment(lib)?;
        let load_err = |e: ort::Error| RuntimeError::Load {
            runtime: "onnxruntime",
            path: model.to_path_buf(),
            message: e.to_string(),
        };
        let mut sessions = Vec::new();
        for _ in 0..parallelism.max(1) {
            let builder_err = |e: ort::Error<ort::session::builder::SessionBuilder>| {
                load_err(ort::Error::new(e.to_string()))
            };
            let mut builder = Session::builder(env)
                .map_err(load_err)?
                .with_intra_threads(1)
                .map_err(builder_err)?
                .with_inter_threads(1)
                .map_err(builder_err)?;
            let session = match bytes {
                Some(b) => builder.commit_from_memory(b),
                None => builder.commit_from_file(model),
            }
            .map_err(load_err)?;
            sessions.push(Mutex::new(session));
        }
        let first = sessions[0].lock().expect("fresh mutex");
        let spec = |name: &str, ty: &ValueType| -> Result<IoSpec, RuntimeError> {
            match ty {
                ValueType::Tensor { ty, shape, .. } => Ok(IoSpec {
                    name: name.to_string(),
                    datatype: from_ort(*ty).ok_or_else(|| RuntimeError::Load {
                        runtime: "onnxruntime",
                        path: model.to_path_buf(),
                        message: format!("'{name}' has unsupported element type {ty:?}"),
                    })?,
                    shape: shape.iter().copied().collect(),
                }),
                other => Err(RuntimeError::Load {
                    runtime: "onnxruntime",
                    path: model.to_path_buf(),
                    message: format!(
                        "'{name}' is a {other:?}, not a tensor; hoist serves tensors and ZipMap outputs"
                    ),
                }),
            }
        };
        let inputs = first
            .inputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype()))
            .collect::<Result<Vec<_>, _>>()?;
        let outputs = first
            .outputs()
            .iter()
            .map(|o| spec(o.name(), o.dtype()))
            .collect::<Result<Vec<_>, _>>()?;
        drop(first);
        Ok(OrtRuntime {
            sessions,
            next: AtomicUsize::new(0),
            inputs,
            outputs,
        })
    }

    fn run_on(
        &self,
        session: &mut Session,
        inputs: &[Tensor],
    ) -> Result<Vec<Tensor>, RuntimeError> {
        let err = |e: ort::Error| RuntimeError::Run(e.to_string());
        let mut values: Vec<(std::borrow::Cow<'_, str>, SessionInputValue<'_>)> =
            Vec::with_capacity(inputs.len());
        for t in inputs {
            let shape = t.shape.as_slice();
            macro_rules! view {
                ($v:expr) => {
                    SessionInputValue::from(
                        TensorRef::from_array_view((shape, $v.as_slice())).map_err(err)?,
                    )
                };
            }
            let value = match &t.data {
                TensorData::Bool(v) => view!(v),
                TensorData::U8(v) => view!(v),
                TensorData::U16(v) => view!(v),
                TensorData::U32(v) => view!(v),
                TensorData::U64(v) => view!(v),
                TensorData::I8(v) => view!(v),
                TensorData::I16(v) => view!(v),
                TensorData::I32(v) => view!(v),
                TensorData::I64(v) => view!(v),
                TensorData::F32(v) => view!(v),
                TensorData::F64(v) => view!(v),
                TensorData::Bytes(v) => {
                    let strings: Vec<String> = v
                        .iter()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .collect();
                    SessionInputValue::from(
                        ort::value::Tensor::from_string_array((shape, strings.as_slice()))
                            .map_err(err)?,
                    )
                }
            };
            values.push((t.name.as_str().into(), value));
        }
        let outputs = session
            .run(SessionInputs::<'_, '_, 0>::ValueMap(values))
            .map_err(err)?;
        self.outputs
            .iter()
            .map(|spec| {
                let value = outputs
                    .get(&spec.name)
                    .ok_or_else(|| RuntimeError::Run(format!("output '{}' missing", spec.name)))?;
                to_tensor(&spec.name, value)
            })
            .collect()
    }
}

impl Runtime for OrtRuntime {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::OnnxRuntime
    }

    fn inputs(&self) -> &[IoSpec] {
        &self.inputs
    }

    fn outputs(&self) -> &[IoSpec] {
        &self.outputs
    }

    fn run(&self, inputs: &[Tensor]) -> Result<Vec<Tensor>, RuntimeError> {
        let n = self.sessions.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        for i in 0..n {
            if let Ok(mut s) = self.sessions[(start + i) % n].try_lock() {
                return self.run_on(&mut s, inputs);
            }
        }
        let mut s = self.sessions[start]
            .lock()
            .map_err(|_| RuntimeError::Run("session poisoned by an earlier panic".into()))?;
        self.run_on(&mut s, inputs)
    }
}

fn from_ort(ty: TensorElementType) -> Option<DataType> {
    Some(match ty {
        TensorElementType::Float32 => DataType::F32,
        TensorElementType::Float64 => DataType::F64,
        TensorElementType::Uint8 => DataType::U8,
        TensorElementType::Uint16 => DataType::U16,
        TensorElementType::Uint32 => DataType::U32,
        TensorElementType::Uint64 => DataType::U64,
        TensorElementType::Int8 => DataType::I8,
        TensorElementType::Int16 => DataType::I16,
        TensorElementType::Int32 => DataType::I32,
        TensorElementType::Int64 => DataType::I64,
        TensorElementType::Bool => DataType::Bool,
        TensorElementType::String => DataType::Bytes,
        _ => return None,
    })
}

fn to_tensor(name: &str, value: &DynValue) -> Result<Tensor, RuntimeError> {
    let err = |e: ort::Error| RuntimeError::Run(format!("output '{name}': {e}"));
    let ty = match value.dtype() {
        ValueType::Tensor { ty, .. } => *ty,
        other => {
            return Err(RuntimeError::Run(format!(
                "output '{name}' is a {other:?}, not a tensor"
            )));
        }
    };
    macro_rules! ext {
        ($t:ty, $var:ident) => {{
            let (shape, data) = value.try_extract_tensor::<$t>().map_err(err)?;
            (
                shape.iter().map(|&d| d as usize).collect::<Vec<_>>(),
                TensorData::$var(data.to_vec()),
            )
        }};
    }
    let (shape, data) = match ty {
        TensorElementType::Float32 => ext!(f32, F32),
        TensorElementType::Float64 => ext!(f64, F64),
        TensorElementType::Int64 => ext!(i64, I64),
        TensorElementType::Int32 => ext!(i32, I32),
        TensorElementType::Int16 => ext!(i16, I16),
        TensorElementType::Int8 => ext!(i8, I8),
        TensorElementType::Uint8 => ext!(u8, U8),
        TensorElementType::Uint16 => ext!(u16, U16),
        TensorElementType::Uint32 => ext!(u32, U32),
        TensorElementType::Uint64 => ext!(u64, U64),
        TensorElementType::Bool => ext!(bool, Bool),
        TensorElementType::String => {
            let (shape, strings) = value.try_extract_strings().map_err(err)?;
            (
                shape.iter().map(|&d| d as usize).collect(),
                TensorData::Bytes(strings.into_iter().map(String::into_bytes).collect()),
            )
        }
        other => {
            return Err(RuntimeError::Run(format!(
                "output '{name}' has unsupported element type {other:?}"
            )));
        }
    };
    Tensor::new(name, shape, data).map_err(|e| RuntimeError::Run(e.to_string()))
}
