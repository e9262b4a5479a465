//! The `[quantization]` section of the trainer's INI config
//! (config/hrm_config.txt), parsed, validated and mapped to a [`Policy`].
//!
//! Every key is known; an unknown key, a bad value, a duplicate key or an
//! impossible combination is an [`ErrorKind::Config`] error naming the file,
//! the line and the reason. Other sections are skipped. docs/guide.md ("The
//! `[quantization]` config section") is the reference of every key.

use crate::error::{Error, ErrorKind, Result};
use crate::format::Format;
use crate::plan::model::ALL_ROLES;
use crate::plan::policy::cosine_to_snr_db;
use crate::plan::{OptimizerState, Policy, Role};
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

const MIB: u64 = 1 << 20;

/// The keys of `[quantization]`, as the parser spells them.
pub const KEYS: [&str; 20] = [
    "enabled",
    "precision_level",
    "adaptive_precision",
    "memory_threshold_mb",
    "accuracy_threshold",
    "fallback_to_fp32",
    "mixed_precision_enabled",
    "attention_precision",
    "mlp_precision",
    "embedding_precision",
    "quantized_training_enabled",
    "gradient_precision",
    "weight_precision",
    "activation_precision",
    "quantization_evolution_enabled",
    "learning_in_quantized_state",
    "self_modification_during_quantization",
    "target_accuracy_preservation",
    "memory_reduction_target",
    "speedup_target",
];

/// An accuracy threshold whose SNR floor is below this lets every format
/// through (INT4 keeps about 20 dB of real weights, docs/guide.md), so the
/// config warns that it chooses nothing.
const WEAK_SNR_FLOOR_DB: f64 = 10.0;

/// Keys accepted and ignored, with why (the warning logged once per process).
const IGNORED: [(&str, &str); 5] = [
    (
        "activation_precision",
        "activations are not planned by nyxq; the activation reserve is a byte count",
    ),
    (
        "quantization_evolution_enabled",
        "changing formats during training is the trainer's decision (call nyxq_plan_replan)",
    ),
    (
        "self_modification_during_quantization",
        "nyxq never changes the model's architecture",
    ),
    (
        "target_accuracy_preservation",
        "it needs an end-to-end evaluation; the per-tensor accuracy_threshold is what the planner enforces",
    ),
    (
        "speedup_target",
        "the planner optimises memory and error, not speed",
    ),
];

/// The parsed `[quantization]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct QuantConfig {
    /// Where it came from ("config/hrm_config.txt").
    pub origin: String,
    pub enabled: bool,
    /// The lowest precision any weight may have.
    pub precision_level: Format,
    pub adaptive_precision: bool,
    /// Device memory the model may use, in MiB (0 = what the hardware allows).
    pub memory_threshold_mb: u64,
    /// Least cosine similarity of every tensor to its quantized form.
    pub accuracy_threshold: f64,
    pub fallback_to_fp32: bool,
    pub mixed_precision_enabled: bool,
    pub attention_precision: Option<Format>,
    pub mlp_precision: Option<Format>,
    pub embedding_precision: Option<Format>,
    pub quantized_training_enabled: bool,
    pub gradient_precision: Format,
    pub weight_precision: Option<Format>,
    pub activation_precision: Option<Format>,
    pub quantization_evolution_enabled: bool,
    pub learning_in_quantized_state: bool,
    pub self_modification_during_quantization: bool,
    pub target_accuracy_preservation: f64,
    pub memory_reduction_target: f64,
    pub speedup_target: f64,
    /// Keys given that nyxq accepts and ignores, with why.
    pub ignored: Vec<String>,
    /// What the section asks for that does not apply or is unlikely to mean
    /// what it says, with the line: logged at warn level when parsed and
    /// carried into every plan made from this config (its notes).
    pub warnings: Vec<String>,
}

