//! The layered settings of one binary and their typed, checked accessors.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::Duration;

use super::{one_line, ConfigError, Key, Schema};

/// The layered settings of one service, readable key by key with typed, checked accessors.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The layered values.
    pub(super) values: config::Config,
    /// Every key this service knows, runtime keys first, with its default resolved.
    pub(super) keys: Vec<(Key, String)>,
    /// The file given to `--config`, if any.
    pub(super) file: Option<std::path::PathBuf>,
}

impl Settings {
    /// Settings with every default of `schema` and nothing else, for tests and tools.
    pub fn defaults(schema: &Schema) -> Self {
        let args = [OsString::from(schema.binary)];
        match super::load(schema, args, std::iter::empty()) {
            Ok((_, settings)) => settings,
            // The defaults are compile-time constants; a failure is a bug in a key table.
            Err(error) => panic!(
                "default settings of {} do not load: {error:?}",
                schema.binary
            ),
        }
    }

    /// Every key, in the schema's order.
    pub fn keys(&self) -> impl Iterator<Item = &Key> {
        self.keys.iter().map(|(key, _)| key)
    }

    /// The file given to `--config`, if any.
    pub fn file(&self) -> Option<&std::path::Path> {
        self.file.as_deref()
    }

    /// The raw value of `key` as text; a TOML array is joined with commas.
    pub fn text(&self, key: &str) -> Result<String, ConfigError> {
        if let Ok(items) = self.values.get_array(key) {
            let parts: Result<Vec<String>, _> =
                items.into_iter().map(|item| item.into_string()).collect();
            return parts
                .map(|parts| parts.join(","))
                .map_err(|e| ConfigError::invalid(key, e.to_string()));
        }
        self.values
            .get_string(key)
            .map_err(|e| ConfigError::invalid(key, format!("{e}; expected a single value")))
    }

    /// `key` parsed by `parse`, whose error says what would be accepted.
    pub fn parse<T>(
        &self,
        key: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        let text = self.text(key)?;
        parse(text.trim()).map_err(|reason| {
            let (text, reason) = (one_line(&text), one_line(&reason));
            ConfigError::invalid(key, format!("invalid value `{text}`: {reason}"))
        })
    }

    /// A boolean: true/false, yes/no, on/off, 1/0.
    pub fn flag(&self, key: &str) -> Result<bool, ConfigError> {
        self.parse(key, |text| match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err("expected true or false".to_owned()),
        })
    }

    /// A whole number within `min..=max`.
    pub fn number(&self, key: &str, min: u64, max: u64) -> Result<u64, ConfigError> {
        self.parse(key, |text| {
            let value: u64 = text
                .parse()
                .map_err(|_| format!("expected a whole number from {min} to {max}"))?;
            if (min..=max).contains(&value) {
                Ok(value)
            } else {
                Err(format!("expected a whole number from {min} to {max}"))
            }
        })
    }

    /// A duration with a unit (`500ms`, `10s`, `5m`), at least `min`.
    pub fn duration(&self, key: &str, min: Duration) -> Result<Duration, ConfigError> {
        self.parse(key, |text| {
            let value = humantime::parse_duration(text)
                .map_err(|e| format!("{e}; expected a duration such as 500ms, 10s or 5m"))?;
            if value < min {
                return Err(format!(
                    "must be at least {}",
                    humantime::format_duration(min)
                ));
            }
            Ok(value)
        })
    }

    /// A list of socket addresses; `off` (or nothing) is the empty list.
    pub fn addresses(&self, key: &str) -> Result<Vec<SocketAddr>, ConfigError> {
        self.parse(key, parse_addresses)
    }

    /// Every key with its effective value, as a TOML document that `--config` accepts.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        for (key, _) in &self.keys {
            let mut value = self.text(key.name).unwrap_or_default();
            // The effective configuration is shown to people and pasted into tickets: a
            // secret must not travel with it.
            if key.secret && !value.is_empty() {
                value = "<redacted>".to_owned();
            }
            out.push_str(&format!(
                "# {}\n{} = {}\n",
                key.help,
                key.name,
                toml::Value::String(value)
            ));
        }
        out
    }
}

/// Parses `IP:PORT[,IP:PORT…]`, or `off` for none (empty is refused: an unset variable
/// must not turn a listener off in silence).
pub fn parse_addresses(text: &str) -> Result<Vec<SocketAddr>, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(Vec::new());
    }
    if text.trim().is_empty() {
        return Err("empty; write IP:PORT, or `off` to turn it off".to_owned());
    }
    let mut addresses = Vec::new();
    for part in text.split(',').map(str::trim) {
        let address: SocketAddr = part.parse().map_err(|_| {
            format!("`{part}` is not IP:PORT; write 127.0.0.1:7007 or [::1]:7007, or `off`")
        })?;
        if addresses.contains(&address) {
            return Err(format!("{address} is listed twice"));
        }
        addresses.push(address);
    }
    Ok(addresses)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEYS: &[Key] = &[
        Key::new("colour", "blue", "a plain key"),
        Key::secret("password", "", "a secret key"),
        Key::new("listen", "[::]:{port}", "a key with a placeholder"),
    ];

    fn schema() -> Schema {
        Schema {
            binary: "testd",
            about: "a test binary",
            version: "0",
            tables: vec![KEYS],
            placeholders: vec![("{port}", "7".to_owned())],
        }
    }

    #[test]
    fn print_config_redacts_exactly_the_keys_marked_secret() {
        let args =
            ["testd", "--password", "hunter2hunter2xx", "--colour", "red"].map(OsString::from);
        let (_, settings) = super::super::load(&schema(), args, std::iter::empty()).unwrap();
        let text = settings.to_toml();
        assert!(text.contains("password = \"<redacted>\""), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("colour = \"red\""), "{text}");
        // An unset secret prints as empty: nothing to hide, and the file still loads.
        let text = Settings::defaults(&schema()).to_toml();
        assert!(text.contains("password = \"\""), "{text}");
    }

    #[test]
    fn placeholders_in_defaults_take_the_schema_values() {
        let settings = Settings::defaults(&schema());
        assert_eq!(settings.text("listen").unwrap(), "[::]:7");
    }
}
