//! The decoder proper. [`Decoder`] walks the markers, keeping the tables and the frame they
//! define, and decodes each scan as it comes, block by block into the components' planes
//! (through [`Sink`]). [`run_scan`] is the MCU walk, restart markers included.
//!
//! Sequential scans decode straight into the planes; progressive ones into coefficients
//! ([`super::progressive`]), turned into planes once the last scan is in.

use std::rc::Rc;

use super::Scaled;
use super::color::RowSource;
use super::huffman::{AcTable, Bits, DcTable, HuffSpec, SmallSlot, cached_ac_table};
use super::idct::{BATCH_ROWS, LANES, Sink};
use super::marker::{find_marker, find_marker_after_scan, segment};
use super::progressive::{Band, Coefs};
use super::simd;

/// libjpeg-turbo's limit, so that both decoders refuse the same files.
const MAX_SCANS: usize = crate::image::turbo::MAX_SCANS as usize;

/// A frame component and what its scans have produced so far.
struct Component {
    id: u8,
    h: usize,
    v: usize,
    tq: usize,
    /// Blocks across and down, padded to whole MCUs.
    bw: usize,
    bh: usize,
    /// Side of each block at this scale: the output scale's, or larger for subsampled
    /// chroma, which libjpeg also decodes bigger rather than upsample (at most 4).
    n: usize,
    /// Upsampling from `n` to the output scale.
    uh: usize,
    uv: usize,
    /// Quantization table (zigzag order), latched at the component's first scan.
    q: Option<[u16; 64]>,
    /// Decoded by a scan.
    done: bool,
    /// Samples at this component's scale, `bw * n` wide.
    plane: Vec<u8>,
    /// A progressive frame's coefficients, until the last scan.
    coefs: Option<Coefs>,
}

/// The SOF header, resolved.
struct Frame {
    progressive: bool,
    width: usize,
    height: usize,
    hmax: usize,
    vmax: usize,
    mcux: usize,
    mcuy: usize,
    comps: Vec<Component>,
}

/// Decoder state carried from marker to marker.
#[derive(Default)]
pub(super) struct Decoder {
    qt: [Option<[u16; 64]>; 4],
    dc_specs: [Option<HuffSpec>; 4],
    ac_specs: [Option<HuffSpec>; 4],
    /// Lookup tables built from the specs, dropped when DHT redefines them.
    dc_tables: [Option<DcTable>; 4],
    ac_tables: [Option<Rc<AcTable>>; 4],
    restart: usize,
    jfif: bool,
    adobe: Option<u8>,
    frame: Option<Frame>,
    scans: usize,
    /// The first scan held every component.
    one_scan: bool,
}

/// One component of a scan, resolved.
struct ScanComp {
    ci: usize,
    td: usize,
    ta: usize,
    /// Blocks per MCU across and down (1x1 in a non-interleaved scan).
    hs: usize,
    vs: usize,
}