impl Default for QuantConfig {
    fn default() -> Self {
        QuantConfig {
            origin: String::new(),
            enabled: false,
            precision_level: Format::Q4_0,
            adaptive_precision: true,
            memory_threshold_mb: 0,
            accuracy_threshold: 0.99,
            fallback_to_fp32: true,
            mixed_precision_enabled: true,
            attention_precision: None,
            mlp_precision: None,
            embedding_precision: None,
            quantized_training_enabled: false,
            gradient_precision: Format::F32,
            weight_precision: None,
            activation_precision: None,
            quantization_evolution_enabled: false,
            learning_in_quantized_state: false,
            self_modification_during_quantization: false,
            target_accuracy_preservation: 0.95,
            memory_reduction_target: 0.0,
            speedup_target: 1.0,
            ignored: Vec::new(),
            warnings: Vec::new(),
        }
    }
}

fn config_error(origin: &str, line: usize, reason: String) -> Error {
    Error::new(ErrorKind::Config, format!("{origin}:{line}: {reason}"))
}

fn parse_bool(value: &str) -> std::result::Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(format!(
            "'{value}' is not a boolean (true/false, yes/no, on/off, 1/0)"
        )),
    }
}

fn parse_format(value: &str) -> std::result::Result<Format, String> {
    Format::from_name(value).map_err(|_| {
        format!(
            "'{value}' is not a precision ({})",
            crate::format::accepted_names()
        )
    })
}

fn parse_fraction(
    value: &str,
    low_open: bool,
    high_closed: bool,
) -> std::result::Result<f64, String> {
    let x: f64 = value
        .parse()
        .map_err(|_| format!("'{value}' is not a number"))?;
    let low_ok = if low_open { x > 0.0 } else { x >= 0.0 };
    let high_ok = if high_closed { x <= 1.0 } else { x < 1.0 };
    if !(x.is_finite() && low_ok && high_ok) {
        return Err(format!(
            "{value} is outside {}0, 1{}",
            if low_open { "(" } else { "[" },
            if high_closed { "]" } else { ")" }
        ));
    }
    Ok(x)
}

/// Logs each ignored key's warning once per process.
fn warn_once(key: &str, why: &str) {
    static WARNED: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    if warned.insert(key.to_string()) {
        log::warn!("[quantization] {key} is accepted and ignored: {why}");
    }
}

