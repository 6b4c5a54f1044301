//! The shipped list of common and breached passwords (see `data/README.md`).
//!
//! The list is embedded front-coded (see `build.rs`): ~188 KiB of read-only
//! data, no heap, looked up by binary search over block heads and a short
//! linear decode inside one block.

include!(concat!(env!("OUT_DIR"), "/blocklist_meta.rs"));

static DATA: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/blocklist.bin"));
static INDEX: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/blocklist.idx"));

/// Number of entries in the embedded list.
pub fn len() -> usize {
    ENTRIES
}

/// Whether `candidate` is on the list. The candidate must already be
/// normalised the way the list is: NFKC, then lower case (the policy does
/// this; see [`crate::policy`]).
pub fn contains(candidate: &str) -> bool {
    let needle = candidate.as_bytes();
    let blocks = INDEX.len() / 4;
    // Last block whose first entry is <= needle.
    let (mut lo, mut hi) = (0usize, blocks);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if block_head(mid) <= needle {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    if lo == 0 {
        return false;
    }
    let block = lo - 1;
    let mut found = false;
    for_each_in_block(block, |entry| {
        found = entry == needle;
        // Entries are sorted: keep going only while they are still smaller.
        !found && entry < needle
    });
    found
}

fn block_offset(block: usize) -> usize {
    let b = &INDEX[block * 4..block * 4 + 4];
    u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize
}

fn block_end(block: usize) -> usize {
    if (block + 1) * 4 < INDEX.len() {
        block_offset(block + 1)
    } else {
        DATA.len()
    }
}

fn line_end(from: usize) -> usize {
    DATA[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(DATA.len(), |p| from + p)
}

fn block_head(block: usize) -> &'static [u8] {
    let start = block_offset(block);
    &DATA[start..line_end(start)]
}

/// Decodes the entries of one block in order; `f` returns whether to go on.
fn for_each_in_block(block: usize, mut f: impl FnMut(&[u8]) -> bool) {
    let (mut pos, end) = (block_offset(block), block_end(block));
    let mut current: Vec<u8> = Vec::with_capacity(64);
    let head_end = line_end(pos);
    current.extend_from_slice(&DATA[pos..head_end]);
    pos = head_end + 1;
    if !f(&current) {
        return;
    }
    while pos < end {
        let shared = usize::from(DATA[pos]);
        let stop = line_end(pos + 1);
        current.truncate(shared);
        current.extend_from_slice(&DATA[pos + 1..stop]);
        pos = stop + 1;
        if !f(&current) {
            return;
        }
    }
}

/// Decodes the whole list (tests only: it allocates ~350 KiB).
#[cfg(test)]
fn all_entries() -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(ENTRIES);
    for block in 0..INDEX.len() / 4 {
        for_each_in_block(block, |e| {
            out.push(e.to_vec());
            true
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = include_str!("../data/common-passwords.txt");

    #[test]
    fn decodes_back_to_the_source_list() {
        let decoded = all_entries();
        let source: Vec<&[u8]> = SOURCE.lines().map(str::as_bytes).collect();
        assert_eq!(decoded.len(), ENTRIES);
        assert_eq!(decoded.len(), source.len());
        assert_eq!(INDEX.len() / 4, ENTRIES.div_ceil(BLOCK));
        assert!(decoded.iter().zip(&source).all(|(a, b)| a.as_slice() == *b));
        assert!(
            len() > 35_000,
            "the top-100,000 list filtered to >= 8 characters"
        );
        // Front coding is what keeps the binary small: check it pays.
        assert!(DATA.len() + INDEX.len() < SOURCE.len() * 6 / 10);
    }

    #[test]
    fn every_source_entry_is_found() {
        assert!(SOURCE.lines().all(contains));
    }

    proptest::proptest! {
        /// The front-coded lookup agrees with a plain set, for arbitrary
        /// strings and for near misses of real entries.
        #[test]
        fn lookup_agrees_with_a_set(s in "[a-z0-9!@#]{0,12}", i in 0usize..38_000, cut in 0usize..4) {
            use std::sync::OnceLock;
            static SET: OnceLock<std::collections::HashSet<&'static str>> = OnceLock::new();
            let set = SET.get_or_init(|| SOURCE.lines().collect());
            proptest::prop_assert_eq!(contains(&s), set.contains(s.as_str()));
            let entry = SOURCE.lines().nth(i % ENTRIES).expect("in range");
            let shorter: String = entry.chars().take(entry.chars().count().saturating_sub(cut)).collect();
            proptest::prop_assert_eq!(contains(&shorter), set.contains(shorter.as_str()));
        }
    }

    #[test]
    fn well_known_passwords_are_listed() {
        for pw in [
            "password",
            "12345678",
            "qwertyuiop",
            "iloveyou",
            "password1",
            "1q2w3e4r",
        ] {
            assert!(contains(pw), "{pw} should be on the list");
        }
    }

    #[test]
    fn unlisted_strings_are_not_found() {
        for pw in [
            "",
            "\u{0}",
            "correct horse battery staple",
            "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz",
            "!!!!!!!!!!!!",
            "Password", // the list is lower case; the policy lower-cases first
            "passwor",
            "password\n",
        ] {
            assert!(!contains(pw), "{pw:?} should not be found");
        }
    }

    #[test]
    fn neighbours_of_entries_are_not_found() {
        // An entry with one more byte, or the last byte bumped, is a miss
        // unless that string is itself an entry.
        let set: std::collections::HashSet<&str> = SOURCE.lines().collect();
        for word in SOURCE.lines().step_by(97) {
            let longer = format!("{word}\u{1}");
            assert!(!contains(&longer));
            let mut bumped = word.to_owned();
            let last = bumped.pop().expect("entries are not empty");
            if let Some(next) = char::from_u32(last as u32 + 1) {
                bumped.push(next);
                assert_eq!(contains(&bumped), set.contains(bumped.as_str()), "{bumped}");
            }
        }
    }
}
