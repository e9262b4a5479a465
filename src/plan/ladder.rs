//! The model-shape ladder: shapes from the full HRM down to the ultra-low one,
//! as data (config/ladder.json). When a model does not fit, the planner
//! recommends the largest rung that does, by planning each rung.

use super::hardware::Hardware;
use super::model::{Model, Transformer};
use super::policy::Policy;
use super::sizes::human_bytes;
use super::types::Plan;
use crate::error::{Error, ErrorKind, Result};
use serde::Deserialize;
use std::path::Path;

/// One shape of the ladder.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rung {
    pub name: String,
    #[serde(flatten)]
    pub shape: Transformer,
}

/// The ladder, largest shape first.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ladder {
    #[serde(default)]
    pub description: String,
    pub rungs: Vec<Rung>,
}

/// The rung a recommendation names, with the plan that shows it fits.
#[derive(Debug, Clone)]
pub struct Recommendation {
    pub rung: Rung,
    pub params: u64,
    pub device_bytes: u64,
    pub device_budget: u64,
}

impl Recommendation {
    /// "the largest ladder shape that fits: ..." for messages.
    pub fn describe(&self) -> String {
        let s = &self.rung.shape;
        format!(
            "the largest ladder shape that fits is '{}' (hidden {}, {} layers ({} high + {} low), vocabulary {}, {:.1} M parameters: {} of the {} device budget)",
            self.rung.name,
            s.hidden,
            s.layers(),
            s.high_layers,
            s.low_layers,
            s.vocab,
            self.params as f64 / 1e6,
            human_bytes(self.device_bytes),
            human_bytes(self.device_budget)
        )
    }
}

impl Ladder {
    /// The ladder shipped in config/ladder.json.
    pub fn built_in() -> Result<Ladder> {
        Ladder::from_json(
            include_str!("../../config/ladder.json"),
            "config/ladder.json",
        )
    }

    /// Parses a ladder; `origin` names it in errors.
    pub fn from_json(text: &str, origin: &str) -> Result<Ladder> {
        let mut ladder: Ladder = serde_json::from_str(text).map_err(|e| {
            Error::new(
                ErrorKind::Config,
                format!("{origin}:{}:{}: {e}", e.line(), e.column()),
            )
        })?;
        if ladder.rungs.is_empty() {
            return Err(Error::new(
                ErrorKind::Config,
                format!("{origin}: the ladder has no rungs"),
            ));
        }
        let mut sized = Vec::with_capacity(ladder.rungs.len());
        for rung in ladder.rungs.drain(..) {
            let params = Model::from_transformer(&rung.name, &rung.shape)
                .map_err(|e| {
                    Error::new(
                        ErrorKind::Config,
                        format!("{origin}: rung '{}': {e}", rung.name),
                    )
                })?
                .params();
            sized.push((params, rung));
        }
        sized.sort_by_key(|(p, r)| (std::cmp::Reverse(*p), r.name.clone()));
        ladder.rungs = sized.into_iter().map(|(_, r)| r).collect();
        Ok(ladder)
    }

    /// Reads a ladder file.
    pub fn load(path: &Path) -> Result<Ladder> {
        let text = super::model::read_text(path)?;
        Ladder::from_json(&text, &path.display().to_string())
    }

    /// The largest rung whose plan fits `hw` under `policy`, or None.
    pub fn recommend(&self, hw: &Hardware, policy: &Policy) -> Result<Option<Recommendation>> {
        for rung in &self.rungs {
            let model = Model::from_transformer(&rung.name, &rung.shape)?;
            match Plan::solve(&model, hw, policy) {
                Ok(plan) => {
                    return Ok(Some(Recommendation {
                        rung: rung.clone(),
                        params: model.params(),
                        device_bytes: plan.device_bytes,
                        device_budget: plan.budget.device,
                    }));
                }
                Err(e) if matches!(e.kind(), ErrorKind::InfeasiblePlan { .. }) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_other_than_infeasibility_stops_the_search() {
        // A policy that allows no format is an error for every rung: the
        // ladder returns it instead of trying the smaller rungs.
        let policy = Policy {
            allowed: Vec::new(),
            ..Policy::default()
        };
        let hw = Hardware::profile("cpu-only").unwrap();
        let e = Ladder::built_in()
            .unwrap()
            .recommend(&hw, &policy)
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidArgument);
        assert!(e.message().contains("allows no format"), "{}", e.message());
    }

    #[test]
    fn nothing_fits_a_device_of_a_kibibyte() {
        let mut hw = Hardware::profile("cpu-only").unwrap();
        hw.device_local_bytes = 1 << 10;
        hw.host_bytes = 1 << 10;
        let ladder = Ladder::built_in().unwrap();
        assert!(ladder.recommend(&hw, &Policy::default()).unwrap().is_none());
        let roomy = Hardware::profile("nvidia-h200-141gb").unwrap();
        let r = ladder
            .recommend(&roomy, &Policy::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            r.rung.name, ladder.rungs[0].name,
            "the largest rung fits an H200"
        );
    }
}
