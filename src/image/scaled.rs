//! Reduced-scale JPEG decoding: 1/2, 1/4 or 1/8 straight from the DCT coefficients.
//!
//! zune-jpeg, our full decoder, only decodes at full scale. Shrinking a 5120x2880 photo to
//! 224 pixels that way spends most of its time in IDCT, upsampling and colour conversion
//! of pixels that the resizer then throws away. libjpeg's `scale_denom` trick avoids that:
//! at 1/8 only the DC coefficient of each 8x8 block is needed (one output pixel per block);
//! at 1/4 and 1/2 a 2x2 or 4x4 IDCT of the low-frequency coefficients gives the block.
//! This module owns that fast path: baseline and extended Huffman (every scale) and
//! progressive Huffman (1/8 only, where the AC scans are skipped without decoding them),
//! 8-bit, grayscale or three-component YCbCr/RGB. Anything else, and any file that looks
//! damaged, yields `None`, and the caller falls back to zune-jpeg at full scale, which also
//! gives the authoritative error.
//!
//! Speed comes from the entropy decoder, which dominates at these scales: a 64-bit bit
//! buffer refilled 8 bytes at a time when they hold no 0xFF, lookup tables that decode a
//! DC difference or an AC coefficient (code plus extra bits) in one step, and for the AC
//! coefficients nobody needs a table that skips several of them in one step.

/// Pixels decoded at 1/denom scale.
pub struct Scaled {
    pub width: u32,
    pub height: u32,
    /// 1 = gray, 3 = RGB.
    pub channels: u8,
    /// Interleaved, row-major, no padding.
    pub pixels: Vec<u8>,
}

/// What the frame header says, for choosing a scale before decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub width: u32,
    pub height: u32,
    pub components: u8,
    pub progressive: bool,
}

/// Reads the frame header (SOFn) without decoding anything. `None` if there is none before
/// the first scan or the file is not a JPEG.
pub fn header(data: &[u8]) -> Option<Header> {
    if data.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut pos = 2;
    loop {
        let (marker, at) = find_marker(data, pos)?;
        pos = at + 2;
        match marker {
            0xD0..=0xD9 | 0x01 => continue,
            0xDA => return None,
            _ => {}
        }
        let body = segment(data, at)?;
        pos = at + 2 + 2 + body.len();
        if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
            if body.len() < 6 {
                return None;
            }
            return Some(Header {
                height: u32::from(u16::from_be_bytes([body[1], body[2]])),
                width: u32::from(u16::from_be_bytes([body[3], body[4]])),
                components: body[5],
                progressive: matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE),
            });
        }
    }
}

/// Decodes `data` at 1/`denom` scale (denom is 2, 4 or 8). Output size is ceil(w/denom) x
/// ceil(h/denom), as libjpeg does.
///
/// Returns None when the fast path does not cover this file (the caller then uses
/// zune-jpeg at full scale, which also gives the authoritative error for broken files),
/// including any corrupt/truncated data: never panics, never loops forever, never
/// allocates based on unchecked header sizes beyond what `max_pixels` (width*height of the
/// full image) allows.
pub fn decode_scaled(data: &[u8], denom: u8, max_pixels: u64) -> Option<Scaled> {
    let n = match denom {
        8 => 1,
        4 => 2,
        2 => 4,
        _ => return None,
    };
    let mut dec = Decoder::default();
    dec.run(data, n, max_pixels)?;
    dec.finish(n)
}

/// Bits looked up at once for one Huffman code plus its extra bits.
const FAST_BITS: u32 = 10;
/// Bits looked up at once by the table that skips several AC coefficients.
const SKIP_BITS: u32 = 12;
/// Set in a skip-table entry whose symbols end with end-of-block.
const SKIP_EOB: u32 = 1 << 12;
/// More scans than any real encoder writes: a cap on the work a hostile file can ask for.
const MAX_SCANS: usize = 128;

/// Row-major position of each zigzag index; past 63 it points at a spare slot so that a
/// run overshooting the block needs no branch.
const ZIGZAG: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// For an `n`x`n` reduced block: where each zigzag index lands in it (row-major), or the
/// spare slot `n*n` for coefficients outside it and for indices past the block's end.
const fn zigzag_map(n: usize) -> [u8; 128] {
    let mut map = [(n * n) as u8; 128];
    let mut k = 0;
    while k < 64 {
        let (row, col) = (ZIGZAG[k] as usize / 8, ZIGZAG[k] as usize % 8);
        if row < n && col < n {
            map[k] = (row * n + col) as u8;
        }
        k += 1;
    }
    map
}

/// Last zigzag index inside the reduced `n`x`n` block: values are kept up to here,
/// everything after is skipped.
const fn last_kept(n: usize) -> u32 {
    let mut k = 63;
    while k > 0 {
        let (row, col) = (ZIGZAG[k] as usize / 8, ZIGZAG[k] as usize % 8);
        if row < n && col < n {
            return k as u32;
        }
        k -= 1;
    }
    0
}

/// A Huffman table as DHT defines it, kept until a scan needs its lookup tables.
#[derive(Clone)]
struct HuffSpec {
    counts: [u8; 17],
    symbols: Vec<u8>,
}

/// Canonical decoding of one symbol, for codes the fast tables do not cover.
struct Codes {
    /// `len << 8 | symbol` by the next FAST_BITS bits; 0 when the code is longer.
    look: Box<[u16; 1 << FAST_BITS]>,
    maxcode: [i32; 17],
    valoff: [i32; 17],
    symbols: Vec<u8>,
}

