//! Reduced-scale JPEG decoding: 1/2, 1/4 or 1/8 straight from the DCT coefficients.
//!
//! zune-jpeg, our full decoder, only decodes at full scale. Shrinking a 5120x2880 photo to
//! 224 pixels that way spends most of its time in IDCT, upsampling and colour conversion
//! of pixels that the resizer then throws away. libjpeg's `scale_denom` trick avoids that:
//! at 1/8 only the DC coefficient of each 8x8 block is needed (one output pixel per block);
//! at 1/4 and 1/2 a 2x2 or 4x4 IDCT of the low-frequency coefficients gives the block.
//! Chroma subsampled 2x both ways is decoded at twice the luma's block size instead of
//! being upsampled (as libjpeg does); other subsampling gets libjpeg's triangle filter.
//!
//! This module owns that fast path: baseline and extended Huffman at every scale, and
//! progressive Huffman at 1/8, where the AC scans are skipped unread except the first pass
//! over the few chroma coefficients that 2x2 chroma blocks need. 8-bit only, grayscale or
//! three-component YCbCr/RGB. Anything else, and any file that looks damaged, yields
//! `None`, and the caller falls back to zune-jpeg at full scale, which also gives the
//! authoritative error.
//!
//! Speed comes from the entropy decoder, which dominates at these scales: a 64-bit bit
//! buffer refilled 8 bytes at a time when they hold no 0xFF, lookup tables that decode a
//! DC difference or an AC coefficient (code plus extra bits) in one step, and for the AC
//! coefficients nobody needs a table that skips several of them in one step. The 4x4 IDCT
//! runs on batches of blocks so that it vectorizes; it and the colour conversion are
//! compiled twice, for the x86-64 baseline and for AVX2, picked at run time
//! ([`has_avx2`]). The only `unsafe` is calling the AVX2 copies.

use std::cell::RefCell;
use std::rc::Rc;

/// Pixels decoded at 1/denom scale.
pub struct Scaled {
    pub width: u32,
    pub height: u32,
    /// 1 = gray, 4 = RGBX (RGB and a spare 0xFF byte: see [`super::Pixels`]).
    pub channels: u8,
    /// Interleaved, row-major, no padding.
    pub pixels: Vec<u8>,
}

/// What the markers before the first scan say: the frame header, and the EXIF payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header<'a> {
    pub width: u32,
    pub height: u32,
    pub components: u8,
    pub progressive: bool,
    /// The TIFF structure of the last APP1 "Exif" segment (as zune-jpeg keeps the last).
    pub exif: Option<&'a [u8]>,
}

/// Reads the markers up to the first scan without decoding anything or building tables.
/// `None` if there is no frame header before the first scan, the marker structure breaks
/// first, or the file is not a JPEG: callers then ask zune-jpeg, whose error says why.
pub fn header(data: &[u8]) -> Option<Header<'_>> {
    if data.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let (mut pos, mut frame, mut exif) = (2, None, None);
    loop {
        let (marker, at) = find_marker(data, pos)?;
        pos = at + 2;
        match marker {
            0xD0..=0xD9 | 0x01 => continue,
            0xDA => break,
            _ => {}
        }
        let body = segment(data, at)?;
        pos = at + 2 + 2 + body.len();
        match marker {
            0xC4 | 0xC8 | 0xCC => {}
            0xC0..=0xCF => {
                if body.len() < 6 {
                    return None;
                }
                frame = frame.or(Some((body, marker)));
            }
            0xE1 => {
                if let Some(tiff) = body.strip_prefix(b"Exif\0\0") {
                    exif = Some(tiff);
                }
            }
            _ => {}
        }
    }
    let (body, marker) = frame?;
    Some(Header {
        height: u32::from(u16::from_be_bytes([body[1], body[2]])),
        width: u32::from(u16::from_be_bytes([body[3], body[4]])),
        components: body[5],
        progressive: matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE),
        exif,
    })
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
const SKIP_EOB: u32 = 1 << 13;
/// More scans than any real encoder writes: a cap on the work a hostile file can ask for.
const MAX_SCANS: usize = 128;

/// Row-major position in the 8x8 block of each zigzag index.
const ZIGZAG: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// For an `n`x`n` reduced block: where each zigzag index lands in it (row-major), or the
/// spare slot `n*n` for coefficients outside it and for indices past the block's end, so
/// that storing a coefficient needs no branch.
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
#[derive(Clone, PartialEq, Eq)]
struct HuffSpec {
    counts: [u8; 17],
    symbols: Vec<u8>,
}

