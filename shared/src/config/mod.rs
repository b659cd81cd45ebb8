//! Configuration: defaults → optional TOML file (`--config`) → environment (`INETSVC_…`) →
//! command-line flags, layered by the `config` crate and checked into typed values.
//!
//! One [`Schema`] drives everything: the defaults, one `--flag` per key, the `--help`
//! text, the accepted environment variables, the unknown-key check and `--print-config`.
//! This module knows no owner of a key: the runtime, telemetry, the fault catalogue, the
//! admin API and the service each hand their own key table in (docs/architecture.md,
//! "Rules"). Every error names the key (or file, or variable) and says what would be
//! accepted, and the binaries exit with code 2 on it.

mod settings;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Arg, ArgAction, Command};

pub use settings::{parse_addresses, Settings};

/// Prefix of the environment variables that set keys: `INETSVC_TCP_LISTEN` sets `tcp_listen`.
pub const ENV_PREFIX: &str = "INETSVC_";

/// One setting: its name in TOML (`tcp_listen`), its default, its help text, and whether
/// its value is a secret.
///
/// The flag is the name with dashes (`--tcp-listen`), the variable the name upper-cased
/// behind [`ENV_PREFIX`]. A default may hold placeholders such as `{port}`, which the
/// [`Schema`] fills in.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// Name in the TOML file, snake_case.
    pub name: &'static str,
    /// Default value, as it would be written on the command line.
    pub default: &'static str,
    /// One line for `--help`.
    pub help: &'static str,
    /// A secret is never printed: `--print-config` shows `<redacted>` for it.
    pub secret: bool,
    /// A live key takes a new value on a reload (SIGHUP, `POST /admin/reload`, a changed
    /// file) without a restart; any other key needs one.
    pub live: bool,
}

impl Key {
    /// An ordinary setting.
    pub const fn new(name: &'static str, default: &'static str, help: &'static str) -> Self {
        Key {
            name,
            default,
            help,
            secret: false,
            live: false,
        }
    }

    /// A setting whose value must not be shown (a token).
    pub const fn secret(name: &'static str, default: &'static str, help: &'static str) -> Self {
        Key {
            name,
            default,
            help,
            secret: true,
            live: false,
        }
    }

    /// The same key, changeable by a reload.
    pub const fn live(mut self) -> Self {
        self.live = true;
        self
    }
}

/// Everything loading needs to know about one binary: its name and help, every key table
/// that applies to it, and the values of the placeholders in their defaults.
#[derive(Debug, Clone)]
pub struct Schema {
    /// Binary name, used in `--help` and error messages (`echod`).
    pub binary: &'static str,
    /// One line for `--help`.
    pub about: &'static str,
    /// What `--version` prints.
    pub version: &'static str,
    /// Key tables, in the order `--help` lists them.
    pub tables: Vec<&'static [Key]>,
    /// `(placeholder, value)` pairs substituted in defaults, e.g. `("{port}", "7")`.
    pub placeholders: Vec<(&'static str, String)>,
}

impl Schema {
    /// Every key with its default resolved.
    fn resolved_keys(&self) -> Vec<(Key, String)> {
        self.tables
            .iter()
            .flat_map(|table| table.iter())
            .map(|key| {
                let default = self
                    .placeholders
                    .iter()
                    .fold(key.default.to_owned(), |text, (name, value)| {
                        text.replace(name, value)
                    });
                (*key, default)
            })
            .collect()
    }
}

/// A configuration error: one line naming the key, file or variable, and the fix.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A key has a value that cannot be used.
    #[error("{key}: {reason}")]
    Invalid {
        /// The key, as in the TOML file.
        key: String,
        /// What is wrong and what would be accepted.
        reason: String,
    },
    /// A key that no part of this service knows.
    #[error("{origin}: unknown key `{key}`; known keys: {known}")]
    UnknownKey {
        /// Where it came from: the file or the variable.
        origin: String,
        /// The unknown key.
        key: String,
        /// Every key this service knows, comma-separated.
        known: String,
    },
    /// The configuration file cannot be read or parsed.
    #[error("config file {path}: {reason}")]
    File {
        /// The file as given to `--config`.
        path: String,
        /// The reader's or parser's message.
        reason: String,
    },
}

impl ConfigError {
    /// An [`ConfigError::Invalid`] for `key`.
    pub fn invalid(key: &str, reason: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.to_owned(),
            reason: reason.into(),
        }
    }
}

