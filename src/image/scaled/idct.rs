//! From coefficients to samples: [`Sink`] fills a component's plane block by block, 1x1
//! from the DC term alone ([`dc_pixel`]), 2x2 directly, 4x4 to 6x6 queued and transformed
//! [`LANES`] blocks at a time so that the IDCT vectorizes (its AVX2 copy: [`super::simd`]):
//! 4x4 by its butterfly, 5x5 and 6x6 as products with the basis matrix.

use super::huffman::ZIGZAG;
use super::simd;

/// The 1/8 pixel of a block: its DC term, dequantized, as libjpeg's 1x1 IDCT rounds it.
#[inline(always)]
pub(super) fn dc_pixel(dc: i32, q0: i32) -> u8 {
    ((dc * q0 + 4 + (128 << 3)) >> 3).clamp(0, 255) as u8
}

/// A component's plane being filled block by block, and the scaled IDCT that fills it.
///
/// The reduction of an 8x8 block to `n`x`n` keeps its top-left `n`x`n` coefficients and
/// applies the `n`-point IDCT with the 8-point basis weights (1/sqrt(8) for DC, 1/2 for the
/// rest), so that DC still gives the block mean.
pub(super) struct Sink {
    pub(super) plane: Vec<u8>,
    stride: usize,
    pub(super) n: usize,
    q0: i32,
    /// Dequantization with the IDCT's weights folded in, row-major in the `n`x`n` block.
    q: [f32; MAX_N * MAX_N],
    /// The `n`-point IDCT's basis, `cos[x][u]`: cos((2x + 1) u pi / 2n).
    cos: [[f32; MAX_N]; MAX_N],
    /// Blocks (4x4 and up) waiting for their IDCT, which runs on [`LANES`] blocks at once.
    pub(super) batch: Box<Batch>,
}

/// The largest block side the batched IDCTs make (6/8 scale).
const MAX_N: usize = 6;

/// Rows of a batch: a coefficient each of the largest block, and the spare one.
pub(super) const BATCH_ROWS: usize = MAX_N * MAX_N + 1;

/// Blocks per batched IDCT: one per SIMD lane (two SSE registers, one AVX).
pub(super) const LANES: usize = 8;

/// Kept coefficients of up to [`LANES`] blocks, coefficient-major so that the IDCT loop
/// over blocks vectorizes (plus the spare row that decoding writes discarded ones to, never
/// read), and where each block goes. The kept ones are zero after each flush.
pub(super) struct Batch {
    pub(super) coefs: [[i32; LANES]; BATCH_ROWS],
    at: [usize; LANES],
    len: usize,
}

impl Sink {
    pub(super) fn new(n: usize, stride: usize, plane: Vec<u8>, q: &[u16; 64]) -> Sink {
        let weight = |u: usize| if u == 0 { 0.125f32.sqrt() } else { 0.5 };
        // The 2-point kernel's only cosine, cos(pi/4), is folded in too.
        let cos = |u: usize| {
            if n == 2 && u > 0 {
                std::f32::consts::FRAC_1_SQRT_2
            } else {
                1.0
            }
        };
        let mut f = [0f32; MAX_N * MAX_N];
        for (k, &z) in ZIGZAG.iter().enumerate() {
            let (v, u) = (usize::from(z) / 8, usize::from(z) % 8);
            if v < n && u < n {
                f[v * n + u] = f32::from(q[k]) * weight(u) * weight(v) * cos(u) * cos(v);
            }
        }
        let mut basis = [[0f32; MAX_N]; MAX_N];
        for (x, row) in basis.iter_mut().enumerate().take(n) {
            for (u, c) in row.iter_mut().enumerate() {
                *c =
                    (((2 * x + 1) * u) as f64 * std::f64::consts::PI / (2 * n) as f64).cos() as f32;
            }
        }
        Sink {
            plane,
            stride,
            n,
            q0: i32::from(q[0]),
            q: f,
            cos: basis,
            batch: Box::new(Batch {
                coefs: [[0; LANES]; BATCH_ROWS],
                at: [0; LANES],
                len: 0,
            }),
        }
    }

