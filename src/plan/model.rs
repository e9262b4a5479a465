//! Model descriptions: the tensors a plan is made for.
//!
//! A model is a list of tensors (name, role, shape, optional sensitivity and
//! optional measured error). It is written by hand as JSON (see docs/planning.md, "Describing a model"),
//! generated from a transformer shape ([`Transformer`]), or built in code.

use crate::error::{Error, ErrorKind, Result};
use crate::format::{ALL_FORMATS, Format};
use crate::quant::{self, QuantizeOptions};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Most tensors a model may have (the planner's work grows with the count;
/// a 1000-block transformer has about 6000).
pub const MAX_TENSORS: usize = 65_536;
/// Most transformer blocks (`high_layers + low_layers`) a shape may have.
pub const MAX_LAYERS: usize = 10_000;
/// Largest `hidden`, `vocab` and `hidden * mlp_expansion` of a transformer shape.
pub const MAX_TRANSFORMER_DIM: usize = 1 << 30;
/// Most elements one tensor may have.
pub const MAX_TENSOR_ELEMENTS: u64 = 1 << 50;

/// What a tensor does in the model; sets its default sensitivity, its error
/// estimate and whether it may be quantized at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Embedding,
    Attention,
    Mlp,
    /// The output projection (LM head).
    #[serde(alias = "lm_head", alias = "lm-head")]
    Output,
    Norm,
    Bias,
    Other,
}

/// Every role, in the order of their C values.
pub const ALL_ROLES: [Role; 7] = [
    Role::Embedding,
    Role::Attention,
    Role::Mlp,
    Role::Output,
    Role::Norm,
    Role::Bias,
    Role::Other,
];

impl Role {
    /// The role with C value `value`.
    pub fn from_raw(value: i32) -> Result<Role> {
        usize::try_from(value)
            .ok()
            .and_then(|i| ALL_ROLES.get(i).copied())
            .ok_or_else(|| Error::invalid(format!("unknown role value {value} (known: 0..=6)")))
    }

    /// The role's name as model files spell it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Embedding => "embedding",
            Role::Attention => "attention",
            Role::Mlp => "mlp",
            Role::Output => "output",
            Role::Norm => "norm",
            Role::Bias => "bias",
            Role::Other => "other",
        }
    }

    /// Norms and biases are tiny and sensitive: they always stay F32.
    pub fn keeps_f32(self) -> bool {
        matches!(self, Role::Norm | Role::Bias)
    }

    /// How much an error in this role costs relative to the others when the
    /// model gives no sensitivity. The LM head feeds the loss directly and
    /// degrades most under quantization, so it counts double.
    pub fn default_sensitivity(self) -> f64 {
        match self {
            Role::Output => 2.0,
            _ => 1.0,
        }
    }
}

/// One tensor of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TensorDesc {
    pub name: String,
    pub role: Role,
    /// Dimensions, outermost first; the last is the row (the quantization axis).
    pub shape: Vec<usize>,
    /// Weight of this tensor's error in the plan's objective; the role's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitivity: Option<f64>,
    /// SNR in dB measured from the data for each format (indexed by the format's
    /// C value); filled by [`TensorDesc::measure`], never read from a file.
    #[serde(skip)]
    pub measured_snr_db: Option<[f64; ALL_FORMATS.len()]>,
}

impl TensorDesc {
    /// A tensor without data, checked: a name, 1..=8 non-zero dimensions.
    pub fn new(name: &str, role: Role, shape: &[usize]) -> Result<TensorDesc> {
        let t = TensorDesc {
            name: name.to_string(),
            role,
            shape: shape.to_vec(),
            sensitivity: None,
            measured_snr_db: None,
        };
        t.check()?;
        Ok(t)
    }