impl Codes {
    /// Checks the table is a prefix code and builds the decoder; `None` if it is not.
    #[allow(clippy::type_complexity)]
    fn new(spec: &HuffSpec, max_symbol: u8) -> Option<(Codes, Vec<(u16, u32, u8)>)> {
        let mut codes = Vec::with_capacity(spec.symbols.len());
        let mut maxcode = [-1i32; 17];
        let mut valoff = [0i32; 17];
        let mut code = 0u32;
        let mut k = 0usize;
        for len in 1..=16u32 {
            let count = usize::from(spec.counts[len as usize]);
            valoff[len as usize] = k as i32 - code as i32;
            for _ in 0..count {
                let sym = *spec.symbols.get(k)?;
                if sym > max_symbol {
                    return None;
                }
                codes.push((code as u16, len, sym));
                code += 1;
                k += 1;
            }
            if code > 1 << len {
                return None;
            }
            maxcode[len as usize] = code as i32 - 1;
            code <<= 1;
        }
        let mut look = Box::new([0u16; 1 << FAST_BITS]);
        for &(code, len, sym) in &codes {
            if len <= FAST_BITS {
                let first = usize::from(code) << (FAST_BITS - len);
                let entry = (len as u16) << 8 | u16::from(sym);
                look[first..first + (1 << (FAST_BITS - len))].fill(entry);
            }
        }
        let codes_out = codes.clone();
        Some((
            Codes {
                look,
                maxcode,
                valoff,
                symbols: spec.symbols.clone(),
            },
            codes_out,
        ))
    }
}

impl Codes {
    /// `(length, symbol)` of the code at the top of `buf`, by canonical search.
    #[inline(never)]
    fn decode(&self, buf: u64) -> Option<(u32, u32)> {
        let e = self.look[(buf >> (64 - FAST_BITS)) as usize];
        if e != 0 {
            return Some((u32::from(e >> 8), u32::from(e & 0xFF)));
        }
        let window = (buf >> 48) as i32;
        for len in FAST_BITS + 1..=16 {
            let code = window >> (16 - len);
            if code <= self.maxcode[len as usize] {
                let idx = usize::try_from(code + self.valoff[len as usize]).ok()?;
                return self.symbols.get(idx).map(|&s| (len, u32::from(s)));
            }
        }
        None
    }
}

/// `(len, symbol)` of the code at the top of a `bits`-wide window, from the code list.
fn look_table(codes: &[(u16, u32, u8)], bits: u32) -> Vec<(u32, u8)> {
    let mut look = vec![(0u32, 0u8); 1 << bits];
    for &(code, len, sym) in codes {
        if len <= bits {
            let first = usize::from(code) << (bits - len);
            look[first..first + (1 << (bits - len))].fill((len, sym));
        }
    }
    look
}

/// Sign-extends `s` extra bits `v` into a coefficient value (JPEG's EXTEND).
#[inline(always)]
fn extend(v: i32, s: u32) -> i32 {
    if v < (1 << s) >> 1 {
        v - (1 << s) + 1
    } else {
        v
    }
}

/// DC table: `value << 8 | total length` for a code plus its extra bits that fit in
/// FAST_BITS, else 0.
struct DcTable {
    codes: Codes,
    fast: Box<[i32; 1 << FAST_BITS]>,
}

impl DcTable {
    fn new(spec: &HuffSpec) -> Option<DcTable> {
        let (codes, list) = Codes::new(spec, 15)?;
        let look = look_table(&list, FAST_BITS);
        let mut fast = Box::new([0i32; 1 << FAST_BITS]);
        for (i, &(len, sym)) in look.iter().enumerate() {
            let s = u32::from(sym);
            if len != 0 && len + s <= FAST_BITS {
                let extra = (i as i32 >> (FAST_BITS - len - s)) & ((1 << s) - 1);
                fast[i] = extend(extra, s) << 8 | (len + s) as i32;
            }
        }
        Some(DcTable { codes, fast })
    }
}

/// AC table. `fast`: one coefficient per lookup, `value << 16 | advance << 8 | length`,
/// where advance moves the zigzag index past the coefficient (64 for end-of-block).
/// `skip`: as many whole symbols as fit in SKIP_BITS, `SKIP_EOB | advance << 5 | length`,
/// for coefficients whose values are not needed. Progressive end-of-band runs (EOBn, n > 0)
/// carry extra bits and state, so both leave them to the canonical path.
struct AcTable {
    codes: Codes,
    fast: Box<[i32; 1 << FAST_BITS]>,
    skip: Box<[u16; 1 << SKIP_BITS]>,
}

impl AcTable {
    fn new(spec: &HuffSpec) -> Option<AcTable> {
        let (codes, list) = Codes::new(spec, 255)?;
        let look = look_table(&list, FAST_BITS);
        let mut fast = Box::new([0i32; 1 << FAST_BITS]);
        for (i, &(len, sym)) in look.iter().enumerate() {
            let (run, s) = (i32::from(sym >> 4), u32::from(sym & 15));
            if len == 0 || len + s > FAST_BITS {
                continue;
            }
            fast[i] = match (run, s) {
                (15, 0) => 16 << 8 | len as i32,
                (0, 0) => 64 << 8 | len as i32,
                (_, 0) => continue,
                _ => {
                    let extra = (i as i32 >> (FAST_BITS - len - s)) & ((1 << s) - 1);
                    extend(extra, s) << 16 | (run + 1) << 8 | (len + s) as i32
                }
            };
        }
        let look = look_table(&list, SKIP_BITS);
        let mask = (1usize << SKIP_BITS) - 1;
        let mut skip = Box::new([0u16; 1 << SKIP_BITS]);
        for (i, entry) in skip.iter_mut().enumerate() {
            let (mut used, mut advance, mut eob) = (0u32, 0u32, 0u32);
            while used < SKIP_BITS {
                let (len, sym) = look[(i << used) & mask];
                let (run, s) = (u32::from(sym >> 4), u32::from(sym & 15));
                // The shifted-in low bits are unknown: the symbol must fit in what is left.
                if len == 0 || used + len + s > SKIP_BITS {
                    break;
                }
                // End-of-block counts as one step: it cannot follow coefficient 63, and
                // there the next block's DC code may merely look like it.
                let step = match (run, s) {
                    (15, 0) => 16,
                    (0, 0) => 1,
                    (_, 0) => break,
                    _ => run + 1,
                };
                if advance + step > 64 {
                    break;
                }
                used += len + s;
                advance += step;
                if s == 0 && run != 15 {
                    eob = SKIP_EOB;
                    break;
                }
            }
            *entry = (eob | advance << 5 | used) as u16;
        }
        Some(AcTable { codes, fast, skip })
    }
}

