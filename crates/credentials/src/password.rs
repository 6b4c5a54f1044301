//! The secret types: a password as typed, and its normalised form.

use std::fmt;

use unicode_normalization::UnicodeNormalization;
use zeroize::Zeroizing;

/// A password as the user typed it. Zeroized on drop; `Debug` is redacted.
///
/// The web layer should move the request field into this type as early as
/// possible (e.g. deserialize the JSON body straight into a `String` and call
/// [`Password::new`]), so no other copy outlives the request.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

impl Password {
    /// Wraps a typed password (takes ownership so no plain copy remains).
    pub fn new(typed: String) -> Self {
        Self(Zeroizing::new(typed))
    }

    /// The password as typed.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// NFKC form, which is what gets checked and hashed (NIST SP 800-63B-4:
    /// normalise before hashing so the same password typed on two keyboards
    /// verifies).
    pub fn normalized(&self) -> Zeroizing<String> {
        // `nfkc()` keeps small internal buffers that are not zeroized; see
        // the crate's "Current limitations".
        Zeroizing::new(self.0.nfkc().collect())
    }
}

impl From<&str> for Password {
    fn from(s: &str) -> Self {
        Self::new(s.to_owned())
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let p = Password::from("hunter2 hunter2 hunter2");
        assert_eq!(format!("{p:?}"), "Password(<redacted>)");
    }

    #[test]
    fn normalization_is_nfkc() {
        // Full-width letters and the "ﬁ" ligature fold to ASCII; a
        // precomposed and a decomposed "é" become the same string.
        assert_eq!(
            Password::from("ＡＢＣ ﬁle").normalized().as_str(),
            "ABC file"
        );
        assert_eq!(
            Password::from("caf\u{e9}").normalized(),
            Password::from("cafe\u{301}").normalized()
        );
    }
}