    fn check(&self) -> Result<()> {
        if self.name.is_empty() {
            return Err(Error::invalid("a tensor has an empty name"));
        }
        crate::shape::check_rank(&self.name, self.shape.len())?;
        if self.shape.contains(&0) {
            return Err(Error::invalid(format!(
                "tensor '{}': shape {:?} has a zero dimension",
                self.name, self.shape
            )));
        }
        self.shape
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d as u64))
            .filter(|n| *n <= MAX_TENSOR_ELEMENTS)
            .ok_or_else(|| {
                Error::overflow(&format!(
                    "tensor '{}' shape {:?} (more than the limit of 2^50 elements)",
                    self.name, self.shape
                ))
            })?;
        if let Some(s) = self.sensitivity {
            if !(s.is_finite() && s >= 0.0) {
                return Err(Error::invalid(format!(
                    "tensor '{}': sensitivity {s} must be finite and >= 0",
                    self.name
                )));
            }
        }
        Ok(())
    }

    /// Number of elements.
    pub fn numel(&self) -> u64 {
        self.shape.iter().map(|&d| d as u64).product()
    }

    /// Elements per row (the last dimension).
    pub fn row_len(&self) -> usize {
        self.shape[self.shape.len() - 1]
    }

    /// The sensitivity in use: the given one, else the role's default.
    pub fn weight(&self) -> f64 {
        self.sensitivity
            .unwrap_or_else(|| self.role.default_sensitivity())
    }

    /// Whether rows of this tensor are whole blocks of `format`.
    pub fn fits_blocks(&self, format: Format) -> bool {
        self.row_len() % format.block_size() == 0
    }

    /// Bytes of this tensor in `format`, or None when its rows are not whole blocks.
    pub fn bytes_in(&self, format: Format) -> Option<u64> {
        self.fits_blocks(format)
            .then(|| self.numel() / format.block_size() as u64 * format.block_bytes() as u64)
    }

    /// Measures the SNR of every format this tensor's rows fit, from its FP32
    /// data (`numel` values, read only during the call), with the CPU kernels
    /// (round to nearest). Work is split over `threads` threads in chunks, so
    /// memory beyond the input stays small.
    pub fn measure(&mut self, data: &[f32], threads: usize) -> Result<()> {
        if data.len() as u64 != self.numel() {
            return Err(Error::invalid(format!(
                "tensor '{}' has {} elements but its data has {}",
                self.name,
                self.numel(),
                data.len()
            )));
        }
        let mut snr = [f64::INFINITY; ALL_FORMATS.len()];
        for format in ALL_FORMATS {
            if format == Format::F32 || !self.fits_blocks(format) {
                continue;
            }
            snr[format as usize] = measure_snr(format, data, threads.max(1))?;
        }
        self.measured_snr_db = Some(snr);
        Ok(())
    }
}

/// Elements per measuring chunk: whole blocks, small enough to stay in cache.
const CHUNK: usize = 1 << 16;