/// MSB-first bit reader over one entropy-coded segment. Past its end (a marker or the end
/// of the data) it feeds zero bytes and counts them, so that reading into them can be
/// detected afterwards as truncation.
///
/// It is `Copy`, and its slow paths take and return it by value, so that the hot loops,
/// which work on a local copy, keep its state in registers.
#[derive(Clone, Copy)]
struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
    buf: u64,
    nbits: u32,
    fake: u32,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8], pos: usize) -> Self {
        Bits {
            data,
            pos,
            buf: 0,
            nbits: 0,
            fake: 0,
        }
    }

    /// Makes at least 32 bits available: enough for any code plus its extra bits.
    #[inline(always)]
    fn ensure(&mut self) {
        if self.nbits < 32 {
            self.refill();
        }
    }

    #[inline(always)]
    fn refill(&mut self) {
        if let Some(word) = self.data.get(self.pos..).and_then(|d| d.first_chunk::<8>()) {
            let word = u64::from_be_bytes(*word);
            let inv = !word;
            // Fast path: no 0xFF among the 8 bytes, so no stuffing and no marker. Bytes
            // beyond the whole ones counted may land in the low bits: they are the true
            // next bits, and the next refill ORs the same values in again.
            if inv.wrapping_sub(0x0101_0101_0101_0101) & !inv & 0x8080_8080_8080_8080 == 0 {
                self.buf |= word >> self.nbits;
                let bytes = (63 - self.nbits) >> 3;
                self.pos += bytes as usize;
                self.nbits += bytes * 8;
                return;
            }
        }
        *self = self.refill_slow();
    }

    #[inline(never)]
    fn refill_slow(mut self) -> Self {
        while self.nbits <= 56 {
            let byte = match self.data.get(self.pos) {
                Some(&0xFF) if self.data.get(self.pos + 1) == Some(&0) => {
                    self.pos += 2;
                    0xFF
                }
                Some(&0xFF) | None => {
                    self.fake = self.fake.saturating_add(1);
                    0
                }
                Some(&b) => {
                    self.pos += 1;
                    b
                }
            };
            self.buf |= u64::from(byte) << (56 - self.nbits);
            self.nbits += 8;
        }
        self
    }

    #[inline(always)]
    fn peek<const B: u32>(&self) -> usize {
        (self.buf >> (64 - B)) as usize
    }

    #[inline(always)]
    fn consume(&mut self, n: u32) {
        self.buf <<= n;
        self.nbits -= n;
    }

    /// Takes `s` bits (0..=16) as an unsigned value.
    #[inline(always)]
    fn take(&mut self, s: u32) -> i32 {
        let v = ((self.buf >> 1) >> (63 - s)) as i32;
        self.consume(s);
        v
    }

    /// Whether decoding has used bits that were not in the data.
    fn overran(&self) -> bool {
        self.fake.saturating_mul(8) > self.nbits
    }

    /// Decodes one symbol; for codes the fast tables miss.
    #[inline(always)]
    fn symbol(&mut self, codes: &Codes) -> Option<u32> {
        let (len, sym) = codes.decode(self.buf)?;
        self.consume(len);
        Some(sym)
    }

    /// Decodes a DC difference. Needs `ensure` first.
    #[inline(always)]
    fn dc(&mut self, t: &DcTable) -> Option<i32> {
        let e = t.fast[self.peek::<FAST_BITS>()];
        if e != 0 {
            self.consume((e & 0xFF) as u32);
            return Some(e >> 8);
        }
        let s = self.symbol(&t.codes)?;
        Some(extend(self.take(s), s))
    }

    /// Skips AC coefficients from zigzag index `k` to `end` (64, or the end of a
    /// progressive band, exclusive). Returns how many further blocks the band's
    /// end-of-band run covers (progressive EOBn; 0 in sequential files).
    #[inline(always)]
    fn skip_ac(&mut self, t: &AcTable, mut k: u32, end: u32) -> Option<u32> {
        loop {
            self.ensure();
            let e = u32::from(t.skip[self.peek::<SKIP_BITS>()]);
            let (len, advance) = (e & 31, (e >> 5) & 127);
            if len != 0 && k + advance <= end {
                self.consume(len);
                k += advance;
                if e & SKIP_EOB != 0 || k >= end {
                    return Some(0);
                }
            } else {
                let sym = self.symbol(&t.codes)?;
                let (run, s) = (sym >> 4, sym & 15);
                if s == 0 {
                    if run != 15 {
                        return Some(self.eob_run(run));
                    }
                    k += 16;
                } else {
                    self.consume(s);
                    k += run + 1;
                }
                if k >= end {
                    return Some(0);
                }
            }
        }
    }

    /// Decodes AC coefficients from zigzag index `k` to `end` (exclusive), keeping those of
    /// the top-left `N`x`N` (quantized, row-major in `blk`) and skipping the rest. Returns
    /// the end-of-band run as `skip_ac` does.
    #[inline(always)]
    fn ac<const N: usize>(
        &mut self,
        t: &AcTable,
        blk: &mut [i32; 17],
        mut k: u32,
        end: u32,
    ) -> Option<u32> {
        let map = const { zigzag_map(N) };
        let last = const { last_kept(N) }.min(end - 1);
        while k <= last {
            self.ensure();
            let e = t.fast[self.peek::<FAST_BITS>()];
            if e & 0xFF != 0 {
                self.consume((e & 0xFF) as u32);
                k += ((e >> 8) & 0xFF) as u32;
                blk[usize::from(map[(k - 1) as usize])] = e >> 16;
            } else {
                let sym = self.symbol(&t.codes)?;
                let (run, s) = (sym >> 4, sym & 15);
                if s == 0 {
                    if run != 15 {
                        return Some(self.eob_run(run));
                    }
                    k += 16;
                    continue;
                }
                k += run;
                let v = extend(self.take(s), s);
                blk[usize::from(map[k as usize])] = v;
                k += 1;
            }
        }
        if k < end {
            self.skip_ac(t, k, end)
        } else {
            Some(0)
        }
    }

    /// Blocks after this one that an EOBn symbol also ends: 2^n - 1 plus n extra bits.
    fn eob_run(&mut self, n: u32) -> u32 {
        if n == 0 {
            0
        } else {
            (1 << n) - 1 + self.take(n) as u32
        }
    }
}

