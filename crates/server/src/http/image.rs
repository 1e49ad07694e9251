//! `POST /predict-image` with `{"image": "<base64 PNG or JPEG>"}`: decode, resize to
//! the model's input size, normalise as the package's `metadata.hoist.image` says
//! (default: pixels / 255, channels first), predict, and name the class.
//!
//! Every problem with the client's image is a 400 with a message (`error`, and
//! `detail` as FastAPI services answer, so their clients keep working).

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use serde_json::{Value, json};

use super::{Shared, body_or_error, infer_status};
use crate::model::Model;
use crate::package::ImageSpec;
use crate::tensor::{DataType, Tensor, TensorData};

fn image_error(status: StatusCode, msg: &str) -> Response {
    (status, axum::Json(json!({"error": msg, "detail": msg}))).into_response()
}

/// Where height, width and channels sit in the model's input, and the spec to use.
struct Layout {
    height: u32,
    width: u32,
    spec: ImageSpec,
}

fn layout(model: &Model) -> Result<Layout, String> {
    let [input] = model.inputs.as_slice() else {
        return Err(
            "this model has several inputs; /predict-image needs a one-input image model".into(),
        );
    };
    let dims = &input.shape;
    if dims.len() != 4 || !matches!(input.datatype, DataType::F32 | DataType::U8) {
        return Err(format!(
            "this model's input '{}' is {} {:?}, not an image batch [N, 3, H, W] or [N, H, W, 3]",
            input.name, input.datatype, dims
        ));
    }
    let mut spec = model.package.image.clone().unwrap_or_default();
    if model.package.image.is_none() {
        spec.channels_first = dims[1] == 3;
    }
    let (c, h, w) = if spec.channels_first {
        (dims[1], dims[2], dims[3])
    } else {
        (dims[3], dims[1], dims[2])
    };
    let fits = |d: i64| u32::try_from(d).is_ok_and(|d| d > 0 && d <= 1 << 14);
    if c != 3 || !fits(h) || !fits(w) {
        return Err(format!(
            "this model's input '{}' has shape {dims:?}; /predict-image needs 3 channels and a fixed height and width",
            input.name
        ));
    }
    Ok(Layout {
        height: h as u32,
        width: w as u32,
        spec,
    })
}

/// The most bytes a decoded image may take (RGBA, 4 bytes a pixel): the body limit,
/// but at least 64 MiB so that a photo whose compressed size fits a small limit still
/// decodes. A small file that declares huge dimensions is refused from its header,
/// before anything is allocated for its pixels.
fn decoded_limit(max_body: usize) -> u64 {
    (max_body as u64).max(64 << 20)
}

/// Decodes base64 (plain or a `data:` URL) into RGB pixels resized for the model.
fn decode(b64: &str, l: &Layout, max_body: usize) -> Result<image::RgbImage, String> {
    let b64 = b64.trim();
    let b64 = match b64.strip_prefix("data:") {
        Some(rest) => rest.split_once(',').map(|(_, d)| d).unwrap_or(""),
        None => b64,
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|_| {
            "Invalid base64 image data. Please ensure the image is properly encoded.".to_string()
        })?;
    let undecodable = |e: &dyn std::fmt::Display| {
        format!("Could not decode the image ({e}); send a PNG or JPEG, base64-encoded")
    };
    let reader = || {
        image::ImageReader::new(std::io::Cursor::new(&bytes[..]))
            .with_guessed_format()
            .map_err(|e| undecodable(&e))
    };
    // The header's dimensions first: width x height x 4 bytes, checked, against the limit.
    let (w, h) = reader()?.into_dimensions().map_err(|e| undecodable(&e))?;
    let limit = decoded_limit(max_body);
    let needed = u64::from(w)
        .checked_mul(u64::from(h))
        .and_then(|n| n.checked_mul(4))
        .filter(|&n| n <= limit)
        .ok_or_else(|| {
            format!(
                "the image declares {w}x{h} pixels, more than the {limit} bytes a decoded image may take"
            )
        })?;
    if needed == 0 {
        return Err(undecodable(&"the image has no pixels"));
    }
    let mut decoder = reader()?;
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(limit.saturating_mul(2));
    decoder.limits(limits);
    let img = decoder.decode().map_err(|e| undecodable(&e))?;
    let rgb = img.to_rgb8();
    Ok(if rgb.dimensions() == (l.width, l.height) {
        rgb
    } else {
        image::imageops::resize(
            &rgb,
            l.width,
            l.height,
            image::imageops::FilterType::Triangle,
        )
    })
}