/// A table's codes as (code, length, symbol).
type CodeList = Vec<(u16, u32, u8)>;

/// Canonical decoding of one symbol, for codes the fast tables do not cover.
struct Codes {
    /// `len << 8 | symbol` by the next FAST_BITS bits; 0 when the code is longer.
    look: Box<[u16; 1 << FAST_BITS]>,
    maxcode: [i32; 17],
    valoff: [i32; 17],
    symbols: Vec<u8>,
}

impl Codes {
    /// Checks the table is a prefix code of symbols up to `max_symbol` and builds the
    /// decoder, also returning the codes; `None` if it is not.
    fn new(spec: &HuffSpec, max_symbol: u8) -> Option<(Codes, CodeList)> {
        let mut codes = Vec::with_capacity(spec.symbols.len());
        let mut maxcode = [-1i32; 17];
        let mut valoff = [0i32; 17];
        let mut code = 0u32;
        for len in 1..=16u32 {
            valoff[len as usize] = codes.len() as i32 - code as i32;
            for _ in 0..spec.counts[len as usize] {
                let sym = *spec.symbols.get(codes.len())?;
                if sym > max_symbol {
                    return None;
                }
                codes.push((code as u16, len, sym));
                code += 1;
            }
            if code > 1 << len {
                return None;
            }
            maxcode[len as usize] = code as i32 - 1;
            code <<= 1;
        }
        let mut look = Box::new([0u16; 1 << FAST_BITS]);
        for (e, &(len, sym)) in look.iter_mut().zip(&look_table(&codes, FAST_BITS)) {
            *e = (len as u16) << 8 | u16::from(sym);
        }
        let symbols = spec.symbols.clone();
        Some((
            Codes {
                look,
                maxcode,
                valoff,
                symbols,
            },
            codes,
        ))
    }

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

    /// The `(length, symbol)` entries of `look`.
    fn fast_entries(&self) -> impl Iterator<Item = (usize, (u32, u32))> + '_ {
        self.look
            .iter()
            .map(|&e| (u32::from(e >> 8), u32::from(e & 0xFF)))
            .enumerate()
    }
}

