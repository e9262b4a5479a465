//! What the build reads from a compiled kernel: the capabilities its SPIR-V
//! declares (which decide the device features it needs), the size of its
//! push-constant block (which must equal its family's Rust twin) and the
//! bytes of workgroup (shared) memory it declares (which must fit the
//! device's maxComputeSharedMemorySize).

/// SPIR-V opcodes and enumerants the reader needs (SPIR-V 1.5 specification).
const OP_EXECUTION_MODE: u32 = 16;
const OP_CAPABILITY: u32 = 17;
const OP_TYPE_BOOL: u32 = 20;
const OP_TYPE_INT: u32 = 21;
const OP_TYPE_FLOAT: u32 = 22;
const OP_TYPE_VECTOR: u32 = 23;
const OP_TYPE_ARRAY: u32 = 28;
const OP_TYPE_STRUCT: u32 = 30;
const OP_TYPE_POINTER: u32 = 32;
const OP_CONSTANT: u32 = 43;
const OP_VARIABLE: u32 = 59;
const OP_MEMBER_DECORATE: u32 = 72;
const DECORATION_OFFSET: u32 = 35;
const STORAGE_WORKGROUP: u32 = 4;
const STORAGE_PUSH_CONSTANT: u32 = 9;
const EXECUTION_MODE_ROUNDING_RTE: u32 = 4462;

/// SPIR-V capability: f16 arithmetic (the device needs shaderFloat16).
pub const CAPABILITY_FLOAT16: u32 = 9;
/// SPIR-V capability: 16-bit loads and stores of storage buffers (the
/// device needs storageBuffer16BitAccess).
pub const CAPABILITY_STORAGE_16BIT: u32 = 4433;
/// SPIR-V capability: the execution mode DenormPreserve (nyxq declares it
/// for 16-bit floats only: the device needs shaderDenormPreserveFloat16).
pub const CAPABILITY_DENORM_PRESERVE: u32 = 4464;
/// SPIR-V capability: the execution mode RoundingModeRTE (for 16-bit floats
/// the device needs shaderRoundingModeRTEFloat16, for 32-bit ones
/// shaderRoundingModeRTEFloat32: [`Facts::rounding_rte_widths`] says which).
pub const CAPABILITY_ROUNDING_RTE: u32 = 4467;

/// The facts the build reads from one kernel's SPIR-V.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Every capability declared, in order.
    pub capabilities: Vec<u32>,
    /// Bytes of the push-constant block (0 without one).
    pub push_bytes: u32,
    /// The float widths (16, 32) the module declares RoundingModeRTE for.
    pub rounding_rte_widths: Vec<u32>,
    /// Bytes of workgroup memory its variables take, each type at its
    /// natural size (scalars, vectors, arrays and structs without padding).
    pub workgroup_bytes: u32,
}

/// The byte size of the type `id` in a module whose scalar, vector, array,
/// struct types and constants are given; panics on a type it cannot size.
struct Types {
    scalar_bytes: Vec<(u32, u32)>,
    vectors: Vec<(u32, u32, u32)>,
    arrays: Vec<(u32, u32, u32)>,
    structs: Vec<(u32, Vec<u32>)>,
    constants: Vec<(u32, u32)>,
}

impl Types {
    fn size(&self, id: u32) -> u32 {
        if let Some(s) = self.scalar_bytes.iter().find(|s| s.0 == id) {
            return s.1;
        }
        if let Some(v) = self.vectors.iter().find(|v| v.0 == id) {
            return self.size(v.1) * v.2;
        }
        if let Some(a) = self.arrays.iter().find(|a| a.0 == id) {
            let length = self
                .constants
                .iter()
                .find(|c| c.0 == a.2)
                .map(|c| c.1)
                .expect("an array's length is a constant");
            return self.size(a.1) * length;
        }
        if let Some(s) = self.structs.iter().find(|s| s.0 == id) {
            return s.1.iter().map(|&m| self.size(m)).sum();
        }
        panic!("workgroup variable of a type the build cannot size (id {id})")
    }
}

