//! The one table of environments the Vulkan tests run under. Each row is a
//! set of variables added to the child process of a test; the variables that
//! choose kernels are removed first, so a row is exactly what it says
//! whatever the parent's environment holds.

/// What a row starts from before its own variables are added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Base {
    /// The test device ([`super::device_env`]): lavapipe with validation on,
    /// or the loader's choice under NYXQ_VK_TEST_DEVICE=system.
    Device,
    /// lavapipe pinned with validation on, whatever NYXQ_VK_TEST_DEVICE says.
    Lavapipe,
    /// lavapipe pinned, NYXQ_VK_VALIDATION left out.
    LavapipeUnvalidated,
    /// Nothing pinned: the row's variables say everything.
    Bare,
}

/// One row of [`TABLE`].
#[derive(Debug)]
pub struct Env {
    /// The row's name, given to the child and named when it fails.
    pub name: &'static str,
    /// What the row starts from.
    pub base: Base,
    /// The variables the row adds.
    pub vars: &'static [(&'static str, &'static str)],
}

const FORCE_COMPAT_VAR: &str = "NYXQ_VK_FORCE_COMPAT";
const VARIANT: &str = "NYXQ_VK_MATVEC_VARIANT";
const ROWS: &str = "NYXQ_VK_MATVEC_ROWS";
const SLOTS: &str = "NYXQ_VK_MATVEC_SLOTS";
const EMULATE: &str = "NYXQ_VK_EMULATE";

/// The variables that choose nyxq's kernels: removed from every child before
/// its row's are added, so a row without them gets the engine's own choice
/// even where the parent's environment sets one.
pub const KERNEL_CHOICE_VARS: &[&str] = &[FORCE_COMPAT_VAR, VARIANT, ROWS, SLOTS, EMULATE];