/// Finds the next marker at or after `from`: 0xFF followed by a byte that is neither 0x00
/// (stuffing) nor 0xFF (fill). Returns the marker byte and the position of its 0xFF.
fn find_marker(data: &[u8], mut from: usize) -> Option<(u8, usize)> {
    loop {
        // Eight bytes at a time while none is 0xFF: entropy data is mostly that.
        while let Some(chunk) = data.get(from..).and_then(|d| d.first_chunk::<8>()) {
            let inv = !u64::from_ne_bytes(*chunk);
            if inv.wrapping_sub(0x0101_0101_0101_0101) & !inv & 0x8080_8080_8080_8080 != 0 {
                break;
            }
            from += 8;
        }
        let at = from + data.get(from..)?.iter().position(|&b| b == 0xFF)?;
        match *data.get(at + 1)? {
            0x00 | 0xFF => from = at + 1,
            m => return Some((m, at)),
        }
    }
}

/// The body of the length-prefixed segment whose marker is at `at`.
fn segment(data: &[u8], at: usize) -> Option<&[u8]> {
    let len = usize::from(u16::from_be_bytes([*data.get(at + 2)?, *data.get(at + 3)?]));
    data.get(at + 4..at + 2 + len.checked_sub(2)? + 2)
}

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
    /// Baseline: decoded by a scan. Progressive: its first DC scan is done.
    done: bool,
    /// Progressive only: each block's kept coefficients, `n`x`n` row-major.
    coefs: Vec<i16>,
    /// Samples at this component's scale, `bw * n` wide.
    plane: Vec<u8>,
}

struct Frame {
    width: usize,
    height: usize,
    progressive: bool,
    hmax: usize,
    vmax: usize,
    mcux: usize,
    mcuy: usize,
    comps: Vec<Component>,
}

#[derive(Default)]
struct Decoder {
    qt: [Option<[u16; 64]>; 4],
    dc_specs: [Option<HuffSpec>; 4],
    ac_specs: [Option<HuffSpec>; 4],
    /// Lookup tables built from the specs, dropped when DHT redefines them.
    dc_tables: [Option<DcTable>; 4],
    ac_tables: [Option<AcTable>; 4],
    restart: usize,
    jfif: bool,
    adobe: Option<u8>,
    frame: Option<Frame>,
    scans: usize,
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
    fn run(&mut self, data: &[u8], n: usize, max_pixels: u64) -> Option<()> {
        if data.get(..2)? != [0xFF, 0xD8] {
            return None;
        }
        let mut pos = 2;
        while let Some((marker, at)) = find_marker(data, pos) {
            pos = at + 2;
            match marker {
                0xD9 => break,
                0xD0..=0xD8 | 0x01 => continue,
                _ => {}
            }
            let body = segment(data, at)?;
            pos = at + 4 + body.len();
            match marker {
                0xC0..=0xC2 => self.sof(body, marker == 0xC2, n, max_pixels)?,
                // Lossless, hierarchical, arithmetic coding, and DNL-defined heights.
                0xC3 | 0xC5..=0xC7 | 0xC9..=0xCB | 0xCD..=0xCF | 0xDC => return None,
                0xC4 => self.dht(body)?,
                0xDB => self.dqt(body)?,
                0xDD => {
                    self.restart = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]))
                }
                0xE0 => self.jfif |= body.starts_with(b"JFIF\0"),
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
                _ => {}
            }
        }
        Some(())
    }

    fn sof(&mut self, b: &[u8], progressive: bool, n: usize, max_pixels: u64) -> Option<()> {
        // Progressive files keep their detail in AC scans, which only 1/8 can skip.
        if self.frame.is_some() || b.len() < 6 || b[0] != 8 || (progressive && n != 1) {
            return None;
        }
        let height = usize::from(u16::from_be_bytes([b[1], b[2]]));
        let width = usize::from(u16::from_be_bytes([b[3], b[4]]));
        let nc = usize::from(b[5]);
        if width == 0 || height == 0 || (width as u64) * (height as u64) > max_pixels {
            return None;
        }
        if !(nc == 1 || nc == 3) || b.len() < 6 + 3 * nc {
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
                coefs: Vec::new(),
                plane: Vec::new(),
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
                c.coefs = vec![0; c.bw * c.bh * c.n * c.n];
            } else {
                c.plane = vec![0; c.bw * c.bh * c.n * c.n];
            }
        }
        self.frame = Some(Frame {
            width,
            height,
            progressive,
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
            self.ac_tables[id] = Some(AcTable::new(self.ac_specs[id].as_ref()?)?);
        }
        Some(())
    }

    /// Handles a scan whose header is `b` and whose entropy data starts at `pos`; returns
    /// where the next marker is.
    fn sos(&mut self, data: &[u8], b: &[u8], pos: usize) -> Option<usize> {
        let ns = usize::from(*b.first()?);
        if !(1..=4).contains(&ns) || b.len() < 1 + 2 * ns + 3 {
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
        let p = &b[1 + 2 * ns..];
        let (ss, se, ah, al) = (
            u32::from(p[0]),
            u32::from(p[1]),
            p[2] >> 4,
            u32::from(p[2] & 15),
        );
        let frame = self.frame.as_ref()?;
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
        if !frame.progressive {
            for s in &scan {
                self.dc_table(s.td)?;
                self.ac_table(s.ta)?;
            }
            let frame = self.frame.as_mut()?;
            let mut ctx = Vec::with_capacity(ns);
            for s in &scan {
                let c = &mut frame.comps[s.ci];
                let q = c.q?;
                ctx.push(BlockCtx {
                    dc: self.dc_tables[s.td].as_ref()?,
                    ac: self.ac_tables[s.ta].as_ref()?,
                    q0: i32::from(q[0]),
                    qf: idct_factors(&q, c.n),
                    n: c.n,
                    stride: c.bw * c.n,
                    plane: std::mem::take(&mut c.plane),
                });
                c.done = true;
            }
            let ok = decode_baseline(&mut bits, &geom, &scan, &mut ctx);
            for (s, c) in scan.iter().zip(ctx) {
                frame.comps[s.ci].plane = c.plane;
            }
            ok?;
        } else if ss == 0 {
            if se != 0 || al > 13 {
                return None;
            }
            if ah == 0 {
                for s in &scan {
                    self.dc_table(s.td)?;
                }
            } else if scan.iter().any(|s| !frame.comps[s.ci].done) {
                return None;
            }
            let frame = self.frame.as_mut()?;
            let tables: Vec<&DcTable> = scan
                .iter()
                .filter_map(|s| self.dc_tables[s.td].as_ref())
                .collect();
            let mut targets: Vec<CoefTarget> = scan
                .iter()
                .map(|s| CoefTarget::take(&mut frame.comps[s.ci]))
                .collect();
            let ok = run_scan(&mut bits, &geom, &scan, |bits, pred, sc, bx, by| {
                let t = &mut targets[sc];
                let at = t.at(bx, by);
                bits.ensure();
                let coef = t.coefs.get_mut(at)?;
                if ah == 0 {
                    *pred = i32::from((*pred + bits.dc(tables.get(sc)?)?) as i16);
                    *coef = (*pred << al) as i16;
                } else {
                    *coef |= (bits.take(1) << al) as i16;
                }
                Some(())
            });
            for (s, t) in scan.iter().zip(targets) {
                frame.comps[s.ci].coefs = t.coefs;
                frame.comps[s.ci].done |= ah == 0;
            }
            ok?;
        } else {
            let c = &frame.comps[scan[0].ci];
            // Only blocks decoded bigger than 1x1 (subsampled chroma) use AC coefficients,
            // and only the first pass over them: refinements are skipped unread.
            if ns != 1 || se < ss || se > 63 || al > 13 {
                return None;
            }
            let n = c.n;
            if ah != 0 || n == 1 || ss > last_kept(n) {
                return Some(find_marker_after_scan(data, pos)?.1);
            }
            self.ac_table(scan[0].ta)?;
            let frame = self.frame.as_mut()?;
            let table = self.ac_tables[scan[0].ta].as_ref()?;
            let mut target = CoefTarget::take(&mut frame.comps[scan[0].ci]);
            let map = zigzag_map(n);
            let kept: Vec<usize> = (ss..=se.min(last_kept(n)))
                .map(|k| usize::from(map[k as usize]))
                .filter(|&m| m < n * n)
                .collect();
            let ok = run_scan(&mut bits, &geom, &scan, |bits, eob_run, _, bx, by| {
                // The scan state reset at restarts is the end-of-band run here.
                if *eob_run > 0 {
                    *eob_run -= 1;
                    return Some(());
                }
                let mut blk = [0i32; 17];
                let run = if n == 2 {
                    bits.ac::<2>(table, &mut blk, ss, se + 1)?
                } else {
                    bits.ac::<4>(table, &mut blk, ss, se + 1)?
                };
                *eob_run = run as i32;
                let at = target.at(bx, by);
                let coefs = target.coefs.get_mut(at..at + n * n)?;
                for &m in &kept {
                    coefs[m] = (blk[m] << al) as i16;
                }
                Some(())
            });
            frame.comps[scan[0].ci].coefs = target.coefs;
            ok?;
        }
        if bits.overran() {
            return None;
        }
        Some(find_marker_after_scan(data, bits.pos)?.1)
    }

    /// Turns the decoded planes into the output image.
    fn finish(self, n: usize) -> Option<Scaled> {
        let mut frame = self.frame?;
        if frame.comps.iter().any(|c| !c.done) {
            return None;
        }
        if frame.progressive {
            for c in &mut frame.comps {
                c.plane = coefs_to_plane(c)?;
            }
        }
        let denom = 8 / n;
        let (ow, oh) = (frame.width.div_ceil(denom), frame.height.div_ceil(denom));
        let mut pixels = vec![0u8; ow * oh * frame.comps.len()];
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
        let (mut t0, mut t1, mut t2) = (Vec::new(), Vec::new(), Vec::new());
        for (y, out) in pixels.chunks_exact_mut(ow * 3).enumerate() {
            let (r0, r1, r2) = (
                c0.row(y, ow, &mut t0)?,
                c1.row(y, ow, &mut t1)?,
                c2.row(y, ow, &mut t2)?,
            );
            if rgb {
                for (((o, &a), &b), &c) in out.chunks_exact_mut(3).zip(r0).zip(r1).zip(r2) {
                    o.copy_from_slice(&[a, b, c]);
                }
            } else {
                ycc_to_rgb(r0, r1, r2, out);
            }
        }
        Some(Scaled {
            width: ow as u32,
            height: oh as u32,
            channels: 3,
            pixels,
        })
    }
}