impl Decoder {
    /// Walks the markers, decoding each scan as it comes.
    pub(super) fn run(&mut self, data: &[u8], n: usize, max_pixels: u64) -> Option<()> {
        if data.get(..2)? != [0xFF, 0xD8] {
            return None;
        }
        let mut pos = 2;
        while let Some((marker, at)) = find_marker(data, pos) {
            pos = at + 2;
            match marker {
                0xD9 => break,
                0xD0..=0xD7 | 0x01 => continue,
                // A second SOI: libjpeg refuses the file ("two SOI markers"); so must this.
                0xD8 => return None,
                _ => {}
            }
            let body = segment(data, at)?;
            pos = at + 4 + body.len();
            // libjpeg refuses a length field under 2 where it parses the segment (it only
            // skips APPn and COM): the body is then empty but the field is not 2.
            let whole =
                usize::from(u16::from_be_bytes([data[at + 2], data[at + 3]])) == body.len() + 2;
            match marker {
                0xC0 | 0xC1 if whole => self.sof(body, false, n, max_pixels)?,
                0xC2 if whole => self.sof(body, true, n, max_pixels)?,
                0xC4 if whole => self.dht(body)?,
                0xDB if whole => self.dqt(body)?,
                0xDD if body.len() == 2 => {
                    self.restart = usize::from(u16::from_be_bytes([body[0], body[1]]))
                }
                // As libjpeg's examine_app0 and examine_app14: only a segment long enough
                // for the whole JFIF or Adobe header counts.
                0xE0 => self.jfif |= body.len() >= 14 && body.starts_with(b"JFIF\0"),
                0xEE if body.len() >= 12 && body.starts_with(b"Adobe") => {
                    self.adobe = Some(body[11]);
                }
                0xDA => {
                    self.scans += 1;
                    if self.scans > MAX_SCANS {
                        return None;
                    }
                    pos = self.sos(data, body, pos)?;
                }
                0xE1..=0xEF | 0xFE => {}
                // Everything else libjpeg refuses or qp's decoder leaves to it: lossless,
                // hierarchical, arithmetic coding (and its DAC tables), DNL-defined heights,
                // the reserved markers (JPG, DHP, EXP, JPGn, RESn: "unknown marker"), and bad
                // lengths of the segments above.
                _ => return None,
            }
        }
        Some(())
    }

    fn sof(&mut self, b: &[u8], progressive: bool, n: usize, max_pixels: u64) -> Option<()> {
        if self.frame.is_some() || b.len() < 6 || b[0] != 8 {
            return None;
        }
        let height = usize::from(u16::from_be_bytes([b[1], b[2]]));
        let width = usize::from(u16::from_be_bytes([b[3], b[4]]));
        let nc = usize::from(b[5]);
        if width == 0 || height == 0 || (width as u64) * (height as u64) > max_pixels {
            return None;
        }
        // libjpeg wants the length exact ("bogus marker length").
        if !(nc == 1 || nc == 3) || b.len() != 6 + 3 * nc {
            return None;
        }
        let mut comps: Vec<Component> = Vec::with_capacity(nc);
        for c in b[6..6 + 3 * nc].chunks_exact(3) {
            let (h, v, tq) = (
                usize::from(c[1] >> 4),
                usize::from(c[1] & 15),
                usize::from(c[2]),
            );
            if !(1..=4).contains(&h)
                || !(1..=4).contains(&v)
                || tq > 3
                || comps.iter().any(|o| o.id == c[0])
            {
                return None;
            }
            comps.push(Component {
                id: c[0],
                h,
                v,
                tq,
                bw: 0,
                bh: 0,
                n,
                uh: 1,
                uv: 1,
                q: None,
                done: false,
                plane: Vec::new(),
                coefs: None,
            });
        }
        let hmax = comps.iter().map(|c| c.h).max()?;
        let vmax = comps.iter().map(|c| c.v).max()?;
        let mcux = width.div_ceil(8 * hmax);
        let mcuy = height.div_ceil(8 * vmax);
        for c in &mut comps {
            // Upsampling handles whole ratios only.
            if hmax % c.h != 0 || vmax % c.v != 0 {
                return None;
            }
            let (rh, rv) = (hmax / c.h * n, vmax / c.v * n);
            // As libjpeg: grow the block while both directions stay whole multiples.
            while c.n < 4 && rh % (2 * c.n) == 0 && rv % (2 * c.n) == 0 {
                c.n *= 2;
            }
            (c.uh, c.uv) = (rh / c.n, rv / c.n);
            c.bw = mcux * c.h;
            c.bh = mcuy * c.v;
            if progressive {
                c.coefs = Some(Coefs::new(c.bw * c.bh, c.n));
            } else {
                c.plane = vec![0; c.bw * c.bh * c.n * c.n];
            }
        }
        self.frame = Some(Frame {
            progressive,
            width,
            height,
            hmax,
            vmax,
            mcux,
            mcuy,
            comps,
        });
        Some(())
    }

