//! Model descriptions through the C ABI: create, load, add tensors, destroy.

use super::guard::guard;
use super::handle::{self, Opaque};
use super::ptr;
use super::status::NyxqStatus;
use crate::error::{Error, ErrorKind, Result};
use crate::plan::model::check_tensor_count;
use crate::plan::{Model, Role, TensorDesc};
use parking_lot::Mutex;
use std::collections::HashSet;
use std::ffi::c_char;
use std::path::Path;

/// Tensor roles (nyxq_model_add_tensor).
#[repr(i32)]
pub enum NyxqRole {
    NyxqRoleEmbedding = 0,
    NyxqRoleAttention = 1,
    NyxqRoleMlp = 2,
    /// The output projection (LM head).
    NyxqRoleOutput = 3,
    /// Norm weights: always F32.
    NyxqRoleNorm = 4,
    /// Biases: always F32.
    NyxqRoleBias = 5,
    NyxqRoleOther = 6,
}

/// The number of NyxqRole values: the length of NyxqPlanPolicy.role_formats.
pub const NYXQ_ROLE_COUNT: usize = 7;
const _: () = assert!(NYXQ_ROLE_COUNT == NyxqRole::NyxqRoleOther as usize + 1);

/// A model description being built (tensors, roles, shapes, measured errors).
/// Create with nyxq_model_create or nyxq_model_load, release with
/// nyxq_model_destroy. Calls may come from several threads; they are serialised.
pub struct NyxqModel {
    _opaque: [u8; 0],
}

impl Opaque for NyxqModel {
    type Inner = Mutex<ModelBuild>;
    const KIND: &'static str = "model";
}

/// A model behind a C handle, with the names of its tensors indexed so that
/// `nyxq_model_add_tensor` finds a duplicate in constant time (a scan of every
/// name made building a model of n tensors cost n² comparisons).
pub(crate) struct ModelBuild {
    /// The model as the planner takes it.
    pub(crate) model: Model,
    names: HashSet<String>,
}

impl ModelBuild {
    fn new(model: Model) -> Result<ModelBuild> {
        let mut names = HashSet::new();
        names.try_reserve(model.tensors.len()).map_err(|_| {
            Error::new(
                ErrorKind::OutOfMemory,
                "the tensor names of a model could not be indexed",
            )
        })?;
        names.extend(model.tensors.iter().map(|t| t.name.clone()));
        Ok(ModelBuild { model, names })
    }
}

fn role_arg(role: i32) -> Result<Role> {
    Role::from_raw(role)
}

/// Creates an empty model named `name` (UTF-8, copied).
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_ARGUMENT (not UTF-8). Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_model_create(
    name: *const c_char,
    model_out: *mut *mut NyxqModel,
) -> NyxqStatus {
    guard(|| {
        // SAFETY: the caller passes a NUL-terminated string.
        let name = unsafe { ptr::string(name, "name") }?;
        let out = ptr::out(model_out, "model_out")?;
        let model = Model {
            name: name.to_string(),
            description: String::new(),
            tensors: Vec::new(),
        };
        let build = ModelBuild::new(model)?;
        // SAFETY: model_out checked non-NULL.
        unsafe { out.write(handle::register::<NyxqModel>(Mutex::new(build))) };
        Ok(())
    })
}

/// Reads a JSON model description (docs/planning.md, "Describing a model") from `path`.
///
/// The description is checked against the limits of docs/planning.md
/// (at most 65536 tensors, 10000 transformer blocks, 2^30 for `hidden`,
/// `vocab` and `hidden * mlp_expansion`, 2^50 elements per tensor) before
/// anything is generated from it.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_IO (unreadable), NYXQ_ERROR_CONFIG
/// (bad content, a limit exceeded: file, line, column and reason in the
/// message), NYXQ_ERROR_OUT_OF_MEMORY. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_model_load(
    path: *const c_char,
    model_out: *mut *mut NyxqModel,
) -> NyxqStatus {
    guard(|| {
        // SAFETY: the caller passes a NUL-terminated string.
        let path = unsafe { ptr::string(path, "path") }?;
        let out = ptr::out(model_out, "model_out")?;
        let model = Model::load(Path::new(path))?;
        let build = ModelBuild::new(model)?;
        // SAFETY: model_out checked non-NULL.
        unsafe { out.write(handle::register::<NyxqModel>(Mutex::new(build))) };
        Ok(())
    })
}