/// `(len, symbol)` of the code at the top of a `bits`-wide window, from the code list.
fn look_table(codes: &CodeList, bits: u32) -> Vec<(u32, u8)> {
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
        let (codes, _) = Codes::new(spec, 15)?;
        let mut fast = Box::new([0i32; 1 << FAST_BITS]);
        for (i, (len, s)) in codes.fast_entries() {
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
/// `skip`: as many whole symbols as fit in SKIP_BITS, `SKIP_EOB | advance << 6 | length`,
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
        let mut fast = Box::new([0i32; 1 << FAST_BITS]);
        for (i, (len, sym)) in codes.fast_entries() {
            let (run, s) = ((sym >> 4) as i32, sym & 15);
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
        // The symbols in a window are its first one, then those in the bits left after it:
        // built up for windows of 1, 2, .. SKIP_BITS bits, a `b`-bit window `v` at
        // `2^b - 1 + v`. A window's low bits are unknown, so symbols must fit inside it.
        let look = look_table(&list, SKIP_BITS);
        let mut chains = vec![0u16; (2 << SKIP_BITS) - 1];
        for b in 1..=SKIP_BITS {
            for v in 0..1usize << b {
                let (len, sym) = look[v << (SKIP_BITS - b)];
                let (run, s) = (u32::from(sym >> 4), u32::from(sym & 15));
                if len == 0 || len + s > b || (s == 0 && run != 0 && run != 15) {
                    continue;
                }
                let entry = if s == 0 && run == 0 {
                    // End-of-block counts as one step: it cannot follow coefficient 63,
                    // and there the next block's DC code may merely look like it.
                    SKIP_EOB | 1 << 6 | len
                } else {
                    let step = if s == 0 { 16 } else { run + 1 };
                    let left = b - len - s;
                    let rest = u32::from(chains[(1 << left) - 1 + (v & ((1 << left) - 1))]);
                    if step + ((rest >> 6) & 127) <= 64 {
                        rest + (step << 6) + len + s
                    } else {
                        step << 6 | (len + s)
                    }
                };
                chains[(1 << b) - 1 + v] = entry as u16;
            }
        }
        let mut skip = Box::new([0u16; 1 << SKIP_BITS]);
        for (e, &chain) in skip.iter_mut().zip(&chains[(1 << SKIP_BITS) - 1..]) {
            // An entry that holds no whole symbol advances too far to be taken.
            *e = if chain == 0 { 127 << 6 } else { chain };
        }
        Some(AcTable { codes, fast, skip })
    }
}

/// Building an AC table costs ~5% of decoding a 500x375 photo, and most files carry the same
/// few (the standard ones, or their encoder's): each thread keeps the last few it built.
fn cached_ac_table(spec: &HuffSpec) -> Option<Rc<AcTable>> {
    const KEEP: usize = 8;
    thread_local! {
        static RECENT: RefCell<Vec<(HuffSpec, Rc<AcTable>)>> = const { RefCell::new(Vec::new()) };
    }
    RECENT.with_borrow_mut(|recent| {
        if let Some(i) = recent.iter().position(|(s, _)| s == spec) {
            let hit = recent.remove(i);
            let table = Rc::clone(&hit.1);
            recent.push(hit);
            return Some(table);
        }
        let table = Rc::new(AcTable::new(spec)?);
        if recent.len() == KEEP {
            recent.remove(0);
        }
        recent.push((spec.clone(), Rc::clone(&table)));
        Some(table)
    })
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
        if !self.refill_fast() {
            *self = self.refill_slow();
        }
    }

    /// Refills from the next 8 bytes if none is 0xFF (no stuffing, no marker); false if
    /// the slow path is needed. Bytes beyond the whole ones counted may land in the low
    /// bits: they are the true next bits, and the next refill ORs the same values again.
    #[inline(always)]
    fn refill_fast(&mut self) -> bool {
        let Some(word) = self.data.get(self.pos..).and_then(|d| d.first_chunk::<8>()) else {
            return false;
        };
        let word = u64::from_be_bytes(*word);
        let inv = !word;
        if inv.wrapping_sub(0x0101_0101_0101_0101) & !inv & 0x8080_8080_8080_8080 != 0 {
            return false;
        }
        self.buf |= word >> self.nbits;
        let bytes = (63 - self.nbits) >> 3;
        self.pos += bytes as usize;
        self.nbits += bytes * 8;
        true
    }

    /// Refills byte by byte, undoing 0xFF00 stuffing; at a marker or the end of the data
    /// feeds zeros instead, counting them.
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

    /// Drops the bits of a table entry whose low 6 bits are its length (the shift masks
    /// its count to 6 bits, so the entry's other fields need no masking off).
    #[inline(always)]
    fn consume_entry(&mut self, e: u32) {
        self.buf = self.buf.wrapping_shl(e);
        self.nbits -= e & 63;
    }

    /// Drops `n` bits.
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
            // The hot loop makes no calls, so that the bit buffer stays in registers; it
            // leaves for the slow refill, long codes, and the end of a block without EOB.
            let mut b = *self;
            let done = loop {
                if b.nbits < 32 && !b.refill_fast() {
                    break false;
                }
                let e = u32::from(t.skip[b.peek::<SKIP_BITS>()]);
                let advance = (e >> 6) & 127;
                if k + advance > end {
                    break false;
                }
                b.consume_entry(e);
                k += advance;
                if e & SKIP_EOB != 0 || k >= end {
                    break true;
                }
            };
            *self = b;
            if done {
                return Some(0);
            }
            self.ensure();
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

    /// Decodes AC coefficients from zigzag index `k` to `end` (exclusive), keeping those of
    /// the top-left `N`x`N` (quantized, row-major, in lane `lane` of `blk`) and skipping the
    /// rest. Returns the end-of-band run as `skip_ac` does.
    #[inline(always)]
    fn ac<const N: usize, const L: usize>(
        &mut self,
        t: &AcTable,
        blk: &mut [[i32; L]; 17],
        lane: usize,
        mut k: u32,
        end: u32,
    ) -> Option<u32> {
        let lane = lane % L;
        let map = const { zigzag_map(N) };
        let last = const { last_kept(N) }.min(end - 1);
        while k <= last {
            // As in `skip_ac`: a call-free loop for the common case.
            let mut b = *self;
            while k <= last && (b.nbits >= 32 || b.refill_fast()) {
                let e = t.fast[b.peek::<FAST_BITS>()];
                if e & 0xFF == 0 {
                    break;
                }
                b.consume_entry(e as u32);
                k += ((e >> 8) & 0xFF) as u32;
                blk[usize::from(map[(k - 1) as usize & 127])][lane] = e >> 16;
            }
            *self = b;
            if k > last {
                break;
            }
            self.ensure();
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
            blk[usize::from(map[k as usize & 127])][lane] = v;
            k += 1;
        }
        if k < end {
            self.skip_ac(t, k, end)
        } else {
            Some(0)
        }
    }

    /// Decodes a sequential block's DC difference and skips its AC coefficients.
    ///
    /// This and [`Bits::block`] are the per-block entry points of the baseline scan loop.
    /// They are not inlined: in a small function the bit buffer stays in a register, while
    /// inlined into the scan loop it was spilled, adding a store and a load to every step.
    #[inline(never)]
    fn dc_block(&mut self, dc: &DcTable, ac: &AcTable) -> Option<i32> {
        self.ensure();
        let diff = self.dc(dc)?;
        self.skip_ac(ac, 1, 64)?;
        Some(diff)
    }

    /// Decodes a sequential block's DC difference, returned, and its AC coefficients,
    /// keeping those of the top-left `N`x`N` in lane `lane` of `blk`.
    #[inline(never)]
    fn block<const N: usize, const L: usize>(
        &mut self,
        dc: &DcTable,
        ac: &AcTable,
        blk: &mut [[i32; L]; 17],
        lane: usize,
    ) -> Option<i32> {
        self.ensure();
        let diff = self.dc(dc)?;
        self.ac::<N, L>(ac, blk, lane, 1, 64)?;
        Some(diff)
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
    data.get(at + 4..(at + 2 + len).max(at + 4))
}

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
    /// Baseline: decoded by a scan. Progressive: its first DC scan is done.
    done: bool,
    /// Progressive only: each block's kept coefficients, `n`x`n` row-major.
    coefs: Vec<i16>,
    /// Samples at this component's scale, `bw * n` wide.
    plane: Vec<u8>,
}

