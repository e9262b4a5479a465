//! Raw little-endian f32 files (the real model weights in
//! `../shared/data/weights`, read by the CLI's tools and by tests).

use crate::error::{Error, Result};
use std::path::Path;

/// The f32 values of `bytes` (little-endian, 4 bytes each); an error naming
/// `what` when the length is not whole values.
pub fn f32_from_le_bytes(bytes: &[u8], what: &str) -> Result<Vec<f32>> {
    if bytes.len() % 4 != 0 {
        return Err(Error::invalid(format!(
            "{what}: size {} is not whole f32 values",
            bytes.len()
        )));
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect())
}

/// The f32 values of the file at `path`.
pub fn read_f32_file(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::invalid(format!("cannot read {}: {e}", path.display())))?;
    f32_from_le_bytes(&bytes, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_values_read_back_and_partial_ones_are_refused() {
        let bytes: Vec<u8> = [1.5f32, -0.0, f32::INFINITY]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let values = f32_from_le_bytes(&bytes, "x").unwrap();
        assert_eq!(values[0], 1.5);
        assert!(values[1] == 0.0 && values[1].is_sign_negative());
        assert_eq!(values[2], f32::INFINITY);
        let e = f32_from_le_bytes(&bytes[..5], "x.f32").unwrap_err();
        assert!(
            e.to_string()
                .contains("x.f32: size 5 is not whole f32 values"),
            "{e}"
        );
        assert!(read_f32_file(Path::new("/nonexistent/w.f32")).is_err());
    }
}