    fn dht(&mut self, mut b: &[u8]) -> Option<()> {
        while !b.is_empty() {
            let (class, id) = (b[0] >> 4, usize::from(b[0] & 15));
            let mut counts = [0u8; 17];
            counts[1..].copy_from_slice(b.get(1..17)?);
            let total: usize = counts.iter().map(|&c| usize::from(c)).sum();
            if class > 1 || id > 3 || total > 256 {
                return None;
            }
            let symbols = b.get(17..17 + total)?.to_vec();
            let spec = Some(HuffSpec { counts, symbols });
            if class == 0 {
                self.dc_specs[id] = spec;
                self.dc_tables[id] = None;
            } else {
                self.ac_specs[id] = spec;
                self.ac_tables[id] = None;
            }
            b = &b[17 + total..];
        }
        Some(())
    }

    fn dqt(&mut self, mut b: &[u8]) -> Option<()> {
        while !b.is_empty() {
            let (precision, id) = (b[0] >> 4, usize::from(b[0] & 15));
            if precision > 1 || id > 3 {
                return None;
            }
            let mut q = [0u16; 64];
            if precision == 0 {
                for (q, &v) in q.iter_mut().zip(b.get(1..65)?) {
                    *q = u16::from(v);
                }
                b = &b[65..];
            } else {
                for (q, v) in q.iter_mut().zip(b.get(1..129)?.chunks_exact(2)) {
                    *q = u16::from_be_bytes([v[0], v[1]]);
                }
                b = &b[129..];
            }
            self.qt[id] = Some(q);
        }
        Some(())
    }

    /// The DC table `id`, built on first use.
    fn dc_table(&mut self, id: usize) -> Option<()> {
        if self.dc_tables[id].is_none() {
            self.dc_tables[id] = Some(DcTable::new(self.dc_specs[id].as_ref()?)?);
        }
        Some(())
    }

    /// The AC table `id`, built on first use.
    fn ac_table(&mut self, id: usize) -> Option<()> {
        if self.ac_tables[id].is_none() {
            self.ac_tables[id] = Some(cached_ac_table(self.ac_specs[id].as_ref()?)?);
        }
        Some(())
    }

    /// Handles a scan whose header is `b` and whose entropy data starts at `pos`; returns
    /// where the next marker is.
    fn sos(&mut self, data: &[u8], b: &[u8], pos: usize) -> Option<usize> {
        let ns = usize::from(*b.first()?);
        if !(1..=4).contains(&ns) || b.len() != 1 + 2 * ns + 3 {
            return None;
        }
        // A sequential file whose first scan held every component is one scan to libjpeg:
        // another SOS is an error there ("expected EOI").
        if self.scans > 1 && self.one_scan {
            return None;
        }
        let mut scan = Vec::with_capacity(ns);
        for s in b[1..1 + 2 * ns].chunks_exact(2) {
            let (td, ta) = (usize::from(s[1] >> 4), usize::from(s[1] & 15));
            let frame = self.frame.as_mut()?;
            let ci = frame.comps.iter().position(|c| c.id == s[0])?;
            let c = &mut frame.comps[ci];
            if td > 3 || ta > 3 || scan.iter().any(|sc: &ScanComp| sc.ci == ci) {
                return None;
            }
            let (hs, vs) = if ns == 1 { (1, 1) } else { (c.h, c.v) };
            if c.q.is_none() {
                c.q = Some(self.qt[c.tq]?);
            }
            scan.push(ScanComp { ci, td, ta, hs, vs });
        }
        if scan.iter().map(|s| s.hs * s.vs).sum::<usize>() > 10 {
            return None;
        }
        let frame = self.frame.as_ref()?;
        if self.scans == 1 {
            self.one_scan = !frame.progressive && ns == frame.comps.len();
        }
        // Size of the scan in MCUs: a non-interleaved scan covers only the component's
        // own blocks, without the padding to whole MCUs.
        let geom = if ns == 1 {
            let c = &frame.comps[scan[0].ci];
            ScanGeom {
                mcux: (frame.width * c.h).div_ceil(frame.hmax).div_ceil(8),
                mcuy: (frame.height * c.v).div_ceil(frame.vmax).div_ceil(8),
                restart: self.restart,
            }
        } else {
            ScanGeom {
                mcux: frame.mcux,
                mcuy: frame.mcuy,
                restart: self.restart,
            }
        };
        let mut bits = Bits::new(data, pos);
        if frame.progressive {
            let p = &b[1 + 2 * ns..];
            let band = Band::new(p[0], p[1], p[2], ns)?;
            self.progressive_scan(&mut bits, &geom, &scan, band)?;
        } else {
            self.sequential_scan(&mut bits, &geom, &scan)?;
        }
        if bits.overran() {
            return None;
        }
        Some(find_marker_after_scan(data, bits.pos)?.1)
    }