/// The SOF header, resolved.
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

/// Decoder state carried from marker to marker.
#[derive(Default)]
struct Decoder {
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
            self.ac_tables[id] = Some(cached_ac_table(self.ac_specs[id].as_ref()?)?);
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
                let sink = Sink::new(c.n, c.bw * c.n, std::mem::take(&mut c.plane), &q);
                ctx.push(BlockCtx {
                    dc: self.dc_tables[s.td].as_ref()?,
                    ac: self.ac_tables[s.ta].as_ref()?,
                    sink,
                });
                c.done = true;
            }
            let ok = decode_baseline(&mut bits, &geom, &scan, &mut ctx);
            for (s, c) in scan.iter().zip(ctx) {
                frame.comps[s.ci].plane = c.sink.plane;
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
            let ok = if ah == 0 {
                run_scan(&mut bits, &geom, &scan, |bits, pred, sc, bx, by| {
                    let t = &mut targets[sc];
                    let at = t.at(bx, by);
                    bits.ensure();
                    *pred = i32::from((*pred + bits.dc(tables.get(sc)?)?) as i16);
                    *t.coefs.get_mut(at)? = (*pred << al) as i16;
                    Some(())
                })
            } else {
                run_scan(&mut bits, &geom, &scan, |bits, _, sc, bx, by| {
                    let t = &mut targets[sc];
                    let at = t.at(bx, by);
                    bits.ensure();
                    *t.coefs.get_mut(at)? |= (bits.take(1) << al) as i16;
                    Some(())
                })
            };
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
                let mut blk = [[0i32; 1]; 17];
                let run = if n == 2 {
                    bits.ac::<2, 1>(table, &mut blk, 0, ss, se + 1)?
                } else {
                    bits.ac::<4, 1>(table, &mut blk, 0, ss, se + 1)?
                };
                *eob_run = run as i32;
                let at = target.at(bx, by);
                let coefs = target.coefs.get_mut(at..at + n * n)?;
                for &m in &kept {
                    coefs[m] = (blk[m][0] << al) as i16;
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
        colour_rows(&mut pixels, ow, [c0, c1, c2], rgb)?;
        Some(Scaled {
            width: ow as u32,
            height: oh as u32,
            channels: 4,
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
    let q = c.q?;
    if c.n == 1 {
        // One sample per block, in the same order as the blocks.
        let q0 = i32::from(q[0]);
        return Some(
            c.coefs
                .iter()
                .map(|&dc| dc_pixel(i32::from(dc), q0))
                .collect(),
        );
    }
    let nn = c.n * c.n;
    let mut sink = Sink::new(c.n, c.bw * c.n, vec![0; c.coefs.len()], &q);
    for (by, row) in c.coefs.chunks_exact(c.bw * nn).enumerate() {
        for (bx, coefs) in row.chunks_exact(nn).enumerate() {
            let mut blk = [0i32; 17];
            for (b, &v) in blk.iter_mut().zip(coefs) {
                *b = i32::from(v);
            }
            sink.put(&blk, bx, by)?;
        }
    }
    sink.flush()?;
    Some(sink.plane)
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

/// A scan's size in MCUs, and its restart interval in MCUs (0 for none).
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
    // An MCU's blocks in coding order: (index in the scan, blocks per MCU across and
    // down, offset in the MCU across and down).
    let mut slots = Vec::with_capacity(10);
    for (sc, s) in scan.iter().enumerate() {
        for dy in 0..s.vs {
            for dx in 0..s.hs {
                slots.push((sc & 3, s.hs, s.vs, dx, dy));
            }
        }
    }
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
            for &(sc, hs, vs, dx, dy) in &slots {
                block(bits, &mut state[sc], sc, mx * hs + dx, my * vs + dy)?;
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
    sink: Sink,
}

/// Decodes a baseline scan, writing each block as `n`x`n` samples into its plane.
fn decode_baseline(
    bits: &mut Bits,
    g: &ScanGeom,
    scan: &[ScanComp],
    ctx: &mut [BlockCtx],
) -> Option<()> {
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
                let mut blk = [[0i32; 1]; 17];
                blk[0][0] = add(bits.block::<2, 1>(c.dc, c.ac, &mut blk, 0)?);
                c.sink.put(&blk.map(|[v]| v), bx, by)
            }
            _ => {
                // Straight into the IDCT batch, whose coefficients start out zero.
                let (coefs, lane) = c.sink.lane();
                coefs[0][lane] = add(bits.block::<4, LANES>(c.dc, c.ac, coefs, lane)?);
                c.sink.queue(bx, by)
            }
        }
    })?;
    ctx.iter_mut().try_for_each(|c| c.sink.flush())
}

