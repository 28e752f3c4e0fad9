//! CRC-32 arithmetic for combining chunks' checksums: `crc(A‖B) = crc(A)·x^(8|B|) ⊕ crc(B)`
//! mod the CRC polynomial (zlib's `crc32_combine`, `multmodp`, `x2nmodp`).

/// The CRC polynomial, reflected (as zlib and `crc32fast` use it).
const POLY: u32 = 0xedb8_8320;
/// `x^0` in the reflected representation.
const ONE: u32 = 1 << 31;

/// `a·b mod P` over GF(2), reflected (zlib's `multmodp`).
pub(super) const fn mul_mod_p(a: u32, mut b: u32) -> u32 {
    let mut m = ONE;
    let mut p = 0;
    while m != 0 {
        if a & m != 0 {
            p ^= b;
            if a & (m - 1) == 0 {
                break;
            }
        }
        m >>= 1;
        b = if b & 1 != 0 { (b >> 1) ^ POLY } else { b >> 1 };
    }
    p
}

/// `x^(2^k) mod P` for k in 0..64 (zlib's `x2n_table`, extended so any `usize` length fits).
const X2N: [u32; 64] = {
    let mut t = [0u32; 64];
    let mut p = 1 << 30; // x^1
    t[0] = p;
    let mut k = 1;
    while k < 64 {
        p = mul_mod_p(p, p);
        t[k] = p;
        k += 1;
    }
    t
};

/// `x^(8·bytes) mod P`: the factor that shifts a CRC past `bytes` bytes.
pub(super) fn shift_for(bytes: usize) -> u32 {
    let mut p = ONE;
    let mut n = bytes;
    let mut k = 3; // x^(8n) = x^(n·2^3)
    while n != 0 {
        if n & 1 != 0 {
            p = mul_mod_p(X2N[k], p);
        }
        n >>= 1;
        k += 1;
    }
    p
}

/// A node's CRC-32 and the factor `x^(8·len)` that shifts a CRC past it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Crc {
    pub(super) crc: u32,
    pub(super) shift: u32,
}

impl Crc {
    pub(super) const EMPTY: Crc = Crc { crc: 0, shift: ONE };

    /// The CRC of `self`'s text followed by `next`'s.
    pub(super) fn then(self, next: Crc) -> Crc {
        Crc {
            crc: mul_mod_p(next.shift, self.crc) ^ next.crc,
            shift: mul_mod_p(self.shift, next.shift),
        }
    }
}

