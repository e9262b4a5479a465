//! What the build reads from a compiled kernel: the capabilities its SPIR-V
//! declares (which decide the device features it needs), the size of its
//! push-constant block (which must equal its family's Rust twin) and the
//! bytes of workgroup (shared) memory it declares (which must fit the
//! device's maxComputeSharedMemorySize). And the one rewrite it makes:
//! cooperative matrices from the NV extension's instructions into the KHR
//! extension's ([`nv_to_khr_cooperative_matrix`]).

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
const EXECUTION_MODE_DENORM_PRESERVE: u32 = 4459;
const EXECUTION_MODE_ROUNDING_RTE: u32 = 4462;

/// SPIR-V capability: f16 arithmetic (the device needs shaderFloat16).
pub const CAPABILITY_FLOAT16: u32 = 9;
/// SPIR-V capability: subgroup arithmetic (reductions and scans across a
/// subgroup: the device needs VK_SUBGROUP_FEATURE_ARITHMETIC_BIT in compute
/// shaders).
pub const CAPABILITY_GROUP_NON_UNIFORM_ARITHMETIC: u32 = 63;
/// SPIR-V capability: 16-bit loads and stores of storage buffers (the
/// device needs storageBuffer16BitAccess).
pub const CAPABILITY_STORAGE_16BIT: u32 = 4433;
/// SPIR-V capability: the execution mode DenormPreserve (for 16-bit floats
/// the device needs shaderDenormPreserveFloat16, for 32-bit ones
/// shaderDenormPreserveFloat32: [`Facts::denorm_preserve_widths`] says
/// which).
pub const CAPABILITY_DENORM_PRESERVE: u32 = 4464;
/// SPIR-V capability: the execution mode RoundingModeRTE (for 16-bit floats
/// the device needs shaderRoundingModeRTEFloat16, for 32-bit ones
/// shaderRoundingModeRTEFloat32: [`Facts::rounding_rte_widths`] says which).
pub const CAPABILITY_ROUNDING_RTE: u32 = 4467;
/// SPIR-V capability: the Vulkan memory model (the device needs
/// vulkanMemoryModel).
pub const CAPABILITY_VULKAN_MEMORY_MODEL: u32 = 5345;
/// SPIR-V capability: SPV_KHR_cooperative_matrix (the device needs
/// VK_KHR_cooperative_matrix and its cooperativeMatrix feature).
pub const CAPABILITY_COOPERATIVE_MATRIX: u32 = 6022;

/// The facts the build reads from one kernel's SPIR-V.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// Every capability declared, in order.
    pub capabilities: Vec<u32>,
    /// Bytes of the push-constant block (0 without one).
    pub push_bytes: u32,
    /// The float widths (16, 32) the module declares RoundingModeRTE for.
    pub rounding_rte_widths: Vec<u32>,
    /// The float widths (16, 32) the module declares DenormPreserve for.
    pub denorm_preserve_widths: Vec<u32>,
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
    let mut denorm_preserve_widths = Vec::new();
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
            OP_EXECUTION_MODE if operands[1] == EXECUTION_MODE_DENORM_PRESERVE => {
                denorm_preserve_widths.push(operands[2])
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
        denorm_preserve_widths,
        workgroup_bytes,
    }
}

const OP_EXTENSION: u32 = 10;
const OP_CONSTANT_TRUE: u32 = 41;
const OP_CONSTANT_FALSE: u32 = 42;
const CAPABILITY_COOPERATIVE_MATRIX_NV: u32 = 5357;
const NV_EXTENSION: &str = "SPV_NV_cooperative_matrix";
const KHR_EXTENSION: &str = "SPV_KHR_cooperative_matrix";
/// The NV extension's opcodes and their KHR twins.
const OP_TYPE_COOPERATIVE_MATRIX: (u32, u32) = (5358, 4456);
const OP_COOPERATIVE_MATRIX_LOAD: (u32, u32) = (5359, 4457);
const OP_COOPERATIVE_MATRIX_STORE: (u32, u32) = (5360, 4458);
const OP_COOPERATIVE_MATRIX_MUL_ADD: (u32, u32) = (5361, 4459);
const OP_COOPERATIVE_MATRIX_LENGTH: (u32, u32) = (5362, 4460);
/// The KHR operands that the NV extension has no twin for: a matrix's use
/// (MatrixA, MatrixB, MatrixAccumulator) and a load's or store's layout.
const USE_A: u32 = 0;
const USE_B: u32 = 1;
const USE_ACCUMULATOR: u32 = 2;
const LAYOUT_ROW_MAJOR: u32 = 0;
const LAYOUT_COLUMN_MAJOR: u32 = 1;