/// A progressive component's coefficients, taken out of it while a scan fills them.
struct CoefTarget {
    coefs: Vec<i16>,
    bw: usize,
    nn: usize,
}

impl CoefTarget {
    fn take(c: &mut Component) -> CoefTarget {
        CoefTarget {
            coefs: std::mem::take(&mut c.coefs),
            bw: c.bw,
            nn: c.n * c.n,
        }
    }

    /// Where block (`bx`, `by`) starts.
    fn at(&self, bx: usize, by: usize) -> usize {
        (by * self.bw + bx) * self.nn
    }
}

/// A progressive component's samples, from the coefficients its scans left.
fn coefs_to_plane(c: &Component) -> Option<Vec<u8>> {
    let (n, q) = (c.n, c.q?);
    let stride = c.bw * n;
    let mut plane = vec![0u8; stride * c.bh * n];
    let qf = idct_factors(&q, n);
    for (i, coefs) in c.coefs.chunks_exact(n * n).enumerate() {
        let (bx, by) = (i % c.bw, i / c.bw);
        let mut blk = [0i32; 17];
        for (b, &v) in blk.iter_mut().zip(coefs) {
            *b = i32::from(v);
        }
        write_block(
            &blk,
            n,
            i32::from(q[0]),
            &qf,
            &mut plane,
            (by * stride + bx) * n,
            stride,
        )?;
    }
    Some(plane)
}

/// After a scan's entropy data from `pos`: the next marker that is not a restart marker.
fn find_marker_after_scan(data: &[u8], mut pos: usize) -> Option<(u8, usize)> {
    loop {
        let (m, at) = find_marker(data, pos)?;
        if !(0xD0..=0xD7).contains(&m) {
            return Some((m, at));
        }
        pos = at + 2;
    }
}

/// The 1/8 pixel of a block: its DC term, dequantized, as libjpeg's 1x1 IDCT rounds it.
#[inline(always)]
fn dc_pixel(dc: i32, q0: i32) -> u8 {
    ((dc * q0 + 4 + (128 << 3)) >> 3).clamp(0, 255) as u8
}

