//! The per-device setup code that gates the first claim.
//!
//! 10 characters from a 32-symbol alphabet without `0 O 1 I` (50 bits),
//! drawn from the OS random source through `ring::rand::SystemRandom`,
//! never derived from serial, MAC, time or model. Shown as `K7QM-3XPA-9D`.

use std::fmt;

use qrcode::{EcLevel, QrCode, render::unicode::Dense1x2};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

/// The 32 symbols: digits 2–9 and letters without I and O, so nothing on a
/// label can be misread as another symbol (0/O, 1/I/l).
pub const ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKLMNPQRSTUVWXYZ";
/// Number of symbols in a code (5 bits each: 50 bits).
pub const LEN: usize = 10;

/// A setup code. The characters are kept in a zeroize-on-drop buffer and are
/// deliberately not printable through `Display` or `Debug`, so a code cannot
/// end up in a log by accident; use [`SetupCode::grouped`] where it must be
/// shown (console, label file).
#[derive(Clone, PartialEq, Eq)]
pub struct SetupCode(Zeroizing<[u8; LEN]>);

/// Why a string is not a valid setup code. The messages are written for
/// whoever typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SetupCodeError {
    #[error(
        "A setup code has {LEN} characters; this one has {found}. Check the code on the device console or label."
    )]
    WrongLength { found: usize },
    #[error(
        "Character {position} is not part of a setup code (codes use 2-9 and A-Z without I and O). Check the code on the device console or label."
    )]
    InvalidCharacter { position: usize },
    #[error(
        "This setup code is too simple (repeated or sequential characters); the production line must write a random one."
    )]
    Degenerate,
    #[error(
        "The factory setup-code file must hold exactly one code (blank lines and lines starting with # are ignored); it holds {found}."
    )]
    FactoryFile { found: usize },
    #[error(
        "The operating system's random number generator failed; the setup code cannot be generated."
    )]
    Random,
}

/// How to draw the QR code on a terminal. Both styles draw the *light*
/// modules and leave the dark ones blank, for light-on-dark text (serial
/// consoles, the Linux VT); on a light terminal the code appears inverted,
/// which most phone scanners still read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QrStyle {
    /// Unicode half blocks (`▀▄█`), two modules per character cell: compact,
    /// for HDMI consoles and UTF-8 serial terminals.
    Unicode,
    /// `##` or two spaces per module: works on any serial terminal, but is
    /// twice as tall as the Unicode style.
    Ascii,
}

impl SetupCode {
    /// Draws a fresh, non-degenerate code from the OS random source.
    pub fn generate() -> Result<Self, SetupCodeError> {
        Self::generate_with(&SystemRandom::new())
    }

    /// Same as [`SetupCode::generate`] with a given random source (tests).
    pub fn generate_with(rng: &dyn SecureRandom) -> Result<Self, SetupCodeError> {
        loop {
            let mut raw = Zeroizing::new([0u8; LEN]);
            rng.fill(raw.as_mut()).map_err(|_| SetupCodeError::Random)?;
            // 256 is a multiple of 32, so masking keeps the draw uniform.
            let mut chars = Zeroizing::new([0u8; LEN]);
            for (c, r) in chars.iter_mut().zip(raw.iter()) {
                *c = ALPHABET[usize::from(r & 31)];
            }
            if !is_degenerate(&chars) {
                return Ok(Self(chars));
            }
            // A degenerate draw is rare (< 1 in 3,000); draw again.
        }
    }

    /// Parses a code as typed: case, spaces and dashes do not matter.
    pub fn parse(input: &str) -> Result<Self, SetupCodeError> {
        let mut chars = Zeroizing::new([0u8; LEN]);
        let mut n = 0usize;
        for ch in input.chars() {
            if ch == '-' || ch.is_whitespace() {
                continue;
            }
            let up = ch.to_ascii_uppercase();
            if n < LEN {
                if !up.is_ascii() || !ALPHABET.contains(&(up as u8)) {
                    return Err(SetupCodeError::InvalidCharacter { position: n + 1 });
                }
                chars[n] = up as u8;
            }
            n += 1;
        }
        if n != LEN {
            return Err(SetupCodeError::WrongLength { found: n });
        }
        if is_degenerate(&chars) {
            return Err(SetupCodeError::Degenerate);
        }
        Ok(Self(chars))
    }

