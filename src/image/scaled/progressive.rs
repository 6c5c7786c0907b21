//! Progressive frames: the scan parameters, the coefficients the scans build up, and
//! libjpeg's checks on the order of the scans.
//!
//! Every scan is read in full, refinements included, as libjpeg-turbo reads them: only then
//! does qp's decoder see the damage libjpeg reports, so the verdict on a file does not depend
//! on which decoder its output size picks. What is stored is less: the coefficients of the
//! reduced block (1, 4 or 16 of them), and for every block one bit per coefficient saying
//! whether it is nonzero, which is all a refinement scan needs of the others. libjpeg keeps
//! all 64 coefficients of every block; the smaller store is most of why this is faster.

use super::huffman::zigzag_map;
use super::idct::Sink;

/// One scan's spectral band and successive approximation (SOS's Ss, Se, Ah and Al).
#[derive(Clone, Copy, Debug)]
pub(super) struct Band {
    pub(super) ss: u32,
    pub(super) se: u32,
    pub(super) ah: u32,
    pub(super) al: u32,
}

impl Band {
    /// Bit `k` set for the band's zigzag indices from `from` on (none past 63).
    #[inline(always)]
    pub(super) fn from(&self, from: u32) -> u64 {
        u64::MAX.checked_shl(from).unwrap_or(0) & (u64::MAX >> (63 - self.se))
    }

    /// `None` where libjpeg stops with "invalid progressive parameters".
    pub(super) fn new(ss: u8, se: u8, ahal: u8, components: usize) -> Option<Band> {
        let band = Band {
            ss: u32::from(ss),
            se: u32::from(se),
            ah: u32::from(ahal >> 4),
            al: u32::from(ahal & 15),
        };
        let bad = if band.ss == 0 {
            band.se != 0
        } else {
            // AC scans hold one component.
            band.ss > band.se || band.se > 63 || components != 1
        };
        if bad || (band.ah != 0 && band.al + 1 != band.ah) || band.al > 13 {
            return None;
        }
        Some(band)
    }
}

/// One block's share of [`Coefs`], as a scan updates it.
pub(super) struct BlockCoefs<'a> {
    /// The reduced block's coefficients, row-major.
    pub(super) kept: &'a mut [i16],
    /// Bit `k` set where zigzag coefficient `k` is nonzero.
    pub(super) nonzero: &'a mut u64,
    /// Where each zigzag index lands in `kept` (past its end: not kept).
    pub(super) map: &'a [u8; 128],
    /// Bit `k` set where zigzag coefficient `k` is kept.
    pub(super) kept_mask: u64,
}

impl BlockCoefs<'_> {
    /// Coefficient `k` (zigzag) where the reduced block keeps it.
    #[inline(always)]
    pub(super) fn kept_at(&mut self, k: u32) -> Option<&mut i16> {
        self.kept.get_mut(usize::from(self.map[k as usize]))
    }

    /// Sets coefficient `k` to `v`. As libjpeg: a run past the band's end lands on the last
    /// coefficient (its zigzag table is padded with 63s).
    #[inline(always)]
    pub(super) fn set(&mut self, k: u32, v: i16) {
        let k = k.min(63);
        *self.nonzero = (*self.nonzero & !(1 << k)) | u64::from(v != 0) << k;
        if let Some(slot) = self.kept_at(k) {
            *slot = v;
        }
    }
}

/// A progressive component's coefficients.
pub(super) struct Coefs {
    /// Side of the reduced block.
    n: usize,
    /// Where each zigzag index lands in the reduced block (see [`zigzag_map`]).
    map: [u8; 128],
    /// Bit `k` set where zigzag coefficient `k` lands in the reduced block.
    kept_mask: u64,
    /// The reduced block's quantized coefficients, row-major, `n * n` per block.
    kept: Vec<i16>,
    /// Per block, bit `k` set where zigzag coefficient `k` is nonzero.
    nonzero: Vec<u64>,
    /// libjpeg's `coef_bits`: the point transform of each coefficient's latest scan, -1
    /// before its first.
    bits: [i8; 64],
}

impl Coefs {
    pub(super) fn new(blocks: usize, n: usize) -> Coefs {
        let map = zigzag_map(n);
        let kept_mask = (0..64)
            .filter(|&k| usize::from(map[k]) < n * n)
            .fold(0, |m, k| m | 1 << k);
        Coefs {
            n,
            map,
            kept_mask,
            kept: vec![0; blocks * n * n],
            nonzero: vec![0; blocks],
            bits: [-1; 64],
        }
    }

    /// Records a scan of this component; `None` where libjpeg warns of a bogus progression
    /// (a scan out of order, or AC before DC), which qp refuses.
    pub(super) fn start(&mut self, band: &Band) -> Option<()> {
        if band.ss != 0 && self.bits[0] < 0 {
            return None;
        }
        for k in band.ss..=band.se {
            let last = &mut self.bits[k as usize];
            if band.ah != u32::try_from(*last).unwrap_or(0) {
                return None;
            }
            *last = band.al as i8;
        }
        Some(())
    }

    /// Whether every coefficient has arrived down to its last bit.
    pub(super) fn complete(&self) -> bool {
        self.bits.iter().all(|&b| b == 0)
    }

    /// Whether the reduced block keeps none of the zigzag indices `band`.
    pub(super) fn keeps_none(&self, band: u64) -> bool {
        self.kept_mask & band == 0
    }

    /// The nonzero bits of blocks `i..i + count`.
    #[inline]
    pub(super) fn nonzero_mut(&mut self, i: usize, count: usize) -> Option<&mut [u64]> {
        self.nonzero.get_mut(i..i.checked_add(count)?)
    }

    /// Block `i`'s DC coefficient.
    #[inline(always)]
    pub(super) fn dc_mut(&mut self, i: usize) -> Option<&mut i16> {
        self.kept.get_mut(i * self.n * self.n)
    }

    /// Block `i`'s kept coefficients and nonzero bits.
    #[inline(always)]
    pub(super) fn block(&mut self, i: usize) -> Option<BlockCoefs<'_>> {
        let nn = self.n * self.n;
        Some(BlockCoefs {
            kept: self.kept.get_mut(i * nn..(i + 1) * nn)?,
            nonzero: self.nonzero.get_mut(i)?,
            map: &self.map,
            kept_mask: self.kept_mask,
        })
    }

    /// The component's samples at its scale, `bw * n` wide, as a sequential scan leaves
    /// them.
    pub(super) fn into_plane(self, bw: usize, bh: usize, q: &[u16; 64]) -> Option<Vec<u8>> {
        let (n, nn) = (self.n, self.n * self.n);
        let mut sink = Sink::new(n, bw * n, vec![0; bw * bh * nn], q);
        for (i, kept) in self.kept.chunks_exact(nn).enumerate() {
            let (bx, by) = (i % bw, i / bw);
            match n {
                1 => sink.put_dc(i32::from(kept[0]), bx, by)?,
                2 => {
                    let mut blk = [0i32; 4];
                    for (b, &v) in blk.iter_mut().zip(kept) {
                        *b = i32::from(v);
                    }
                    sink.put_2x2(&blk, bx, by)?;
                }
                _ => {
                    let (coefs, lane) = sink.lane();
                    for (c, &v) in coefs.iter_mut().zip(kept) {
                        c[lane] = i32::from(v);
                    }
                    sink.queue(bx, by)?;
                }
            }
        }
        sink.flush()?;
        Some(sink.plane)
    }
}