/// A component's plane being filled block by block, and the scaled IDCT that fills it.
///
/// The reduction of an 8x8 block to `n`x`n` keeps its top-left `n`x`n` coefficients and
/// applies the `n`-point IDCT with the 8-point basis weights (1/sqrt(8) for DC, 1/2 for the
/// rest), so that DC still gives the block mean.
struct Sink {
    plane: Vec<u8>,
    stride: usize,
    n: usize,
    q0: i32,
    /// Dequantization with the IDCT's weights folded in, row-major in the `n`x`n` block.
    q: [f32; 16],
    /// 4x4 blocks waiting for their IDCT, which runs on [`LANES`] blocks at once.
    batch: Box<Batch>,
}

/// Blocks per batched 4x4 IDCT: one per SIMD lane (two SSE registers, one AVX).
const LANES: usize = 8;

/// Kept coefficients of up to [`LANES`] blocks, coefficient-major so that the IDCT loop
/// over blocks vectorizes (plus the spare row that decoding writes discarded ones to, never
/// read), and where each block goes. The kept ones are zero after each flush.
struct Batch {
    coefs: [[i32; LANES]; 17],
    at: [usize; LANES],
    len: usize,
}

impl Sink {
    fn new(n: usize, stride: usize, plane: Vec<u8>, q: &[u16; 64]) -> Sink {
        let weight = |u: usize| if u == 0 { 0.125f32.sqrt() } else { 0.5 };
        // The 2-point kernel's only cosine, cos(pi/4), is folded in too.
        let cos = |u: usize| {
            if n == 2 && u > 0 {
                std::f32::consts::FRAC_1_SQRT_2
            } else {
                1.0
            }
        };
        let mut f = [0f32; 16];
        for (k, &z) in ZIGZAG.iter().enumerate() {
            let (v, u) = (usize::from(z) / 8, usize::from(z) % 8);
            if v < n && u < n {
                f[v * n + u] = f32::from(q[k]) * weight(u) * weight(v) * cos(u) * cos(v);
            }
        }
        Sink {
            plane,
            stride,
            n,
            q0: i32::from(q[0]),
            q: f,
            batch: Box::new(Batch {
                coefs: [[0; LANES]; 17],
                at: [0; LANES],
                len: 0,
            }),
        }
    }