/// Reads `spirv`. Panics on a module that is not SPIR-V, or whose
/// push-constant block holds anything but 32-bit scalars (the Rust twins
/// are structs of u32).
pub fn read(spirv: &[u8]) -> Facts {
    assert!(
        spirv.len() % 4 == 0 && spirv.len() >= 20,
        "not a SPIR-V module"
    );
    let words: Vec<u32> = spirv
        .chunks_exact(4)
        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .collect();
    assert_eq!(words[0], 0x0723_0203, "not a little-endian SPIR-V module");
    let mut capabilities = Vec::new();
    let mut rounding_rte_widths = Vec::new();
    let mut scalar_bytes = Vec::new();
    let mut vectors = Vec::new();
    let mut arrays = Vec::new();
    let mut constants = Vec::new();
    let mut structs = Vec::new();
    let mut pointers = Vec::new();
    let mut push_pointer = None;
    let mut workgroup_pointers = Vec::new();
    let mut offsets = Vec::new();
    // After the 5-word header, each instruction is (word count << 16 | opcode)
    // and its operands.
    let mut at = 5;
    while at < words.len() {
        let (count, opcode) = ((words[at] >> 16) as usize, words[at] & 0xffff);
        assert!(
            count > 0 && at + count <= words.len(),
            "truncated SPIR-V instruction"
        );
        let operands = &words[at + 1..at + count];
        match opcode {
            OP_CAPABILITY => capabilities.push(operands[0]),
            OP_EXECUTION_MODE if operands[1] == EXECUTION_MODE_ROUNDING_RTE => {
                rounding_rte_widths.push(operands[2])
            }
            OP_TYPE_BOOL => scalar_bytes.push((operands[0], 4)),
            OP_TYPE_INT | OP_TYPE_FLOAT => scalar_bytes.push((operands[0], operands[1] / 8)),
            OP_TYPE_VECTOR => vectors.push((operands[0], operands[1], operands[2])),
            OP_TYPE_ARRAY => arrays.push((operands[0], operands[1], operands[2])),
            OP_CONSTANT => constants.push((operands[1], operands[2])),
            OP_TYPE_STRUCT => structs.push((operands[0], operands[1..].to_vec())),
            OP_TYPE_POINTER => pointers.push((operands[0], operands[1], operands[2])),
            OP_VARIABLE if operands[2] == STORAGE_PUSH_CONSTANT => push_pointer = Some(operands[0]),
            OP_VARIABLE if operands[2] == STORAGE_WORKGROUP => workgroup_pointers.push(operands[0]),
            OP_MEMBER_DECORATE if operands[2] == DECORATION_OFFSET => {
                offsets.push((operands[0], operands[1], operands[3]))
            }
            _ => {}
        }
        at += count;
    }
    let push_bytes = push_pointer.map_or(0, |pointer| {
        let block = pointers
            .iter()
            .find(|p| p.0 == pointer && p.1 == STORAGE_PUSH_CONSTANT)
            .map(|p| p.2)
            .expect("the push-constant variable has a pointer type");
        let (_, members) = structs
            .iter()
            .find(|s| s.0 == block)
            .expect("the push-constant block is a struct");
        let member_end = |(index, ty): (usize, &u32)| {
            let bytes = scalar_bytes
                .iter()
                .find(|s| s.0 == *ty)
                .map(|s| s.1)
                .filter(|&b| b == 4)
                .expect("push-constant members are 32-bit scalars");
            let offset = offsets
                .iter()
                .find(|o| o.0 == block && o.1 == index as u32)
                .map(|o| o.2)
                .expect("every push-constant member has an offset");
            offset + bytes
        };
        members
            .iter()
            .enumerate()
            .map(member_end)
            .max()
            .unwrap_or(0)
    });
    let pointee = |pointer: u32| {
        pointers
            .iter()
            .find(|p| p.0 == pointer)
            .map(|p| p.2)
            .expect("a variable has a pointer type")
    };
    let types = Types {
        scalar_bytes,
        vectors,
        arrays,
        structs,
        constants,
    };
    let workgroup_bytes = workgroup_pointers
        .iter()
        .map(|&pointer| types.size(pointee(pointer)))
        .sum();
    Facts {
        capabilities,
        push_bytes,
        rounding_rte_widths,
        workgroup_bytes,
    }
}