/// What the command line asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Run the service.
    Serve,
    /// Print the effective configuration as TOML and exit.
    PrintConfig,
    /// Probe the running service's `/readyz` and exit 0 only on 200.
    Healthcheck,
}

/// Why loading stopped: clap's own outcome (help, version, usage error) or a config error.
#[derive(Debug)]
pub enum LoadError {
    /// `--help`, `--version` or a usage error; clap prints it and picks the exit code.
    Cli(clap::Error),
    /// An invalid configuration (exit code 2).
    Config(ConfigError),
}

impl From<ConfigError> for LoadError {
    fn from(error: ConfigError) -> Self {
        LoadError::Config(error)
    }
}

/// The command line of a binary, built from its schema.
pub fn command(schema: &Schema) -> Command {
    let mut command = Command::new(schema.binary)
        .version(schema.version)
        .about(schema.about)
        .after_help(
            "Every option can also be set in the TOML file (`tcp_listen = \"[::]:7007\"`) or \
             the environment (INETSVC_TCP_LISTEN). Flags beat the environment, which beats the \
             file, which beats the defaults. Durations take units: 500ms, 10s, 5m, 1h.",
        )
        .arg(
            Arg::new("config")
                .long("config")
                .value_name("FILE")
                .value_parser(clap::value_parser!(PathBuf))
                .global(true)
                .help("TOML file with any of the keys below"),
        )
        .arg(
            Arg::new("print-config")
                .long("print-config")
                .action(ArgAction::SetTrue)
                .help("Print the effective configuration as TOML and exit"),
        )
        .subcommand(
            Command::new("healthcheck").about(
                "Exit 0 if this service's /readyz answers 200, else 1 (for container health checks: no shell or curl needed)",
            ),
        );
    for (key, default) in schema.resolved_keys() {
        command = command.arg(
            Arg::new(key.name)
                .long(key.name.replace('_', "-"))
                .value_name("VALUE")
                // Values such as `-03:00` (a time zone) or `-4` (refused with a reason,
                // rather than taken for a flag) start with a dash.
                .allow_hyphen_values(true)
                // `echod healthcheck --admin-listen …` reads the same keys as the server.
                .global(true)
                // Given twice, the last one wins, as with most Unix tools.
                .overrides_with(key.name)
                .help(format!(
                    "{} [default: {}] [env: {}{}]{}",
                    key.help,
                    default,
                    ENV_PREFIX,
                    key.name.to_uppercase(),
                    if key.live { " [reloads live]" } else { "" }
                )),
        );
    }
    command
}