    /// Writes (or queues) block (`bx`, `by`) from its kept coefficients.
    #[inline(always)]
    fn put(&mut self, blk: &[i32; 17], bx: usize, by: usize) -> Option<()> {
        let (at, stride, q) = ((by * self.stride + bx) * self.n, self.stride, &self.q);
        match self.n {
            1 => self.put_dc(blk[0], bx, by)?,
            2 => {
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
            }
            _ => {
                let (coefs, lane) = self.lane();
                for (lanes, &v) in coefs.iter_mut().zip(blk) {
                    lanes[lane] = v;
                }
                self.queue(bx, by)?;
            }
        }
        Some(())
    }

    /// Writes the sample of a 1x1 block from its DC coefficient.
    #[inline(always)]
    fn put_dc(&mut self, dc: i32, bx: usize, by: usize) -> Option<()> {
        *self.plane.get_mut(by * self.stride + bx)? = dc_pixel(dc, self.q0);
        Some(())
    }

    /// The batch's coefficients and the lane of the next 4x4 block.
    #[inline(always)]
    fn lane(&mut self) -> (&mut [[i32; LANES]; 17], usize) {
        (&mut self.batch.coefs, self.batch.len % LANES)
    }

    /// Queues block (`bx`, `by`), whose coefficients are in its lane, for the 4x4 IDCT.
    #[inline(always)]
    fn queue(&mut self, bx: usize, by: usize) -> Option<()> {
        let batch = &mut self.batch;
        batch.at[batch.len % LANES] = (by * self.stride + bx) * self.n;
        batch.len += 1;
        if batch.len == LANES {
            self.flush()?;
        }
        Some(())
    }

