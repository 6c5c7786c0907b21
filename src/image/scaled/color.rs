//! From planes to pixels: [`RowSource`] reads a component's plane out a row at a time at
//! output resolution, upsampling subsampled chroma as libjpeg does, and
//! [`colour_rows_inner`] turns three of them into RGBX, through [`ycc_to_rgbx`] unless the
//! file is RGB (its AVX2 copy: [`super::simd`]).

/// Fills `pixels` (RGBX, `ow` wide) from three components, YCbCr unless `rgb`: the kernel
/// of [`super::simd::colour_rows`], compiled for each instruction set there.
#[inline(always)]
pub(super) fn colour_rows_inner(
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
pub(super) struct RowSource<'a> {
    pub(super) plane: &'a [u8],
    pub(super) stride: usize,
    /// Size of the component at its scale (libjpeg's downsampled size).
    pub(super) cw: usize,
    pub(super) ch: usize,
    /// Upsampling ratios.
    pub(super) rh: usize,
    pub(super) rv: usize,
}

impl RowSource<'_> {
    /// Output row `y`, `ow` samples: the plane itself at full resolution, else upsampled
    /// into `tmp` as libjpeg's "fancy" triangle filter for 2x, replication otherwise.
    #[inline(always)]
    pub(super) fn row<'s>(&'s self, y: usize, ow: usize, tmp: &'s mut Vec<u8>) -> Option<&'s [u8]> {
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
pub(super) fn ycc_to_rgbx(y: &[u8], cb: &[u8], cr: &[u8], out: &mut [u8]) {
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
}