/// Parses the command line and layers the configuration.
///
/// `args` includes the program name; `env` is the process environment (passed in so that
/// tests need not change the real one).
pub fn load(
    schema: &Schema,
    args: impl IntoIterator<Item = OsString>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<(Mode, Settings), LoadError> {
    load_overridden(schema, args, env, &BTreeMap::new())
}

/// [`load`] with a last layer above the flags: the values set at run time through the
/// admin API (`PUT /admin/settings/KEY`), which the reloader keeps until they are unset.
pub fn load_overridden(
    schema: &Schema,
    args: impl IntoIterator<Item = OsString>,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &BTreeMap<String, String>,
) -> Result<(Mode, Settings), LoadError> {
    let matches = command(schema)
        .try_get_matches_from(args)
        .map_err(LoadError::Cli)?;
    let keys = schema.resolved_keys();
    let known = || {
        keys.iter()
            .map(|(key, _)| key.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let is_known = |name: &str| keys.iter().any(|(key, _)| key.name == name);

    let mut builder = config::Config::builder();
    for (key, default) in &keys {
        builder = builder
            .set_default(key.name, default.as_str())
            .map_err(|e| ConfigError::invalid(key.name, e.to_string()))?;
    }

    let file = matches.get_one::<PathBuf>("config");
    if let Some(path) = file {
        let shown = path.display().to_string();
        let text = read_small_file(path, MAX_CONFIG_BYTES).map_err(|reason| ConfigError::File {
            path: shown.clone(),
            reason: format!("{reason}; check the path given to --config"),
        })?;
        // Parse once ourselves: the unknown-key check must name the file, and TOML
        // errors read better with toml's own line and column.
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::File {
                path: shown.clone(),
                reason: e.message().to_owned() + &line_of(&text, e.span()),
            })?;
        for (name, value) in &table {
            if !is_known(name) {
                return Err(ConfigError::UnknownKey {
                    origin: format!("config file {shown}"),
                    key: name.clone(),
                    known: known(),
                }
                .into());
            }
            let empty = match value {
                toml::Value::String(text) => text.trim().is_empty(),
                toml::Value::Array(items) => items.is_empty(),
                _ => false,
            };
            if empty {
                refuse_empty(&keys, name, &format!("config file {shown}"))?;
            }
        }
        builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
    }

    // Sorted, so that the first unknown variable reported does not depend on hash order.
    let env: BTreeMap<String, String> = env
        .into_iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    for (variable, value) in &env {
        let name = variable[ENV_PREFIX.len()..].to_lowercase();
        if !is_known(&name) {
            return Err(ConfigError::UnknownKey {
                origin: format!("environment variable {variable}"),
                key: name,
                known: known(),
            }
            .into());
        }
        if value.trim().is_empty() {
            refuse_empty(&keys, &name, &format!("environment variable {variable}"))?;
        }
        builder = builder
            .set_override(name.as_str(), value.as_str())
            .map_err(|e| ConfigError::invalid(&name, e.to_string()))?;
    }

    for (key, _) in &keys {
        if let Some(value) = matches.get_one::<String>(key.name) {
            if value.trim().is_empty() {
                let flag = format!("flag --{}", key.name.replace('_', "-"));
                refuse_empty(&keys, key.name, &flag)?;
            }
            builder = builder
                .set_override(key.name, value.as_str())
                .map_err(|e| ConfigError::invalid(key.name, e.to_string()))?;
        }
    }

    for (name, value) in overrides {
        if !is_known(name) {
            return Err(ConfigError::UnknownKey {
                origin: "the admin API".to_owned(),
                key: name.clone(),
                known: known(),
            }
            .into());
        }
        if value.trim().is_empty() {
            refuse_empty(&keys, name, "the admin API")?;
        }
        builder = builder
            .set_override(name.as_str(), value.as_str())
            .map_err(|e| ConfigError::invalid(name, e.to_string()))?;
    }

    let values = builder.build().map_err(|e| ConfigError::File {
        path: file.map(|p| p.display().to_string()).unwrap_or_default(),
        reason: e.to_string(),
    })?;
    let mode = if matches.subcommand_matches("healthcheck").is_some() {
        Mode::Healthcheck
    } else if matches.get_flag("print-config") {
        Mode::PrintConfig
    } else {
        Mode::Serve
    };
    let file = file.cloned();
    Ok((mode, Settings { values, keys, file }))
}

/// `text` with control characters (a newline in a request body, an escape sequence)
/// written as escapes, so that an error quoting what was sent stays one line in a log
/// and cannot forge another.
pub fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Largest configuration file read, bytes: a config is a page, and a bound keeps a wrong
/// path (a device, a huge log) from being read whole.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// An empty value for a key whose default is not empty is a mistake (an unset variable in
/// a shell or a template), never a way to say "off": refused, naming where it came from.
fn refuse_empty(keys: &[(Key, String)], name: &str, origin: &str) -> Result<(), ConfigError> {
    match keys.iter().find(|(key, _)| key.name == name) {
        Some((_, default)) if !default.is_empty() => Err(ConfigError::invalid(
            name,
            format!("{origin} is empty; give a value (`off` turns a listener off) or leave it out for the default `{default}`"),
        )),
        _ => Ok(()),
    }
}

/// Reads a text file that must be a regular file of at most `limit` bytes: a FIFO, a
/// device or a directory is refused at once instead of blocking or reading for ever.
pub fn read_small_file(path: &std::path::Path, limit: u64) -> Result<String, String> {
    use std::io::Read;
    let metadata = std::fs::metadata(path).map_err(|e| e.to_string())?;
    if !metadata.is_file() {
        return Err("not a regular file".to_owned());
    }
    if metadata.len() > limit {
        return Err(format!(
            "{} bytes, more than the {limit} allowed",
            metadata.len()
        ));
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .map_err(|e| e.to_string())?
        .take(limit + 1)
        .read_to_string(&mut text)
        .map_err(|e| e.to_string())?;
    if text.len() as u64 > limit {
        return Err(format!("more than the {limit} bytes allowed"));
    }
    Ok(text)
}

/// " at line N" for a TOML error span, or nothing.
fn line_of(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    match span {
        Some(span) => format!(
            " (line {})",
            text[..span.start.min(text.len())].matches('\n').count() + 1
        ),
        None => String::new(),
    }
}
