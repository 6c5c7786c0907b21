//! CPU dispatch: the one place in the crate allowed `unsafe` (besides the allocator in
//! `src/main.rs`, a crate of its own). Each kernel here runs its `_inner` function, which is
//! `#[inline(always)]`, either as compiled for the x86-64 baseline or inlined into a
//! `#[target_feature(enable = "avx2")]` copy, which is `unsafe` to call: the CPU must have
//! AVX2, which [`has_avx2`] checks. The progressive refinement's row loop has a BMI2 copy
//! the same way, taken where [`has_fast_pdep`] says so, and the baseline loop at 1/8 and
//! 1/4 one taken where the CPU has BMI2.

use super::color::{RowSource, colour_rows_inner};
use super::huffman::{AcTable, Bits, SmallSlot, select};
use super::idct::Sink;
use super::progressive::Band;

/// Whether the CPU has AVX2 (every Fargate and Lambda x86 host does). The loops that
/// vectorize across pixels or blocks (the IDCTs, upsampling, colour conversion) are
/// compiled twice: for the x86-64 baseline the binary targets, and, inlined into a
/// `#[target_feature(enable = "avx2")]` copy, twice as wide. Both compute the same results
/// (the same integer and IEEE float operations; Rust never fuses a multiply and an add).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
}

/// Runs the IDCT on the queued blocks of `sink`.
pub(super) fn flush(sink: &mut Sink) -> Option<()> {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        #[target_feature(enable = "avx2")]
        fn avx2(sink: &mut Sink) -> Option<()> {
            sink.flush_inner()
        }
        // SAFETY: the CPU has AVX2, the only requirement of `avx2`.
        return unsafe { avx2(sink) };
    }
    sink.flush_inner()
}

/// Fills `pixels` (RGBX, `ow` wide) from three components, YCbCr unless `rgb`.
pub(super) fn colour_rows(
    pixels: &mut [u8],
    ow: usize,
    rows: [&RowSource; 3],
    rgb: bool,
) -> Option<()> {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        #[target_feature(enable = "avx2")]
        fn avx2(pixels: &mut [u8], ow: usize, rows: [&RowSource; 3], rgb: bool) -> Option<()> {
            colour_rows_inner(pixels, ow, rows, rgb)
        }
        // SAFETY: the CPU has AVX2, the only requirement of `avx2`.
        return unsafe { avx2(pixels, ow, rows, rgb) };
    }
    colour_rows_inner(pixels, ow, rows, rgb)
}

/// Whether the CPU has BMI2 (every Fargate and Lambda x86 host does).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn has_bmi2() -> bool {
    std::arch::is_x86_feature_detected!("bmi2")
}

/// Whether `pdep` is fast: on every x86 CPU with BMI2 but AMD's before Zen 3 (and Hygon's,
/// a Zen 1), where it is microcoded and takes up to hundreds of cycles.
#[cfg(target_arch = "x86_64")]
fn has_fast_pdep() -> bool {
    static FAST: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FAST.get_or_init(|| {
        use std::arch::x86_64::__cpuid;
        if !std::arch::is_x86_feature_detected!("bmi2") {
            return false;
        }
        let v = __cpuid(0);
        let vendor = [v.ebx, v.edx, v.ecx].map(u32::to_le_bytes).concat();
        let amd = vendor == b"AuthenticAMD" || vendor == b"HygonGenuine";
        let eax = __cpuid(1).eax;
        let family = match (eax >> 8) & 0xF {
            0xF => 0xF + ((eax >> 20) & 0xFF),
            f => f,
        };
        !amd || family >= 0x19
    })
}

/// A refinement scan's row of blocks whose band the reduced block keeps none of
/// ([`Bits::refine_unkept`]). Where `pdep` is fast, the end of every zero run is one
/// `pdep` of the zero coefficients' mask (branch-free: measured 0.85x the decode of the
/// progressive wallpapers at 1/8 against the portable loop's shortcut and broadword select).
#[inline(never)]
pub(super) fn refine_unkept(
    bits: &mut Bits,
    t: &AcTable,
    band: &Band,
    eob: &mut usize,
    nonzero: &mut [u64],
) -> Option<()> {
    #[cfg(target_arch = "x86_64")]
    if has_fast_pdep() {
        #[target_feature(enable = "bmi2")]
        fn bmi2(
            bits: &mut Bits,
            t: &AcTable,
            band: &Band,
            eob: &mut usize,
            nonzero: &mut [u64],
        ) -> Option<()> {
            bits.refine_unkept::<true>(t, band, eob, nonzero, |x, r| {
                std::arch::x86_64::_pdep_u64(1 << r, x).trailing_zeros()
            })
        }
        // SAFETY: the CPU has BMI2, the only requirement of `bmi2`.
        return unsafe { bmi2(bits, t, band, eob, nonzero) };
    }
    bits.refine_unkept::<false>(t, band, eob, nonzero, select)
}