impl QuantConfig {
    /// Reads and parses `path` (see [`QuantConfig::parse_bytes`] for its encoding).
    pub fn load(path: &Path) -> Result<QuantConfig> {
        let bytes = std::fs::read(path).map_err(|e| {
            Error::new(
                ErrorKind::Io,
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        QuantConfig::parse_bytes(&bytes, &path.display().to_string())
    }

    /// Parses the `[quantization]` section of INI `text`; `origin` names the
    /// file in errors. Without such a section quantization is disabled.
    pub fn parse(text: &str, origin: &str) -> Result<QuantConfig> {
        QuantConfig::parse_bytes(text.as_bytes(), origin)
    }

    /// Parses INI bytes as they come from a file: a UTF-8 byte order mark at
    /// the start is skipped; the `[quantization]` section (comments aside)
    /// must be UTF-8, and a line of it that is not is a Config error with its
    /// line; other sections and comments may hold any bytes.
    pub fn parse_bytes(bytes: &[u8], origin: &str) -> Result<QuantConfig> {
        let bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
        let mut cfg = QuantConfig {
            origin: origin.to_string(),
            ..QuantConfig::default()
        };
        let mut in_section = false;
        let mut seen: Vec<(&str, usize)> = Vec::new();
        let mut lines = vec![0usize; KEYS.len()];
        for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            let line_no = index + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let content = strip_comment(raw);
            let line = match std::str::from_utf8(content) {
                Ok(text) => text.trim(),
                Err(e) if in_section => {
                    return Err(config_error(
                        origin,
                        line_no,
                        format!(
                            "the line is not valid UTF-8 (byte {} of the line)",
                            e.valid_up_to() + 1
                        ),
                    ));
                }
                // Outside [quantization] only a section header matters, and
                // a header is ASCII up to its ']'.
                Err(e) => std::str::from_utf8(&content[..e.valid_up_to()])
                    .unwrap_or_default()
                    .trim(),
            };
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let name = rest.strip_suffix(']').ok_or_else(|| {
                    config_error(
                        origin,
                        line_no,
                        format!("section header '{line}' has no closing ']'"),
                    )
                })?;
                in_section = name.trim().eq_ignore_ascii_case("quantization");
                continue;
            }
            if !in_section {
                continue;
            }
            let (key, value) = line.split_once('=').ok_or_else(|| {
                config_error(origin, line_no, format!("'{line}' is not 'key = value'"))
            })?;
            let (key, value) = (key.trim(), value.trim());
            let Some(k) = KEYS.iter().position(|k| *k == key) else {
                return Err(config_error(
                    origin,
                    line_no,
                    format!(
                        "unknown key '{key}' in [quantization] (known: {})",
                        KEYS.join(", ")
                    ),
                ));
            };
            if let Some((_, first)) = seen.iter().find(|(s, _)| *s == KEYS[k]) {
                return Err(config_error(
                    origin,
                    line_no,
                    format!("duplicate key '{key}' (first set on line {first})"),
                ));
            }
            seen.push((KEYS[k], line_no));
            lines[k] = line_no;
            if value.is_empty() {
                return Err(config_error(
                    origin,
                    line_no,
                    format!("'{key}' has no value"),
                ));
            }
            cfg.set(key, value).map_err(|reason| {
                config_error(origin, line_no, format!("{key} = {value}: {reason}"))
            })?;
            if let Some((_, why)) = IGNORED.iter().find(|(k, _)| *k == key) {
                cfg.ignored.push(format!("{key}: {why}"));
                warn_once(key, why);
            }
        }
        let line_of = |key: &str| lines[KEYS.iter().position(|k| *k == key).unwrap_or(0)];
        cfg.check_combinations(line_of)?;
        cfg.warnings = cfg.collect_warnings(line_of);
        for warning in &cfg.warnings {
            log::warn!("{warning}");
        }
        Ok(cfg)
    }

    fn set(&mut self, key: &str, value: &str) -> std::result::Result<(), String> {
        match key {
            "enabled" => self.enabled = parse_bool(value)?,
            "precision_level" => self.precision_level = parse_format(value)?,
            "adaptive_precision" => self.adaptive_precision = parse_bool(value)?,
            "memory_threshold_mb" => {
                let mb: u64 = value
                    .parse()
                    .map_err(|_| format!("'{value}' is not a whole number of MiB"))?;
                if mb.checked_mul(MIB).is_none() {
                    return Err(format!(
                        "{mb} MiB is more than the limit of {} MiB (2^64 bytes)",
                        u64::MAX / MIB
                    ));
                }
                self.memory_threshold_mb = mb;
            }
            "accuracy_threshold" => {
                let a = parse_fraction(value, true, true)?;
                if a == 1.0 {
                    return Err("an accuracy threshold of 1 needs exact reconstruction, so nothing could be quantized; set enabled = false instead".to_string());
                }
                self.accuracy_threshold = a;
            }
            "fallback_to_fp32" => self.fallback_to_fp32 = parse_bool(value)?,
            "mixed_precision_enabled" => self.mixed_precision_enabled = parse_bool(value)?,
            "attention_precision" => self.attention_precision = Some(parse_format(value)?),
            "mlp_precision" => self.mlp_precision = Some(parse_format(value)?),
            "embedding_precision" => self.embedding_precision = Some(parse_format(value)?),
            "quantized_training_enabled" => self.quantized_training_enabled = parse_bool(value)?,
            "gradient_precision" => {
                let f = parse_format(value)?;
                if !matches!(f, Format::F32 | Format::F16 | Format::BF16) {
                    return Err(format!(
                        "gradients are kept in FP32, FP16 or BF16, not {}",
                        f.precision_level()
                    ));
                }
                self.gradient_precision = f;
            }
            "weight_precision" => self.weight_precision = Some(parse_format(value)?),
            "activation_precision" => self.activation_precision = Some(parse_format(value)?),
            "quantization_evolution_enabled" => {
                self.quantization_evolution_enabled = parse_bool(value)?
            }
            "learning_in_quantized_state" => self.learning_in_quantized_state = parse_bool(value)?,
            "self_modification_during_quantization" => {
                self.self_modification_during_quantization = parse_bool(value)?
            }
            "target_accuracy_preservation" => {
                self.target_accuracy_preservation = parse_fraction(value, true, true)?
            }
            "memory_reduction_target" => {
                self.memory_reduction_target = parse_fraction(value, false, false)?
            }
            "speedup_target" => {
                let x: f64 = value
                    .parse()
                    .map_err(|_| format!("'{value}' is not a number"))?;
                if !(x.is_finite() && x > 0.0) {
                    return Err(format!("{value} must be a positive factor"));
                }
                self.speedup_target = x;
            }
            _ => return Err(format!("unknown key '{key}'")),
        }
        Ok(())
    }

    /// The per-role precisions, as their keys spell them.
    fn role_precisions(&self) -> [(&'static str, Option<Format>); 3] {
        [
            ("attention_precision", self.attention_precision),
            ("mlp_precision", self.mlp_precision),
            ("embedding_precision", self.embedding_precision),
        ]
    }

    /// The contradictions in what applies: with quantization enabled, a weight
    /// precision below `precision_level` (and a per-role one when mixed
    /// precision is on), a memory target the allowed formats cannot reach;
    /// always, learning in the quantized state without quantized training.
    /// Keys that do not apply are warnings instead ([`Self::collect_warnings`]).
    fn check_combinations(&self, line_of: impl Fn(&str) -> usize) -> Result<()> {
        if self.enabled {
            let roles = if self.mixed_precision_enabled {
                &self.role_precisions()[..]
            } else {
                &[]
            };
            let weight = [("weight_precision", self.weight_precision)];
            for (key, f) in roles.iter().chain(&weight) {
                if let Some(f) = f
                    && self.below_floor(*f)
                {
                    return Err(config_error(
                        &self.origin,
                        line_of(key),
                        format!(
                            "{key} = {} is below precision_level = {} (the lowest precision allowed)",
                            f.precision_level(),
                            self.precision_level.precision_level()
                        ),
                    ));
                }
            }
        }
        if self.learning_in_quantized_state && !self.quantized_training_enabled {
            return Err(config_error(
                &self.origin,
                line_of("learning_in_quantized_state"),
                "learning_in_quantized_state = true needs quantized_training_enabled = true"
                    .to_string(),
            ));
        }
        let best_fraction = self.precision_level.bits_per_weight() / 32.0;
        if self.enabled && 1.0 - self.memory_reduction_target < best_fraction {
            return Err(config_error(
                &self.origin,
                line_of("memory_reduction_target"),
                format!(
                    "memory_reduction_target = {} cannot be reached: at precision_level = {} weights take at least {:.1}% of FP32",
                    self.memory_reduction_target,
                    self.precision_level.precision_level(),
                    best_fraction * 100.0
                ),
            ));
        }
        Ok(())
    }

    fn below_floor(&self, format: Format) -> bool {
        format.bits_per_weight() < self.precision_level.bits_per_weight()
    }

    /// What the section asks for that does not apply (quantization disabled,
    /// per-role precisions without mixed precision) or that allows every
    /// format (an accuracy threshold whose SNR floor every format passes).
    fn collect_warnings(&self, line_of: impl Fn(&str) -> usize) -> Vec<String> {
        let at = |key: &str| format!("{}:{}", self.origin, line_of(key));
        let mut warnings = Vec::new();
        if !self.enabled {
            warnings.push(format!(
                "{}: quantization is disabled (enabled = false): every tensor is planned in FP32",
                at("enabled")
            ));
        }
        for (key, f) in self.role_precisions() {
            let Some(f) = f else { continue };
            if !self.mixed_precision_enabled {
                warnings.push(format!(
                    "{}: {key} = {} does not apply: mixed_precision_enabled = false gives every \
                     weight the model-wide precision",
                    at(key),
                    f.precision_level()
                ));
            } else if !self.enabled && self.below_floor(f) {
                warnings.push(format!(
                    "{}: {key} = {} is below precision_level = {}; it would be an error with \
                     enabled = true",
                    at(key),
                    f.precision_level(),
                    self.precision_level.precision_level()
                ));
            }
        }
        if let Some(f) = self.weight_precision
            && !self.enabled
            && self.below_floor(f)
        {
            warnings.push(format!(
                "{}: weight_precision = {} is below precision_level = {}; it would be an error \
                 with enabled = true",
                at("weight_precision"),
                f.precision_level(),
                self.precision_level.precision_level()
            ));
        }
        let floor_db = cosine_to_snr_db(self.accuracy_threshold);
        if floor_db < WEAK_SNR_FLOOR_DB {
            warnings.push(format!(
                "{}: accuracy_threshold = {} is the least cosine similarity of each tensor to \
                 its quantized form, an SNR floor of {floor_db:.1} dB, which every format passes \
                 (INT4 keeps about 20 dB of real weights); 0.99 ({:.1} dB) or more makes the \
                 threshold choose between formats",
                at("accuracy_threshold"),
                self.accuracy_threshold,
                cosine_to_snr_db(0.99)
            ));
        }
        warnings
    }

    /// Whether any precision key names `format` (INT4 means Q4_0; Q4_1, IQ4_NL
    /// and Q4_K are offered only where a key names them).
    fn names(&self, format: Format) -> bool {
        [
            Some(self.precision_level),
            self.weight_precision,
            self.attention_precision,
            self.mlp_precision,
            self.embedding_precision,
        ]
        .contains(&Some(format))
    }

    /// The planning policy this config asks for.
    pub fn policy(&self, training: bool) -> Policy {
        let mut policy = Policy {
            training,
            ..Policy::default()
        };
        policy.min_snr_db = cosine_to_snr_db(self.accuracy_threshold);
        if !self.enabled || (training && !self.quantized_training_enabled) {
            policy.allowed = vec![Format::F32];
            policy.default_format = Some(Format::F32);
            policy.adaptive = false;
        } else {
            let floor = self.precision_level.bits_per_weight();
            policy.allowed = crate::format::ALL_FORMATS
                .iter()
                .copied()
                .filter(|f| f.bits_per_weight() >= floor)
                // The 4-bit formats beside Q4_0 only where a key names them.
                .filter(|f| {
                    !matches!(f, Format::Q4_1 | Format::IQ4_NL | Format::Q4_K) || self.names(*f)
                })
                .filter(|f| f.spec().planned)
                .collect();
            policy.adaptive = self.adaptive_precision;
            policy.fallback_to_fp32 = self.fallback_to_fp32;
            policy.default_format = Some(self.weight_precision.unwrap_or(self.precision_level));
            if self.mixed_precision_enabled {
                for (i, role) in ALL_ROLES.iter().enumerate() {
                    policy.role_formats[i] = match role {
                        Role::Attention => self.attention_precision,
                        Role::Mlp => self.mlp_precision,
                        Role::Embedding => self.embedding_precision,
                        _ => None,
                    };
                }
            }
            policy.max_fraction_of_fp32 = 1.0 - self.memory_reduction_target;
        }
        policy.notes = self.warnings.clone();
        // parse() keeps the value within u64::MAX / MIB; a larger one set in
        // code caps nothing, as 2^64 bytes would not.
        policy.device_cap_bytes = self.memory_threshold_mb.saturating_mul(MIB);
        policy.gradient_format = self.gradient_precision;
        policy.master_weights = training && !self.learning_in_quantized_state;
        policy.optimizer_state = if training && self.quantized_training_enabled {
            OptimizerState::Blockwise8
        } else {
            OptimizerState::Fp32
        };
        policy
    }
}

/// The UTF-8 encoding of U+FEFF, which some editors put at the start of a file.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// Drops a `#` or `;` comment (at line start, or after whitespace).
fn strip_comment(line: &[u8]) -> &[u8] {
    for (i, &b) in line.iter().enumerate() {
        if (b == b'#' || b == b';') && (i == 0 || line[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}