    /// Parses the contents of the production line's setup-code file: one
    /// code on a line of its own; blank lines and `#` comments are ignored.
    pub fn from_factory_file(contents: &str) -> Result<Self, SetupCodeError> {
        let mut lines = contents
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'));
        match (lines.next(), lines.count()) {
            (Some(code), 0) => Self::parse(code),
            (None, _) => Err(SetupCodeError::FactoryFile { found: 0 }),
            (Some(_), more) => Err(SetupCodeError::FactoryFile { found: more + 1 }),
        }
    }

    /// The canonical form, 10 characters without dashes: what is hashed.
    pub fn canonical(&self) -> &[u8] {
        self.0.as_slice()
    }

    /// The display form `K7QM-3XPA-9D`, for the console and the label file.
    pub fn grouped(&self) -> Zeroizing<String> {
        let mut s = Zeroizing::new(String::with_capacity(LEN + 2));
        for (i, &c) in self.0.iter().enumerate() {
            if i == 4 || i == 8 {
                s.push('-');
            }
            s.push(char::from(c));
        }
        s
    }

    /// A terminal QR code for the console. With `url_prefix`
    /// (e.g. `https://hearth.local/setup#code=`) the QR code holds that
    /// prefix followed by the grouped code, so a phone camera opens the
    /// setup page; without it, only the grouped code.
    pub fn qr(&self, url_prefix: Option<&str>, style: QrStyle) -> Zeroizing<String> {
        let mut payload = Zeroizing::new(String::new());
        payload.push_str(url_prefix.unwrap_or(""));
        payload.push_str(&self.grouped());
        render_qr(payload.as_bytes(), style)
    }
}

/// Renders `payload` as a QR code with a quiet zone, error-correction level M.
/// Payloads up to a few hundred bytes always fit (version 40 holds > 2 KB).
fn render_qr(payload: &[u8], style: QrStyle) -> Zeroizing<String> {
    let code = match QrCode::with_error_correction_level(payload, EcLevel::M) {
        Ok(code) => code,
        // Only reachable with a payload larger than any QR version holds.
        Err(e) => return Zeroizing::new(format!("(QR code unavailable: {e})")),
    };
    Zeroizing::new(match style {
        QrStyle::Unicode => code
            .render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
        QrStyle::Ascii => code
            .render::<char>()
            .dark_color(' ')
            .light_color('#')
            .module_dimensions(2, 1)
            .quiet_zone(true)
            .build(),
    })
}

impl fmt::Debug for SetupCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SetupCode(<redacted>)")
    }
}