/// SNR in dB of a round trip of `data` through `format`, computed in chunks.
fn measure_snr(format: Format, data: &[f32], threads: usize) -> Result<f64> {
    let per_thread = data.len().div_ceil(threads).div_ceil(CHUNK) * CHUNK;
    let parts: Vec<&[f32]> = data.chunks(per_thread.max(CHUNK)).collect();
    // One chunk's worth is not worth a thread.
    let sums = if parts.len() <= 1 {
        vec![chunk_sums(format, data)?]
    } else {
        let catching = crate::quiet_panic::is_catching();
        std::thread::scope(|scope| {
            let workers: Vec<_> = parts
                .iter()
                .map(|part| {
                    scope.spawn(move || {
                        crate::quiet_panic::inherit(catching, || chunk_sums(format, part))
                    })
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect::<Result<Vec<(f64, f64)>>>()
        })?
    };
    let (signal, noise) = sums
        .iter()
        .fold((0.0, 0.0), |(s, n), (ps, pn)| (s + ps, n + pn));
    Ok(if noise == 0.0 {
        f64::INFINITY
    } else if signal == 0.0 {
        f64::NEG_INFINITY
    } else {
        10.0 * (signal / noise).log10()
    })
}

/// (Σx², Σ(x−y)²) of a round trip of `part` through `format`.
fn chunk_sums(format: Format, part: &[f32]) -> Result<(f64, f64)> {
    let mut bytes = vec![0u8; format.size_of(CHUNK)?];
    let mut back = vec![0f32; CHUNK];
    let (mut signal, mut noise) = (0.0f64, 0.0f64);
    let opts = QuantizeOptions::default();
    for chunk in part.chunks(CHUNK) {
        let size = format.size_of(chunk.len())?;
        quant::quantize(format, chunk, &mut bytes[..size], &opts)?;
        quant::dequantize(format, &bytes[..size], &mut back[..chunk.len()], 1)?;
        let m = quant::measure(chunk, &back[..chunk.len()]);
        noise += m.rmse * m.rmse * chunk.len() as f64;
        signal += chunk.iter().map(|&x| (x as f64) * (x as f64)).sum::<f64>();
    }
    Ok((signal, noise))
}

/// A transformer shape from which a model description is generated: the layout
/// of the Nyx HRM (a high-level and a low-level stack of blocks, each with a
/// fused QKV projection, an output projection, a SwiGLU MLP and two norms).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transformer {
    pub hidden: usize,
    pub heads: usize,
    /// Blocks of the high-level stack.
    pub high_layers: usize,
    /// Blocks of the low-level stack (0 for a plain one-stack transformer).
    #[serde(default)]
    pub low_layers: usize,
    /// MLP width as a multiple of `hidden`.
    #[serde(default = "default_expansion")]
    pub mlp_expansion: usize,
    pub vocab: usize,
    /// Whether the LM head shares the embedding's weights.
    #[serde(default)]
    pub tied_embeddings: bool,
    /// Whether the model has HRM's halting (Q) head: a [2, hidden] linear with bias.
    #[serde(default)]
    pub halting_head: bool,
}

fn default_expansion() -> usize {
    4
}

impl Transformer {
    /// Total blocks (saturating: [`Transformer::check`] rejects what saturates).
    pub fn layers(&self) -> usize {
        self.high_layers.saturating_add(self.low_layers)
    }

    /// How many tensors [`Transformer::tensors`] generates.
    pub fn tensor_count(&self) -> usize {
        1 + self.layers().saturating_mul(6)
            + usize::from(!self.tied_embeddings)
            + 2 * usize::from(self.halting_head)
    }

    /// Checks the shape against the stated limits ([`MAX_LAYERS`],
    /// [`MAX_TRANSFORMER_DIM`], [`MAX_TENSORS`]) before anything is generated,
    /// so that a short description cannot ask for unbounded memory.
    pub fn check(&self) -> Result<()> {
        if self.hidden == 0 || self.heads == 0 || self.hidden % self.heads != 0 {
            return Err(Error::invalid(format!(
                "transformer: hidden {} must be a positive multiple of heads {}",
                self.hidden, self.heads
            )));
        }
        if self.layers() == 0 || self.vocab == 0 || self.mlp_expansion == 0 {
            return Err(Error::invalid(
                "transformer: layers, vocab and mlp_expansion must be positive",
            ));
        }
        if self.layers() > MAX_LAYERS {
            return Err(Error::invalid(format!(
                "transformer: high_layers {} + low_layers {} is more than the limit of {MAX_LAYERS} blocks",
                self.high_layers, self.low_layers
            )));
        }
        let inter = self.hidden.checked_mul(self.mlp_expansion);
        for (what, value) in [
            ("hidden", Some(self.hidden)),
            ("vocab", Some(self.vocab)),
            ("hidden * mlp_expansion", inter),
        ] {
            if value.is_none_or(|v| v > MAX_TRANSFORMER_DIM) {
                return Err(Error::invalid(format!(
                    "transformer: {what} is more than the limit of {MAX_TRANSFORMER_DIM} (2^30)"
                )));
            }
        }
        Ok(())
    }

    /// The tensors of this shape, names in the Nyx trainer's style.
    pub fn tensors(&self) -> Result<Vec<TensorDesc>> {
        self.check()?;
        let (h, inter) = (self.hidden, self.hidden * self.mlp_expansion);
        let mut t = Vec::new();
        crate::alloc::reserve(&mut t, self.tensor_count(), "transformer tensors")?;
        t.push(TensorDesc::new(
            "embed_tokens.weight",
            Role::Embedding,
            &[self.vocab, h],
        )?);
        for (level, count) in [("H_level", self.high_layers), ("L_level", self.low_layers)] {
            for i in 0..count {
                let p = format!("{level}.layers.{i}");
                t.push(TensorDesc::new(
                    &format!("{p}.self_attn.qkv_proj.weight"),
                    Role::Attention,
                    &[3 * h, h],
                )?);
                t.push(TensorDesc::new(
                    &format!("{p}.self_attn.o_proj.weight"),
                    Role::Attention,
                    &[h, h],
                )?);
                t.push(TensorDesc::new(
                    &format!("{p}.mlp.gate_up_proj.weight"),
                    Role::Mlp,
                    &[2 * inter, h],
                )?);
                t.push(TensorDesc::new(
                    &format!("{p}.mlp.down_proj.weight"),
                    Role::Mlp,
                    &[h, inter],
                )?);
                t.push(TensorDesc::new(
                    &format!("{p}.norm1.weight"),
                    Role::Norm,
                    &[h],
                )?);
                t.push(TensorDesc::new(
                    &format!("{p}.norm2.weight"),
                    Role::Norm,
                    &[h],
                )?);
            }
        }
        if !self.tied_embeddings {
            t.push(TensorDesc::new(
                "lm_head.weight",
                Role::Output,
                &[self.vocab, h],
            )?);
        }
        if self.halting_head {
            t.push(TensorDesc::new("q_head.weight", Role::Other, &[2, h])?);
            t.push(TensorDesc::new("q_head.bias", Role::Bias, &[2])?);
        }
        Ok(t)
    }
}

/// A model: its name and tensors.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Model {
    pub name: String,
    pub description: String,
    pub tensors: Vec<TensorDesc>,
}