    /// Decodes one scan of a sequential frame straight into its components' planes.
    fn sequential_scan(
        &mut self,
        bits: &mut Bits,
        geom: &ScanGeom,
        scan: &[ScanComp],
    ) -> Option<()> {
        for s in scan {
            self.dc_table(s.td)?;
            self.ac_table(s.ta)?;
        }
        let frame = self.frame.as_mut()?;
        let mut ctx = Vec::with_capacity(scan.len());
        for s in scan {
            let c = &mut frame.comps[s.ci];
            let q = c.q?;
            let sink = Sink::new(c.n, c.bw * c.n, std::mem::take(&mut c.plane), &q);
            ctx.push(BlockCtx {
                dc: self.dc_tables[s.td].as_ref()?,
                ac: self.ac_tables[s.ta].as_ref()?,
                sink,
            });
            c.done = true;
        }
        let ok = decode_baseline(bits, geom, scan, &mut ctx);
        for (s, c) in scan.iter().zip(ctx) {
            frame.comps[s.ci].plane = c.sink.plane;
        }
        ok
    }

    /// Decodes one scan of a progressive frame into its components' coefficients.
    fn progressive_scan(
        &mut self,
        bits: &mut Bits,
        geom: &ScanGeom,
        scan: &[ScanComp],
        band: Band,
    ) -> Option<()> {
        // The tables libjpeg builds, and so checks, for such a scan.
        if band.ss == 0 && band.ah == 0 {
            for s in scan {
                self.dc_table(s.td)?;
            }
        } else if band.ss != 0 {
            self.ac_table(scan[0].ta)?;
        }
        let frame = self.frame.as_mut()?;
        let mut targets = Vec::with_capacity(scan.len());
        for s in scan {
            let c = &mut frame.comps[s.ci];
            let mut coefs = c.coefs.take()?;
            coefs.start(&band)?;
            c.done |= band.ss == 0;
            targets.push((coefs, c.bw));
        }
        let ok = if band.ss == 0 {
            let slots = mcu_slots(scan);
            // A refinement reads its correction bits without tables.
            let tables = if band.ah == 0 {
                let t: Option<Vec<&DcTable>> = slots
                    .iter()
                    .map(|&(sc, ..)| self.dc_tables[scan[sc].td].as_ref())
                    .collect();
                Some(t?)
            } else {
                None
            };
            dc_scan(bits, geom, &slots, tables.as_deref(), &band, &mut targets)
        } else {
            let table = self.ac_tables[scan[0].ta].as_deref()?;
            let (coefs, bw) = &mut targets[0];
            ac_scan(bits, geom, table, &band, coefs, *bw)
        };
        for (s, (coefs, _)) in scan.iter().zip(targets) {
            frame.comps[s.ci].coefs = Some(coefs);
        }
        ok
    }