/// A run of MCUs of a baseline scan at 1/8 or 1/4 ([`Bits::small_mcus`]). Where the CPU
/// has BMI2, compiled with it: its shifts by a register (`shlx`, `shrx`) take one step
/// where the baseline's `shl` by `cl` takes two, and every Huffman code goes through one.
#[inline(never)]
pub(super) fn small_mcus(
    bits: &mut Bits,
    slots: &[SmallSlot],
    pred: &mut [i32; 4],
    out: &mut [[i32; 4]],
) -> Option<()> {
    #[cfg(target_arch = "x86_64")]
    if has_bmi2() {
        #[target_feature(enable = "bmi2")]
        fn bmi2(
            bits: &mut Bits,
            slots: &[SmallSlot],
            pred: &mut [i32; 4],
            out: &mut [[i32; 4]],
        ) -> Option<()> {
            bits.small_mcus(slots, pred, out)
        }
        // SAFETY: the CPU has BMI2, the only requirement of `bmi2`.
        return unsafe { bmi2(bits, slots, pred, out) };
    }
    bits.small_mcus(slots, pred, out)
}

#[cfg(test)]
mod tests {
    use super::super::idct::LANES;
    use super::*;

    /// Pseudo-random numbers in `0..n` (a fixed LCG: the tests see the same data every run).
    fn lcg(seed: u32) -> impl FnMut(u32) -> u32 {
        let mut state = seed;
        move |n| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) % n
        }
    }

    /// The AVX2 copies compute exactly what the baseline copies do (the integration tests
    /// and the fuzz target only ever run one of them). On a CPU without AVX2 both calls take
    /// the baseline copy.
    #[test]
    fn avx2_copies_match_the_baseline() {
        let mut rand = lcg(7);
        // The IDCTs (4x4, 5x5 and 6x6), on batches of blocks whose samples span
        // 0..=255 and beyond (clamped).
        let q: [u16; 64] = std::array::from_fn(|_| 1 + rand(16) as u16);
        let mut seen = [false; 256];
        for round in 0..300 {
            let n = [4, 5, 6][round % 3];
            let stride = n * LANES;
            let mut sinks = [0, 1].map(|_| Sink::new(n, stride, vec![0; n * stride], &q));
            let values: Vec<i32> = (0..n * n * LANES).map(|_| rand(48) as i32 - 24).collect();
            for sink in &mut sinks {
                for (lane, coefs) in values.chunks_exact(n * n).take(LANES - 1).enumerate() {
                    let (batch, l) = sink.lane();
                    assert_eq!(l, lane);
                    for (row, &v) in batch.iter_mut().zip(coefs) {
                        row[l] = v;
                    }
                    sink.queue(lane, 0).unwrap();
                }
            }
            let [dispatched, baseline] = &mut sinks;
            dispatched.flush().unwrap();
            baseline.flush_inner().unwrap();
            assert_eq!(dispatched.plane, baseline.plane);
            for &v in &dispatched.plane {
                seen[usize::from(v)] = true;
            }
            assert!(
                dispatched.batch.coefs[..n * n]
                    .iter()
                    .all(|c| *c == [0; LANES])
            );
        }
        assert!(seen[0] && seen[255] && seen.iter().filter(|&&s| s).count() > 200);
        // Upsampling and colour conversion, for each subsampling and both colour spaces.
        for (rh, rv) in [(1, 1), (2, 2), (2, 1), (1, 2), (4, 1)] {
            let (ow, oh) = (37 + rand(40) as usize, 9usize);
            let (cw, ch) = (ow.div_ceil(rh), oh.div_ceil(rv));
            let planes: Vec<Vec<u8>> = (0..3)
                .map(|i| {
                    let (w, h) = if i == 0 { (ow, oh) } else { (cw, ch) };
                    (0..w * h).map(|_| rand(256) as u8).collect()
                })
                .collect();
            let source = |i: usize| RowSource {
                plane: &planes[i],
                stride: if i == 0 { ow } else { cw },
                cw: if i == 0 { ow } else { cw },
                ch: if i == 0 { oh } else { ch },
                rh: if i == 0 { 1 } else { rh },
                rv: if i == 0 { 1 } else { rv },
            };
            let rows = [source(0), source(1), source(2)];
            for rgb in [false, true] {
                let mut out = [0, 1].map(|_| vec![0u8; ow * oh * 4]);
                colour_rows(&mut out[0], ow, [&rows[0], &rows[1], &rows[2]], rgb).unwrap();
                colour_rows_inner(&mut out[1], ow, [&rows[0], &rows[1], &rows[2]], rgb).unwrap();
                assert_eq!(out[0], out[1], "{rh}x{rv} rgb={rgb}");
            }
        }
    }
}