/// The test device with the engine's own choices.
pub const DEFAULT: Env = Env {
    name: "default",
    base: Base::Device,
    vars: &[],
};
/// Only the compatible kernels (no `_rte_dp`, `_rte` or `_s16` convert
/// variant, the shared-memory matvec).
pub const FORCE_COMPAT: Env = Env {
    name: "force-compat",
    base: Base::Device,
    vars: &[(FORCE_COMPAT_VAR, "1")],
};
/// The `_dot` matvec (x rounded in every workgroup) at every batch (by
/// default `_dot_pre` runs instead).
pub const MATVEC_DOT: Env = Env {
    name: "matvec-dot",
    base: Base::Device,
    vars: &[(VARIANT, "dot")],
};
/// The f32 subgroup matvec at every batch.
pub const MATVEC_F32: Env = Env {
    name: "matvec-f32",
    base: Base::Device,
    vars: &[(VARIANT, "f32")],
};
/// One `_dot` row slot of 128 lanes (8 rows each; lavapipe's subgroups of 8
/// make 16 partial sums per output).
pub const MATVEC_ONE_ROW_SLOT: Env = Env {
    name: "matvec-one-row-slot",
    base: Base::Device,
    vars: &[(VARIANT, "dot"), (ROWS, "8"), (SLOTS, "1")],
};
/// Two `_dot` row slots of 64 lanes (8 rows each).
pub const MATVEC_TWO_ROW_SLOTS: Env = Env {
    name: "matvec-two-row-slots",
    base: Base::Device,
    vars: &[(VARIANT, "dot"), (ROWS, "16"), (SLOTS, "2")],
};
/// 8 rows per workgroup: the largest f32 specialisation (8 rows x 8 vectors
/// = 64 sums per workgroup: 4 rounds of the shared-memory reduction).
pub const MATVEC_EIGHT_ROWS: Env = Env {
    name: "matvec-eight-rows",
    base: Base::Device,
    vars: &[(VARIANT, "dot"), (ROWS, "8")],
};
/// 32 rows per workgroup: the largest `_dot` specialisation (8 rows per row
/// slot; the f32 variants take 8).
pub const MATVEC_THIRTY_TWO_ROWS: Env = Env {
    name: "matvec-thirty-two-rows",
    base: Base::Device,
    vars: &[(VARIANT, "dot"), (ROWS, "32")],
};
/// The shared-memory matvec with 8 rows per workgroup.
pub const FORCE_COMPAT_EIGHT_ROWS: Env = Env {
    name: "force-compat-eight-rows",
    base: Base::Device,
    vars: &[(FORCE_COMPAT_VAR, "1"), (ROWS, "8")],
};
/// The test device emulating an AMD RX 580 under Mesa RADV
/// (config/devices/amd-rx580--mesa-radv-25.json): no f16 arithmetic, no
/// f16 float controls, an integer dot product that is not accelerated.
pub const EMULATE_RX580_RADV: Env = Env {
    name: "emulate-rx580-radv",
    base: Base::Device,
    vars: &[(EMULATE, "config/devices/amd-rx580--mesa-radv-25.json")],
};
/// The test device emulating an Intel Iris Xe under Mesa ANV
/// (config/devices/intel-iris-xe--mesa-anv-25.json): workgroup counts of
/// 65535 on every axis, unified memory.
pub const EMULATE_IRIS_XE_ANV: Env = Env {
    name: "emulate-iris-xe-anv",
    base: Base::Device,
    vars: &[(EMULATE, "config/devices/intel-iris-xe--mesa-anv-25.json")],
};
/// The test device emulating an AMD RX 580 under AMD's Windows driver
/// (config/devices/amd-rx580--amd-windows.json): no f16 arithmetic, but the
/// f16 float controls it does not report stay the device's, so the `_rte`
/// conversions that need no f16 arithmetic run — a kernel mix no other
/// report gives.
pub const EMULATE_RX580_WINDOWS: Env = Env {
    name: "emulate-rx580-windows",
    base: Base::Device,
    vars: &[(EMULATE, "config/devices/amd-rx580--amd-windows.json")],
};
/// The test device with maxStorageBufferRange 4 MiB and 1024 workgroups on
/// the grid's first axis (tests/fixtures/small-limits.json): split bindings
/// and 2-D grids at sizes of megabytes.
pub const SMALL_LIMITS: Env = Env {
    name: "small-limits",
    base: Base::Device,
    vars: &[(EMULATE, SMALL_LIMITS_REPORT)],
};
/// [`SMALL_LIMITS`] with only the compatible kernels.
pub const SMALL_LIMITS_FORCE_COMPAT: Env = Env {
    name: "small-limits-force-compat",
    base: Base::Device,
    vars: &[(EMULATE, SMALL_LIMITS_REPORT), (FORCE_COMPAT_VAR, "1")],
};
/// The report [`SMALL_LIMITS`] emulates.
pub const SMALL_LIMITS_REPORT: &str = "tests/fixtures/small-limits.json";
/// The binding range [`SMALL_LIMITS`] sets.
pub const SMALL_BINDING_RANGE: u64 = 4 << 20;
/// The workgroups on the first axis of the grid [`SMALL_LIMITS`] sets.
pub const SMALL_GRID_WIDTH: u64 = 1024;
/// The rows that emulate a device report: one per distinct kernel choice
/// among the reports (`vk_context::emulated_detection_plans_with_the_reports_facts`
/// checks that every report chooses as one of these does).
pub const EMULATED: [&Env; 3] = [
    &EMULATE_RX580_RADV,
    &EMULATE_IRIS_XE_ANV,
    &EMULATE_RX580_WINDOWS,
];
/// The engine's own choices, the compatible kernels and every emulated
/// device: the rows the byte-identity tests run under.
pub const EVERY_DEVICE: [&Env; 5] = [
    &DEFAULT,
    &FORCE_COMPAT,
    &EMULATE_RX580_RADV,
    &EMULATE_IRIS_XE_ANV,
    &EMULATE_RX580_WINDOWS,
];