/// Codes a person would guess first: few distinct symbols, a run of four
/// equal symbols, or five symbols in alphabet order (up or down).
pub fn is_degenerate(chars: &[u8; LEN]) -> bool {
    let mut distinct = [false; 256];
    for &c in chars {
        distinct[usize::from(c)] = true;
    }
    if distinct.iter().filter(|&&d| d).count() <= 3 {
        return true;
    }
    if chars.windows(4).any(|w| w.iter().all(|&c| c == w[0])) {
        return true;
    }
    let pos: Vec<i32> = chars
        .iter()
        .map(|c| {
            ALPHABET
                .iter()
                .position(|a| a == c)
                .map_or(-100, |p| p as i32)
        })
        .collect();
    pos.windows(5).any(|w| {
        let step = w[1] - w[0];
        (step == 1 || step == -1) && w.windows(2).all(|p| p[1] - p[0] == step)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn generated_codes_have_the_format() {
        for _ in 0..200 {
            let code = SetupCode::generate().expect("OS RNG works");
            let g = code.grouped();
            assert_eq!(g.len(), 12);
            assert_eq!(&g[4..5], "-");
            assert_eq!(&g[9..10], "-");
            assert!(code.canonical().iter().all(|c| ALPHABET.contains(c)));
            assert!(!is_degenerate(&code.0));
        }
    }

    #[test]
    fn generated_codes_are_unique_over_many_draws() {
        let mut seen = HashSet::new();
        for _ in 0..20_000 {
            let code = SetupCode::generate().expect("OS RNG works");
            assert!(
                seen.insert(code.canonical().to_vec()),
                "duplicate code drawn"
            );
        }
    }

    #[test]
    fn generated_symbols_are_roughly_uniform() {
        // 5,000 codes = 50,000 symbols, expect 1,562.5 per symbol. A chi-square
        // statistic over 31 degrees of freedom above 70 has p < 0.0001.
        let mut counts = [0u32; 32];
        for _ in 0..5_000 {
            let code = SetupCode::generate().expect("OS RNG works");
            for c in code.canonical() {
                let i = ALPHABET.iter().position(|a| a == c).expect("in alphabet");
                counts[i] += 1;
            }
        }
        let expected = 50_000.0 / 32.0;
        let chi2: f64 = counts
            .iter()
            .map(|&n| (f64::from(n) - expected).powi(2) / expected)
            .sum();
        assert!(chi2 < 70.0, "chi-square {chi2} for {counts:?}");
    }

    #[test]
    fn parsing_ignores_case_spaces_and_dashes() {
        let a = SetupCode::parse("K7QM-3XPA-9D").expect("valid");
        for variant in [
            "k7qm3xpa9d",
            " K7QM 3XPA 9D ",
            "k7-qm-3x-pa-9d",
            "K7QM\t3XPA-9d\n",
        ] {
            assert_eq!(SetupCode::parse(variant).expect("valid"), a, "{variant:?}");
        }
        assert_eq!(a.grouped().as_str(), "K7QM-3XPA-9D");
        assert_eq!(a.canonical(), b"K7QM3XPA9D");
    }

    #[test]
    fn parsing_rejects_wrong_lengths_and_characters() {
        assert_eq!(
            SetupCode::parse("K7QM-3XPA-9"),
            Err(SetupCodeError::WrongLength { found: 9 })
        );
        assert_eq!(
            SetupCode::parse("K7QM-3XPA-9DD"),
            Err(SetupCodeError::WrongLength { found: 11 })
        );
        assert_eq!(
            SetupCode::parse(""),
            Err(SetupCodeError::WrongLength { found: 0 })
        );
        // 0, 1, I and O are not in the alphabet.
        assert_eq!(
            SetupCode::parse("K7QM-3XPA-0D"),
            Err(SetupCodeError::InvalidCharacter { position: 9 })
        );
        assert_eq!(
            SetupCode::parse("O7QM-3XPA-9D"),
            Err(SetupCodeError::InvalidCharacter { position: 1 })
        );
        assert_eq!(
            SetupCode::parse("K7QM-3XPA-9É"),
            Err(SetupCodeError::InvalidCharacter { position: 10 })
        );
    }

    #[test]
    fn degenerate_codes_are_rejected() {
        for bad in [
            "2222-2222-22", // one symbol
            "ABAB-ABAB-AB", // two symbols
            "K7QQ-QQPA-9D", // run of four
            "2345-6XPA-9D", // ascending run of five
            "K7QM-ZYXW-VD", // descending run of five
            "89AB-CXPA-9D", // ascending across the digit/letter seam
        ] {
            assert_eq!(
                SetupCode::parse(bad),
                Err(SetupCodeError::Degenerate),
                "{bad}"
            );
        }
        // Four in a row are fine: 32 of them would be too many to forbid.
        assert!(SetupCode::parse("2345-KXPA-9D").is_ok());
    }

    #[test]
    fn factory_file_holds_exactly_one_code() {
        let file = "# written by line 3, 2026-11-28\n\n  k7qm-3xpa-9d  \n";
        assert_eq!(
            SetupCode::from_factory_file(file)
                .expect("valid")
                .grouped()
                .as_str(),
            "K7QM-3XPA-9D"
        );
        assert_eq!(
            SetupCode::from_factory_file("# nothing\n"),
            Err(SetupCodeError::FactoryFile { found: 0 })
        );
        assert_eq!(
            SetupCode::from_factory_file("K7QM-3XPA-9D\nK7QM-3XPA-9E\n"),
            Err(SetupCodeError::FactoryFile { found: 2 })
        );
        assert_eq!(
            SetupCode::from_factory_file("2222222222\n"),
            Err(SetupCodeError::Degenerate)
        );
    }

    #[test]
    fn debug_does_not_show_the_code() {
        let code = SetupCode::parse("K7QM-3XPA-9D").expect("valid");
        assert!(!format!("{code:?}").contains("K7QM"));
    }

    /// Turns a rendered terminal QR code back into modules (true = dark)
    /// and decodes it with an independent decoder (`rqrr`).
    fn decode_terminal_qr(text: &str, style: QrStyle) -> String {
        let grid: Vec<Vec<bool>> = match style {
            QrStyle::Ascii => text
                .lines()
                .map(|l| l.as_bytes().chunks(2).map(|c| c[0] != b'#').collect())
                .collect(),
            // Both styles draw the light modules (dark terminals).
            QrStyle::Unicode => text
                .lines()
                .flat_map(|l| {
                    let (top, bottom): (Vec<bool>, Vec<bool>) = l
                        .chars()
                        .map(|c| match c {
                            '█' => (false, false),
                            '▀' => (false, true),
                            '▄' => (true, false),
                            _ => (true, true),
                        })
                        .unzip();
                    [top, bottom]
                })
                .collect(),
        };
        let (h, w, scale) = (grid.len(), grid[0].len(), 4);
        let mut img = rqrr::PreparedImage::prepare_from_greyscale(w * scale, h * scale, |x, y| {
            let dark = grid
                .get(y / scale)
                .and_then(|r| r.get(x / scale))
                .copied()
                .unwrap_or(false);
            if dark { 0 } else { 255 }
        });
        let grids = img.detect_grids();
        assert_eq!(grids.len(), 1, "one QR code in the render");
        grids[0].decode().expect("decodes").1
    }

    #[test]
    fn terminal_qr_codes_decode_to_the_payload() {
        let code = SetupCode::parse("K7QM-3XPA-9D").expect("valid");
        let uni = code.qr(Some("https://hearth.local/setup#code="), QrStyle::Unicode);
        assert!(uni.chars().all(|c| " █▀▄\n".contains(c)));
        assert_eq!(
            decode_terminal_qr(&uni, QrStyle::Unicode),
            "https://hearth.local/setup#code=K7QM-3XPA-9D"
        );
        let ascii = code.qr(None, QrStyle::Ascii);
        assert!(ascii.is_ascii());
        let rows: Vec<&str> = ascii.lines().collect();
        assert_eq!(
            rows[0].len(),
            rows.len() * 2,
            "square: two characters per module"
        );
        assert_eq!(decode_terminal_qr(&ascii, QrStyle::Ascii), "K7QM-3XPA-9D");
    }

    proptest! {
        #[test]
        fn grouped_form_parses_back(idx in proptest::collection::vec(0usize..32, LEN)) {
            let mut chars = [0u8; LEN];
            for (c, i) in chars.iter_mut().zip(&idx) {
                *c = ALPHABET[*i];
            }
            prop_assume!(!is_degenerate(&chars));
            let code = SetupCode(Zeroizing::new(chars));
            let shown = code.grouped();
            prop_assert_eq!(&SetupCode::parse(&shown).expect("round trip"), &code);
            prop_assert_eq!(&SetupCode::parse(&shown.to_lowercase()).expect("lower"), &code);
            prop_assert_eq!(&SetupCode::parse(&shown.replace('-', " ")).expect("spaces"), &code);
        }

        #[test]
        fn parse_never_panics(s in "\\PC{0,40}") {
            let _ = SetupCode::parse(&s);
        }
    }
}
