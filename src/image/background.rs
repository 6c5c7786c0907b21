//! The background colour: what transparent pixels are composited onto (outputs are JPEG, which
//! has no alpha) and what `pad` letterboxes with.

use std::fmt;
use std::str::FromStr;

/// An sRGB colour. Default black: the letterbox colour qp has always used, and what most
/// training pipelines pad with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Background(pub [u8; 3]);

impl Background {
    /// Gray backgrounds keep gray images gray (one channel through the resize).
    pub fn is_gray(self) -> bool {
        let [r, g, b] = self.0;
        r == g && g == b
    }

    /// One RGBX pixel of this colour.
    pub fn rgbx(self) -> [u8; 4] {
        let [r, g, b] = self.0;
        [r, g, b, 0xFF]
    }
}

impl fmt::Display for Background {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [r, g, b] = self.0;
        write!(f, "#{r:02x}{g:02x}{b:02x}")
    }
}

impl FromStr for Background {
    type Err = String;

    /// `black`, `white`, `gray` (or `grey`, 128), `#RRGGBB`, `#RGB` (the `#` optional), or
    /// `R,G,B` in 0-255.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!(
                "'{s}' is not a colour: expected black, white, gray, #RRGGBB, #RGB or R,G,B (0-255)"
            )
        };
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "black" => return Ok(Background([0; 3])),
            "white" => return Ok(Background([255; 3])),
            "gray" | "grey" => return Ok(Background([128; 3])),
            _ => {}
        }
        if t.contains(',') {
            let parts: Vec<u8> = t
                .split(',')
                .map(|p| p.trim().parse::<u8>())
                .collect::<Result<_, _>>()
                .map_err(|_| bad())?;
            return <[u8; 3]>::try_from(parts)
                .map(Background)
                .map_err(|_| bad());
        }
        let hex = t.strip_prefix('#').unwrap_or(&t);
        if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        let digit = |i: usize| u8::from_str_radix(&hex[i..=i], 16).map_err(|_| bad());
        match hex.len() {
            6 => Ok(Background([
                digit(0)? * 16 + digit(1)?,
                digit(2)? * 16 + digit(3)?,
                digit(4)? * 16 + digit(5)?,
            ])),
            3 => Ok(Background([digit(0)? * 17, digit(1)? * 17, digit(2)? * 17])),
            _ => Err(bad()),
        }
    }
}

/// `c` over `bg` with coverage `a` (0-255), rounded: Pillow's `alpha_composite` onto an opaque
/// background, within one level.
#[inline]
pub fn over(c: u8, a: u8, bg: u8) -> u8 {
    let v = u32::from(c) * u32::from(a) + u32::from(bg) * (255 - u32::from(a)) + 127;
    // v / 255 for v < 65536, without the division.
    ((v + (v >> 8) + 1) >> 8) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_parse_in_every_spelling() {
        for (s, want) in [
            ("black", [0, 0, 0]),
            (" White ", [255, 255, 255]),
            ("grey", [128, 128, 128]),
            ("#ff8000", [255, 128, 0]),
            ("FF8000", [255, 128, 0]),
            ("#f80", [255, 136, 0]),
            ("10, 20,30", [10, 20, 30]),
        ] {
            assert_eq!(s.parse::<Background>(), Ok(Background(want)), "{s}");
        }
        for bad in [
            "", "#12345", "#gg0000", "1,2", "1,2,3,4", "256,0,0", "-1,0,0", "blue",
        ] {
            let err = bad.parse::<Background>().unwrap_err();
            assert!(err.contains("is not a colour"), "{bad}: {err}");
        }
        assert_eq!(Background([255, 128, 0]).to_string(), "#ff8000");
        assert!(Background([7, 7, 7]).is_gray() && !Background([7, 7, 8]).is_gray());
    }

    #[test]
    fn over_is_the_rounded_blend() {
        for c in (0..=255u8).step_by(5) {
            for a in 0..=255u8 {
                for bg in [0u8, 1, 128, 254, 255] {
                    let exact = (f64::from(c) * f64::from(a)
                        + f64::from(bg) * (255.0 - f64::from(a)))
                        / 255.0;
                    let got = over(c, a, bg);
                    assert!(
                        (f64::from(got) - exact).abs() <= 0.5 + 1e-9,
                        "{c} {a} {bg}: {got}"
                    );
                }
            }
        }
        assert_eq!((over(200, 255, 9), over(200, 0, 9)), (200, 9));
    }
}
