//! Entropy decoding: the Huffman tables DHT defines, built into lookup tables that decode
//! a code plus its extra bits (or skip several AC coefficients) in one step, and [`Bits`],
//! the bit reader every scan decodes with. Also the zigzag order, which says where each
//! decoded coefficient lands in a block.

use std::cell::RefCell;
use std::rc::Rc;

use super::progressive::{Band, BlockCoefs, Coefs};

/// Bits looked up at once for one Huffman code plus its extra bits.
const FAST_BITS: u32 = 10;
/// Bits looked up at once by the table that skips several AC coefficients.
const SKIP_BITS: u32 = 12;
/// Set in a skip-table entry whose symbols end with end-of-block.
const SKIP_EOB: u32 = 1 << 13;

/// Row-major position in the 8x8 block of each zigzag index.
pub(super) const ZIGZAG: [u8; 64] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63,
];

/// For an `n`x`n` reduced block: where each zigzag index lands in it (row-major), or the
/// spare slot `n*n` for coefficients outside it and for indices past the block's end, so
/// that storing a coefficient needs no branch.
pub(super) const fn zigzag_map(n: usize) -> [u8; 128] {
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
pub(super) const fn last_kept(n: usize) -> u32 {
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
pub(super) struct HuffSpec {
    pub(super) counts: [u8; 17],
    pub(super) symbols: Vec<u8>,
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
            // As libjpeg: the all-ones code of a length is reserved, so a length whose
            // codes reach it makes the table bad ("bad Huffman table").
            if code >= 1 << len {
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

/// For `SELECT_IN_BYTE[j][b]`: the position of set bit `j` (from 0, lowest first) of
/// byte `b`, 8 where it has fewer.
const fn select_in_byte() -> [[u8; 256]; 8] {
    let mut t = [[8u8; 256]; 8];
    let mut b = 0;
    while b < 256 {
        let (mut bit, mut j) = (0, 0);
        while bit < 8 {
            if b >> bit & 1 != 0 {
                t[j][b] = bit as u8;
                j += 1;
            }
            bit += 1;
        }
        b += 1;
    }
    t
}

static SELECT_IN_BYTE: [[u8; 256]; 8] = select_in_byte();

/// Position of set bit `r` (from 0, lowest first) of `x`; 64 where it has no more than
/// `r`. Without a loop (Vigna's broadword select): the exit of a loop clearing `r` bits
/// was the refinement scans' costliest mispredicted branch.
#[inline(always)]
pub(super) fn select(x: u64, r: u32) -> u32 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut s = x - ((x >> 1) & 0x5555_5555_5555_5555);
    s = (s & 0x3333_3333_3333_3333) + ((s >> 2) & 0x3333_3333_3333_3333);
    s = (s + (s >> 4)) & 0x0F0F_0F0F_0F0F_0F0F;
    // Byte i: the set bits of bytes 0..=i.
    let sums = s.wrapping_mul(ONES);
    // The bytes whose running count is still <= r: their number is the byte holding bit r.
    let before = (((u64::from(r.min(64)) * ONES) | HIGH) - sums) & HIGH;
    let byte = ((before >> 7).wrapping_mul(ONES) >> 56) as u32;
    if byte >= 8 {
        return 64;
    }
    let place = byte * 8;
    let rank = r - (((sums << 8) >> place) & 0xFF) as u32;
    place + u32::from(SELECT_IN_BYTE[rank as usize & 7][((x >> place) & 0xFF) as usize])
}

/// How many extra bits follow a progressive AC symbol `r/s`: the coefficient's `s`; an
/// end-of-band run's `r` (EOBn); none for ZRL.
#[inline(always)]
fn prog_extra_bits(r: u32, s: u32) -> u32 {
    match (r, s) {
        (15, 0) => 0,
        (_, 0) => r,
        _ => s,
    }
}

/// A progressive AC symbol's value from its extra bits: the coefficient, the end-of-band run
/// (this block included), 0 for ZRL.
#[inline(always)]
fn prog_value(r: u32, s: u32, extra: i32) -> i32 {
    match (r, s) {
        (15, 0) => 0,
        (_, 0) => (1 << r) + extra,
        _ => extend(extra, s),
    }
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
pub(super) struct DcTable {
    codes: Codes,
    fast: Box<[i32; 1 << FAST_BITS]>,
}

impl DcTable {
    pub(super) fn new(spec: &HuffSpec) -> Option<DcTable> {
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
/// carry extra bits and state, so both leave them to the canonical path; progressive scans
/// read every symbol through `prog`.
pub(super) struct AcTable {
    codes: Codes,
    fast: Box<[i32; 1 << FAST_BITS]>,
    skip: Box<[u16; 1 << SKIP_BITS]>,
    /// Progressive scans' symbols, code and extra bits in one step: `value << 16 | s << 12
    /// | r << 8 | length`. `value` is the coefficient for `s > 0`, the end-of-band run
    /// (this block included) for EOBn, 0 for ZRL.
    prog: Box<[i32; 1 << FAST_BITS]>,
}

impl AcTable {
    fn new(spec: &HuffSpec) -> Option<AcTable> {
        let (codes, list) = Codes::new(spec, 255)?;
        let mut fast = Box::new([0i32; 1 << FAST_BITS]);
        let mut prog = Box::new([0i32; 1 << FAST_BITS]);
        for (i, (len, sym)) in codes.fast_entries() {
            let (run, s) = ((sym >> 4) as i32, sym & 15);
            let extra_bits = prog_extra_bits(run as u32, s);
            if len == 0 || len + extra_bits > FAST_BITS {
                continue;
            }
            let extra = (i as i32 >> (FAST_BITS - len - extra_bits)) & ((1 << extra_bits) - 1);
            let value = prog_value(run as u32, s, extra);
            let length = (len + extra_bits) as i32;
            prog[i] = value << 16 | (s as i32) << 12 | run << 8 | length;
            // Sequential scans have no EOBn: there every R/0 symbol but ZRL ends the block.
            fast[i] = match (run, s) {
                (15, 0) => 16 << 8 | length,
                (0, 0) => 64 << 8 | length,
                (_, 0) => 0,
                _ => value << 16 | (run + 1) << 8 | length,
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
        Some(AcTable {
            codes,
            fast,
            skip,
            prog,
        })
    }
}

/// Building an AC table costs ~5% of decoding a 500x375 photo, and most files carry the same
/// few (the standard ones, or their encoder's): each thread keeps the last few it built.
pub(super) fn cached_ac_table(spec: &HuffSpec) -> Option<Rc<AcTable>> {
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

/// One block of an MCU for [`Bits::small_mcus`]: its component's tables, and whether its
/// 2x2 lowest coefficients are kept (else its DC alone).
#[derive(Clone, Copy)]
pub(super) struct SmallSlot<'t> {
    /// The component's index in the scan, whose DC predictor it uses.
    pub(super) comp: usize,
    pub(super) dc: &'t DcTable,
    pub(super) ac: &'t AcTable,
    pub(super) two: bool,
}

/// MSB-first bit reader over one entropy-coded segment. Past its end (a marker or the end
/// of the data) it feeds zero bytes and counts them, so that reading into them can be
/// detected afterwards as truncation.
///
/// It is `Copy`, and its slow paths take and return it by value, so that the hot loops,
/// which work on a local copy, keep its state in registers.
#[derive(Clone, Copy)]
pub(super) struct Bits<'a> {
    pub(super) data: &'a [u8],
    pub(super) pos: usize,
    buf: u64,
    nbits: u32,
    fake: u32,
}

impl<'a> Bits<'a> {
    #[inline]
    pub(super) fn new(data: &'a [u8], pos: usize) -> Self {
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
    pub(super) fn ensure(&mut self) {
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
    pub(super) fn take(&mut self, s: u32) -> i32 {
        let v = ((self.buf >> 1) >> (63 - s)) as i32;
        self.consume(s);
        v
    }

    /// Whether decoding has used bits that were not in the data.
    #[inline]
    pub(super) fn overran(&self) -> bool {
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
    pub(super) fn dc(&mut self, t: &DcTable) -> Option<i32> {
        let e = t.fast[self.peek::<FAST_BITS>()];
        if e != 0 {
            self.consume((e & 0xFF) as u32);
            return Some(e >> 8);
        }
        let s = self.symbol(&t.codes)?;
        Some(extend(self.take(s), s))
    }

    /// Skips a sequential block's AC coefficients from zigzag index `k` to `end`
    /// (exclusive).
    #[inline(always)]
    fn skip_ac(&mut self, t: &AcTable, mut k: u32, end: u32) -> Option<()> {
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
                return Some(());
            }
            self.ensure();
            let sym = self.symbol(&t.codes)?;
            let (run, s) = (sym >> 4, sym & 15);
            if s == 0 {
                // As libjpeg's sequential decoder: every R/0 symbol but ZRL ends the block,
                // with no extra bits (EOBn runs exist only in progressive scans).
                if run != 15 {
                    return Some(());
                }
                k += 16;
            } else {
                self.consume(s);
                k += run + 1;
            }
            if k >= end {
                return Some(());
            }
        }
    }

    /// Decodes AC coefficients from zigzag index `k` to `end` (exclusive), keeping those of
    /// the top-left `N`x`N` (quantized, row-major, in lane `lane` of `blk`) and skipping the
    /// rest.
    #[inline(always)]
    pub(super) fn ac<const N: usize, const L: usize, const S: usize>(
        &mut self,
        t: &AcTable,
        blk: &mut [[i32; L]; S],
        lane: usize,
        mut k: u32,
        end: u32,
    ) -> Option<()> {
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
                // As libjpeg's sequential decoder: every R/0 symbol but ZRL ends the block,
                // with no extra bits (EOBn runs exist only in progressive scans).
                if run != 15 {
                    return Some(());
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
            Some(())
        }
    }

    /// A progressive scan's symbol and its extra bits: `(r, s, value)`, `value` as in
    /// [`AcTable`]'s `prog`. Needs `ensure` first.
    #[inline(always)]
    fn prog_symbol(&mut self, t: &AcTable) -> Option<(u32, u32, i32)> {
        let e = t.prog[self.peek::<FAST_BITS>()];
        if e & 0xFF != 0 {
            self.consume_entry(e as u32);
            return Some((((e >> 8) & 15) as u32, ((e >> 12) & 15) as u32, e >> 16));
        }
        let sym = self.symbol(&t.codes)?;
        let (r, s) = (sym >> 4, sym & 15);
        let extra = self.take(prog_extra_bits(r, s));
        Some((r, s, prog_value(r, s, extra)))
    }

    /// One block of a progressive AC first scan (libjpeg's `decode_mcu_AC_first`): the
    /// band's coefficients, scaled by the point transform, into `kept` where `map` places
    /// them inside the reduced block, and their nonzero bits into `nonzero`. `eob` is the
    /// end-of-band run left from earlier blocks.
    pub(super) fn ac_first(
        &mut self,
        t: &AcTable,
        band: &Band,
        eob: &mut i32,
        mut block: BlockCoefs,
    ) -> Option<()> {
        if *eob > 0 {
            *eob -= 1;
            return Some(());
        }
        let mut k = band.ss;
        while k <= band.se {
            self.ensure();
            let (r, s, v) = self.prog_symbol(t)?;
            if s == 0 {
                if r == 15 {
                    k += 16;
                    continue;
                }
                *eob = v - 1;
                break;
            }
            k += r;
            // As libjpeg: a 16-bit coefficient.
            block.set(k, ((v as u32) << band.al) as i16);
            k += 1;
        }
        Some(())
    }

    /// One block of a progressive AC refinement scan (libjpeg's `decode_mcu_AC_refine`): a
    /// correction bit for every coefficient already nonzero, and new coefficients of
    /// magnitude `1 << al`. `None` for a symbol of magnitude above 1, which libjpeg reports
    /// as corrupt data.
    pub(super) fn ac_refine(
        &mut self,
        t: &AcTable,
        band: &Band,
        eob: &mut i32,
        mut block: BlockCoefs,
    ) -> Option<()> {
        let p1 = 1i16 << band.al;
        // The band from zigzag index `from` on.
        let mut k = band.ss;
        if *eob == 0 {
            while k <= band.se {
                self.ensure();
                let (r, s, v) = self.prog_symbol(t)?;
                let mut new = 0i16;
                if s != 0 {
                    if s != 1 {
                        return None;
                    }
                    new = if v > 0 { p1 } else { -p1 };
                } else if r != 15 {
                    *eob = v;
                    break;
                }
                // Past `r` zero coefficients (ZRL: 16) to the next zero, or the band's end,
                // with a correction bit for each nonzero one on the way.
                let from_k = band.from(k);
                let zeros = !*block.nonzero & from_k;
                let (stop, passed) =
                    if (*block.nonzero >> k) & ((2 << r) - 1) == 0 && k + r <= band.se {
                        // Most often no nonzero coefficient lies on the way.
                        (k + r, 0)
                    } else {
                        match select(zeros, r) {
                            // r zeros lie between k and stop, and nonzero coefficients the rest.
                            stop @ 0..64 => (stop, stop - k - r),
                            _ => (band.se + 1, band.se + 1 - k - zeros.count_ones()),
                        }
                    };
                let todo = *block.nonzero & from_k & !band.from(stop);
                self.corrections(todo, passed, p1, &mut block);
                k = stop;
                if new != 0 {
                    block.set(k, new);
                }
                k += 1;
            }
        }
        if *eob > 0 {
            // The rest of the band holds no new coefficient.
            let todo = *block.nonzero & band.from(k);
            self.corrections(todo, todo.count_ones(), p1, &mut block);
            *eob -= 1;
        }
        Some(())
    }

    /// The walk [`Bits::first_unkept`] and [`Bits::refine_unkept`] share over blocks
    /// `nonzero` (consecutive, no restart marker among them): the blocks of an end-of-band
    /// run go to `run_blocks` together, every other block to `block`, which returns the run
    /// it starts (less itself). `eob`: the blocks left in the current run, before and after.
    /// One call-free loop on a local copy of the bit reader: called per block, the general
    /// path's entry and exit were a good part of a progressive photo's decode at 1/8.
    #[inline(always)]
    fn unkept_row(
        &mut self,
        eob: &mut usize,
        nonzero: &mut [u64],
        mut run_blocks: impl FnMut(&mut Self, &[u64]),
        mut block: impl FnMut(&mut Self, &mut u64) -> Option<usize>,
    ) -> Option<()> {
        let mut b = *self;
        let mut run = *eob;
        let mut i = 0;
        while i < nonzero.len() {
            if run > 0 {
                let n = run.min(nonzero.len() - i);
                run_blocks(&mut b, &nonzero[i..i + n]);
                run -= n;
                i += n;
                continue;
            }
            run = block(&mut b, &mut nonzero[i])?;
            i += 1;
        }
        *self = b;
        *eob = run;
        Some(())
    }

    /// A first AC scan's blocks `nonzero` where the reduced block keeps none of the band:
    /// [`Bits::ac_first`]'s symbols, only the nonzero bits kept.
    #[inline(never)]
    pub(super) fn first_unkept(
        &mut self,
        t: &AcTable,
        band: &Band,
        eob: &mut usize,
        nonzero: &mut [u64],
    ) -> Option<()> {
        // The blocks of an end-of-band run read nothing.
        self.unkept_row(
            eob,
            nonzero,
            |_, _| (),
            |b, nz| {
                let mut k = band.ss;
                while k <= band.se {
                    b.ensure();
                    let (r, s, v) = b.prog_symbol(t)?;
                    if s == 0 {
                        if r == 15 {
                            k += 16;
                            continue;
                        }
                        return usize::try_from(v - 1).ok();
                    }
                    k += r;
                    // As `BlockCoefs::set` with `ac_first`'s 16-bit coefficient.
                    let at = k.min(63);
                    let value = ((v as u32) << band.al) as i16;
                    *nz = (*nz & !(1 << at)) | u64::from(value != 0) << at;
                    k += 1;
                }
                Some(0)
            },
        )
    }

    /// A refinement scan's blocks `nonzero` where the reduced block keeps none of the band
    /// (every AC band at 1/8): the symbols and checks of [`Bits::ac_refine`] and
    /// [`Bits::refine_run`], but only the nonzero bits change, and correction bits are
    /// skipped by count.
    ///
    /// `find(x, r)` is [`select`], or with `ANY_RUN` one as fast for every run (BMI2's
    /// `pdep`, in `simd`'s copy of this): then it is used for every symbol; without it, runs
    /// that pass no nonzero coefficient, the most common, take a shortcut.
    #[inline(always)]
    pub(super) fn refine_unkept<const ANY_RUN: bool>(
        &mut self,
        t: &AcTable,
        band: &Band,
        eob: &mut usize,
        nonzero: &mut [u64],
        find: impl Fn(u64, u32) -> u32,
    ) -> Option<()> {
        let mut bad = false;
        let whole = band.from(band.ss);
        let run_blocks = |b: &mut Self, blocks: &[u64]| {
            b.skip_bits(blocks.iter().map(|&nz| (nz & whole).count_ones()).sum());
        };
        self.unkept_row(eob, nonzero, run_blocks, |b, nz| {
            let mut k = band.ss;
            while k <= band.se {
                b.ensure();
                let (r, s, v) = b.prog_symbol(t)?;
                if s == 0 && r != 15 {
                    // An end-of-band run of `v` blocks, this one included: the rest of its
                    // band holds no new coefficient.
                    b.skip_bits((*nz & band.from(k)).count_ones());
                    return usize::try_from(v - 1).ok();
                }
                // As `ac_refine`: a magnitude above 1 is corrupt data. Checked once at the
                // end; until then the symbol counts as a 1.
                bad |= s > 1;
                // Past `r` zero coefficients (ZRL: 16) to the next zero, or the band's end,
                // with a correction bit for each nonzero one on the way.
                let zeros = !*nz & band.from(k);
                let (stop, passed) =
                    if !ANY_RUN && (*nz >> k) & ((2 << r) - 1) == 0 && k + r <= band.se {
                        (k + r, 0)
                    } else {
                        match find(zeros, r) {
                            stop @ 0..64 => (stop, stop - k - r),
                            _ => (band.se + 1, band.se + 1 - k - zeros.count_ones()),
                        }
                    };
                // At least 15 bits are left after a symbol (32, less a code of at most 16
                // and a sign bit): one branch, almost never taken.
                if passed <= b.nbits {
                    b.consume(passed);
                } else {
                    b.skip_bits(passed);
                }
                // As `BlockCoefs::set`: past the band's end lands on the last coefficient.
                *nz |= u64::from(s != 0) << stop.min(63);
                k = stop + 1;
            }
            Some(0)
        })?;
        (!bad).then_some(())
    }

    /// Blocks `first..first + n` of an AC scan whose band the reduced block keeps part of:
    /// a block at a time, end-of-band runs (`eob`, carried from run to run) by `refine_run`.
    pub(super) fn kept_run(
        &mut self,
        t: &AcTable,
        band: &Band,
        coefs: &mut Coefs,
        (first, n): (usize, usize),
        eob: &mut usize,
    ) -> Option<()> {
        let mut i = 0;
        while i < n {
            if *eob > 0 {
                let run = (*eob).min(n - i);
                if band.ah != 0 {
                    self.refine_run(t, band, coefs, first + i, run)?;
                }
                *eob -= run;
                i += run;
                continue;
            }
            // The run that a block's end-of-band symbol starts, less the block itself.
            let mut rest = 0;
            let block = coefs.block(first + i)?;
            if band.ah == 0 {
                self.ac_first(t, band, &mut rest, block)?;
            } else {
                self.ac_refine(t, band, &mut rest, block)?;
            }
            *eob = usize::try_from(rest).ok()?;
            i += 1;
        }
        Some(())
    }

    /// The blocks `first..first + count` of an end-of-band run in a refinement scan: a
    /// correction bit for each coefficient of the band already nonzero, and nothing new.
    pub(super) fn refine_run(
        &mut self,
        t: &AcTable,
        band: &Band,
        coefs: &mut Coefs,
        first: usize,
        count: usize,
    ) -> Option<()> {
        for i in first..first + count {
            self.ac_refine(t, band, &mut 1, coefs.block(i)?)?;
        }
        Some(())
    }

    /// A correction bit for each coefficient in `todo` (nonzero ones, read in zigzag order;
    /// `count` of them): applied to those inside the reduced block, skipped for the rest.
    #[inline(always)]
    fn corrections(&mut self, mut todo: u64, count: u32, p1: i16, block: &mut BlockCoefs) {
        let mut keep = todo & block.kept_mask;
        if keep == 0 {
            self.skip_bits(count);
            return;
        }
        while keep != 0 {
            let at = keep.trailing_zeros();
            keep &= keep - 1;
            self.skip_bits((todo & !(u64::MAX << at)).count_ones());
            todo &= (u64::MAX << at) << 1;
            self.ensure();
            if let Some(v) = block.kept_at(at)
                && self.take(1) != 0
                && *v & p1 == 0
            {
                *v = if *v >= 0 {
                    v.wrapping_add(p1)
                } else {
                    v.wrapping_sub(p1)
                };
            }
        }
        self.skip_bits(todo.count_ones());
    }

    /// Drops `n` bits (any number).
    #[inline(always)]
    fn skip_bits(&mut self, mut n: u32) {
        while n > 0 {
            self.ensure();
            let step = n.min(32);
            self.consume(step);
            n -= step;
        }
    }

    /// Decodes `out.len() / slots.len()` MCUs of a baseline scan whose blocks keep at most
    /// their 2x2 lowest coefficients (1/8 and 1/4 scale): for each block in `out`, its DC
    /// coefficient (the predictors `pred` carried along), then for a `two` slot its
    /// coefficients at (0, 1), (1, 0) and (1, 1). One call a run of MCUs keeps the bit
    /// reader in registers from block to block (a call a block stored and reloaded it).
    #[inline(always)]
    pub(super) fn small_mcus(
        &mut self,
        slots: &[SmallSlot],
        pred: &mut [i32; 4],
        out: &mut [[i32; 4]],
    ) -> Option<()> {
        let mut b = *self;
        for mcu in out.chunks_exact_mut(slots.len()) {
            for (s, dst) in slots.iter().zip(mcu) {
                b.ensure();
                let diff = b.dc(s.dc)?;
                let p = &mut pred[s.comp & 3];
                *p = i32::from((*p + diff) as i16);
                if s.two {
                    let mut blk = [[0i32; 1]; 5];
                    b.ac::<2, 1, 5>(s.ac, &mut blk, 0, 1, 64)?;
                    *dst = [*p, blk[1][0], blk[2][0], blk[3][0]];
                } else {
                    b.skip_ac(s.ac, 1, 64)?;
                    dst[0] = *p;
                }
            }
        }
        *self = b;
        Some(())
    }

    /// A run of MCUs of a progressive DC scan, `tables` holding one table per block of an
    /// MCU: each block's DC difference in `out`; in a refinement (`tables` is `None`), its
    /// correction bit. One call a run, as [`Bits::small_mcus`].
    #[inline(never)]
    pub(super) fn dc_mcus(&mut self, tables: Option<&[&DcTable]>, out: &mut [i32]) -> Option<()> {
        let mut b = *self;
        match tables {
            Some(tables) => {
                for mcu in out.chunks_exact_mut(tables.len()) {
                    for (t, d) in tables.iter().zip(mcu) {
                        b.ensure();
                        *d = b.dc(t)?;
                    }
                }
            }
            None => {
                for d in out {
                    b.ensure();
                    *d = b.take(1);
                }
            }
        }
        *self = b;
        Some(())
    }

    /// Decodes a sequential block's DC difference and skips its AC coefficients.
    ///
    /// This and [`Bits::block`] are the per-block entry points of the baseline scan loop.
    /// They are not inlined: in a small function the bit buffer stays in a register, while
    /// inlined into the scan loop it was spilled, adding a store and a load to every step.
    #[inline(never)]
    pub(super) fn dc_block(&mut self, dc: &DcTable, ac: &AcTable) -> Option<i32> {
        self.ensure();
        let diff = self.dc(dc)?;
        self.skip_ac(ac, 1, 64)?;
        Some(diff)
    }

    /// Decodes a sequential block's DC difference, returned, and its AC coefficients,
    /// keeping those of the top-left `N`x`N` in lane `lane` of `blk`.
    #[inline(never)]
    pub(super) fn block<const N: usize, const L: usize, const S: usize>(
        &mut self,
        dc: &DcTable,
        ac: &AcTable,
        blk: &mut [[i32; L]; S],
        lane: usize,
    ) -> Option<i32> {
        self.ensure();
        let diff = self.dc(dc)?;
        self.ac::<N, L, S>(ac, blk, lane, 1, 64)?;
        Some(diff)
    }
}

#[cfg(test)]
mod tests {
    use super::super::progressive::Coefs;
    use super::super::simd;
    use super::*;

    /// xorshift64: the tests see the same data every run.
    fn rng(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    /// A progressive AC table of every run with magnitudes 1 and 2 (2 being corrupt in a
    /// refinement) and every end-of-band run, nearly complete so that random data decodes
    /// for a while: magnitude 1 and EOB in short codes, magnitude 2 and the longer runs in
    /// codes of twelve bits, past the one-step lookup.
    fn test_table() -> AcTable {
        let by_length: [(usize, Vec<u8>); 4] = [
            (4, (0..15).map(|r| r << 4 | 1).collect()),
            (6, vec![0xF1, 0x00, 0xF0]),
            (9, vec![0x10, 0x20, 0x30]),
            (
                12,
                (4..15)
                    .map(|r| r << 4)
                    .chain((0..16).map(|r| r << 4 | 2))
                    .collect(),
            ),
        ];
        let mut counts = [0u8; 17];
        let mut symbols = Vec::new();
        for (len, syms) in by_length {
            counts[len] = syms.len() as u8;
            symbols.extend(syms);
        }
        AcTable::new(&HuffSpec { counts, symbols }).expect("a valid table")
    }

    /// The unkept paths (`first_unkept`, `refine_unkept`: whole rows, nonzero bits only)
    /// read the same bits as the general one and leave the same nonzero bits and verdict,
    /// on random data (markers aside) over random bands and earlier coefficients.
    #[test]
    fn unkept_paths_match_the_general_one() {
        let t = test_table();
        let mut next = rng(0x2545_F491_4F6C_DD1D);
        let (mut ok, mut refused) = (0, 0);
        for case in 0..4000 {
            let data: Vec<u8> = (0..600)
                .map(|_| (next() % 255) as u8)
                .chain([0xFF, 0xD9])
                .collect();
            let ss = 1 + (next() % 63) as u32;
            let se = ss + (next() % u64::from(64 - ss)) as u32;
            let ah = (case % 2) as u8;
            let band = Band::new(ss as u8, se as u8, ah << 4 | ah.saturating_sub(1), 1)
                .expect("a valid band");
            let n = 1 + (next() % 40) as usize;
            let mut general = Coefs::new(n, 1);
            let before: Vec<u64> = (0..n).map(|_| next() & next() & !1).collect();
            general.nonzero_mut(0, n).unwrap().copy_from_slice(&before);
            let mut a = Bits::new(&data, 0);
            let mut eob_a = 0;
            let got_a = a.kept_run(&t, &band, &mut general, (0, n), &mut eob_a);
            let read = |b: &Bits| (b.pos * 8) as i64 - i64::from(b.nbits) - i64::from(b.fake) * 8;
            // The first scan's path; the refinement's portable copy and the one this CPU
            // takes (BMI2's where its pdep is fast).
            type Row = fn(&mut Bits, &AcTable, &Band, &mut usize, &mut [u64]) -> Option<()>;
            let paths: &[Row] = if ah == 0 {
                &[|b, t, band, eob, nz| b.first_unkept(t, band, eob, nz)]
            } else {
                &[
                    |b, t, band, eob, nz| b.refine_unkept::<false>(t, band, eob, nz, select),
                    simd::refine_unkept,
                ]
            };
            for (i, path) in paths.iter().enumerate() {
                let mut unkept = before.clone();
                let mut b = Bits::new(&data, 0);
                let mut eob_b = 0;
                let got_b = path(&mut b, &t, &band, &mut eob_b, &mut unkept);
                assert_eq!(
                    got_a.is_some(),
                    got_b.is_some(),
                    "case {case}, path {i}: verdict"
                );
                if got_a.is_some() {
                    assert_eq!(read(&a), read(&b), "case {case}, path {i}: bits read");
                    assert_eq!(eob_a, eob_b, "case {case}, path {i}: end-of-band run");
                    assert_eq!(
                        general.nonzero_mut(0, n).unwrap(),
                        &unkept[..],
                        "case {case}"
                    );
                }
            }
            if got_a.is_none() {
                refused += 1;
            } else {
                ok += 1;
            }
        }
        assert!(ok > 1000 && refused > 100, "{ok} taken, {refused} refused");
    }

    /// A sequential DC table (the standard luminance lengths) and an AC table of every
    /// baseline symbol, nearly complete so that random data decodes for a while: EOB and
    /// a few small coefficients in short codes, ZRL and most others in 9 bits, the rest in
    /// 12, past the fast tables.
    fn sequential_tables() -> (DcTable, AcTable) {
        let mut dc_counts = [0u8; 17];
        dc_counts[2..10].copy_from_slice(&[1, 5, 1, 1, 1, 1, 1, 1]);
        let dc = DcTable::new(&HuffSpec {
            counts: dc_counts,
            symbols: (0..12).collect(),
        })
        .expect("a valid DC table");
        let short = [0x00u8, 0x01, 0x02, 0x11, 0x03];
        let rest: Vec<u8> = (0..16u8)
            .flat_map(|r| (1..=10u8).map(move |s| r << 4 | s))
            .chain([0xF0])
            .filter(|sym| !short.contains(sym))
            .collect();
        let mut counts = [0u8; 17];
        counts[2..5].copy_from_slice(&[2, 1, 2]);
        counts[9] = 120;
        counts[12] = (rest.len() - 120) as u8;
        let ac = AcTable::new(&HuffSpec {
            counts,
            symbols: short.iter().copied().chain(rest).collect(),
        })
        .expect("a valid AC table");
        (dc, ac)
    }

    /// The row loop of baseline scans at 1/8 and 1/4 (`small_mcus`, both the copy this
    /// CPU takes and the portable one) against the per-block path: the same coefficients
    /// (DC predicted), bits read and verdict, for MCUs of DC-only and 2x2 blocks over
    /// random data, with stuffed and stray 0xFF bytes and the data's end.
    #[test]
    fn small_mcus_match_the_block_path() {
        let (dc, ac) = sequential_tables();
        let mut next = rng(0x9E37_79B9_7F4A_7C15);
        let layouts: [&[u32]; 5] = [&[0, 0, 0, 0, 4, 4], &[0, 0, 0], &[4; 6], &[0], &[4]];
        let read = |b: &Bits| (b.pos * 8) as i64 - i64::from(b.nbits) - i64::from(b.fake) * 8;
        let (mut ok, mut refused, mut overran) = (0, 0, 0);
        for case in 0..3000 {
            let mut data = Vec::new();
            for _ in 0..(next() % 400) {
                match next() % 200 {
                    0 => data.extend([0xFF, 0x00]),
                    1 if case % 3 == 0 => data.extend([0xFF, 0xD0]),
                    _ => data.push((next() % 255) as u8),
                }
            }
            let layout = layouts[case % layouts.len()];
            let comps: Vec<usize> = layout
                .iter()
                .map(|&last| usize::from(last != 0 && layout[0] == 0))
                .collect();
            let mcus = 1 + (next() % 30) as usize;
            // The per-block path, as the general scan loop walks it.
            let mut a = Bits::new(&data, 0);
            let mut pred = [0i32; 4];
            let mut want = Vec::new();
            let got_a = (|| {
                for _ in 0..mcus {
                    for (&last, &c) in layout.iter().zip(&comps) {
                        let mut add = |diff: i32| {
                            pred[c] = i32::from((pred[c] + diff) as i16);
                            pred[c]
                        };
                        if last == 0 {
                            want.push([add(a.dc_block(&dc, &ac)?), 0, 0, 0]);
                        } else {
                            let mut blk = [[0i32; 1]; 5];
                            let d = add(a.block::<2, 1, 5>(&dc, &ac, &mut blk, 0)?);
                            want.push([d, blk[1][0], blk[2][0], blk[3][0]]);
                        }
                    }
                }
                Some(())
            })();
            let slots: Vec<SmallSlot> = layout
                .iter()
                .zip(&comps)
                .map(|(&last, &comp)| SmallSlot {
                    comp,
                    dc: &dc,
                    ac: &ac,
                    two: last != 0,
                })
                .collect();
            type Path = fn(&mut Bits, &[SmallSlot], &mut [i32; 4], &mut [[i32; 4]]) -> Option<()>;
            let paths: [Path; 2] = [simd::small_mcus, |b, slots, pred, out| {
                b.small_mcus(slots, pred, out)
            }];
            for (i, path) in paths.iter().enumerate() {
                let mut b = Bits::new(&data, 0);
                let mut out = vec![[0i32; 4]; mcus * layout.len()];
                let got_b = path(&mut b, &slots, &mut [0; 4], &mut out);
                assert_eq!(got_a.is_some(), got_b.is_some(), "case {case}, path {i}");
                if got_a.is_some() {
                    assert_eq!(read(&a), read(&b), "case {case}, path {i}: bits read");
                    assert_eq!(want, out, "case {case}, path {i}");
                }
            }
            match got_a {
                None => refused += 1,
                Some(()) if a.overran() => overran += 1,
                Some(()) => ok += 1,
            }
        }
        assert!(
            ok > 500 && refused > 100 && overran > 100,
            "{ok} decoded, {refused} refused, {overran} ran past the data"
        );
    }

    /// `select` against the obvious loop, for masks of every density and every run a
    /// refinement symbol can ask for (ZRL's 15 and the 16th zero included).
    #[test]
    fn select_finds_the_rth_set_bit() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for i in 0..20_000 {
            // AND-ing draws together makes sparse masks, OR-ing dense ones.
            let x = match i % 4 {
                0 => next(),
                1 => next() & next() & next(),
                2 => next() | next(),
                _ => next() & (u64::MAX << (i % 64)),
            };
            for r in 0..=16 {
                let mut y = x;
                for _ in 0..r {
                    y &= y.wrapping_sub(1);
                }
                let want = if y == 0 { 64 } else { y.trailing_zeros() };
                assert_eq!(select(x, r), want, "x {x:#x}, r {r}");
            }
        }
        assert_eq!(select(0, 0), 64);
        assert_eq!(select(u64::MAX, 63), 63);
        assert_eq!(select(u64::MAX, 64), 64);
    }
}
