//! Front-codes `data/common-passwords.txt` into `$OUT_DIR/blocklist.{bin,idx}`.
//!
//! Format of `blocklist.bin`: entries in byte order, each ending in `\n`.
//! Every `BLOCK`-th entry is stored whole; the others start with one byte
//! giving the length of the prefix shared with the previous entry, followed
//! by the remaining bytes. `blocklist.idx` holds the little-endian `u32`
//! offset of each block's first entry. See `src/blocklist.rs`.

use std::{env, fs, path::PathBuf};

const SOURCE: &str = "data/common-passwords.txt";
const BLOCK: usize = 32;

fn main() {
    println!("cargo::rerun-if-changed={SOURCE}");
    println!("cargo::rerun-if-changed=build.rs");
    let text = fs::read_to_string(SOURCE).expect("data/common-passwords.txt is readable UTF-8");
    let words: Vec<&[u8]> = text.lines().map(str::as_bytes).collect();
    assert!(
        words.windows(2).all(|w| w[0] < w[1]),
        "{SOURCE} must be sorted by bytes without duplicates (run data/regenerate.py)"
    );
    let mut data = Vec::with_capacity(text.len());
    let mut index = Vec::new();
    for (i, word) in words.iter().enumerate() {
        assert!(
            !word.is_empty() && word.len() < 256,
            "{SOURCE}: entry {i} has a bad length"
        );
        if i % BLOCK == 0 {
            let offset = u32::try_from(data.len()).expect("blocklist below 4 GiB");
            index.extend_from_slice(&offset.to_le_bytes());
            data.extend_from_slice(word);
        } else {
            let prev = words[i - 1];
            let shared = prev
                .iter()
                .zip(word.iter())
                .take_while(|(a, b)| a == b)
                .count();
            data.push(u8::try_from(shared).expect("entries are shorter than 256 bytes"));
            data.extend_from_slice(&word[shared..]);
        }
        data.push(b'\n');
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    fs::write(out.join("blocklist.bin"), &data).expect("write blocklist.bin");
    fs::write(out.join("blocklist.idx"), &index).expect("write blocklist.idx");
    fs::write(
        out.join("blocklist_meta.rs"),
        format!("const ENTRIES: usize = {};\n#[allow(dead_code)] // used by the tests\nconst BLOCK: usize = {BLOCK};\n", words.len()),
    )
    .expect("write blocklist_meta.rs");
}