fn to_tensor(
    name: &str,
    dt: DataType,
    img: &image::RgbImage,
    l: &Layout,
) -> Result<Tensor, String> {
    let (w, h) = (l.width as usize, l.height as usize);
    let s = &l.spec;
    // Lays pixels out in the model's order, each value mapped by `f(channel, value)`.
    fn layout<T: Copy + Default>(
        img: &image::RgbImage,
        channels_first: bool,
        f: impl Fn(usize, u8) -> T,
    ) -> Vec<T> {
        let (w, h) = (img.width() as usize, img.height() as usize);
        let mut out = vec![T::default(); 3 * w * h];
        for (x, y, p) in img.enumerate_pixels() {
            let pixel = y as usize * w + x as usize;
            for c in 0..3 {
                let i = if channels_first {
                    c * h * w + pixel
                } else {
                    pixel * 3 + c
                };
                out[i] = f(c, p.0[c]);
            }
        }
        out
    }
    let data = if dt == DataType::U8 {
        TensorData::U8(layout(img, s.channels_first, |_, v| v))
    } else {
        TensorData::F32(layout(img, s.channels_first, |c, v| {
            (v as f32 * s.scale - s.mean[c]) / s.std[c]
        }))
    };
    let shape = if s.channels_first {
        vec![1, 3, h, w]
    } else {
        vec![1, h, w, 3]
    };
    Tensor::new(name, shape, data).map_err(|e| e.0)
}

pub async fn predict_image(
    State(state): State<Shared>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body_or_error(body, state.max_body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let model = match state.models.sole() {
        Ok(m) => m,
        Err(e) => return image_error(super::lookup_status(&e), &e.to_string()),
    };
    let req: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(e) => {
            return image_error(
                StatusCode::BAD_REQUEST,
                &format!("The body must be JSON like {{\"image\": \"<base64>\"}}: {e}"),
            );
        }
    };
    let b64 = match req.get("image") {
        Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
        Some(Value::String(_)) | None | Some(Value::Null) => {
            return image_error(StatusCode::BAD_REQUEST, "Image data is empty or missing");
        }
        Some(_) => return image_error(StatusCode::BAD_REQUEST, "'image' must be a base64 string"),
    };
    let l = match layout(&model) {
        Ok(l) => l,
        Err(msg) => return image_error(StatusCode::BAD_REQUEST, &msg),
    };
    let input = &model.inputs[0];
    let (name, dt, max_body) = (input.name.clone(), input.datatype, state.max_body);
    // Decoding and resizing are CPU work: keep them off the reactor.
    let tensor = match tokio::task::spawn_blocking(move || {
        decode(&b64, &l, max_body).and_then(|img| to_tensor(&name, dt, &img, &l))
    })
    .await
    {
        Ok(Ok(t)) => t,
        Ok(Err(msg)) => return image_error(StatusCode::BAD_REQUEST, &msg),
        Err(_) => return image_error(StatusCode::INTERNAL_SERVER_ERROR, "image decoding failed"),
    };
    let outputs = match model.infer(vec![tensor]).await {
        Ok(o) => o,
        Err(e) => return image_error(infer_status(&e), &e.to_string()),
    };
    axum::Json(describe(&model, &outputs)).into_response()
}

/// The answer: the class (index and name), its probability, and every output.
fn describe(model: &Model, outputs: &[Tensor]) -> Value {
    let probs = outputs.iter().find_map(|t| match &t.data {
        TensorData::F32(v) if t.shape.len() == 2 && t.shape[0] == 1 => Some(v.clone()),
        _ => None,
    });
    let label = outputs
        .iter()
        .find_map(|t| match &t.data {
            TensorData::I64(v) if v.len() == 1 => Some(v[0]),
            _ => None,
        })
        .or_else(|| {
            probs.as_ref().and_then(|p| {
                p.iter()
                    .enumerate()
                    .max_by(|a, b| a.1.total_cmp(b.1))
                    .map(|(i, _)| i as i64)
            })
        });
    let class = label.and_then(|l| {
        model
            .package
            .labels
            .as_ref()
            .and_then(|names| names.get(usize::try_from(l).ok()?).cloned())
    });
    let confidence = match (&probs, label) {
        (Some(p), Some(l)) => usize::try_from(l).ok().and_then(|l| p.get(l)).copied(),
        _ => None,
    };
    json!({
        "label": label,
        "class": class,
        "confidence": confidence,
        "probabilities": probs,
        "outputs": outputs.iter().map(|t| (t.name.clone(), t.row_json(0))).collect::<serde_json::Map<_, _>>(),
        "model_name": model.package.name,
        "model_version": model.package.version,
    })
}
