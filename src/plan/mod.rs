//! Precision planning: which format and which memory each tensor gets.
//!
//! - [`model`]: the tensors (name, role, shape, optional data-measured error);
//! - [`hardware`]: device and host memory and features, from profiles or detection;
//! - [`policy`]: allowed formats, accuracy threshold, training, margins, overrides;
//! - [`types`]: the plan itself: placements, entries, totals;
//! - [`budget`]: what the tensors may take on the device and the host;
//! - [`estimate`]: the error a format is expected to give without data;
//! - [`prepare`]: each tensor's admissible formats and the hull the solver moves along;
//! - [`solver`]: lowering, offloading and raising tensors until the plan fits;
//! - [`solve`], [`create`]: a model's first plan, and with the ladder's advice;
//! - [`replan`]: a new plan for a new budget, changing as few tensors as possible;
//! - [`sizes`]: byte sizes in text;
//! - [`ladder`]: the model-shape ladder recommended from when nothing fits;
//! - [`report`]: the plan as text and JSON.
//!
//! docs/planning.md is the user's guide.

pub mod budget;
mod create;
pub mod estimate;
pub mod hardware;
pub mod ladder;
pub mod model;
pub mod policy;
mod prepare;
mod replan;
pub mod report;
pub mod sizes;
mod solve;
mod solver;
#[cfg(test)]
mod test_plans;
pub mod types;

pub use budget::Budget;
pub use estimate::{ErrorSource, estimated_snr_db};
pub use hardware::Hardware;
pub use ladder::{Ladder, Recommendation, Rung};
pub use model::{Model, Role, TensorDesc, Transformer};
pub use policy::{OptimizerState, Override, Policy};
pub use types::{Placement, Plan, PlanEntry};
