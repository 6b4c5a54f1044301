//! Integration tests for the `disclosure` crate: one binary, one module per
//! concern. The reference vendor file is the one the image installs.

mod cli;
mod sectxt;
mod security_txt;
mod statement;
mod surfaces;
mod vendor_file;

use disclosure::VendorFile;
use time::Date;
use time::macros::date;

/// The reference vendor file, the one the Yocto layer and the dev image install.
pub const REFERENCE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../yocto-layer/meta-hearth/recipes-core/hearth-vendor/files/vendor.toml"
);

/// A fixed "today" well inside the reference support period.
pub const TODAY: Date = date!(2026 - 11 - 28);

pub fn data(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

pub fn reference_text() -> String {
    std::fs::read_to_string(REFERENCE).expect("the reference vendor file is readable")
}

pub fn reference() -> VendorFile {
    VendorFile::load(REFERENCE).expect("the reference vendor file loads")
}

/// The reference text with `from` replaced by `to` (which must occur once).
pub fn edited(from: &str, to: &str) -> String {
    let text = reference_text();
    assert_eq!(text.matches(from).count(), 1, "{from:?} must occur once");
    text.replace(from, to)
}

/// Parses edited reference text; panics if it does not parse.
pub fn parse(text: &str) -> VendorFile {
    VendorFile::parse(text, "vendor.toml").expect("parses")
}