/// The JSON model file (docs/planning.md, "Describing a model").
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    transformer: Option<Transformer>,
    #[serde(default)]
    tensors: Vec<TensorDesc>,
}

impl Model {
    /// A model from tensors, checked (non-empty, unique names, valid shapes).
    pub fn new(name: &str, tensors: Vec<TensorDesc>) -> Result<Model> {
        let model = Model {
            name: name.to_string(),
            description: String::new(),
            tensors,
        };
        model.check()?;
        Ok(model)
    }

    /// The model a transformer shape describes.
    pub fn from_transformer(name: &str, shape: &Transformer) -> Result<Model> {
        Model::new(name, shape.tensors()?)
    }

    pub(crate) fn check(&self) -> Result<()> {
        check_tensor_count(&self.name, self.tensors.len())?;
        if self.tensors.is_empty() {
            return Err(Error::invalid(format!(
                "model '{}' has no tensors",
                self.name
            )));
        }
        let mut names: Vec<&str> = self.tensors.iter().map(|t| t.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(Error::invalid(format!(
                "model '{}': tensor name '{}' appears twice",
                self.name, w[0]
            )));
        }
        self.tensors.iter().try_for_each(TensorDesc::check)
    }

    /// Parses a JSON model description; `origin` names it in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Model> {
        let file: ModelFile = serde_json::from_str(text).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("{origin}:{}:{}: {e}", e.line(), e.column()),
            )
        })?;
        // A refused allocation stays OutOfMemory; every other error is the file's.
        let in_file = |e: Error| {
            let kind = match e.kind() {
                ErrorKind::OutOfMemory => ErrorKind::OutOfMemory,
                _ => ErrorKind::Config,
            };
            Error::new(kind, format!("{origin}: {e}"))
        };
        if let Some(shape) = &file.transformer {
            shape.check().map_err(in_file)?;
        }
        let generated = file
            .transformer
            .as_ref()
            .map_or(0, Transformer::tensor_count);
        check_tensor_count(&file.name, generated.saturating_add(file.tensors.len()))
            .map_err(in_file)?;
        let mut tensors = match &file.transformer {
            Some(shape) => shape.tensors().map_err(in_file)?,
            None => Vec::new(),
        };
        tensors.extend(file.tensors);
        let model = Model {
            name: file.name,
            description: file.description,
            tensors,
        };
        model
            .check()
            .map_err(|e| Error::new(ErrorKind::Config, format!("{origin}: {e}")))?;
        Ok(model)
    }

    /// Reads a JSON model description from `path`.
    pub fn load(path: &Path) -> Result<Model> {
        let text = read_text(path)?;
        Model::from_json(&text, &path.display().to_string())
    }

    /// Parameters in all tensors (saturating at `u64::MAX`).
    pub fn params(&self) -> u64 {
        self.tensors
            .iter()
            .fold(0u64, |total, t| total.saturating_add(t.numel()))
    }
}

/// Ok when a model of `count` tensors is within [`MAX_TENSORS`].
pub(crate) fn check_tensor_count(model: &str, count: usize) -> Result<()> {
    if count > MAX_TENSORS {
        return Err(Error::invalid(format!(
            "model '{model}' has {count} tensors, more than the limit of {MAX_TENSORS}"
        )));
    }
    Ok(())
}

/// Reads a JSON file's text as it comes from disk: a failure to read is
/// [`ErrorKind::Io`], a file too large for memory [`ErrorKind::OutOfMemory`];
/// a UTF-8 byte order mark at the start is skipped; bytes that are not UTF-8
/// are [`ErrorKind::Config`] naming the file, the line and the byte offset.
pub(crate) fn read_text(path: &Path) -> Result<String> {
    text_of(crate::alloc::file_bytes(path)?, &path.display().to_string())
}

