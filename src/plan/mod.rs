//! Precision planning: which format and which memory each tensor gets.
//!
//! - [`model`]: the tensors (name, role, shape, optional data-measured error);
//! - [`hardware`]: device and host memory and features, from profiles or detection;
//! - [`policy`]: allowed formats, accuracy threshold, training, margins, overrides;
//! - [`planner`]: the plan itself, replanning under memory pressure;
//! - [`ladder`]: the model-shape ladder recommended from when nothing fits;
//! - [`report`]: the plan as text and JSON.
//!
//! docs/planning.md is the user's guide.

pub mod hardware;
pub mod ladder;
pub mod model;
pub mod planner;
pub mod policy;
pub mod report;

pub use hardware::Hardware;
pub use ladder::{Ladder, Recommendation, Rung};
pub use model::{Model, Role, TensorDesc, Transformer};
pub use planner::{Budget, ErrorSource, Placement, Plan, PlanEntry, estimated_snr_db};
pub use policy::{OptimizerState, Override, Policy};