/// lavapipe itself, validation on.
pub const LAVAPIPE: Env = Env {
    name: "lavapipe",
    base: Base::Lavapipe,
    vars: &[],
};
/// lavapipe without NYXQ_VK_VALIDATION and with no layer to be found.
pub const LAVAPIPE_WITHOUT_LAYERS: Env = Env {
    name: "lavapipe-without-layers",
    base: Base::LavapipeUnvalidated,
    vars: &[("VK_LAYER_PATH", "/nonexistent/layers")],
};
/// A Vulkan loader that does not exist.
pub const NO_LOADER: Env = Env {
    name: "no-loader",
    base: Base::Bare,
    vars: &[("NYXQ_VULKAN_LOADER", "/nonexistent/libvulkan.so.1")],
};
/// A driver manifest that does not exist.
pub const NO_DRIVER: Env = Env {
    name: "no-driver",
    base: Base::Bare,
    vars: &[
        ("VK_DRIVER_FILES", "/nonexistent/icd.json"),
        ("VK_ICD_FILENAMES", "/nonexistent/icd.json"),
    ],
};
/// Intel's ANV manifest: a driver that loads and, on a machine without an
/// Intel GPU, enumerates no device.
pub const NO_DEVICE: Env = Env {
    name: "no-device",
    base: Base::Bare,
    vars: &[
        ("VK_DRIVER_FILES", INTEL_ICD),
        ("VK_ICD_FILENAMES", INTEL_ICD),
    ],
};

/// Intel's driver manifest, used by [`NO_DEVICE`].
pub const INTEL_ICD: &str = "/usr/share/vulkan/icd.d/intel_icd.x86_64.json";

/// Every row; a test names the rows it runs under.
pub const TABLE: &[&Env] = &[
    &DEFAULT,
    &FORCE_COMPAT,
    &MATVEC_DOT,
    &MATVEC_F32,
    &MATVEC_ONE_ROW_SLOT,
    &MATVEC_TWO_ROW_SLOTS,
    &MATVEC_EIGHT_ROWS,
    &MATVEC_THIRTY_TWO_ROWS,
    &FORCE_COMPAT_EIGHT_ROWS,
    &EMULATE_RX580_RADV,
    &EMULATE_IRIS_XE_ANV,
    &EMULATE_RX580_WINDOWS,
    &SMALL_LIMITS,
    &SMALL_LIMITS_FORCE_COMPAT,
    &LAVAPIPE,
    &LAVAPIPE_WITHOUT_LAYERS,
    &NO_LOADER,
    &NO_DRIVER,
    &NO_DEVICE,
];

impl Env {
    /// The row called `name` in [`TABLE`].
    pub fn named(name: &str) -> &'static Env {
        TABLE
            .iter()
            .copied()
            .find(|row| row.name == name)
            .unwrap_or_else(|| panic!("no environment row {name:?}"))
    }

    /// The value the row gives `key`.
    pub fn var(&self, key: &str) -> Option<&'static str> {
        self.vars.iter().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// The device report the row emulates (NYXQ_VK_EMULATE), if any.
    pub fn emulated_report(&self) -> Option<&'static str> {
        self.var(EMULATE)
    }

    /// Whether the row forces the compatible kernels.
    pub fn force_compat(&self) -> bool {
        self.var(FORCE_COMPAT_VAR) == Some("1")
    }

    /// The NYXQ_VK_MATVEC_VARIANT the row asks for.
    pub fn matvec_variant(&self) -> Option<&'static str> {
        self.var(VARIANT)
    }

    /// The NYXQ_VK_MATVEC_ROWS the row asks for.
    pub fn matvec_rows(&self) -> Option<u32> {
        self.var(ROWS)
            .map(|v| v.parse().expect("rows are a number"))
    }

    /// The NYXQ_VK_MATVEC_SLOTS the row asks for.
    pub fn matvec_slots(&self) -> Option<u32> {
        self.var(SLOTS)
            .map(|v| v.parse().expect("slots are a number"))
    }

    /// The whole environment of the row's child.
    pub fn child_env(&self) -> Vec<(&'static str, String)> {
        let mut env = match self.base {
            Base::Device => super::device_env(),
            Base::Lavapipe => super::lavapipe_env(),
            Base::LavapipeUnvalidated => super::lavapipe_env()
                .into_iter()
                .filter(|(key, _)| *key != "NYXQ_VK_VALIDATION")
                .collect(),
            Base::Bare => Vec::new(),
        };
        env.extend(self.vars.iter().map(|(k, v)| (*k, v.to_string())));
        env
    }
}
