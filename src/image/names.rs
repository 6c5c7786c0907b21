//! Which names are images, and the name of each output. Decoding goes by content; names only
//! choose what is listed or walked, and what the outputs are called.

use std::borrow::Cow;

/// Suffixes of the formats qp decodes, lower case (compared in any case): what `qp resize`
/// walks, `qp enqueue` sends by default and terraform's notification filter lets through.
pub const IMAGE_SUFFIXES: &[&str] = &[
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff",
];

/// Suffixes of the formats other than JPEG: their outputs get `.jpg` appended.
const NON_JPEG_SUFFIXES: &[&str] = &[".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"];

/// Whether `name` ends in one of [`IMAGE_SUFFIXES`], in any case.
pub fn has_image_suffix(name: &str) -> bool {
    IMAGE_SUFFIXES
        .iter()
        .any(|s| ends_with_ignore_case(name, s))
}

/// The output name of a source name (an S3 key, or a path relative to a walked directory).
/// Outputs are JPEG, so `a/b.png` becomes `a/b.png.jpg`; JPEGs keep their names, as does any
/// other name (the content decides whether it is an image, not the name).
///
/// The rule never maps two sources to one output: a name whose stem, once every trailing
/// lower-case `.jpg` is stripped, ends in a non-JPEG image suffix gets `.jpg` appended. So
/// `x.png.jpg` (a JPEG named after a PNG) becomes `x.png.jpg.jpg`, not `x.png.jpg`, which is
/// `x.png`'s output. Appending keeps a name in that set, and every other name maps to itself.
pub fn output_name(name: &str) -> Cow<'_, str> {
    let mut stem = name;
    while let Some(s) = stem.strip_suffix(".jpg") {
        stem = s;
    }
    if NON_JPEG_SUFFIXES
        .iter()
        .any(|s| ends_with_ignore_case(stem, s))
    {
        Cow::Owned(format!("{name}.jpg"))
    } else {
        Cow::Borrowed(name)
    }
}

fn ends_with_ignore_case(name: &str, suffix: &str) -> bool {
    name.len() >= suffix.len()
        && name.as_bytes()[name.len() - suffix.len()..].eq_ignore_ascii_case(suffix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn outputs_are_named_for_jpeg() {
        for (name, want) in [
            ("a/b.jpg", "a/b.jpg"),
            ("a/B.JPEG", "a/B.JPEG"),
            ("a/b.png", "a/b.png.jpg"),
            ("b.PNG", "b.PNG.jpg"),
            ("c.webp", "c.webp.jpg"),
            ("d.Gif", "d.Gif.jpg"),
            ("e.bmp", "e.bmp.jpg"),
            ("f.tif", "f.tif.jpg"),
            ("g.TIFF", "g.TIFF.jpg"),
            ("x.png.jpg", "x.png.jpg.jpg"),
            ("x.png.JPG", "x.png.JPG"),
            ("noext", "noext"),
            ("n02085620_1.JPEG", "n02085620_1.JPEG"),
            ("weird.heic", "weird.heic"),
        ] {
            assert_eq!(output_name(name), want, "{name}");
        }
    }

    /// Every name built from these pieces (up to four of them) maps to its own output.
    #[test]
    fn no_two_names_share_an_output() {
        let pieces = [
            "x", ".jpg", ".JPG", ".jpeg", ".png", ".PNG", ".tif", ".tiff", ".gif", ".webp", ".bmp",
            "/", ".",
        ];
        let mut names = vec![String::new()];
        let mut all = Vec::new();
        for _ in 0..4 {
            let mut next = Vec::new();
            for n in &names {
                for p in pieces {
                    next.push(format!("{n}{p}"));
                }
            }
            all.extend(next.iter().cloned());
            names = next;
        }
        let mut seen: HashMap<String, String> = HashMap::new();
        for name in &all {
            let out = output_name(name).into_owned();
            if let Some(other) = seen.insert(out.clone(), name.clone()) {
                assert_eq!(&other, name, "{other:?} and {name:?} both map to {out:?}");
            }
        }
        assert!(seen.len() > 20_000, "{}", seen.len());
    }

    #[test]
    fn image_suffixes_in_any_case() {
        for yes in [
            "a.jpg", "b.JPEG", "c.Png", "d.webp", "e.GIF", "f.bmp", "g.tif", "h.TIFF",
        ] {
            assert!(has_image_suffix(yes), "{yes}");
        }
        for no in ["a.txt", "b", "c.jpg.bak", "png", "ü.heic"] {
            assert!(!has_image_suffix(no), "{no}");
        }
    }
}