    /// Runs the 4x4 IDCT on the queued blocks.
    fn flush(&mut self) -> Option<()> {
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            #[target_feature(enable = "avx2")]
            fn avx2(sink: &mut Sink) -> Option<()> {
                sink.flush_inner()
            }
            // SAFETY: the CPU has AVX2, the only requirement of `avx2`.
            return unsafe { avx2(self) };
        }
        self.flush_inner()
    }

    #[inline(always)]
    fn flush_inner(&mut self) -> Option<()> {
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

/// Whether the CPU has AVX2 (every Fargate and Lambda x86 host does). The loops that
/// vectorize across pixels or blocks (the 4x4 IDCT, upsampling, colour conversion) are
/// compiled twice: for the x86-64 baseline the binary targets, and, inlined into a
/// `#[target_feature(enable = "avx2")]` copy, twice as wide. Both compute the same results
/// (the same integer and IEEE float operations; Rust never fuses a multiply and an add).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn has_avx2() -> bool {
    std::arch::is_x86_feature_detected!("avx2")
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

/// Fills `pixels` (RGBX, `ow` wide) from three components, YCbCr unless `rgb`.
fn colour_rows(pixels: &mut [u8], ow: usize, rows: [&RowSource; 3], rgb: bool) -> Option<()> {
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

#[inline(always)]
fn colour_rows_inner(
    pixels: &mut [u8],
    ow: usize,
    [c0, c1, c2]: [&RowSource; 3],
    rgb: bool,
) -> Option<()> {
    let (mut t0, mut t1, mut t2) = (Vec::new(), Vec::new(), Vec::new());
    for (y, out) in pixels.chunks_exact_mut(ow * 4).enumerate() {
        let (r0, r1, r2) = (
            c0.row(y, ow, &mut t0)?,
            c1.row(y, ow, &mut t1)?,
            c2.row(y, ow, &mut t2)?,
        );
        if rgb {
            for (((o, &a), &b), &c) in out.chunks_exact_mut(4).zip(r0).zip(r1).zip(r2) {
                o.copy_from_slice(&[a, b, c, 0xFF]);
            }
        } else {
            ycc_to_rgbx(r0, r1, r2, out);
        }
    }
    Some(())
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
    #[inline(always)]
    fn row<'s>(&'s self, y: usize, ow: usize, tmp: &'s mut Vec<u8>) -> Option<&'s [u8]> {
        let line = |r: usize| self.plane.get(r * self.stride..r * self.stride + self.cw);
        if self.rh == 1 && self.rv == 1 {
            return line(y)?.get(..ow);
        }
        let (cw, cy) = (self.cw, y / self.rv);
        let cur = line(cy.min(self.ch - 1))?;
        // The row the vertical filter blends in: the one above for even output rows, below
        // for odd ones.
        let near = line(if y.is_multiple_of(2) {
            cy.saturating_sub(1)
        } else {
            (cy + 1).min(self.ch - 1)
        })?;
        tmp.resize(ow.max(2 * cw), 0);
        let out = &mut tmp[..];
        // Each adjacent input pair (a, b) gives the output right of a and the one left of b.
        let (first, rest) = out.split_first_mut()?;
        let (pairs, tail) = rest.split_at_mut(2 * cw - 2);
        let last = tail.first_mut()?;
        match (self.rh, self.rv) {
            (2, 2) => {
                let sum = |c: u8, n: u8| 3 * u16::from(c) + u16::from(n);
                *first = ((4 * sum(cur[0], near[0]) + 8) >> 4) as u8;
                *last = ((4 * sum(cur[cw - 1], near[cw - 1]) + 7) >> 4) as u8;
                // Each column zipped with the next (not indexed, nor `windows`): this
                // vectorizes.
                let columns = cur.iter().zip(near);
                for (o, ((&c0, &n0), (&c1, &n1))) in pairs
                    .chunks_exact_mut(2)
                    .zip(columns.clone().zip(columns.skip(1)))
                {
                    let (a, b) = (sum(c0, n0), sum(c1, n1));
                    o[0] = ((3 * a + b + 7) >> 4) as u8;
                    o[1] = ((3 * b + a + 8) >> 4) as u8;
                }
            }
            (2, 1) => {
                *first = cur[0];
                *last = cur[cw - 1];
                for (o, (&a, &b)) in pairs.chunks_exact_mut(2).zip(cur.iter().zip(&cur[1..])) {
                    let (a, b) = (u16::from(a), u16::from(b));
                    o[0] = ((3 * a + b + 2) >> 2) as u8;
                    o[1] = ((3 * b + a + 1) >> 2) as u8;
                }
            }
            (1, 2) => {
                let bias = if y.is_multiple_of(2) { 1 } else { 2 };
                for ((o, &c), &n) in out.iter_mut().zip(cur).zip(near) {
                    *o = ((3 * u16::from(c) + u16::from(n) + bias) >> 2) as u8;
                }
            }
            (rh, _) => {
                for (x, o) in out[..ow].iter_mut().enumerate() {
                    *o = cur[(x / rh).min(cw - 1)];
                }
            }
        }
        tmp.get(..ow)
    }
}

/// JFIF YCbCr to RGBX. Four bytes a pixel store as whole lanes, and the arithmetic is 16-bit
/// (each product's high half, as libjpeg-turbo's SIMD code does it), so that this vectorizes
/// 8 pixels at a time even on SSE2; RGB with 32-bit arithmetic was 6% of a small image's time.
/// Within 1 of the exact conversion (libjpeg's own fixed point is within 1 of it too).
#[inline(always)]
fn ycc_to_rgbx(y: &[u8], cb: &[u8], cr: &[u8], out: &mut [u8]) {
    // (a * b) >> 16: the high half of a 16-bit product.
    fn high(a: i16, b: i16) -> i16 {
        ((i32::from(a) * i32::from(b)) >> 16) as i16
    }
    for (((o, &y), &cb), &cr) in out.chunks_exact_mut(4).zip(y).zip(cb).zip(cr) {
        // Chroma with 2 fraction bits, so the high halves round well.
        let (y, cb, cr) = (
            i16::from(y),
            (i16::from(cb) - 128) << 2,
            (i16::from(cr) - 128) << 2,
        );
        // 1.402 = 1 + 0.402; 0.714136 = 1 - 0.285864; 1.772 = 2 - 0.228.
        let r = cr + high(cr, 26_345);
        let g = high(cr, 18_734) - cr - high(cb, 22_554);
        let b = 2 * cb - high(cb, 14_942);
        let channel = |v: i16| (y + ((v + 2) >> 2)).clamp(0, 255) as u8;
        o[0] = channel(r);
        o[1] = channel(g);
        o[2] = channel(b);
        o[3] = 0xFF;
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
                let wide = if ch == 3 { 4 } else { ch };
                assert_eq!(usize::from(got.channels), wide, "{name}");
                assert_eq!(
                    got.pixels.len(),
                    w.div_ceil(d) * h.div_ceil(d) * wide,
                    "{name}"
                );
                let ours: Vec<u8> = if ch == 3 {
                    got.pixels
                        .chunks_exact(4)
                        .flat_map(|p| [p[0], p[1], p[2]])
                        .collect()
                } else {
                    got.pixels.clone()
                };
                let db = psnr(&ours, &box_average(&full, w, h, ch, d));
                let fine = head.components == 1 || name.contains("444") || name.starts_with("odd");
                // Measured: 35.8 dB at the lowest (4:2:2 at 1/8), 45 and up for the fine ones.
                let min = if fine { 40.0 } else { 35.0 };
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

    /// Byte ranges of the segments that steer decoding: tables, frame, scan headers.
    fn header_segments(data: &[u8]) -> Vec<std::ops::Range<usize>> {
        let mut ranges = Vec::new();
        let mut pos = 2;
        while let Some((marker, at)) = find_marker(data, pos) {
            let Some(body) = segment(data, at) else { break };
            pos = at + 4 + body.len();
            if matches!(marker, 0xC0..=0xC2 | 0xC4 | 0xDA | 0xDB | 0xDD) {
                ranges.push(at..pos);
            }
            if marker == 0xDA {
                // Skip to the marker after the scan's data (restart markers are part of it).
                let Some((_, next)) = find_marker_after_scan(data, pos) else {
                    break;
                };
                pos = next;
            }
        }
        ranges
    }

    #[test]
    fn flipped_bytes_never_panic() {
        for &(name, data) in GOOD {
            let headers: Vec<usize> = header_segments(data).into_iter().flatten().collect();
            assert!(headers.len() > 100, "{name}: headers found");
            // Every header byte (a sample of them in the EXIF fixtures, whose tables are
            // baseline_420's), and a spread through everything else.
            let every = if name.starts_with("exif") { 5 } else { 1 };
            let offsets = headers
                .into_iter()
                .step_by(every)
                .chain((0..data.len()).step_by(131));
            let mut copy = data.to_vec();
            for (i, at) in offsets.enumerate() {
                let old = copy[at];
                copy[at] = old ^ [0xFF, 0x80, 0x01, 0x10][i % 4];
                if let Some(got) = decode_scaled(&copy, [8u8, 4, 2][i % 3], 1 << 24) {
                    let len = (got.width * got.height) as usize * usize::from(got.channels);
                    assert_eq!(got.pixels.len(), len);
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
            (ycc.width, ycc.height, 4)
        );
        let (mut y, mut cb, mut cr) = (Vec::new(), Vec::new(), Vec::new());
        for p in raw.pixels.chunks_exact(4) {
            y.push(p[0]);
            cb.push(p[1]);
            cr.push(p[2]);
        }
        let mut converted = vec![0; raw.pixels.len()];
        ycc_to_rgbx(&y, &cb, &cr, &mut converted);
        assert_eq!(converted, ycc.pixels);
    }

    /// The 16-bit conversion against JFIF's formulas, over every chroma pair at several
    /// lumas: within 1 everywhere, and the fourth byte always 0xFF.
    #[test]
    fn ycc_to_rgbx_is_within_1_of_the_exact_conversion() {
        let mut worst = 0f64;
        for y in (0..=255u8).step_by(15) {
            let cb: Vec<u8> = (0..=255).collect();
            for cr in 0..=255u8 {
                let mut out = vec![0u8; 256 * 4];
                ycc_to_rgbx(&[y; 256], &cb, &[cr; 256], &mut out);
                for (px, &cb) in out.chunks_exact(4).zip(&cb) {
                    let (fy, fb, fr) = (f64::from(y), f64::from(cb) - 128.0, f64::from(cr) - 128.0);
                    let exact = [
                        fy + 1.402 * fr,
                        fy - 0.344_136 * fb - 0.714_136 * fr,
                        fy + 1.772 * fb,
                    ];
                    for (&got, want) in px.iter().zip(exact) {
                        worst = worst.max((f64::from(got) - want.clamp(0.0, 255.0).round()).abs());
                    }
                    assert_eq!(px[3], 0xFF);
                }
            }
        }
        assert!(worst <= 1.0, "off by {worst}");
    }

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
        // The 4x4 IDCT, on batches of blocks whose samples span 0..=255 and beyond (clamped).
        let q: [u16; 64] = std::array::from_fn(|_| 1 + rand(16) as u16);
        let mut seen = [false; 256];
        for _ in 0..200 {
            let stride = 4 * LANES;
            let mut sinks = [0, 1].map(|_| Sink::new(4, stride, vec![0; 4 * stride], &q));
            let values: Vec<i32> = (0..16 * LANES).map(|_| rand(48) as i32 - 24).collect();
            for sink in &mut sinks {
                for (lane, coefs) in values.chunks_exact(16).take(LANES - 1).enumerate() {
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
            assert_eq!(dispatched.batch.coefs[..16], [[0; LANES]; 16]);
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
