//! Kernel families. The kernels of one family share a descriptor-set layout
//! (their storage-buffer bindings, 0..n) and a push-constant block, whose
//! `#[repr(C)]` Rust twin is here. The build reads the block's size from
//! every kernel's SPIR-V, and src/vk/shaders.rs asserts at compile time that
//! it equals its family's twin.

use crate::error::{Error, Result};
use crate::quant::Rounding;

/// What a kernel's pipeline layout is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// Quantize, dequantize, fake-quantize and copy: `src`, `dst`;
    /// [`ConvertPush`] (shaders/convert_push.glsl).
    Convert,
    /// The loss scaler's unscale-and-check: `grads`, `found`; [`UnscalePush`]
    /// (shaders/unscale.comp).
    Unscale,
    /// Σx² per column of a layer's input activations: `x`, `sums`;
    /// [`ImportancePush`] (shaders/importance.comp).
    Importance,
    /// Matrix-vector products: `W`, `x`, `bias`, `y`, and x rounded to
    /// int8 blocks (written by `matvec_round_f32_q8`, read by the `_dot_pre`
    /// kernels; the others get x bound there); [`MatvecPush`]
    /// (shaders/matvec_push.glsl).
    Matvec,
    /// Products of a batch of tokens: `W`, `X`, `bias`, `Y`; [`MatmulPush`]
    /// (shaders/matmul.glsl).
    Matmul,
    /// Adam steps and their step count: `params`, `grads`, the control
    /// words, the state; [`AdamPush`] (shaders/adam_common.glsl).
    Adam,
}

impl Family {
    /// Every family, in [`Family::index`] order.
    pub const ALL: [Family; 6] = [
        Family::Convert,
        Family::Unscale,
        Family::Importance,
        Family::Matvec,
        Family::Matmul,
        Family::Adam,
    ];

    /// Storage-buffer bindings of its descriptor sets.
    pub const fn bindings(self) -> u32 {
        match self {
            Family::Convert | Family::Unscale | Family::Importance => 2,
            Family::Matmul | Family::Adam => 4,
            Family::Matvec => 5,
        }
    }

    /// Bytes of its push-constant block (its Rust twin's size).
    pub const fn push_bytes(self) -> u32 {
        (match self {
            Family::Convert => size_of::<ConvertPush>(),
            Family::Unscale => size_of::<UnscalePush>(),
            Family::Importance => size_of::<ImportancePush>(),
            Family::Matvec => size_of::<MatvecPush>(),
            Family::Matmul => size_of::<MatmulPush>(),
            Family::Adam => size_of::<AdamPush>(),
        }) as u32
    }

