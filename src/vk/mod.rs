//! The Vulkan backend (ash, loaded at run time): instance and device, device
//! facts, and (later) memory, pipelines and dispatch. All of nyxq's Vulkan
//! calls live under this module.

pub mod borrowed;
pub mod device;
pub mod exec;
pub mod instance;
pub mod matvec;
pub mod ops;
pub mod record;
pub mod selftest;
pub mod shaders;
pub mod storage;

pub use device::{Device, DeviceInfo, DeviceType, Pick};
pub use exec::Engine;
pub use instance::{Instance, InstanceSettings, Unavailable, ValidationCounter};

use std::sync::Arc;

/// Opens the loader, creates an instance and a device on the best device that
/// `pick` allows. Every failure says which of the three cases it is (no loader,
/// no driver, no device) and why.
pub fn open_standalone(
    settings: &InstanceSettings,
    pick: Pick,
) -> Result<Arc<Device>, Unavailable> {
    let instance = Arc::new(Instance::new(settings)?);
    let devices = device::enumerate(&instance)?;
    let (pd, info) = device::choose(&devices, pick)?;
    Ok(Arc::new(Device::create(instance, pd, info)?))
}

/// Every Vulkan device this machine has, for `nyxq hwinfo`.
pub fn list_devices(settings: &InstanceSettings) -> Result<Vec<DeviceInfo>, Unavailable> {
    let instance = Instance::new(settings)?;
    Ok(device::enumerate(&instance)?
        .into_iter()
        .map(|(_, info)| info)
        .collect())
}
