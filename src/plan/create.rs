//! Planning with advice: a plan, or when nothing fits, the error naming the
//! largest shape of the model ladder that does.

use super::hardware::Hardware;
use super::ladder::Ladder;
use super::model::Model;
use super::policy::Policy;
use super::types::Plan;
use crate::error::{Error, ErrorKind, Result};

impl Plan {
    /// Plans `model` for `hw` under `policy`. When nothing fits, the error is
    /// [`ErrorKind::InfeasiblePlan`] with the shortfall, and its message names
    /// the largest shape of the built-in ladder that does fit.
    pub fn create(model: &Model, hw: &Hardware, policy: &Policy) -> Result<Plan> {
        match Plan::solve(model, hw, policy) {
            Err(e) if matches!(e.kind(), ErrorKind::InfeasiblePlan { .. }) => {
                let advice = match Ladder::built_in().and_then(|l| l.recommend(hw, policy)) {
                    Ok(Some(r)) => format!("; {}", r.describe()),
                    Ok(None) => {
                        "; not even the smallest shape of the model ladder fits".to_string()
                    }
                    Err(l) => format!("; the model ladder could not be consulted: {l}"),
                };
                Err(Error::new(e.kind(), format!("{}{advice}", e.message())))
            }
            other => other,
        }
    }
}