    /// Writes the samples of a 2x2 block from its 4 kept coefficients.
    #[inline(always)]
    pub(super) fn put_2x2(&mut self, blk: &[i32; 4], bx: usize, by: usize) -> Option<()> {
        let (at, stride, q) = ((by * self.stride + bx) * 2, self.stride, &self.q);
        let out = self.plane.get_mut(at..at + stride + 2)?;
        let a = blk[0] as f32 * q[0] + 128.0;
        let (b, c, d) = (
            blk[1] as f32 * q[1],
            blk[2] as f32 * q[2],
            blk[3] as f32 * q[3],
        );
        let (top, bottom) = ([a + c, b + d], [a - c, b - d]);
        out[0] = to_u8(top[0] + top[1]) as u8;
        out[1] = to_u8(top[0] - top[1]) as u8;
        out[stride] = to_u8(bottom[0] + bottom[1]) as u8;
        out[stride + 1] = to_u8(bottom[0] - bottom[1]) as u8;
        Some(())
    }

    /// Writes the sample of a 1x1 block from its DC coefficient.
    #[inline(always)]
    pub(super) fn put_dc(&mut self, dc: i32, bx: usize, by: usize) -> Option<()> {
        *self.plane.get_mut(by * self.stride + bx)? = dc_pixel(dc, self.q0);
        Some(())
    }

    /// The batch's coefficients and the lane of the next block.
    #[inline(always)]
    pub(super) fn lane(&mut self) -> (&mut [[i32; LANES]; BATCH_ROWS], usize) {
        (&mut self.batch.coefs, self.batch.len % LANES)
    }

    /// Queues block (`bx`, `by`), whose coefficients are in its lane, for the IDCT.
    #[inline(always)]
    pub(super) fn queue(&mut self, bx: usize, by: usize) -> Option<()> {
        let batch = &mut self.batch;
        batch.at[batch.len % LANES] = (by * self.stride + bx) * self.n;
        batch.len += 1;
        if batch.len == LANES {
            self.flush()?;
        }
        Some(())
    }

    /// Runs the IDCT on the queued blocks, in the AVX2 copy where the CPU has it.
    #[inline]
    pub(super) fn flush(&mut self) -> Option<()> {
        simd::flush(self)
    }

    /// [`Sink::flush`] itself, compiled for each instruction set by [`simd::flush`].
    #[inline(always)]
    pub(super) fn flush_inner(&mut self) -> Option<()> {
        match self.n {
            5 => self.flush_n::<5>(),
            6 => self.flush_n::<6>(),
            // 4x4 blocks; for 1x1 and 2x2, which write their samples at once, a no-op.
            _ => self.flush4(),
        }
    }

