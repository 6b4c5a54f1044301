//! Errors: every one reaches a person as a sentence naming the file, the
//! field and what to do.

use std::fmt;
use std::path::PathBuf;

/// One problem in a vendor file: the field and a sentence about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key path, e.g. `disclosure.contacts[1]`.
    pub field: String,
    /// What is wrong and what to do, as a full sentence.
    pub message: String,
}

impl Problem {
    pub(crate) fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Why a vendor file cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be read at all.
    #[error(
        "cannot read the vendor file {path}: {source}. Check that the image installs it \
         (the reference one is yocto-layer/meta-hearth/recipes-core/hearth-vendor/files/vendor.toml)."
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not have the expected shape
    /// (unknown key, wrong type, missing key).
    #[error("{}: {}", path.display(), problem_sentence(problem))]
    Parse { path: PathBuf, problem: Problem },
    /// The file parsed but its content is wrong; one entry per problem.
    #[error("{}", Invalid { path, problems })]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl Error {
    /// The problems this error consists of (one for read and parse errors).
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            Error::Read { source, .. } => vec![Problem::new("", source.to_string())],
            Error::Parse { problem, .. } => vec![problem.clone()],
            Error::Invalid { problems, .. } => problems.clone(),
        }
    }
}

fn problem_sentence(p: &Problem) -> String {
    if p.field.is_empty() {
        p.message.clone()
    } else {
        format!("`{}`: {}", p.field, p.message)
    }
}

/// Formats a list of problems, one per line, each prefixed with the file.
struct Invalid<'a> {
    path: &'a PathBuf,
    problems: &'a [Problem],
}

impl fmt::Display for Invalid<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "the vendor file {} has {n} problem{}; fix {} and check again with `hearth-vendor check`:",
            self.path.display(),
            if n == 1 { "" } else { "s" },
            if n == 1 { "it" } else { "them" },
        )?;
        for p in self.problems {
            write!(f, "\n  {}: {}", self.path.display(), problem_sentence(p))?;
        }
        Ok(())
    }
}