    /// Turns the decoded planes into the output image.
    pub(super) fn finish(self, n: usize) -> Option<Scaled> {
        let mut frame = self.frame?;
        if frame.comps.iter().any(|c| !c.done) {
            return None;
        }
        for c in &mut frame.comps {
            if let Some(coefs) = c.coefs.take() {
                // A progressive file that leaves bits of some coefficient unsent decodes
                // blurred: libjpeg-turbo gives the verdict on it.
                if !coefs.complete() {
                    return None;
                }
                c.plane = coefs.into_plane(c.bw, c.bh, &c.q?)?;
            }
        }
        let (ow, oh) = (
            (frame.width * n).div_ceil(8),
            (frame.height * n).div_ceil(8),
        );
        let rows: Vec<RowSource> = frame
            .comps
            .iter()
            .map(|c| RowSource {
                plane: &c.plane,
                stride: c.bw * c.n,
                cw: (frame.width * c.h * c.n).div_ceil(frame.hmax * 8),
                ch: (frame.height * c.v * c.n).div_ceil(frame.vmax * 8),
                rh: c.uh,
                rv: c.uv,
            })
            .collect();
        if let [gray] = rows.as_slice() {
            let mut pixels = vec![0u8; ow * oh];
            let mut tmp = Vec::new();
            for (y, out) in pixels.chunks_exact_mut(ow).enumerate() {
                out.copy_from_slice(gray.row(y, ow, &mut tmp)?);
            }
            return Some(Scaled {
                width: ow as u32,
                height: oh as u32,
                channels: 1,
                pixels,
            });
        }
        let [c0, c1, c2] = rows.as_slice() else {
            return None;
        };
        // As libjpeg: JFIF means YCbCr, else Adobe's transform flag, else the component ids.
        let ids: Vec<u8> = frame.comps.iter().map(|c| c.id).collect();
        let rgb = !self.jfif && self.adobe.map_or(ids == b"RGB", |t| t == 0);
        let mut pixels = vec![0u8; ow * oh * 4];
        simd::colour_rows(&mut pixels, ow, [c0, c1, c2], rgb)?;
        Some(Scaled {
            width: ow as u32,
            height: oh as u32,
            channels: 4,
            pixels,
        })
    }
}

/// A scan's size in MCUs, and its restart interval in MCUs (0 for none).
struct ScanGeom {
    mcux: usize,
    mcuy: usize,
    restart: usize,
}

/// An MCU's blocks in coding order: (index in the scan, blocks per MCU across and down,
/// offset in the MCU across and down).
type Slot = (usize, usize, usize, usize, usize);

fn mcu_slots(scan: &[ScanComp]) -> Vec<Slot> {
    let mut slots = Vec::with_capacity(10);
    for (sc, s) in scan.iter().enumerate() {
        for dy in 0..s.vs {
            for dx in 0..s.hs {
                slots.push((sc & 3, s.hs, s.vs, dx, dy));
            }
        }
    }
    slots
}

/// Walks a scan's MCUs a run at a time (up to the row's end or the next restart marker),
/// handling the markers, and calls `f` with the components' scan state (DC predictors,
/// or end-of-band runs), zeroed at each restart, the MCU row and the run's first MCU and
/// length.
#[inline(always)]
fn mcu_runs<F>(bits: &mut Bits, g: &ScanGeom, mut f: F) -> Option<()>
where
    F: FnMut(&mut Bits, &mut [i32; 4], usize, usize, usize) -> Option<()>,
{
    let mut state = [0i32; 4];
    let mut left = g.restart;
    let mut next_rst = 0u8;
    for my in 0..g.mcuy {
        let mut mx = 0;
        while mx < g.mcux {
            let mut run = g.mcux - mx;
            if g.restart != 0 {
                if left == 0 {
                    *bits = restart(*bits, next_rst)?;
                    next_rst = (next_rst + 1) & 7;
                    state = [0; 4];
                    left = g.restart;
                }
                run = run.min(left);
                left -= run;
            }
            f(bits, &mut state, my, mx, run)?;
            mx += run;
        }
        // Stop early on truncated data rather than decoding zeros to the end.
        if bits.overran() {
            return None;
        }
    }
    Some(())
}