/// Adds a tensor: `name` (UTF-8, copied, unique in the model), a NyxqRole,
/// `rank` dimensions at `shape` (outermost first), `sensitivity` (< 0 for the
/// role's default; NaN and +infinity are rejected), and optionally its FP32 data (`data_len` floats, exactly
/// the element count, or NULL/0). Data is read only during the call: the error
/// of every format is measured from it then and only the measurements are kept.
///
/// Errors: NYXQ_ERROR_NULL_POINTER, NYXQ_ERROR_INVALID_HANDLE,
/// NYXQ_ERROR_INVALID_ARGUMENT (unknown role, bad shape, duplicate name,
/// data_len not the element count, the model already holds 65536 tensors),
/// NYXQ_ERROR_SIZE_OVERFLOW (more than 2^50 elements, or a dimension beyond
/// size_t), NYXQ_ERROR_NON_FINITE (NaN/Inf in data), NYXQ_ERROR_OUT_OF_MEMORY.
/// Thread-safe (calls on one model are serialised).
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_model_add_tensor(
    model: *mut NyxqModel,
    name: *const c_char,
    role: i32,
    shape: *const u64,
    rank: usize,
    sensitivity: f64,
    data: *const f32,
    data_len: usize,
) -> NyxqStatus {
    guard(|| {
        let model = handle::get(model)?;
        // SAFETY: the caller passes a NUL-terminated string.
        let name = unsafe { ptr::string(name, "name") }?;
        let role = role_arg(role)?;
        if rank == 0 || rank > crate::shape::MAX_RANK {
            return Err(Error::invalid(format!("rank {rank} is outside 1..=8")));
        }
        // SAFETY: the caller passes `rank` u64s at shape.
        let dims = unsafe { ptr::slice(shape, rank, "shape") }?;
        let dims: Vec<usize> = dims
            .iter()
            .map(|&d| usize::try_from(d).map_err(|_| Error::overflow("shape dimension")))
            .collect::<Result<_>>()?;
        // SAFETY: the caller passes data_len floats at data (or NULL, 0).
        let data = unsafe { ptr::slice(data, data_len, "data") }?;
        let mut tensor = TensorDesc::new(name, role, &dims)?;
        if sensitivity.is_nan() || sensitivity == f64::INFINITY {
            return Err(Error::invalid(format!(
                "sensitivity {sensitivity} must be finite (or negative for the role's default)"
            )));
        }
        if sensitivity >= 0.0 {
            tensor.sensitivity = Some(sensitivity);
        }
        if !data.is_empty() {
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            tensor.measure(data, threads)?;
        }
        let mut build = model.lock();
        if build.names.contains(&tensor.name) {
            return Err(Error::invalid(format!(
                "tensor '{name}' is already in the model"
            )));
        }
        check_tensor_count(&build.model.name, build.model.tensors.len() + 1)?;
        crate::alloc::reserve(&mut build.model.tensors, 1, "model tensors")?;
        build
            .names
            .try_reserve(1)
            .map_err(|_| Error::new(ErrorKind::OutOfMemory, "the model's tensor names"))?;
        build.names.insert(tensor.name.clone());
        build.model.tensors.push(tensor);
        Ok(())
    })
}

/// Releases a model. NULL is a no-op. Plans made from it stay valid.
///
/// Errors: NYXQ_ERROR_INVALID_HANDLE. No other call may be using the model.
#[unsafe(no_mangle)]
pub extern "C" fn nyxq_model_destroy(model: *mut NyxqModel) -> NyxqStatus {
    guard(|| handle::unregister(model))
}
