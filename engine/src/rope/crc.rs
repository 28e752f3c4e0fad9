//! CRC-32 arithmetic for combining chunks' checksums: `crc(A‖B) = crc(A)·x^(8|B|) ⊕ crc(B)`
//! mod the CRC polynomial (zlib's `crc32_combine`, `multmodp`, `x2nmodp`).

/// The CRC polynomial, reflected (as zlib and `crc32fast` use it).
const POLY: u32 = 0xedb8_8320;
/// `x^0` in the reflected representation.
const ONE: u32 = 1 << 31;

/// `v·x mod P`, reflected.
const fn times_x(v: u32) -> u32 {
    if v & 1 != 0 {
        (v >> 1) ^ POLY
    } else {
        v >> 1
    }
}

/// `n·x^4 mod P` for the four lowest bits `n` of a value shifted right by four: a value times
/// `x^4` is `(v >> 4) ^ RED4[v & 0xf]` (times `x` is linear, and only those bits wrap).
const RED4: [u32; 16] = {
    let mut t = [0u32; 16];
    let mut n = 0;
    while n < 16 {
        t[n] = times_x(times_x(times_x(times_x(n as u32))));
        n += 1;
    }
    t
};

/// `a·b mod P`, four bits of `a` at a time (Horner over `a`'s nibbles with a 16-entry table
/// of `b`'s multiples): about a quarter of the bit-by-bit loop's work, and this product is
/// most of what a checksum of a changed rope costs. Equal to [`mul_mod_p`] (tested).
pub(super) fn mul(a: u32, b: u32) -> u32 {
    // Reflected: bit 31 is x^0. In a nibble v of `a`, bit 3 is the lowest power.
    let b1 = times_x(b);
    let b2 = times_x(b1);
    let b3 = times_x(b2);
    let mut t = [0u32; 16];
    for (v, slot) in t.iter_mut().enumerate() {
        let bit = |k: usize, m: u32| if v & k != 0 { m } else { 0 };
        *slot = bit(8, b) ^ bit(4, b1) ^ bit(2, b2) ^ bit(1, b3);
    }
    let mut r = 0u32;
    for k in (0..8).rev() {
        r = (r >> 4) ^ RED4[(r & 0xf) as usize] ^ t[((a >> (28 - 4 * k)) & 0xf) as usize];
    }
    r
}

/// `a·b mod P` over GF(2), reflected (zlib's `multmodp`), one bit at a time: for the tables.
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
            p = mul(X2N[k], p);
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
            crc: mul(next.shift, self.crc) ^ next.crc,
            shift: mul(self.shift, next.shift),
        }
    }
}