    /// Its position in [`Family::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// The push constants of one family's kernels.
pub trait PushConstants: Copy {
    /// The family whose block this struct mirrors.
    const FAMILY: Family;
    /// The bytes vkCmdPushConstants takes: the u32 fields in order,
    /// little-endian.
    fn bytes(&self) -> Vec<u8>;
}

/// Declares a family's push-constant twin: a `#[repr(C)]` struct of u32
/// fields in the GLSL block's order, its byte image, and the asserts that
/// its size is `$bytes` and within the 128 bytes every device allows.
macro_rules! push_constants {
    (
        $(#[$doc:meta])*
        $name:ident: $family:ident, $bytes:literal bytes {
            $($(#[$field_doc:meta])* $field:ident,)*
        }
    ) => {
        $(#[$doc])*
        #[repr(C)]
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct $name {
            $($(#[$field_doc])* pub $field: u32,)*
        }

        const _: () = assert!(size_of::<$name>() == $bytes && $bytes <= 128);

        impl PushConstants for $name {
            const FAMILY: Family = Family::$family;

            fn bytes(&self) -> Vec<u8> {
                [$(self.$field),*].iter().flat_map(|w| w.to_le_bytes()).collect()
            }
        }
    };
}

push_constants! {
    /// Rust twin of `Push` in shaders/convert_push.glsl.
    ConvertPush: Convert, 24 bytes {
        /// Elements in this dispatch.
        n_elements,
        /// 1: stochastic rounding.
        stochastic,
        seed_lo,
        seed_hi,
        /// Index of this dispatch's first element in the tensor (low word).
        first_lo,
        first_hi,
    }
}

push_constants! {
    /// Rust twin of `Push` in shaders/unscale.comp.
    UnscalePush: Unscale, 16 bytes {
        n_elements,
        /// 1/scale as f32 bits (used when `exact_pow2` is 0).
        inverse_bits,
        /// k >= 0: the inverse is exactly 2^-k.
        pow2_shift,
        /// 1: scale by 2^-k on the bits.
        exact_pow2,
    }
}

push_constants! {
    /// Rust twin of `Push` in shaders/importance.comp.
    ImportancePush: Importance, 12 bytes {
        /// Columns (floats per token, and sums).
        cols,
        /// Tokens in this dispatch.
        tokens,
        /// Float of binding 0 where this dispatch's first token starts.
        x_first,
    }
}

push_constants! {
    /// Rust twin of `Push` in shaders/matvec_push.glsl.
    MatvecPush: Matvec, 32 bytes {
        /// Rows of W in this dispatch.
        rows,
        cols,
        /// Index of this dispatch's first row in the whole matrix.
        row_first,
        /// Rows of the whole matrix (stride of y, or of x transposed).
        total_rows,
        /// Halfword of binding 0 where this dispatch's first row starts.
        w_half,
        /// Halfwords per row.
        row_halves,
        /// Forward: add bias[row].
        has_bias,
        /// Transposed: add to y (the row chunks after the first).
        accumulate,
    }
}

push_constants! {
    /// Rust twin of `Push` in shaders/matmul_push.glsl.
    MatmulPush: Matmul, 48 bytes {
        /// Rows of W in this dispatch.
        rows,
        cols,
        /// Index of this dispatch's first row in the whole matrix.
        row_first,
        /// Rows of the whole matrix (values per token of Y, or of dY).
        total_rows,
        /// Halfword of binding 0 where this dispatch's first row starts.
        w_half,
        /// Halfwords per row.
        row_halves,
        /// Forward: add bias[row].
        has_bias,
        /// Backward: add to dX (the row chunks after the first).
        accumulate,
        /// Tokens in this dispatch.
        tokens,
        /// Float of binding 1 where this dispatch's first token starts.
        x_first,
        /// Float of binding 3 where this dispatch's first token starts.
        y_first,
        /// Output tiles per tile of tokens (the grid's layout).
        tiles_n,
    }
}

push_constants! {
    /// Rust twin of `Push` in shaders/adam_common.glsl.
    AdamPush: Adam, 52 bytes {
        /// Elements in this dispatch.
        n_elements,
        /// The learning rate, f32 bits (as are the next six).
        lr,
        beta1,
        one_minus_beta1,
        beta2,
        one_minus_beta2,
        eps,
        weight_decay,
        /// adam_count: 1 reads the found flag, 0 always applies.
        use_found,
        /// Word of the state binding where m (its codes, for 8-bit state) starts.
        m_at,
        v_at,
        /// 8-bit state: the words of the per-block scales.
        m_scale_at,
        v_scale_at,
    }
}

impl ConvertPush {
    /// The push constants of a dispatch over `n` elements whose first is
    /// element `first` of the tensor, rounded as `rounding` says (nearest or
    /// stochastic: error-minimising rounding has no Vulkan kernel).
    pub fn new(n: usize, first: u64, rounding: Rounding) -> Result<ConvertPush> {
        let (stochastic, seed) = match rounding {
            Rounding::Nearest => (0, 0),
            Rounding::Stochastic { seed } => (1, seed),
            Rounding::ErrorMinimising => {
                return Err(Error::unsupported(
                    "error-minimising rounding has no Vulkan kernel; it runs on the CPU",
                ));
            }
        };
        Ok(ConvertPush {
            n_elements: n as u32,
            stochastic,
            seed_lo: seed as u32,
            seed_hi: (seed >> 32) as u32,
            first_lo: first as u32,
            first_hi: (first >> 32) as u32,
        })
    }
}

impl UnscalePush {
    /// The push constants of `unscale_f32` over `n` gradients: multiply by
    /// `inverse`, exactly in integers when it is 2^-k (k >= 0).
    pub fn new(n: u32, inverse: f32) -> UnscalePush {
        let bits = inverse.to_bits();
        let exponent = (bits >> 23) as i32 - 127;
        let pow2 = bits & 0x807f_ffff == 0 && (-126..=0).contains(&exponent);
        UnscalePush {
            n_elements: n,
            inverse_bits: bits,
            pow2_shift: if pow2 { (-exponent) as u32 } else { 0 },
            exact_pow2: u32::from(pow2),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_bytes_are_the_fields_in_order() {
        let p = MatvecPush {
            rows: 1,
            accumulate: 0x0102_0304,
            ..Default::default()
        };
        let b = p.bytes();
        assert_eq!(b.len(), 32);
        assert_eq!(&b[..4], &[1, 0, 0, 0]);
        assert_eq!(&b[28..], &[4, 3, 2, 1]);
        let c = ConvertPush::new(5, 0x1_0000_0002, Rounding::Stochastic { seed: 7 }).unwrap();
        assert_eq!(c.bytes(), [5, 1, 7, 0, 2, 1].map(u32::to_le_bytes).concat());
    }

    #[test]
    fn unscale_is_exact_for_powers_of_two_only() {
        let half = UnscalePush::new(3, 0.5);
        assert_eq!((half.exact_pow2, half.pow2_shift), (1, 1));
        let third = UnscalePush::new(3, 1.0 / 3.0);
        assert_eq!((third.exact_pow2, third.pow2_shift), (0, 0));
        assert_eq!(third.inverse_bits, (1.0f32 / 3.0).to_bits());
    }

    #[test]
    fn each_family_knows_its_bindings_and_block() {
        for (i, family) in Family::ALL.iter().enumerate() {
            assert_eq!(family.index(), i);
        }
        assert_eq!(Family::Convert.push_bytes(), 24);
        assert_eq!(Family::Matvec.bindings(), 5);
    }
}