struct ScanGeom {
    mcux: usize,
    mcuy: usize,
    restart: usize,
}

/// Walks a scan's MCUs in order, handling restart markers, and calls `block` with the
/// component's scan state (DC predictor, or end-of-band run), its index in the scan and
/// the block's position. The state is zeroed at each restart.
#[inline(always)]
fn run_scan<F>(bits: &mut Bits, g: &ScanGeom, scan: &[ScanComp], mut block: F) -> Option<()>
where
    F: FnMut(&mut Bits, &mut i32, usize, usize, usize) -> Option<()>,
{
    let mut state = [0i32; 4];
    let mut left = g.restart;
    let mut next_rst = 0u8;
    for my in 0..g.mcuy {
        for mx in 0..g.mcux {
            if g.restart != 0 {
                if left == 0 {
                    *bits = restart(*bits, next_rst)?;
                    next_rst = (next_rst + 1) & 7;
                    state = [0; 4];
                    left = g.restart;
                }
                left -= 1;
            }
            for (sc, s) in scan.iter().enumerate() {
                for dy in 0..s.vs {
                    for dx in 0..s.hs {
                        block(bits, &mut state[sc], sc, mx * s.hs + dx, my * s.vs + dy)?;
                    }
                }
            }
        }
        // Stop early on truncated data rather than decoding zeros to the end.
        if bits.overran() {
            return None;
        }
    }
    Some(())
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
    q0: i32,
    qf: [f32; 16],
    n: usize,
    stride: usize,
    plane: Vec<u8>,
}

/// Decodes a baseline scan, writing each block as `n`x`n` samples into its plane.
fn decode_baseline(
    bits: &mut Bits,
    g: &ScanGeom,
    scan: &[ScanComp],
    ctx: &mut [BlockCtx],
) -> Option<()> {
    let mut local = *bits;
    let ok = run_scan(&mut local, g, scan, |bits, pred, sc, bx, by| {
        let c = &mut ctx[sc];
        bits.ensure();
        *pred = i32::from((*pred + bits.dc(c.dc)?) as i16);
        let at = (by * c.stride + bx) * c.n;
        let mut blk = [0i32; 17];
        blk[0] = *pred;
        match c.n {
            1 => {
                bits.skip_ac(c.ac, 1, 64)?;
                *c.plane.get_mut(at)? = dc_pixel(*pred, c.q0);
                return Some(());
            }
            2 => bits.ac::<2>(c.ac, &mut blk, 1, 64)?,
            _ => bits.ac::<4>(c.ac, &mut blk, 1, 64)?,
        };
        write_block(&blk, c.n, c.q0, &c.qf, &mut c.plane, at, c.stride)
    });
    *bits = local;
    ok
}

/// Writes the `n`x`n` samples of a block from its kept coefficients.
#[inline(always)]
fn write_block(
    blk: &[i32; 17],
    n: usize,
    q0: i32,
    qf: &[f32; 16],
    plane: &mut [u8],
    at: usize,
    stride: usize,
) -> Option<()> {
    let out = plane.get_mut(at..at + (n - 1) * stride + n)?;
    match n {
        1 => out[0] = dc_pixel(blk[0], q0),
        2 => idct2(blk, qf, out, stride),
        _ => idct4(blk, qf, out, stride),
    }
    Some(())
}

/// Per-coefficient factors for the `n`-point scaled IDCT of the top-left `n`x`n`
/// coefficients: an `n`-point DCT whose basis keeps the 8-point weights (1/sqrt(8) for DC,
/// 1/2 for the rest), which is what makes it the 1/(8/n) reduction of the 8x8 block.
fn idct_factors(q: &[u16; 64], n: usize) -> [f32; 16] {
    let weight = |u: usize| {
        let base = if u == 0 {
            std::f32::consts::FRAC_1_SQRT_2 / 2.0
        } else {
            0.5
        };
        // The 2-point kernel's only cosine, cos(pi/4), is folded in too.
        if n == 2 && u == 1 {
            base * std::f32::consts::FRAC_1_SQRT_2
        } else {
            base
        }
    };
    let mut f = [0f32; 16];
    for (k, &z) in ZIGZAG.iter().enumerate() {
        let (row, col) = (usize::from(z) / 8, usize::from(z) % 8);
        if row < n && col < n && n > 1 {
            f[row * n + col] = f32::from(q[k]) * weight(row) * weight(col);
        }
    }
    f
}

/// Level shift plus the 0.5 that turns the final truncation into rounding.
const BIAS: f32 = 128.5;

fn idct2(blk: &[i32; 17], qf: &[f32; 16], out: &mut [u8], stride: usize) {
    let a = blk[0] as f32 * qf[0] + BIAS;
    let b = blk[1] as f32 * qf[1];
    let c = blk[2] as f32 * qf[2];
    let d = blk[3] as f32 * qf[3];
    let (top0, top1) = (a + c, b + d);
    let (bot0, bot1) = (a - c, b - d);
    out[0] = (top0 + top1) as u8;
    out[1] = (top0 - top1) as u8;
    out[stride] = (bot0 + bot1) as u8;
    out[stride + 1] = (bot0 - bot1) as u8;
}

fn idct4(blk: &[i32; 17], qf: &[f32; 16], out: &mut [u8], stride: usize) {
    const C1: f32 = 0.923_879_5; // cos(pi/8)
    const C3: f32 = 0.382_683_43; // cos(3pi/8)
    const C4: f32 = std::f32::consts::FRAC_1_SQRT_2;
    let mut t = [0f32; 16];
    for ((t, &b), &q) in t.iter_mut().zip(blk).zip(qf) {
        *t = b as f32 * q;
    }
    t[0] += BIAS;
    // Columns, then rows.
    for c in 0..4 {
        let (f0, f1, f2, f3) = (t[c], t[4 + c], t[8 + c], t[12 + c]);
        let (e0, e1) = (f0 + f2 * C4, f0 - f2 * C4);
        let (o0, o1) = (f1 * C1 + f3 * C3, f1 * C3 - f3 * C1);
        t[c] = e0 + o0;
        t[4 + c] = e1 + o1;
        t[8 + c] = e1 - o1;
        t[12 + c] = e0 - o0;
    }
    for (r, row) in t.chunks_exact(4).enumerate() {
        let (f0, f1, f2, f3) = (row[0], row[1], row[2], row[3]);
        let (e0, e1) = (f0 + f2 * C4, f0 - f2 * C4);
        let (o0, o1) = (f1 * C1 + f3 * C3, f1 * C3 - f3 * C1);
        let o = &mut out[r * stride..r * stride + 4];
        o[0] = (e0 + o0) as u8;
        o[1] = (e1 + o1) as u8;
        o[2] = (e1 - o1) as u8;
        o[3] = (e0 - o0) as u8;
    }
}