/// Walks a scan's MCUs in order ([`mcu_runs`]) and calls `block` with the component's
/// scan state, its index in the scan and the block's position.
#[inline(always)]
fn run_scan<F>(bits: &mut Bits, g: &ScanGeom, scan: &[ScanComp], mut block: F) -> Option<()>
where
    F: FnMut(&mut Bits, &mut i32, usize, usize, usize) -> Option<()>,
{
    let slots = mcu_slots(scan);
    mcu_runs(bits, g, |bits, state, my, mx, run| {
        for mx in mx..mx + run {
            for &(sc, hs, vs, dx, dy) in &slots {
                block(bits, &mut state[sc], sc, mx * hs + dx, my * vs + dy)?;
            }
        }
        Some(())
    })
}

/// A progressive DC scan, a run of MCUs at a time ([`Bits::dc_mcus`]): the first scan
/// (`tables`) or a refinement's correction bits, into each component's coefficients.
fn dc_scan(
    bits: &mut Bits,
    g: &ScanGeom,
    slots: &[Slot],
    tables: Option<&[&DcTable]>,
    band: &Band,
    targets: &mut [(Coefs, usize)],
) -> Option<()> {
    let ns = slots.len();
    let mut out = vec![0i32; ns * g.mcux];
    mcu_runs(bits, g, |bits, pred, my, mx, run| {
        let out = &mut out[..run * ns];
        bits.dc_mcus(tables, out)?;
        if tables.is_some() {
            for mcu in out.chunks_exact_mut(ns) {
                for (&(sc, ..), v) in slots.iter().zip(mcu) {
                    // libjpeg keeps the predictor as an int and stops where it overflows.
                    pred[sc] = pred[sc].checked_add(*v)?;
                    *v = pred[sc];
                }
            }
        }
        for (j, &(sc, hs, vs, dx, dy)) in slots.iter().enumerate() {
            let (coefs, bw) = &mut targets[sc];
            let row = (my * vs + dy) * *bw;
            for (i, &v) in out[j..].iter().step_by(ns).enumerate() {
                let dc = coefs.dc_mut(row + (mx + i) * hs + dx)?;
                if tables.is_some() {
                    *dc = ((v as u32) << band.al) as i16;
                } else if v != 0 {
                    *dc |= 1 << band.al;
                }
            }
        }
        Some(())
    })
}

/// Walks a progressive AC scan (one component, its blocks in raster order) a run at a time
/// ([`mcu_runs`]: a restart marker ends an end-of-band run). Where the reduced block keeps
/// none of the band (every AC band at 1/8), only the blocks' nonzero bits change, and a run
/// goes to one call of `first_unkept` or `refine_unkept`, which count the correction bits of
/// an end-of-band run at once (measured: 0.84x the decode of the 5 progressive wallpapers at
/// 1/8 against the general path a block at a time); else to `kept_run`, a block at a time.
fn ac_scan(
    bits: &mut Bits,
    g: &ScanGeom,
    table: &AcTable,
    band: &Band,
    coefs: &mut Coefs,
    bw: usize,
) -> Option<()> {
    let unkept = coefs.keeps_none(band.from(band.ss));
    // The scan state is the end-of-band run (at most 2^15 - 1 blocks), which a restart ends.
    mcu_runs(bits, g, |bits, state, by, bx, n| {
        let mut eob = usize::try_from(state[0]).ok()?;
        let at = by * bw + bx;
        if unkept {
            let nonzero = coefs.nonzero_mut(at, n)?;
            if band.ah == 0 {
                bits.first_unkept(table, band, &mut eob, nonzero)?;
            } else {
                simd::refine_unkept(bits, table, band, &mut eob, nonzero)?;
            }
        } else {
            bits.kept_run(table, band, coefs, (at, n), &mut eob)?;
        }
        state[0] = i32::try_from(eob).ok()?;
        Some(())
    })
}