/// The UTF-8 text of a file's `bytes`, without a leading byte order mark.
fn text_of(mut bytes: Vec<u8>, origin: &str) -> Result<String> {
    if bytes.starts_with(b"\xEF\xBB\xBF") {
        bytes.drain(..3);
    }
    String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        let line = 1 + bytes[..offset].iter().filter(|&&b| b == b'\n').count();
        Error::new(
            ErrorKind::Config,
            format!("{origin}:{line}: not valid UTF-8 (byte offset {offset})"),
        )
    })
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transformer_generates_the_expected_tensors() {
        let shape = Transformer {
            hidden: 256,
            heads: 4,
            high_layers: 1,
            low_layers: 1,
            mlp_expansion: 4,
            vocab: 10_000,
            tied_embeddings: false,
            halting_head: true,
        };
        let model = Model::from_transformer("ultra", &shape).unwrap();
        assert_eq!(model.tensors.len(), 1 + 2 * 6 + 1 + 2);
        let per_block = 3 * 256 * 256 + 256 * 256 + 3 * 256 * 1024 + 2 * 256;
        assert_eq!(
            model.params(),
            2 * 10_000 * 256 + 2 * per_block as u64 + 2 * 256 + 2
        );
    }

    #[test]
    fn bad_descriptions_are_rejected_with_their_origin() {
        let dup = r#"{"name":"m","tensors":[{"name":"a","role":"mlp","shape":[32]},{"name":"a","role":"mlp","shape":[32]}]}"#;
        let e = Model::from_json(dup, "dup.json").unwrap_err();
        assert!(e.message().contains("appears twice"), "{}", e.message());
        let unknown = r#"{"name":"m","tensors":[{"name":"a","role":"mlp","shape":[32],"bits":4}]}"#;
        let e = Model::from_json(unknown, "u.json").unwrap_err();
        assert!(e.message().starts_with("u.json:1:"), "{}", e.message());
        let zero = r#"{"name":"m","tensors":[{"name":"a","role":"lm_head","shape":[0, 32]}]}"#;
        assert!(Model::from_json(zero, "z.json").is_err());
    }

    #[test]
    fn a_huge_transformer_is_rejected_before_anything_is_generated() {
        let huge = r#"{"name":"m","transformer":{"hidden":64,"heads":1,"high_layers":100000000000,"vocab":32}}"#;
        let e = Model::from_json(huge, "huge.json").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert!(e.message().starts_with("huge.json: "), "{}", e.message());
        assert!(
            e.message().contains("limit of 10000 blocks"),
            "{}",
            e.message()
        );
        let wide = r#"{"name":"m","transformer":{"hidden":1073741824,"heads":1,"high_layers":1,"mlp_expansion":1099511627776,"vocab":32}}"#;
        let e = Model::from_json(wide, "wide.json").unwrap_err();
        assert!(
            e.message().contains("hidden * mlp_expansion"),
            "{}",
            e.message()
        );
        let overflow = r#"{"name":"m","transformer":{"hidden":64,"heads":1,"high_layers":18446744073709551615,"low_layers":1,"vocab":32}}"#;
        let e = Model::from_json(overflow, "o.json").unwrap_err();
        assert!(
            e.message().contains("limit of 10000 blocks"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn the_tensor_count_limit_counts_generated_and_listed_tensors() {
        let at_limit = Transformer {
            hidden: 32,
            heads: 1,
            high_layers: MAX_LAYERS,
            low_layers: 0,
            mlp_expansion: 1,
            vocab: 32,
            tied_embeddings: false,
            halting_head: true,
        };
        assert!(at_limit.tensor_count() <= MAX_TENSORS);
        let listed: Vec<String> = (0..MAX_TENSORS)
            .map(|i| format!(r#"{{"name":"t{i}","role":"mlp","shape":[32]}}"#))
            .collect();
        let json = format!(
            r#"{{"name":"m","transformer":{{"hidden":32,"heads":1,"high_layers":1,"vocab":32}},"tensors":[{}]}}"#,
            listed.join(",")
        );
        let e = Model::from_json(&json, "many.json").unwrap_err();
        assert!(
            e.message().contains("more than the limit of 65536"),
            "{}",
            e.message()
        );
    }

    #[test]
    fn file_text_skips_a_byte_order_mark_and_names_bad_utf8() {
        assert_eq!(text_of(b"\xEF\xBB\xBF{}".to_vec(), "f.json").unwrap(), "{}");
        let e = text_of(b"{\n \"name\": \"\xFF\"}".to_vec(), "f.json").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Config);
        assert_eq!(e.message(), "f.json:2: not valid UTF-8 (byte offset 12)");
    }

    #[test]
    fn roles_are_named_as_model_files_spell_them_and_weighted_by_default() {
        let names: Vec<&str> = ALL_ROLES.iter().map(|r| r.name()).collect();
        assert_eq!(
            names,
            [
                "embedding",
                "attention",
                "mlp",
                "output",
                "norm",
                "bias",
                "other"
            ]
        );
        for role in ALL_ROLES {
            let expected = if role == Role::Output { 2.0 } else { 1.0 };
            assert_eq!(role.default_sensitivity(), expected, "{role:?}");
            let t = TensorDesc::new("t", role, &[4, 32]).unwrap();
            assert_eq!(t.weight(), expected, "{role:?}");
        }
        let mut t = TensorDesc::new("t", Role::Output, &[4, 32]).unwrap();
        t.sensitivity = Some(0.25);
        assert_eq!(t.weight(), 0.25);
    }

    #[test]
    fn a_sensitivity_must_be_finite_and_not_negative() {
        let mut t = TensorDesc::new("t", Role::Mlp, &[4, 32]).unwrap();
        for ok in [0.0, 3.5] {
            t.sensitivity = Some(ok);
            assert!(t.check().is_ok(), "{ok}");
        }
        for bad in [-1.0, f64::INFINITY, f64::NAN] {
            t.sensitivity = Some(bad);
            let e = t.check().unwrap_err();
            assert!(
                e.message().contains("must be finite and >= 0"),
                "{bad}: {}",
                e.message()
            );
        }
    }

    fn shape() -> Transformer {
        Transformer {
            hidden: 64,
            heads: 4,
            high_layers: 2,
            low_layers: 1,
            mlp_expansion: 2,
            vocab: 100,
            tied_embeddings: false,
            halting_head: false,
        }
    }

    #[test]
    fn the_tensor_count_is_what_the_shape_generates() {
        for tied_embeddings in [false, true] {
            for halting_head in [false, true] {
                for low_layers in [0, 1, 3] {
                    let t = Transformer {
                        tied_embeddings,
                        halting_head,
                        low_layers,
                        ..shape()
                    };
                    assert_eq!(t.tensor_count(), t.tensors().unwrap().len(), "{t:?}");
                }
            }
        }
        assert_eq!(shape().tensor_count(), 1 + 3 * 6 + 1);
    }

    #[test]
    fn a_shape_without_an_mlp_expansion_takes_4() {
        let json = r#"{"name": "m", "transformer": {"hidden": 64, "heads": 4,
            "high_layers": 1, "vocab": 100}}"#;
        let model = Model::from_json(json, "test").unwrap();
        // SwiGLU's fused gate and up projection: 2 · 4 · 64 rows of 64.
        let mlp = model.tensors.iter().find(|t| t.role == Role::Mlp).unwrap();
        assert_eq!(mlp.shape, [512, 64]);
    }

    #[test]
    fn each_transformer_limit_is_checked() {
        assert!(shape().check().is_ok());
        let bad = [
            Transformer {
                hidden: 0,
                ..shape()
            },
            Transformer {
                heads: 0,
                ..shape()
            },
            Transformer {
                heads: 5,
                ..shape()
            },
            Transformer {
                high_layers: 0,
                low_layers: 0,
                ..shape()
            },
            Transformer {
                vocab: 0,
                ..shape()
            },
            Transformer {
                mlp_expansion: 0,
                ..shape()
            },
            Transformer {
                high_layers: MAX_LAYERS,
                low_layers: 1,
                ..shape()
            },
        ];
        for t in bad {
            assert_eq!(
                t.check().unwrap_err().kind(),
                ErrorKind::InvalidArgument,
                "{t:?}"
            );
        }
        let most = Transformer {
            high_layers: MAX_LAYERS - 1,
            low_layers: 1,
            ..shape()
        };
        assert!(most.check().is_ok());
        assert!(check_tensor_count("m", MAX_TENSORS).is_ok());
        assert!(check_tensor_count("m", MAX_TENSORS + 1).is_err());
    }
}
