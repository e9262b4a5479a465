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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::model::{Role, TensorDesc};

    fn one_tensor_model() -> Model {
        Model::new(
            "m",
            vec![TensorDesc::new("w", Role::Mlp, &[1024, 1024]).unwrap()],
        )
        .unwrap()
    }

    #[test]
    fn errors_other_than_infeasibility_come_back_without_advice() {
        // An invalid policy: the solver's own error, word for word.
        let policy = Policy {
            allowed: Vec::new(),
            ..Policy::default()
        };
        let hw = Hardware::profile("cpu-only").unwrap();
        let model = one_tensor_model();
        let solved = Plan::solve(&model, &hw, &policy).unwrap_err();
        let created = Plan::create(&model, &hw, &policy).unwrap_err();
        assert_eq!(solved.kind(), ErrorKind::InvalidArgument);
        assert_eq!(created.kind(), solved.kind());
        assert_eq!(created.message(), solved.message());
    }

    #[test]
    fn infeasibility_comes_back_with_the_ladder_advice() {
        let mut hw = Hardware::profile("cpu-only").unwrap();
        hw.device_local_bytes = 1 << 10;
        hw.host_bytes = 1 << 10;
        let model = one_tensor_model();
        let policy = Policy::default();
        let solved = Plan::solve(&model, &hw, &policy).unwrap_err();
        let created = Plan::create(&model, &hw, &policy).unwrap_err();
        assert_eq!(created.kind(), solved.kind());
        assert!(matches!(created.kind(), ErrorKind::InfeasiblePlan { .. }));
        assert!(
            created.message().starts_with(solved.message())
                && created.message().len() > solved.message().len()
                && created.message().contains("; "),
            "{}",
            created.message()
        );
    }
}