/// Moves past the restart marker that must come next, discarding the rest of the byte.
#[inline(never)]
fn restart(bits: Bits, expected: u8) -> Option<Bits> {
    if bits.overran() {
        return None;
    }
    let (m, at) = find_marker(bits.data, bits.pos)?;
    if m != 0xD0 + expected {
        return None;
    }
    Some(Bits::new(bits.data, at + 2))
}

/// What decoding one baseline block needs for its component.
struct BlockCtx<'t> {
    dc: &'t DcTable,
    ac: &'t AcTable,
    sink: Sink,
}

/// Decodes a baseline scan, writing each block as `n`x`n` samples into its plane.
fn decode_baseline(
    bits: &mut Bits,
    g: &ScanGeom,
    scan: &[ScanComp],
    ctx: &mut [BlockCtx],
) -> Option<()> {
    if ctx.iter().all(|c| c.sink.n <= 2) {
        return decode_small(bits, g, scan, ctx);
    }
    run_scan(bits, g, scan, |bits, pred, sc, bx, by| {
        let c = &mut ctx[sc];
        let mut add = |diff: i32| {
            *pred = i32::from((*pred + diff) as i16);
            *pred
        };
        match c.sink.n {
            1 => {
                let dc = add(bits.dc_block(c.dc, c.ac)?);
                c.sink.put_dc(dc, bx, by)
            }
            2 => {
                let mut blk = [[0i32; 1]; 5];
                let dc = add(bits.block::<2, 1, 5>(c.dc, c.ac, &mut blk, 0)?);
                c.sink
                    .put_2x2(&[dc, blk[1][0], blk[2][0], blk[3][0]], bx, by)
            }
            n => {
                // Straight into the IDCT batch, whose coefficients start out zero.
                let (coefs, lane) = c.sink.lane();
                let diff = match n {
                    4 => bits.block::<4, LANES, BATCH_ROWS>(c.dc, c.ac, coefs, lane)?,
                    5 => bits.block::<5, LANES, BATCH_ROWS>(c.dc, c.ac, coefs, lane)?,
                    _ => bits.block::<6, LANES, BATCH_ROWS>(c.dc, c.ac, coefs, lane)?,
                };
                coefs[0][lane] = add(diff);
                c.sink.queue(bx, by)
            }
        }
    })?;
    ctx.iter_mut().try_for_each(|c| c.sink.flush())
}

/// [`decode_baseline`] where every block keeps at most its 2x2 lowest coefficients (1/8
/// and 1/4 scale): the entropy decoding goes a run of MCUs (up to the row's end or the
/// next restart) per call of [`Bits::small_mcus`], then the samples are written a block
/// position of the MCU at a time.
fn decode_small(
    bits: &mut Bits,
    g: &ScanGeom,
    scan: &[ScanComp],
    ctx: &mut [BlockCtx],
) -> Option<()> {
    let slots = mcu_slots(scan);
    let small: Vec<SmallSlot> = slots
        .iter()
        .map(|&(sc, ..)| SmallSlot {
            comp: sc,
            dc: ctx[sc].dc,
            ac: ctx[sc].ac,
            two: ctx[sc].sink.n == 2,
        })
        .collect();
    let ns = slots.len();
    let mut out = vec![[0i32; 4]; ns * g.mcux];
    mcu_runs(bits, g, |bits, pred, my, mx, run| {
        let out = &mut out[..run * ns];
        simd::small_mcus(bits, &small, pred, out)?;
        for (j, &(sc, hs, vs, dx, dy)) in slots.iter().enumerate() {
            let sink = &mut ctx[sc].sink;
            let by = my * vs + dy;
            let blocks = out[j..].iter().step_by(ns);
            if sink.n == 1 {
                for (i, v) in blocks.enumerate() {
                    sink.put_dc(v[0], (mx + i) * hs + dx, by)?;
                }
            } else {
                for (i, v) in blocks.enumerate() {
                    sink.put_2x2(v, (mx + i) * hs + dx, by)?;
                }
            }
        }
        Some(())
    })
}
