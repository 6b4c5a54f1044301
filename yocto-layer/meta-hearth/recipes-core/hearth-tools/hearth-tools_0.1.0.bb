SUMMARY = "Hearth build tools: hearth-vendor checks a vendor file"
DESCRIPTION = "hearth-vendor (crate disclosure) validates the vendor file at build time, with the same rules hearthd applies at start. Built for the build host (hearth-tools-native) and for SDKs."
BUGTRACKER = "https://example.com/hearth/issues"
SECTION = "devel"

require recipes-core/hearthd/hearth-source.inc

CARGO_SRC_DIR = "crates/disclosure"
CARGO_BUILD_FLAGS += "--bin hearth-vendor"

BBCLASSEXTEND = "native nativesdk"