/// One component's plane, read out a row at a time at output resolution.
struct RowSource<'a> {
    plane: &'a [u8],
    stride: usize,
    /// Size of the component at its scale (libjpeg's downsampled size).
    cw: usize,
    ch: usize,
    /// Upsampling ratios.
    rh: usize,
    rv: usize,
}

impl RowSource<'_> {
    /// Output row `y`, `ow` samples: the plane itself at full resolution, else upsampled
    /// into `tmp` as libjpeg's "fancy" triangle filter for 2x, replication otherwise.
    fn row<'s>(&'s self, y: usize, ow: usize, tmp: &'s mut Vec<u8>) -> Option<&'s [u8]> {
        let line = |r: usize| self.plane.get(r * self.stride..r * self.stride + self.cw);
        if self.rh == 1 && self.rv == 1 {
            return line(y).and_then(|l| l.get(..ow));
        }
        tmp.clear();
        let cy = y / self.rv;
        let cur = line(cy.min(self.ch - 1))?;
        let last = self.cw - 1;
        match (self.rh, self.rv) {
            (2, 2) => {
                let near = line(if y.is_multiple_of(2) {
                    cy.saturating_sub(1)
                } else {
                    (cy + 1).min(self.ch - 1)
                })?;
                let col = |x: usize| 3 * u32::from(cur[x]) + u32::from(near[x]);
                for x in 0..self.cw {
                    let this = 3 * col(x);
                    tmp.push(((this + col(x.saturating_sub(1)) + 8) >> 4) as u8);
                    tmp.push(((this + col((x + 1).min(last)) + 7) >> 4) as u8);
                }
            }
            (2, 1) => {
                for x in 0..self.cw {
                    let this = 3 * u32::from(cur[x]);
                    tmp.push(((this + u32::from(cur[x.saturating_sub(1)]) + 1) >> 2) as u8);
                    tmp.push(((this + u32::from(cur[(x + 1).min(last)]) + 2) >> 2) as u8);
                }
            }
            (1, 2) => {
                let (near, bias) = if y.is_multiple_of(2) {
                    (line(cy.saturating_sub(1))?, 1)
                } else {
                    (line((cy + 1).min(self.ch - 1))?, 2)
                };
                tmp.extend(
                    cur.iter()
                        .zip(near)
                        .map(|(&c, &n)| ((3 * u32::from(c) + u32::from(n) + bias) >> 2) as u8),
                );
            }
            _ => tmp.extend((0..ow).map(|x| cur[(x / self.rh).min(last)])),
        }
        tmp.get(..ow)
    }
}

