//! One module per subcommand; each has `main(parser)` that parses its
//! options and runs.

pub mod audit;
pub mod build;
pub mod certify;
pub mod keygen;
pub mod manifest;
pub mod publish;
pub mod rotate;
pub mod sbom;
pub mod verify;
