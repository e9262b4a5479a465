//! Plans the planner's unit tests share.

use super::model::{Model, Role, TensorDesc};
use super::{Hardware, Plan, Policy};

/// Six tensors of 64 Ki to 384 Ki parameters planned on an H200 under
/// `policy`.
pub(super) fn six_tensors(policy: &Policy) -> Plan {
    let tensors = (0..6)
        .map(|i| TensorDesc::new(&format!("w{i}"), Role::Mlp, &[256, 256 * (i + 1)]).unwrap())
        .collect();
    let model = Model::new("m", tensors).unwrap();
    let hw = Hardware::profile("nvidia-h200-141gb").unwrap();
    Plan::solve(&model, &hw, policy).unwrap()
}

/// The six tensors at 40 dB on a 1 MiB device, with host offload: the
/// largest does not fit and stays FP32 on the host.
pub(super) fn offloading_plan(prefer_device: bool) -> Plan {
    six_tensors(&Policy {
        min_snr_db: 40.0,
        allow_host_offload: true,
        prefer_device,
        device_cap_bytes: 1 << 20,
        ..Policy::default()
    })
}
