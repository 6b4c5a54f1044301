//! Vulnerability disclosure (EN 303 645 5.2), the defined support period
//! (5.3-13) and the model designation (5.3-16), from one vendor file to every
//! surface.
//!
//! A product states its disclosure contact, timelines, model and support
//! period once, in the vendor file (`/usr/lib/hearth/vendor.toml`). This
//! crate parses and validates that file and derives from it:
//!
//! - `/.well-known/security.txt` (RFC 9116): [`security_txt::body`];
//! - the support-period status and its plain sentences: [`SupportStatus`];
//! - the MQTT device-info payload: [`DeviceInfo`];
//! - an `/etc/os-release` fragment: [`os_release::fragment`];
//! - the UK PSTI statement of compliance: [`statement::render`].
//!
//! The crate is IO-free apart from [`VendorFile::load`], which reads the
//! vendor file and the optional signed security.txt. "Today" is always a
//! parameter, so every date rule is testable.
//!
//! ```no_run
//! # fn main() -> Result<(), disclosure::Error> {
//! let today = time::OffsetDateTime::now_utc().date();
//! let vendor = disclosure::VendorFile::load("/usr/lib/hearth/vendor.toml")?;
//! vendor.validate()?; // refuse to start on a wrong file
//! for p in vendor.dated_problems(today) {
//!     eprintln!("{}: `{}`: {}", vendor.path.display(), p.field, p.message); // log, keep running
//! }
//! let body = disclosure::security_txt::body(&vendor, today);
//! let status = vendor.support_status(today);
//! # let _ = (body, status); Ok(()) }
//! ```
//!
//! # Current limitations
//! - A vendor-signed security.txt is checked for its *format*, Expires and
//!   contacts; its OpenPGP signature is not verified (no OpenPGP code on the
//!   device).
//! - The PSTI statement's wording rests on a secondary summary of Schedule 4;
//!   the vendor checks it against the legislation before signing.

pub mod dates;
pub mod device_info;
mod error;
pub mod os_release;
pub mod security_page;
pub mod security_txt;
pub mod statement;
pub mod support;
mod vendor;

pub use device_info::DeviceInfo;
pub use error::{Error, Problem};
pub use support::{SupportState, SupportStatus};
pub use vendor::{
    Disclosure, MAX_EXPIRES_DAYS, Product, SecurityTxtPolicy, Statement, Support, Vendor,
    VendorFile,
};

/// Where the image installs the vendor file.
pub const DEFAULT_PATH: &str = "/usr/lib/hearth/vendor.toml";

impl VendorFile {
    /// The support-period status on `today`.
    pub fn support_status(&self, today: time::Date) -> SupportStatus {
        SupportStatus::on(self.support.end_date, today)
    }

    /// The security.txt body to serve on `today` (signed file or generated).
    pub fn security_txt(&self, today: time::Date) -> String {
        security_txt::body(self, today)
    }

    /// The MQTT device-info payload.
    pub fn device_info(&self, firmware_version: &str, today: time::Date) -> DeviceInfo {
        DeviceInfo::new(self, firmware_version, today)
    }
}