/// JFIF YCbCr to RGB with libjpeg's 16-bit fixed-point coefficients and rounding.
fn ycc_to_rgb(y: &[u8], cb: &[u8], cr: &[u8], out: &mut [u8]) {
    for (((o, &y), &cb), &cr) in out.chunks_exact_mut(3).zip(y).zip(cb).zip(cr) {
        let (y, cb, cr) = (i32::from(y), i32::from(cb) - 128, i32::from(cr) - 128);
        let r = y + ((91_881 * cr + 32_768) >> 16);
        let g = y + ((-22_554 * cb - 46_802 * cr + 32_768) >> 16);
        let b = y + ((116_130 * cb + 32_768) >> 16);
        o[0] = r.clamp(0, 255) as u8;
        o[1] = g.clamp(0, 255) as u8;
        o[2] = b.clamp(0, 255) as u8;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! fixtures {
        ($($name:literal),* $(,)?) => {
            &[$(($name, include_bytes!(concat!("../../tests/fixtures/", $name, ".jpg")) as &[u8])),*]
        };
    }

    const GOOD: &[(&str, &[u8])] = fixtures![
        "baseline_420",
        "baseline_422",
        "baseline_444",
        "progressive",
        "grayscale",
        "restart_interval",
        "odd_333x777",
        "thin_640x1",
        "tiny_1x1",
        "exif_orientation_1",
        "exif_orientation_2",
        "exif_orientation_3",
        "exif_orientation_4",
        "exif_orientation_5",
        "exif_orientation_6",
        "exif_orientation_7",
        "exif_orientation_8",
    ];

    const BAD: &[(&str, &[u8])] = fixtures![
        "bad_empty",
        "bad_png_named",
        "bad_random",
        "bad_text",
        "bad_truncated"
    ];

    /// zune-jpeg's full-scale decode: width, height, channels, pixels.
    fn full_decode(data: &[u8]) -> (usize, usize, usize, Vec<u8>) {
        let cursor = zune_jpeg::zune_core::bytestream::ZCursor::new(data);
        let mut decoder = zune_jpeg::JpegDecoder::new(cursor);
        let pixels = decoder.decode().expect("zune-jpeg decodes the fixture");
        let info = decoder.info().expect("headers were decoded");
        let (w, h) = (usize::from(info.width), usize::from(info.height));
        (w, h, pixels.len() / (w * h), pixels)
    }

    /// Averages `denom`x`denom` boxes, partial boxes at the edges over what exists.
    fn box_average(full: &[u8], w: usize, h: usize, ch: usize, denom: usize) -> Vec<f64> {
        let (ow, oh) = (w.div_ceil(denom), h.div_ceil(denom));
        let mut out = vec![0f64; ow * oh * ch];
        for oy in 0..oh {
            for ox in 0..ow {
                let (ys, xs) = (
                    oy * denom..h.min(oy * denom + denom),
                    ox * denom..w.min(ox * denom + denom),
                );
                let count = (ys.len() * xs.len()) as f64;
                for c in 0..ch {
                    let sum: f64 = ys
                        .clone()
                        .flat_map(|y| {
                            xs.clone()
                                .map(move |x| f64::from(full[(y * w + x) * ch + c]))
                        })
                        .sum();
                    out[(oy * ow + ox) * ch + c] = sum / count;
                }
            }
        }
        out
    }

    fn psnr(ours: &[u8], reference: &[f64]) -> f64 {
        let mse = ours
            .iter()
            .zip(reference)
            .map(|(&a, &b)| (f64::from(a) - b).powi(2))
            .sum::<f64>()
            / ours.len() as f64;
        10.0 * (255.0 * 255.0 / mse.max(1e-9)).log10()
    }

    #[test]
    fn matches_box_averaged_full_decode() {
        for &(name, data) in GOOD {
            let head = header(data).expect("fixture has a frame header");
            let (w, h, mut ch, mut full) = full_decode(data);
            if head.components == 1 && ch == 3 {
                // zune-jpeg expands gray to RGB by default.
                full = full.iter().step_by(3).copied().collect();
                ch = 1;
            }
            assert_eq!(
                (head.width as usize, head.height as usize),
                (w, h),
                "{name}"
            );
            for denom in [2u8, 4, 8] {
                let got = decode_scaled(data, denom, u64::MAX);
                if head.progressive && denom != 8 {
                    assert!(
                        got.is_none(),
                        "{name} 1/{denom}: progressive goes to the fallback"
                    );
                    continue;
                }
                let got = got.unwrap_or_else(|| panic!("{name} 1/{denom}: fast path declined"));
                let d = usize::from(denom);
                assert_eq!(
                    (got.width as usize, got.height as usize),
                    (w.div_ceil(d), h.div_ceil(d)),
                    "{name}"
                );
                assert_eq!(usize::from(got.channels), ch, "{name}");
                assert_eq!(
                    got.pixels.len(),
                    w.div_ceil(d) * h.div_ceil(d) * ch,
                    "{name}"
                );
                let db = psnr(&got.pixels, &box_average(&full, w, h, ch, d));
                let fine = head.components == 1 || name.contains("444") || name.starts_with("odd");
                let min = if fine { 35.0 } else { 30.0 };
                eprintln!("{name} 1/{denom}: {db:.1} dB");
                assert!(db >= min, "{name} 1/{denom}: {db:.1} dB < {min}");
            }
        }
    }

    #[test]
    fn scales_other_than_2_4_8_decline() {
        let data = GOOD[0].1;
        for denom in [0u8, 1, 3, 16] {
            assert!(decode_scaled(data, denom, u64::MAX).is_none(), "1/{denom}");
        }
    }

    #[test]
    fn max_pixels_is_respected() {
        let data = GOOD[0].1; // 640x384
        assert!(decode_scaled(data, 8, 640 * 384 - 1).is_none());
        assert!(decode_scaled(data, 8, 640 * 384).is_some());
    }

    #[test]
    fn bad_files_decline() {
        for &(name, data) in BAD {
            for denom in [2u8, 4, 8] {
                assert!(
                    decode_scaled(data, denom, u64::MAX).is_none(),
                    "{name} 1/{denom}"
                );
            }
        }
    }

    #[test]
    fn truncated_files_decline_or_keep_their_size() {
        for &(name, data) in GOOD {
            let head = header(data).expect("fixture has a frame header");
            let len = data.len();
            for cut in [
                0,
                1,
                2,
                3,
                20,
                200,
                600,
                len / 3,
                len / 2,
                len * 3 / 4,
                len - 200,
                len - 20,
                len - 3,
            ] {
                for denom in [2u8, 4, 8] {
                    let Some(got) = decode_scaled(&data[..cut.min(len)], denom, u64::MAX) else {
                        continue;
                    };
                    let d = denom as u32;
                    assert_eq!(
                        (got.width, got.height),
                        (head.width.div_ceil(d), head.height.div_ceil(d))
                    );
                    assert_eq!(
                        got.pixels.len(),
                        (got.width * got.height) as usize * usize::from(got.channels)
                    );
                    // Baseline entropy data cut in half cannot decode.
                    assert!(
                        head.progressive || cut > len / 2,
                        "{name} cut at {cut} decoded at 1/{denom}"
                    );
                }
            }
        }
    }

    #[test]
    fn flipped_bytes_never_panic() {
        for &(_, data) in GOOD {
            let mut copy = data.to_vec();
            // Every byte of the headers, then a spread through the entropy data.
            let offsets = (0..copy.len().min(700)).chain((700..copy.len()).step_by(97));
            for (i, at) in offsets.enumerate() {
                let (old, denom) = (copy[at], [2u8, 4, 8][i % 3]);
                for flip in [0xFF, 0x80, 0x01] {
                    copy[at] = old ^ flip;
                    if let Some(got) = decode_scaled(&copy, denom, 1 << 24) {
                        assert_eq!(
                            got.pixels.len(),
                            (got.width * got.height) as usize * usize::from(got.channels)
                        );
                    }
                }
                copy[at] = old;
            }
        }
    }

    #[test]
    fn adobe_transform_0_means_rgb() {
        let data = fixtures!["baseline_444"][0].1;
        let ycc = decode_scaled(data, 4, u64::MAX).expect("decodes");
        // Replace the JFIF segment (which would mean YCbCr) by an Adobe one saying RGB.
        let (_, app0) = find_marker(data, 2).expect("first segment");
        assert_eq!(data[app0 + 1], 0xE0);
        let rest = app0 + 2 + usize::from(u16::from_be_bytes([data[app0 + 2], data[app0 + 3]]));
        let mut adobe = vec![0xFF, 0xD8, 0xFF, 0xEE, 0, 14];
        adobe.extend_from_slice(b"Adobe\0\x64\0\0\0\0\0");
        adobe.extend_from_slice(&data[rest..]);
        let raw = decode_scaled(&adobe, 4, u64::MAX).expect("decodes");
        assert_eq!(
            (raw.width, raw.height, raw.channels),
            (ycc.width, ycc.height, 3)
        );
        let (mut y, mut cb, mut cr) = (Vec::new(), Vec::new(), Vec::new());
        for p in raw.pixels.chunks_exact(3) {
            y.push(p[0]);
            cb.push(p[1]);
            cr.push(p[2]);
        }
        let mut converted = vec![0; raw.pixels.len()];
        ycc_to_rgb(&y, &cb, &cr, &mut converted);
        assert_eq!(converted, ycc.pixels);
    }
}
