//! GGUF metadata values: the value types of the format (one table), and the
//! values a key holds.

/// A GGUF value type, with its id in the file (`gguf_metadata_value_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    U8,
    I8,
    U16,
    I16,
    U32,
    I32,
    F32,
    Bool,
    String,
    Array,
    U64,
    I64,
    F64,
}

/// One row of [`VALUE_TYPES`].
#[derive(Debug, Clone, Copy)]
pub struct ValueTypeSpec {
    /// The type.
    pub value_type: ValueType,
    /// Its id in the file.
    pub id: u32,
    /// Its name in gguf-py's `GGUFValueType`.
    pub name: &'static str,
    /// Bytes of one value, or None for strings and arrays (length-prefixed).
    pub fixed_bytes: Option<usize>,
    /// The fewest bytes one value takes in a file: a bound on how many
    /// elements an array in `n` remaining bytes can hold.
    pub min_bytes: usize,
}

/// Every GGUF value type, in order of their ids.
pub static VALUE_TYPES: [ValueTypeSpec; 13] = [
    spec(ValueType::U8, 0, "UINT8", Some(1)),
    spec(ValueType::I8, 1, "INT8", Some(1)),
    spec(ValueType::U16, 2, "UINT16", Some(2)),
    spec(ValueType::I16, 3, "INT16", Some(2)),
    spec(ValueType::U32, 4, "UINT32", Some(4)),
    spec(ValueType::I32, 5, "INT32", Some(4)),
    spec(ValueType::F32, 6, "FLOAT32", Some(4)),
    spec(ValueType::Bool, 7, "BOOL", Some(1)),
    // A string is its u64 length, then its bytes.
    ValueTypeSpec {
        value_type: ValueType::String,
        id: 8,
        name: "STRING",
        fixed_bytes: None,
        min_bytes: 8,
    },
    // An array is its element type (u32) and count (u64), then the elements.
    ValueTypeSpec {
        value_type: ValueType::Array,
        id: 9,
        name: "ARRAY",
        fixed_bytes: None,
        min_bytes: 12,
    },
    spec(ValueType::U64, 10, "UINT64", Some(8)),
    spec(ValueType::I64, 11, "INT64", Some(8)),
    spec(ValueType::F64, 12, "FLOAT64", Some(8)),
];

const fn spec(
    value_type: ValueType,
    id: u32,
    name: &'static str,
    bytes: Option<usize>,
) -> ValueTypeSpec {
    let min_bytes = match bytes {
        Some(b) => b,
        None => 0,
    };
    ValueTypeSpec {
        value_type,
        id,
        name,
        fixed_bytes: bytes,
        min_bytes,
    }
}

// Row i of VALUE_TYPES has id i.
const _: () = {
    let mut i = 0;
    while i < VALUE_TYPES.len() {
        assert!(VALUE_TYPES[i].id as usize == i);
        i += 1;
    }
};

impl ValueType {
    /// The type with file id `id`, if GGUF has one.
    pub fn from_id(id: u32) -> Option<ValueType> {
        VALUE_TYPES
            .get(usize::try_from(id).ok()?)
            .map(|s| s.value_type)
    }

    /// Its row of [`VALUE_TYPES`].
    pub fn spec(self) -> &'static ValueTypeSpec {
        VALUE_TYPES
            .iter()
            .find(|s| s.value_type == self)
            .expect("every value type has a row")
    }

    /// Its id in the file.
    pub fn id(self) -> u32 {
        self.spec().id
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    /// The element type and the elements (all of that type).
    Array(ValueType, Vec<Value>),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// Its type.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(..) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// The text of a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as text: a string as itself, a number as Rust prints it,
    /// an array as `[a, b, …]` with strings quoted (JSON-like), at most
    /// `max_elements` elements of each array shown, then "… (N in all)".
    pub fn to_text(&self, max_elements: usize) -> String {
        match self {
            Value::String(s) => s.clone(),
            Value::Array(_, items) => {
                let mut parts: Vec<String> = items
                    .iter()
                    .take(max_elements)
                    .map(|v| match v {
                        Value::String(s) => format!("{s:?}"),
                        other => other.to_text(max_elements),
                    })
                    .collect();
                if items.len() > max_elements {
                    parts.push(format!("… ({} in all)", items.len()));
                }
                format!("[{}]", parts.join(", "))
            }
            Value::U8(v) => v.to_string(),
            Value::I8(v) => v.to_string(),
            Value::U16(v) => v.to_string(),
            Value::I16(v) => v.to_string(),
            Value::U32(v) => v.to_string(),
            Value::I32(v) => v.to_string(),
            Value::F32(v) => v.to_string(),
            Value::Bool(v) => v.to_string(),
            Value::U64(v) => v.to_string(),
            Value::I64(v) => v.to_string(),
            Value::F64(v) => v.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_unknown_ids_are_none() {
        for spec in &VALUE_TYPES {
            assert_eq!(ValueType::from_id(spec.id), Some(spec.value_type));
            assert_eq!(spec.value_type.id(), spec.id);
            if let Some(b) = spec.fixed_bytes {
                assert_eq!(spec.min_bytes, b);
            }
            assert!(spec.min_bytes > 0);
        }
        assert_eq!(ValueType::from_id(13), None);
        assert_eq!(ValueType::from_id(u32::MAX), None);
    }

    #[test]
    fn text_of_values() {
        assert_eq!(Value::String("a b".into()).to_text(4), "a b");
        assert_eq!(Value::U32(7).to_text(4), "7");
        let array = Value::Array(
            ValueType::String,
            vec![Value::String("x".into()), Value::String("y".into())],
        );
        assert_eq!(array.to_text(4), "[\"x\", \"y\"]");
        assert_eq!(array.to_text(1), "[\"x\", … (2 in all)]");
    }
}
