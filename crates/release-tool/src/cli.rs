//! Small helpers for lexopt values.

use std::path::PathBuf;

use lexopt::ValueExt;
use std::str::FromStr;

use crate::Error;

/// The next value as a string.
pub fn string(p: &mut lexopt::Parser) -> Result<String, Error> {
    Ok(p.value()?.string()?)
}

/// The next value as a path.
pub fn path(p: &mut lexopt::Parser) -> Result<PathBuf, Error> {
    Ok(PathBuf::from(p.value()?))
}

/// The next value parsed as `T`, naming the option on failure.
pub fn parse<T: FromStr>(p: &mut lexopt::Parser, option: &str) -> Result<T, Error>
where
    T::Err: std::fmt::Display,
{
    let s = string(p)?;
    s.parse()
        .map_err(|e| Error::Usage(format!("--{option} {s:?}: {e}")))
}

/// `Some(value)` or a usage error naming the missing option.
pub fn required<T>(v: Option<T>, option: &str) -> Result<T, Error> {
    v.ok_or_else(|| Error::Usage(format!("--{option} is required; see hearth-release help")))
}

/// Prints a command's own usage line and returns.
pub fn help(text: &str) -> Result<(), Error> {
    eprintln!("{text}");
    Ok(())
}
