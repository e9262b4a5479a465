//! The Vulkan backend (ash, loaded at run time). All of nyxq's Vulkan calls
//! live under this module. Its layers, from the bottom up (a module uses
//! only modules of its own layer or of those below it, and no two use each
//! other):
//!
//! 1. the instance and the device (`instance`, `device`, `emulation`,
//!    `borrowed`), the device-local memory's budget and nyxq's ledger of it
//!    (`budget`), and the features a borrowed device's caller declares
//!    (`features`);
//! 2. the kernel table and the kernel families (`shaders`, `family`);
//! 3. Vulkan errors, device memory, the pipeline registry, the recorder's
//!    descriptor sets, the queue, the range checks (`error`, `memory`,
//!    `pipelines`, `recorder`, `submit`, `ranges`);
//! 4. the one recording path, the job graph, the matrix-vector choice
//!    (`dispatch`, `jobs`, `matvec_choice`);
//! 5. the [`Engine`], which holds all of that for one device;
//! 6. the work done with an engine: submit-and-wait conversions (`ops`),
//!    recording into the caller's command buffers (`record`), matrix-vector
//!    products (`matvec`), the self-test, device storage of tensors, Adam
//!    with its state on the device (`adam`, and `adam_choice` above it,
//!    which tests and picks its kernel).

pub mod borrowed;
pub mod budget;
pub mod device;
pub mod emulation;
pub mod features;
pub mod instance;

pub mod family;
pub mod shaders;

mod error;
pub mod memory;
pub mod pipelines;
pub mod ranges;
pub mod recorder;
pub mod submit;

pub mod dispatch;
pub mod jobs;
pub mod matvec_choice;

pub mod engine;

pub mod adam;
pub mod adam_choice;
pub mod matvec;
pub mod ops;
pub mod record;
pub mod selftest;
pub mod storage;

pub use device::{Device, DeviceInfo, DeviceType, Pick};
pub use emulation::Emulation;
pub use engine::Engine;
pub use instance::{Instance, InstanceSettings, Unavailable, ValidationCounter};

use std::sync::Arc;

/// Opens the loader, creates an instance and a device on the best device that
/// `pick` allows. Every failure says which of the three cases it is (no loader,
/// no driver, no device) and why.
/// With `emulation`, the device chosen and its facts are those of the
/// emulated device (crate::vk::emulation).
pub fn open_standalone(
    settings: &InstanceSettings,
    pick: Pick,
    emulation: Option<&Emulation>,
) -> Result<Arc<Device>, Unavailable> {
    let instance = Arc::new(Instance::new(settings)?);
    let devices = emulation::enumerate(&instance, emulation)?;
    let (pd, info) = device::choose(&devices, pick)?;
    Ok(Arc::new(Device::create(instance, pd, info)?))
}

/// Every Vulkan device this machine has, for `nyxq hwinfo` (as `emulation`
/// makes them look, where given).
pub fn list_devices(
    settings: &InstanceSettings,
    emulation: Option<&Emulation>,
) -> Result<Vec<DeviceInfo>, Unavailable> {
    let instance = Instance::new(settings)?;
    Ok(emulation::enumerate(&instance, emulation)?
        .into_iter()
        .map(|(_, info)| info)
        .collect())
}
