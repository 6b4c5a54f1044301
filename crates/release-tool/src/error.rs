//! The tool's errors: each is a sentence that says what to do.

use std::path::PathBuf;

/// Everything that can go wrong in `hearth-release`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad command line.
    #[error("{0}")]
    Usage(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Refusing to overwrite.
    #[error("{0} already exists; refusing to overwrite it (move it away first)")]
    Exists(PathBuf),
    /// A key file is unusable.
    #[error("{path}: {source}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: update_manifest::KeyError,
    },
    /// A development key without `--dev`.
    #[error(
        "{0} is a DEVELOPMENT key (published, NOT FOR PRODUCTION); anyone can sign with it. Pass --dev if this is for development only"
    )]
    DevKey(String),
    /// The release was refused (verify) or a document is invalid.
    #[error("refused: {0}")]
    Rejected(#[from] update_manifest::Rejection),
    /// The artifact does not match its manifest.
    #[error("refused: {0}")]
    Artifact(#[from] update_manifest::ArtifactError),
    /// An external tool failed.
    #[error("{tool} failed: {detail}")]
    Tool {
        /// What was run.
        tool: String,
        /// Its error output or the OS error.
        detail: String,
    },
    /// Anything else, as a sentence.
    #[error("{0}")]
    Msg(String),
}

impl Error {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => 2,
            _ => 1,
        }
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }
}

impl From<lexopt::Error> for Error {
    fn from(e: lexopt::Error) -> Error {
        Error::Usage(format!("{e}; see hearth-release help"))
    }
}

impl From<update_manifest::FieldError> for Error {
    fn from(e: update_manifest::FieldError) -> Error {
        Error::Usage(e.to_string())
    }
}
