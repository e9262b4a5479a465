//! The reader and writer together, and the reader's answer to every kind of
//! malformed file.

use super::writer::{self, TensorSource};
use super::*;
use crate::error::ErrorKind;

/// A tensor for the writer, its bytes given.
struct Bytes {
    name: String,
    shape: Vec<usize>,
    format: Format,
    bytes: Vec<u8>,
}

impl TensorSource for Bytes {
    fn name(&self) -> &str {
        &self.name
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn format(&self) -> Format {
        self.format
    }
    fn with_bytes(&self, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        sink(&self.bytes)
    }
}

fn tensor(name: &str, shape: &[usize], format: Format) -> Bytes {
    let numel: usize = shape.iter().product();
    let len = format.size_of(numel).unwrap();
    Bytes {
        name: name.into(),
        shape: shape.to_vec(),
        format,
        bytes: (0..len).map(|i| (i * 7 + name.len()) as u8).collect(),
    }
}

fn file_of(metadata: &[(String, Value)], tensors: &[Bytes]) -> Vec<u8> {
    let sources: Vec<&dyn TensorSource> = tensors.iter().map(|t| t as &dyn TensorSource).collect();
    let mut out = Vec::new();
    writer::write(&mut out, metadata, &sources).unwrap();
    out
}

fn sample() -> Vec<u8> {
    file_of(
        &[("nyxq.plan".into(), Value::String("q4".into()))],
        &[tensor("w", &[2, 64], Format::Q8_0)],
    )
}

fn err_of(bytes: Vec<u8>) -> Error {
    reader::parse(bytes).unwrap_err()
}

fn assert_message(e: &Error, words: &str) {
    assert!(
        e.message().contains(words),
        "'{}' lacks '{words}'",
        e.message()
    );
}

/// Where the first tensor info starts in `sample()`: header, one key/value.
fn sample_info_start() -> usize {
    24 + (8 + "nyxq.plan".len()) + 4 + (8 + 2)
}

#[test]
fn every_format_and_value_type_round_trips() {
    let metadata = vec![
        ("u8".to_string(), Value::U8(7)),
        ("i8".into(), Value::I8(-7)),
        ("u16".into(), Value::U16(700)),
        ("i16".into(), Value::I16(-700)),
        ("u32".into(), Value::U32(70000)),
        ("i32".into(), Value::I32(-70000)),
        ("f32".into(), Value::F32(1.5)),
        ("bool".into(), Value::Bool(true)),
        ("s".into(), Value::String("ünï".into())),
        (
            "a".into(),
            Value::Array(
                ValueType::Array,
                vec![Value::Array(
                    ValueType::U8,
                    vec![Value::U8(1), Value::U8(2)],
                )],
            ),
        ),
        ("u64".into(), Value::U64(u64::MAX)),
        ("i64".into(), Value::I64(i64::MIN)),
        ("f64".into(), Value::F64(-2.25)),
    ];
    let tensors: Vec<Bytes> = crate::format::ALL_FORMATS
        .iter()
        .enumerate()
        .map(|(i, &f)| tensor(&format!("t{i}"), &[3, 1, 2 * f.block_size()], f))
        .collect();
    let file = reader::parse(file_of(&metadata, &tensors)).unwrap();
    assert_eq!(file.metadata, metadata);
    assert_eq!(file.alignment, DEFAULT_ALIGNMENT);
    for (i, t) in tensors.iter().enumerate() {
        let info = &file.tensors[i];
        assert_eq!(info.name, t.name);
        assert_eq!(info.shape, t.shape);
        assert_eq!(info.format, Some(t.format));
        assert_eq!(info.offset % DEFAULT_ALIGNMENT, 0);
        assert_eq!(file.tensor_bytes(i).unwrap(), &t.bytes[..]);
    }
}

#[test]
fn a_set_alignment_is_used() {
    let metadata = [(ALIGNMENT_KEY.to_string(), Value::U32(64))];
    let tensors = [
        tensor("a", &[32], Format::Q4_0),
        tensor("b", &[32], Format::F32),
    ];
    let file = reader::parse(file_of(&metadata, &tensors)).unwrap();
    assert_eq!(file.alignment, 64);
    assert_eq!(file.tensors[1].offset, 64);
    assert_eq!(file.tensor_bytes(1).unwrap(), &tensors[1].bytes[..]);
}

#[test]
fn the_writer_refuses_what_gguf_cannot_hold() {
    let sources = |t: &[Bytes]| -> Vec<u8> {
        let s: Vec<&dyn TensorSource> = t.iter().map(|t| t as &dyn TensorSource).collect();
        let mut out = Vec::new();
        let e = writer::write(&mut out, &[], &s).unwrap_err();
        assert!(out.is_empty(), "nothing is written on a refusal");
        e.message().as_bytes().to_vec()
    };
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    assert!(
        text(sources(&[
            tensor("a", &[32], Format::F32),
            tensor("a", &[32], Format::F32)
        ]))
        .contains("twice")
    );
    assert!(text(sources(&[tensor(&"x".repeat(64), &[32], Format::F32)])).contains("63"));
    assert!(text(sources(&[tensor("", &[32], Format::F32)])).contains("1 to 63"));
    assert!(text(sources(&[tensor("r5", &[1, 1, 1, 1, 32], Format::F32)])).contains("rank 5"));
    let bad_metadata = |m: &[(String, Value)], words: &str| {
        let e = writer::write(&mut Vec::new(), m, &[]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert_message(&e, words);
    };
    bad_metadata(
        &[("k".into(), Value::U8(1)), ("k".into(), Value::U8(2))],
        "twice",
    );
    bad_metadata(&[(String::new(), Value::U8(1))], "empty");
    bad_metadata(&[(ALIGNMENT_KEY.into(), Value::U32(3))], "power of two");
    bad_metadata(&[(ALIGNMENT_KEY.into(), Value::U64(32))], "power of two");
    bad_metadata(
        &[("m".into(), Value::Array(ValueType::U8, vec![Value::I8(1)]))],
        "holds a INT8",
    );
}

#[test]
fn every_truncation_is_an_error_not_a_panic() {
    let bytes = sample();
    // The last tensor's padding may go: the file ends after its 136 bytes.
    let end = bytes.len() - (align_up(136, DEFAULT_ALIGNMENT).unwrap() - 136);
    assert!(reader::parse(bytes[..end].to_vec()).is_ok());
    for len in 0..end {
        let e = err_of(bytes[..len].to_vec());
        assert_eq!(
            e.kind(),
            ErrorKind::InvalidArgument,
            "at {len}: {}",
            e.message()
        );
    }
    assert!(reader::parse(bytes).is_ok());
}

#[test]
fn bad_magic_and_versions_are_refused() {
    let mut bytes = sample();
    bytes[0] = b'X';
    assert_message(&err_of(bytes), "not a GGUF file");
    let mut bytes = sample();
    bytes[4..8].copy_from_slice(&1u32.to_le_bytes());
    let e = err_of(bytes);
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert_message(&e, "version 1");
    let mut bytes = sample();
    bytes[4..8].copy_from_slice(&3u32.to_be_bytes());
    assert_message(&err_of(bytes), "big-endian");
    let mut bytes = sample();
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    assert_eq!(reader::parse(bytes).unwrap().version, 2);
}

#[test]
fn absurd_counts_are_refused_before_any_allocation() {
    for (at, what) in [(8, "tensor count"), (16, "metadata count")] {
        for count in [u64::MAX, 1 << 40] {
            let mut bytes = sample();
            bytes[at..at + 8].copy_from_slice(&count.to_le_bytes());
            assert_message(&err_of(bytes), what);
        }
    }
    // An array claiming more elements than the file has bytes.
    let mut bytes = file_of(
        &[("a".into(), Value::Array(ValueType::U8, vec![Value::U8(1)]))],
        &[],
    );
    let count_at = 24 + 9 + 4 + 4;
    bytes[count_at..count_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    assert_message(&err_of(bytes), "element count of metadata 'a'");
    // A string length past the end.
    let mut bytes = sample();
    bytes[24..32].copy_from_slice(&(u64::MAX - 3).to_le_bytes());
    assert_message(&err_of(bytes), "length of the key of metadata entry 0");
}

#[test]
fn unknown_value_types_bad_bools_and_deep_arrays_are_refused() {
    let mut bytes = sample();
    let type_at = 24 + 8 + "nyxq.plan".len();
    bytes[type_at..type_at + 4].copy_from_slice(&13u32.to_le_bytes());
    assert_message(&err_of(bytes), "unknown value type 13");
    let mut bytes = file_of(&[("b".into(), Value::Bool(true))], &[]);
    let at = 24 + 9 + 4;
    bytes[at] = 2;
    assert_message(&err_of(bytes), "neither 0 nor 1");
    let mut deep = Value::U8(1);
    for _ in 0..=MAX_ARRAY_DEPTH {
        let t = deep.value_type();
        deep = Value::Array(t, vec![deep]);
    }
    assert_message(
        &err_of(file_of(&[("d".into(), deep)], &[])),
        "nested deeper",
    );
    let mut bytes = sample();
    let key_at = 24 + 8;
    bytes[key_at] = 0xff;
    assert_message(&err_of(bytes), "not UTF-8");
}

#[test]
fn duplicate_names_and_keys_are_refused() {
    let tensors = [
        tensor("aa", &[32], Format::F16),
        tensor("ab", &[32], Format::F16),
    ];
    let mut bytes = file_of(&[], &tensors);
    let second = bytes.windows(2).rposition(|w| w == b"ab").unwrap();
    bytes[second + 1] = b'a';
    assert_message(&err_of(bytes), "tensor name 'aa' appears twice");
    let metadata = [
        ("ka".to_string(), Value::U8(1)),
        ("kb".to_string(), Value::U8(2)),
    ];
    let mut bytes = file_of(&metadata, &[]);
    let second = bytes.windows(2).rposition(|w| w == b"kb").unwrap();
    bytes[second + 1] = b'a';
    assert_message(&err_of(bytes), "metadata key 'ka' appears twice");
}

#[test]
fn names_and_keys_with_nul_are_refused() {
    // Found by fuzz_gguf: a name with a NUL cannot become a C string.
    let mut bytes = file_of(&[], &[tensor("ab", &[32], Format::F16)]);
    let at = bytes.windows(2).position(|w| w == b"ab").unwrap();
    bytes[at + 1] = 0;
    assert_message(
        &err_of(bytes),
        "name of tensor 0 (\"a\\0\") contains a NUL byte",
    );
    let mut bytes = file_of(&[("kb".into(), Value::U8(1))], &[]);
    let at = bytes.windows(2).position(|w| w == b"kb").unwrap();
    bytes[at + 1] = 0;
    assert_message(&err_of(bytes), "key of metadata entry 0");
    let e = writer::write(&mut Vec::new(), &[("a\0".into(), Value::U8(1))], &[]).unwrap_err();
    assert_message(&e, "NUL");
    let t = tensor("a\0b", &[32], Format::F16);
    let e = writer::write(&mut Vec::new(), &[], &[&t]).unwrap_err();
    assert_message(&e, "NUL");
}

#[test]
fn bad_tensor_infos_are_refused_naming_the_tensor() {
    let dims_at = sample_info_start() + 8 + 1;
    let edit = |at: usize, value: &[u8]| {
        let mut bytes = sample();
        bytes[at..at + value.len()].copy_from_slice(value);
        err_of(bytes)
    };
    assert_message(
        &edit(dims_at, &0u32.to_le_bytes()),
        "tensor 'w': 0 dimensions",
    );
    assert_message(
        &edit(dims_at, &5u32.to_le_bytes()),
        "tensor 'w': 5 dimensions",
    );
    let dim0 = dims_at + 4;
    assert_message(&edit(dim0, &0u64.to_le_bytes()), "dimension 0 is 0");
    assert_message(&edit(dim0, &33u64.to_le_bytes()), "not whole Q8_0 blocks");
    assert_message(&edit(dim0 + 8, &u64::MAX.to_le_bytes()), "");
    let e = edit(dim0 + 8, &(1u64 << 62).to_le_bytes());
    assert_message(&e, "tensor 'w'");
    let offset_at = dim0 + 16 + 4;
    assert_message(
        &edit(offset_at, &1u64.to_le_bytes()),
        "not a multiple of the alignment 32",
    );
    assert_message(&edit(offset_at, &32u64.to_le_bytes()), "runs past the end");
    assert_message(
        &edit(offset_at, &(u64::MAX - 31).to_le_bytes()),
        "tensor 'w'",
    );
}

#[test]
fn an_unknown_type_is_named_with_its_tensor() {
    let type_at = sample_info_start() + 8 + 1 + 4 + 16;
    for (id, words) in [
        (
            10u32,
            "tensor 'w': GGML type Q2_K (10) is not a nyxq format",
        ),
        (4, "tensor 'w': GGML type unknown (4) is not a nyxq format"),
        (u32::MAX, "unknown (4294967295)"),
    ] {
        let mut bytes = sample();
        bytes[type_at..type_at + 4].copy_from_slice(&id.to_le_bytes());
        let file = reader::parse(bytes).unwrap();
        assert_eq!(file.tensors[0].format, None);
        assert_eq!(file.tensors[0].byte_len, None);
        let e = file.tensor_bytes(0).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert_message(&e, words);
        assert_message(&file.require_formats().unwrap_err(), words);
    }
}

#[test]
fn a_bad_alignment_is_refused() {
    for value in [Value::U32(0), Value::U32(48), Value::U8(32)] {
        let mut bytes = file_of(&[(ALIGNMENT_KEY.into(), Value::U32(32))], &[]);
        let value_at = 24 + 8 + ALIGNMENT_KEY.len();
        let mut encoded = value.value_type().id().to_le_bytes().to_vec();
        match value {
            Value::U32(a) => encoded.extend_from_slice(&a.to_le_bytes()),
            _ => encoded.extend_from_slice(&[32, 0, 0, 0]),
        }
        bytes[value_at..value_at + 8].copy_from_slice(&encoded);
        assert_message(&err_of(bytes), "power of two");
    }
}

#[test]
fn too_many_array_elements_in_all_are_refused() {
    let big = Value::Array(
        ValueType::U8,
        vec![Value::U8(0); MAX_ARRAY_ELEMENTS / 2 + 1],
    );
    let bytes = file_of(&[("a".into(), big.clone()), ("b".into(), big)], &[]);
    assert_message(&err_of(bytes), "array elements in the file");
}

/// A tensor whose bytes cannot be had.
struct Failing;

impl TensorSource for Failing {
    fn name(&self) -> &str {
        "failing"
    }
    fn shape(&self) -> &[usize] {
        &[32]
    }
    fn format(&self) -> Format {
        Format::Q8_0
    }
    fn with_bytes(&self, _: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        Err(Error::invalid("no bytes today"))
    }
}

#[test]
fn a_failed_write_keeps_the_old_file_and_leaves_nothing_beside_it() {
    let dir = std::env::temp_dir().join(format!("nyxq-gguf-write-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("model.gguf");
    std::fs::write(&path, b"the old file").unwrap();
    let e = writer::write_to_path(&path, &[], &[&Failing]).unwrap_err();
    assert_message(&e, "no bytes today");
    assert_eq!(std::fs::read(&path).unwrap(), b"the old file");
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        1,
        "no partial file is left"
    );
    let good = tensor("good", &[32], Format::Q8_0);
    writer::write_to_path(&path, &[], &[&good]).unwrap();
    let file = reader::read_file(&path).unwrap();
    assert_eq!(file.tensor_bytes(0).unwrap(), &good.bytes[..]);
    let e = writer::write_to_path(&dir.join("absent/x.gguf"), &[], &[&good]).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Io);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A file with a string, an array and two tensors, for damaging.
fn rich_sample() -> Vec<u8> {
    file_of(
        &[
            ("nyxq.plan".into(), Value::String("{}".into())),
            (
                "tokens".into(),
                Value::Array(
                    ValueType::String,
                    vec![Value::String("a".into()), Value::String("bc".into())],
                ),
            ),
        ],
        &[
            tensor("w", &[2, 256], Format::Q4_K),
            tensor("b", &[32], Format::F32),
        ],
    )
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

    /// Damaged files are an error or a file whose every tensor's bytes lie
    /// inside it (or are refused by type), never a panic.
    #[test]
    fn no_damage_makes_the_reader_panic(
        edits in proptest::collection::vec((0usize..4096, proptest::num::u8::ANY), 1..6),
        cut in 0usize..4096,
    ) {
        let mut bytes = rich_sample();
        for &(at, byte) in &edits {
            let at = at % bytes.len();
            bytes[at] = byte;
        }
        bytes.truncate(cut.max(bytes.len() / 2));
        if let Ok(file) = reader::parse(bytes) {
            for (i, info) in file.tensors.iter().enumerate() {
                match file.tensor_bytes(i) {
                    Ok(b) => proptest::prop_assert_eq!(Some(b.len()), info.byte_len),
                    Err(e) => proptest::prop_assert_eq!(e.kind(), ErrorKind::Unsupported),
                }
            }
        }
    }
}

/// A path to a device that never ends (or a pipe) reads the length it
/// reports, 0, and is refused as a file too short to be GGUF, not read
/// until memory runs out.
#[cfg(target_os = "linux")]
#[test]
fn an_endless_device_is_refused_not_read_forever() {
    let e = super::reader::read_file(std::path::Path::new("/dev/zero")).unwrap_err();
    assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{e}");
    assert_message(&e, "/dev/zero");
}