/// One instruction: its opcode and operands.
type Instruction = (u32, Vec<u32>);

/// The module's words (after checking the header) as instructions.
fn instructions(spirv: &[u8]) -> (Vec<u32>, Vec<Instruction>) {
    assert!(
        spirv.len() % 4 == 0 && spirv.len() >= 20,
        "not a SPIR-V module"
    );
    let words: Vec<u32> = spirv
        .chunks_exact(4)
        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .collect();
    assert_eq!(words[0], 0x0723_0203, "not a little-endian SPIR-V module");
    let mut out = Vec::new();
    let mut at = 5;
    while at < words.len() {
        let (count, opcode) = ((words[at] >> 16) as usize, words[at] & 0xffff);
        assert!(
            count > 0 && at + count <= words.len(),
            "truncated SPIR-V instruction"
        );
        out.push((opcode, words[at + 1..at + count].to_vec()));
        at += count;
    }
    (words[..5].to_vec(), out)
}

/// A literal string's words (NUL-terminated, zero-padded).
fn string_words(text: &str) -> Vec<u32> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    bytes.resize(bytes.len().div_ceil(4) * 4, 0);
    bytes
        .chunks_exact(4)
        .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
        .collect()
}

/// Rewrites a module that uses SPV_NV_cooperative_matrix into one that uses
/// SPV_KHR_cooperative_matrix: the pinned glslang (11.13) has GLSL syntax
/// for the NV extension only, and the two differ in three points, each
/// rewritten here: the capability and extension names; each matrix type
/// names its use (A, B or accumulator, read from the multiply-adds that take
/// it: a type used in two roles is refused, so a kernel gives A and B
/// different shapes); and loads and stores take a layout constant before the
/// stride instead of a column-major boolean after it. The opcodes move to
/// their KHR numbers; every other word is kept. Panics (failing the build)
/// on a module this cannot rewrite.
pub fn nv_to_khr_cooperative_matrix(spirv: &[u8]) -> Vec<u8> {
    let (mut header, mut code) = instructions(spirv);
    let is_type = |op: u32| op == OP_TYPE_COOPERATIVE_MATRIX.0;
    let types: Vec<u32> = code
        .iter()
        .filter(|(op, _)| is_type(*op))
        .map(|(_, o)| o[0])
        .collect();
    assert!(
        !types.is_empty(),
        "no NV cooperative-matrix type to rewrite"
    );
    // The type of every value of a matrix type: an instruction whose first
    // operand is a matrix type declares its result (the second) of that type.
    let value_type = |value: u32| {
        code.iter()
            .find(|(_, o)| o.len() >= 2 && o[1] == value && types.contains(&o[0]))
            .map(|(_, o)| o[0])
            .unwrap_or_else(|| panic!("cooperative matrix %{value} has no typed definition"))
    };
    let mut uses: Vec<(u32, u32)> = Vec::new();
    let mut note = |ty: u32, role: u32| match uses.iter().find(|(t, _)| *t == ty) {
        Some(&(_, r)) => assert_eq!(
            r, role,
            "cooperative-matrix type %{ty} is used in two roles: give A, B and the \
             accumulator different types (shapes or component types)"
        ),
        None => uses.push((ty, role)),
    };
    for (op, o) in &code {
        if *op == OP_COOPERATIVE_MATRIX_MUL_ADD.0 {
            note(o[0], USE_ACCUMULATOR);
            note(value_type(o[2]), USE_A);
            note(value_type(o[3]), USE_B);
            note(value_type(o[4]), USE_ACCUMULATOR);
        }
    }
    let use_of = |ty: u32| {
        uses.iter()
            .find(|(t, _)| *t == ty)
            .map(|&(_, role)| role)
            .unwrap_or_else(|| panic!("cooperative-matrix type %{ty} is in no multiply-add"))
    };
    // The 32-bit integer type of the matrices' scope constant, for the new
    // constants, which go right before the first matrix type.
    let first_type = code
        .iter()
        .position(|(op, _)| is_type(*op))
        .expect("found above");
    let scope = code[first_type].1[2];
    let int_type = code
        .iter()
        .find(|(op, o)| *op == OP_CONSTANT && o[1] == scope)
        .map(|(_, o)| o[0])
        .expect("the scope of a cooperative matrix is an integer constant");
    let mut bound = header[3];
    let mut added: Vec<Instruction> = Vec::new();
    let mut constant = |value: u32| -> u32 {
        let existing = code
            .iter()
            .chain(&added)
            .find(|(op, o)| *op == OP_CONSTANT && o[0] == int_type && o.get(2) == Some(&value));
        if let Some((_, o)) = existing {
            return o[1];
        }
        let id = bound;
        bound += 1;
        added.push((OP_CONSTANT, vec![int_type, id, value]));
        id
    };
    let use_ids: Vec<(u32, u32)> = types.iter().map(|&t| (t, constant(use_of(t)))).collect();
    let (row_major, column_major) = (constant(LAYOUT_ROW_MAJOR), constant(LAYOUT_COLUMN_MAJOR));
    let booleans: Vec<(u32, u32)> = code
        .iter()
        .filter_map(|(op, o)| match *op {
            OP_CONSTANT_TRUE => Some((o[1], column_major)),
            OP_CONSTANT_FALSE => Some((o[1], row_major)),
            _ => None,
        })
        .collect();
    let layout = |column_major_id: u32| {
        booleans
            .iter()
            .find(|(b, _)| *b == column_major_id)
            .map(|&(_, id)| id)
            .expect("a cooperative-matrix load's or store's layout is a boolean constant")
    };
    for (op, o) in &mut code {
        let rewritten = match *op {
            OP_CAPABILITY if o[0] == CAPABILITY_COOPERATIVE_MATRIX_NV => {
                Some((OP_CAPABILITY, vec![CAPABILITY_COOPERATIVE_MATRIX]))
            }
            OP_EXTENSION if *o == string_words(NV_EXTENSION) => {
                Some((OP_EXTENSION, string_words(KHR_EXTENSION)))
            }
            x if x == OP_TYPE_COOPERATIVE_MATRIX.0 => {
                let use_id = use_ids
                    .iter()
                    .find(|(t, _)| *t == o[0])
                    .expect("each type")
                    .1;
                Some((OP_TYPE_COOPERATIVE_MATRIX.1, [&o[..], &[use_id]].concat()))
            }
            // (type, result, pointer, stride, column major, memory operands...)
            x if x == OP_COOPERATIVE_MATRIX_LOAD.0 => Some((
                OP_COOPERATIVE_MATRIX_LOAD.1,
                [&o[..3], &[layout(o[4]), o[3]], &o[5..]].concat(),
            )),
            // (pointer, object, stride, column major, memory operands...)
            x if x == OP_COOPERATIVE_MATRIX_STORE.0 => Some((
                OP_COOPERATIVE_MATRIX_STORE.1,
                [&o[..2], &[layout(o[3]), o[2]], &o[4..]].concat(),
            )),
            x if x == OP_COOPERATIVE_MATRIX_MUL_ADD.0 => {
                Some((OP_COOPERATIVE_MATRIX_MUL_ADD.1, o.clone()))
            }
            x if x == OP_COOPERATIVE_MATRIX_LENGTH.0 => {
                Some((OP_COOPERATIVE_MATRIX_LENGTH.1, o.clone()))
            }
            _ => None,
        };
        if let Some(r) = rewritten {
            (*op, *o) = r;
        }
    }
    let first_type = code
        .iter()
        .position(|(op, _)| *op == OP_TYPE_COOPERATIVE_MATRIX.1);
    let at = first_type.expect("the types were rewritten");
    code.splice(at..at, added);
    header[3] = bound;
    let mut words = header;
    for (op, o) in code {
        words.push(((o.len() as u32 + 1) << 16) | op);
        words.extend(o);
    }
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}
