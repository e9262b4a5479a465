//! ggml's tensor types as GGUF stores them (`ggml_type`), and which nyxq
//! format each one is: one table.

use crate::format::Format;

/// One row of [`GGML_TYPES`].
#[derive(Debug, Clone, Copy)]
pub struct GgmlType {
    /// The id in a GGUF tensor info.
    pub id: u32,
    /// ggml's name for it ("Q4_K").
    pub name: &'static str,
    /// The nyxq format with the same byte layout, if nyxq has one.
    pub format: Option<Format>,
}

const fn row(id: u32, name: &'static str, format: Option<Format>) -> GgmlType {
    GgmlType { id, name, format }
}

/// Every type ggml defines (ids 4, 5, 31–33 and 36–38 were removed from ggml
/// and are unknown here too). Types past the table are reported by id.
pub static GGML_TYPES: [GgmlType; 33] = [
    row(0, "F32", Some(Format::F32)),
    row(1, "F16", Some(Format::F16)),
    row(2, "Q4_0", Some(Format::Q4_0)),
    row(3, "Q4_1", Some(Format::Q4_1)),
    row(6, "Q5_0", Some(Format::Q5_0)),
    row(7, "Q5_1", None),
    row(8, "Q8_0", Some(Format::Q8_0)),
    row(9, "Q8_1", None),
    row(10, "Q2_K", None),
    row(11, "Q3_K", None),
    row(12, "Q4_K", Some(Format::Q4_K)),
    row(13, "Q5_K", Some(Format::Q5_K)),
    row(14, "Q6_K", Some(Format::Q6_K)),
    row(15, "Q8_K", None),
    row(16, "IQ2_XXS", None),
    row(17, "IQ2_XS", None),
    row(18, "IQ3_XXS", None),
    row(19, "IQ1_S", None),
    row(20, "IQ4_NL", Some(Format::IQ4_NL)),
    row(21, "IQ3_S", None),
    row(22, "IQ2_S", None),
    row(23, "IQ4_XS", None),
    row(24, "I8", None),
    row(25, "I16", None),
    row(26, "I32", None),
    row(27, "I64", None),
    row(28, "F64", None),
    row(29, "IQ1_M", None),
    row(30, "BF16", Some(Format::BF16)),
    row(34, "TQ1_0", None),
    row(35, "TQ2_0", None),
    row(39, "MXFP4", None),
    row(40, "NVFP4", None),
];

/// The row of type id `id`, if ggml defines it.
pub fn by_id(id: u32) -> Option<&'static GgmlType> {
    GGML_TYPES.iter().find(|t| t.id == id)
}

/// The ggml type id that stores `format`.
pub fn id_of(format: Format) -> u32 {
    GGML_TYPES
        .iter()
        .find(|t| t.format == Some(format))
        .map(|t| t.id)
        .expect("every nyxq format is a ggml type (tested)")
}

/// "Q2_K (10)", or "unknown (99)" for an id ggml does not define.
pub fn describe(id: u32) -> String {
    match by_id(id) {
        Some(t) => format!("{} ({id})", t.name),
        None => format!("unknown ({id})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::{ALL_FORMATS, FORMATS};

    #[test]
    fn every_format_is_one_ggml_type_of_the_same_name() {
        for format in ALL_FORMATS {
            let rows: Vec<_> = GGML_TYPES
                .iter()
                .filter(|t| t.format == Some(format))
                .collect();
            assert_eq!(rows.len(), 1, "{format:?}");
            assert_eq!(rows[0].name, format.name());
            assert_eq!(by_id(id_of(format)).unwrap().format, Some(format));
        }
        assert_eq!(
            GGML_TYPES.iter().filter(|t| t.format.is_some()).count(),
            FORMATS.len()
        );
    }

    #[test]
    fn ids_are_distinct_and_ascending() {
        for pair in GGML_TYPES.windows(2) {
            assert!(pair[0].id < pair[1].id, "{}", pair[1].name);
        }
        assert_eq!(id_of(Format::Q8_0), 8);
        assert_eq!(id_of(Format::BF16), 30);
        assert_eq!(describe(10), "Q2_K (10)");
        assert_eq!(describe(4), "unknown (4)");
    }
}
