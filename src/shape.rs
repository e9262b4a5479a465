//! Shape limits shared by nyxq tensors and the planner's tensor descriptions,
//! so both refuse the same shapes with the same words.

use crate::error::{Error, Result};

/// Most dimensions a tensor may have.
pub const MAX_RANK: usize = 8;

/// Ok when a tensor named `name` may have `rank` dimensions (1..=[`MAX_RANK`]).
pub fn check_rank(name: &str, rank: usize) -> Result<()> {
    if rank == 0 || rank > MAX_RANK {
        return Err(Error::invalid(format!(
            "tensor '{name}': rank {rank} is outside 1..={MAX_RANK}"
        )));
    }
    Ok(())
}