    /// The `N`-point IDCT of the top-left `N`x`N` coefficients, as a product of matrices,
    /// on every queued block.
    #[inline(always)]
    fn flush_n<const N: usize>(&mut self) -> Option<()> {
        let (batch, q, cos) = (&mut self.batch, &self.q, &self.cos);
        // Every step runs over the LANES blocks at once (innermost), so that it vectorizes.
        let mut f = [[[0f32; LANES]; N]; N];
        for (v, row) in f.iter_mut().enumerate() {
            for (u, f) in row.iter_mut().enumerate() {
                let (c, q) = (std::mem::take(&mut batch.coefs[v * N + u]), q[v * N + u]);
                for (f, c) in f.iter_mut().zip(c) {
                    *f = c as f32 * q;
                }
            }
        }
        for f in &mut f[0][0] {
            *f += 128.0;
        }
        // Columns first, g[y][u], then rows. (Splitting the sums into even and odd terms,
        // which halves the products, measured slower: 1.04x the decode.)
        let mut g = [[[0f32; LANES]; N]; N];
        for (y, g) in g.iter_mut().enumerate() {
            for (v, f) in f.iter().enumerate() {
                let c = cos[y][v];
                for (g, f) in g.iter_mut().zip(f) {
                    for (g, &f) in g.iter_mut().zip(f) {
                        *g += f * c;
                    }
                }
            }
        }
        // Each block's rows.
        let mut out = [[[0u8; N]; N]; LANES];
        for (y, g) in g.iter().enumerate() {
            for x in 0..N {
                let mut acc = [0f32; LANES];
                for (u, g) in g.iter().enumerate() {
                    let c = cos[x][u];
                    for (a, &g) in acc.iter_mut().zip(g) {
                        *a += g * c;
                    }
                }
                for (out, &a) in out.iter_mut().zip(&acc) {
                    out[y][x] = to_u8(a) as u8;
                }
            }
        }
        let stride = self.stride;
        for (l, &at) in batch.at[..batch.len].iter().enumerate() {
            let plane = self.plane.get_mut(at..at + (N - 1) * stride + N)?;
            for (y, row) in out[l].iter().enumerate() {
                plane[y * stride..][..N].copy_from_slice(row);
            }
        }
        batch.len = 0;
        Some(())
    }

    /// The 4x4 IDCT on every queued block.
    #[inline(always)]
    fn flush4(&mut self) -> Option<()> {
        let (batch, q) = (&mut self.batch, &self.q);
        // Each block's 4 rows of 4 samples, packed in a u32 each.
        let mut rows = [[0u32; LANES]; 4];
        // One block per iteration: the loop vectorizes across blocks.
        for l in 0..LANES {
            let mut f = [0f32; 16];
            for (i, f) in f.iter_mut().enumerate() {
                // Taken, leaving the zeros the next batch starts from: clearing the batch
                // afterwards was a `memset` call per 8 blocks, 1% of a small image.
                *f = std::mem::take(&mut batch.coefs[i][l]) as f32 * q[i];
            }
            f[0] += 128.0;
            for c in 0..4 {
                [f[c], f[4 + c], f[8 + c], f[12 + c]] = idct4(f[c], f[4 + c], f[8 + c], f[12 + c]);
            }
            for (r, words) in rows.iter_mut().enumerate() {
                let o = idct4(f[4 * r], f[4 * r + 1], f[4 * r + 2], f[4 * r + 3]);
                words[l] = to_u8(o[0]) | to_u8(o[1]) << 8 | to_u8(o[2]) << 16 | to_u8(o[3]) << 24;
            }
        }
        let stride = self.stride;
        for (l, &at) in batch.at[..batch.len].iter().enumerate() {
            let out = self.plane.get_mut(at..at + 3 * stride + 4)?;
            for (y, words) in rows.iter().enumerate() {
                out[y * stride..][..4].copy_from_slice(&words[l].to_le_bytes());
            }
        }
        batch.len = 0;
        Some(())
    }
}

/// The 4-point IDCT (weights already applied to the inputs).
#[inline(always)]
fn idct4(f0: f32, f1: f32, f2: f32, f3: f32) -> [f32; 4] {
    const C1: f32 = 0.923_879_5; // cos(pi/8)
    const C3: f32 = 0.382_683_43; // cos(3pi/8)
    const C4: f32 = std::f32::consts::FRAC_1_SQRT_2;
    let (e0, e1) = (f0 + f2 * C4, f0 - f2 * C4);
    let (o0, o1) = (f1 * C1 + f3 * C3, f1 * C3 - f3 * C1);
    [e0 + o0, e1 + o1, e1 - o1, e0 - o0]
}

/// Rounds and saturates a sample to 0..=255: adding 2^23 leaves the rounded integer in the
/// low mantissa bits, which unlike a float-to-int cast vectorizes well.
#[inline(always)]
fn to_u8(v: f32) -> u32 {
    (v.clamp(0.0, 255.0) + 8_388_608.0).to_bits() & 0xFF
}
