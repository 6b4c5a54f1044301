//! The product configuration: TOML layers, defaults first, overrides last.
//!
//! The image ships defaults in `/usr/lib/hearth/hearth.toml`; a vendor or an
//! engineer overrides single keys in `/etc/hearth/hearth.toml`. Tables merge
//! key by key, so an override file holds only what it changes. Every error
//! names the file and the key that caused it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The layers read when no `--config` is given, in order.
pub const SYSTEM_LAYERS: [&str; 3] = [
    "/usr/lib/hearth/hearth.toml",
    "/etc/hearth/hearth.toml",
    // Per-device values from the production line (device id, certificate
    // paths), on the persistent partition: only `PER_DEVICE_KEYS`.
    "/data/factory/hearth.toml",
];

/// What the factory layer may set: the values that differ per device.
/// Everything else (trust anchors, servers, hooks, clock settings) is the
/// image's, so writing the data partition cannot change what the device
/// trusts. A development image (marked as trusting the development keys)
/// may set anything there, which the test labs use.
pub const PER_DEVICE_KEYS: [&str; 5] = [
    "fleet.device_id",
    "fleet.cert_file",
    "fleet.key_file",
    "fleet.csr_file",
    "credentials.factory_setup_code",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where persistent state lives (`/data/hearth` on the device).
    pub data_dir: PathBuf,
    /// The vendor file: product identity, disclosure policy, support period.
    pub vendor_file: PathBuf,
    pub web: WebConfig,
    #[serde(default)]
    pub credentials: CredentialsConfig,
    /// The MQTT link to the vendor's fleet service; absent means no MQTT.
    #[serde(default)]
    pub fleet: Option<crate::fleet::FleetConfig>,
    /// Automatic updates; absent means this device does not update itself.
    #[serde(default)]
    pub update: Option<crate::update::UpdateConfig>,
    /// The GPIO lines of the relay and the reset button; none by default.
    #[serde(default)]
    pub board: crate::board::BoardConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CredentialsConfig {
    /// Shortest password accepted. 15 by default (NIST SP 800-63B-4 for a
    /// single-factor login); a vendor may lower it, never below 8.
    pub password_min_length: usize,
    /// A setup code written by the production line, so it can be printed on
    /// the label. Read at first boot, stored as a hash, then deleted (put it
    /// where hearthd may delete it, e.g. in `data_dir`). Without it, or
    /// after a factory reset, a code is generated and shown on the console.
    pub factory_setup_code: Option<PathBuf>,
}

impl Default for CredentialsConfig {
    fn default() -> Self {
        CredentialsConfig {
            password_min_length: credentials::policy::DEFAULT_MIN_CHARS,
            factory_setup_code: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Addresses the HTTPS server listens on, e.g. `["0.0.0.0:443"]`.
    pub listen: Vec<SocketAddr>,
}

/// One configuration file: where it is, whether it must exist, and
/// whether it may hold only [`PER_DEVICE_KEYS`].
#[derive(Debug, Clone)]
pub struct Layer {
    pub path: PathBuf,
    pub required: bool,
    pub per_device_only: bool,
}

impl Layer {
    /// The system layers: the shipped defaults must exist, overrides need
    /// not; the factory layer is limited to per-device keys unless the
    /// image is a marked development image.
    pub fn system() -> Vec<Layer> {
        let development = Path::new(crate::update::DEVELOPMENT_KEYS_MARKER).exists();
        SYSTEM_LAYERS
            .iter()
            .enumerate()
            .map(|(i, path)| Layer {
                path: path.into(),
                required: i == 0,
                per_device_only: i == SYSTEM_LAYERS.len() - 1 && !development,
            })
            .collect()
    }

    /// A layer named on the command line must exist.
    pub fn explicit(path: impl Into<PathBuf>) -> Layer {
        Layer {
            path: path.into(),
            required: true,
            per_device_only: false,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read the configuration file {path}: {source}. Check that it exists and is readable."
    )]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the configuration file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{}: key `{key}`: {message}", display_files(.files))]
    Value {
        files: Vec<PathBuf>,
        key: String,
        message: String,
    },
}

fn display_files(files: &[PathBuf]) -> String {
    let names: Vec<_> = files.iter().map(|f| f.display().to_string()).collect();
    names.join(", ")
}

impl Config {
    /// Reads and merges the layers, then checks every value.
    pub fn load(layers: &[Layer]) -> Result<Config, ConfigError> {
        let mut merged = toml::Table::new();
        let mut origin = Origin::default();
        let mut read_any = Vec::new();
        for layer in layers {
            let text = match std::fs::read_to_string(&layer.path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !layer.required => continue,
                Err(source) => {
                    return Err(ConfigError::Read {
                        path: layer.path.clone(),
                        source,
                    });
                }
            };
            let table: toml::Table =
                text.parse()
                    .map_err(|e: toml::de::Error| ConfigError::Syntax {
                        path: layer.path.clone(),
                        message: e.to_string().trim_end().replace('\n', " "),
                    })?;
            if layer.per_device_only
                && let Some(key) = dotted_keys(&table)
                    .into_iter()
                    .find(|key| !PER_DEVICE_KEYS.contains(&key.as_str()))
            {
                return Err(ConfigError::Value {
                    files: vec![layer.path.clone()],
                    key,
                    message: format!(
                        "the factory file may set only per-device values ({}); everything else \
                         belongs in the image's /etc/hearth/hearth.toml. Remove the key from the \
                         factory file",
                        PER_DEVICE_KEYS.join(", ")
                    ),
                });
            }
            merge(&mut merged, table, "", &layer.path, &mut origin);
            read_any.push(layer.path.clone());
        }
        let config: Config =
            serde_path_to_error::deserialize(toml::Value::Table(merged)).map_err(|e| {
                let key = e.path().to_string();
                ConfigError::Value {
                    files: origin.files_for(&key, &read_any),
                    key,
                    message: e.into_inner().to_string(),
                }
            })?;
        config.check(&origin, &read_any)?;
        Ok(config)
    }

    fn check(&self, origin: &Origin, files: &[PathBuf]) -> Result<(), ConfigError> {
        let fail = |key: &str, message: &str| ConfigError::Value {
            files: origin.files_for(key, files),
            key: key.to_owned(),
            message: message.to_owned(),
        };
        if !self.data_dir.is_absolute() {
            return Err(fail(
                "data_dir",
                "expected an absolute path, such as \"/data/hearth\"",
            ));
        }
        if !self.vendor_file.is_absolute() {
            return Err(fail(
                "vendor_file",
                "expected an absolute path, such as \"/usr/lib/hearth/vendor.toml\"",
            ));
        }
        if let Err(error) = credentials::PasswordPolicy::new(self.credentials.password_min_length) {
            return Err(fail("credentials.password_min_length", &error.to_string()));
        }
        if let Some(fleet) = &self.fleet
            && let Err((key, message)) = fleet.check()
        {
            return Err(fail(&format!("fleet.{key}"), &message));
        }
        if let Some(update) = &self.update
            && let Err((key, message)) = update.check()
        {
            return Err(fail(&format!("update.{key}"), &message));
        }
        if self.web.listen.is_empty() {
            return Err(fail(
                "web.listen",
                "expected at least one address to listen on, such as [\"0.0.0.0:443\"]",
            ));
        }
        Ok(())
    }
}

/// Which file set each key, so an error can name the file to fix.
#[derive(Debug, Default)]
struct Origin(BTreeMap<String, PathBuf>);

impl Origin {
    /// The file that set `key`, or a parent of it; all files when unknown
    /// (a missing key is missing from every layer).
    fn files_for(&self, key: &str, all: &[PathBuf]) -> Vec<PathBuf> {
        let mut probe = key;
        loop {
            if let Some(file) = self.0.get(probe) {
                return vec![file.clone()];
            }
            match probe.rfind(['.', '[']) {
                Some(cut) => probe = &probe[..cut],
                None => return all.to_vec(),
            }
        }
    }
}

/// Every leaf key of `table`, dotted (`fleet.device_id`).
fn dotted_keys(table: &toml::Table) -> Vec<String> {
    table
        .iter()
        .flat_map(|(key, value)| match value {
            toml::Value::Table(inner) => dotted_keys(inner)
                .into_iter()
                .map(|leaf| format!("{key}.{leaf}"))
                .collect(),
            _ => vec![key.clone()],
        })
        .collect()
}

fn merge(
    into: &mut toml::Table,
    from: toml::Table,
    prefix: &str,
    file: &Path,
    origin: &mut Origin,
) {
    for (key, value) in from {
        let dotted = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (into.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(table)) => {
                merge(existing, table, &dotted, file, origin);
            }
            (_, value) => {
                origin
                    .0
                    .retain(|k, _| !(k == &dotted || k.starts_with(&format!("{dotted}."))));
                origin.0.insert(dotted, file.to_path_buf());
                into.insert(key, value);
            }
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.path.display().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layers(files: &[(&str, &str)]) -> (tempfile::TempDir, Vec<Layer>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let layers = files
            .iter()
            .map(|(name, text)| {
                let path = dir.path().join(name);
                std::fs::write(&path, text).expect("write layer");
                Layer::explicit(path)
            })
            .collect();
        (dir, layers)
    }

    const DEFAULTS: &str = r#"
data_dir = "/data/hearth"
vendor_file = "/usr/lib/hearth/vendor.toml"
[web]
listen = ["0.0.0.0:443"]
"#;

    #[test]
    fn the_factory_file_may_set_per_device_values_only() {
        let factory = |text: &str| {
            let (dir, mut layers) = layers(&[("defaults.toml", DEFAULTS), ("factory.toml", text)]);
            layers[1].per_device_only = true;
            (dir, Config::load(&layers))
        };
        let (_dir, ok) = factory("[credentials]\nfactory_setup_code = \"/data/factory/code\"\n");
        assert!(ok.is_ok(), "{ok:?}");
        // The attack: a writable partition that changes what the device trusts.
        for (text, key) in [
            (
                "[update]\nroot_file = \"/data/evil.pem\"\nca_file = \"/data/ca.pem\"\n",
                "update.",
            ),
            (
                "[update]\nhealth_hook = \"/data/run-me\"\n",
                "update.health_hook",
            ),
            ("data_dir = \"/tmp\"\n", "data_dir"),
        ] {
            let (_dir, refused) = factory(text);
            let error = refused.expect_err(text).to_string();
            assert!(
                error.contains("factory.toml: key `") && error.contains(key),
                "{error}"
            );
            assert!(error.contains("only per-device values"), "{error}");
        }
    }

    #[test]
    fn an_override_changes_only_the_keys_it_names() {
        let (_dir, layers) = layers(&[
            ("defaults.toml", DEFAULTS),
            ("override.toml", "[web]\nlisten = [\"127.0.0.1:8443\"]\n"),
        ]);
        let config = Config::load(&layers).expect("valid config");
        assert_eq!(config.data_dir, PathBuf::from("/data/hearth"));
        assert_eq!(
            config.web.listen,
            vec!["127.0.0.1:8443".parse().expect("addr")]
        );
    }

    #[test]
    fn a_bad_value_names_the_file_and_the_key() {
        let (dir, layers) = layers(&[
            ("defaults.toml", DEFAULTS),
            ("override.toml", "[web]\nlisten = [\"not an address\"]\n"),
        ]);
        let err = Config::load(&layers).expect_err("bad address").to_string();
        let file = dir.path().join("override.toml").display().to_string();
        assert!(
            err.starts_with(&format!("{file}: key `web.listen[0]`")),
            "{err}"
        );
        assert!(err.contains("invalid socket address"), "{err}");
    }

    #[test]
    fn an_unknown_key_is_refused_with_its_name() {
        let (dir, layers) = layers(&[
            ("defaults.toml", DEFAULTS),
            ("override.toml", "[web]\nlsiten = 1\n"),
        ]);
        let err = Config::load(&layers).expect_err("unknown key").to_string();
        assert!(
            err.contains(&dir.path().join("override.toml").display().to_string()),
            "{err}"
        );
        assert!(err.contains("unknown field `lsiten`"), "{err}");
    }

    #[test]
    fn a_relative_data_dir_is_refused() {
        let (_dir, layers) = layers(&[
            ("defaults.toml", DEFAULTS),
            ("o.toml", "data_dir = \"data\"\n"),
        ]);
        let err = Config::load(&layers).expect_err("relative").to_string();
        assert!(
            err.contains("key `data_dir`: expected an absolute path"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_required_file_is_an_error_and_a_missing_override_is_not() {
        let (dir, mut layers) = layers(&[("defaults.toml", DEFAULTS)]);
        layers.push(Layer {
            path: dir.path().join("absent.toml"),
            required: false,
            per_device_only: true,
        });
        assert!(Config::load(&layers).is_ok());
        layers.push(Layer::explicit(dir.path().join("absent.toml")));
        let err = Config::load(&layers).expect_err("missing").to_string();
        assert!(err.contains("cannot read the configuration file"), "{err}");
    }

    #[test]
    fn a_syntax_error_names_the_file() {
        let (dir, layers) = layers(&[("defaults.toml", "data_dir = \n")]);
        let err = Config::load(&layers).expect_err("syntax").to_string();
        assert!(
            err.contains(&dir.path().join("defaults.toml").display().to_string()),
            "{err}"
        );
        assert!(err.contains("not valid TOML"), "{err}");
    }
}
