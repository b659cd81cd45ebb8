//! The scenarios of `scenarios.toml` as types, and the pure decisions about them: does a
//! setting satisfy a remedy, is an answer the cause, the docs' tables.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

/// A duration written as humans do (`20m`, `200ms`).
fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(serde::de::Error::custom)
}

fn some_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration(d).map(Some)
}

/// The definitions, compiled in: the runner needs no file beside it.
const SCENARIOS: &str = include_str!("scenarios.toml");

/// Every scenario and the causes a diagnosis may name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalogue {
    /// The scenarios, in the order they are listed.
    pub scenario: Vec<Scenario>,
    /// Cause name → what it means.
    pub causes: BTreeMap<String, String>,
}

/// One exercise.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Its name, as `start` takes it and as docs/training/NAME.md is named.
    pub name: String,
    /// One line: what breaks.
    pub title: String,
    /// `easy`, `medium`, `hard`.
    pub difficulty: String,
    /// Longest the trainee has, shipped duration.
    #[serde(deserialize_with = "duration")]
    pub time_box: Duration,
    /// How long the prober must stay green for a victory.
    #[serde(deserialize_with = "duration")]
    pub hold: Duration,
    /// What the trainee is told at the start.
    pub story: String,
    /// The cause, one of the catalogue's causes.
    pub cause: String,
    /// What fixes it, shown at the end.
    pub solution: String,
    /// Hints, in the order they are given.
    pub hints: Vec<String>,
    /// Faults set with the trainer's token.
    #[serde(default)]
    pub inject: Vec<Inject>,
    /// Settings changed first, as a deployment would.
    #[serde(default)]
    pub push: Vec<Push>,
    /// Load the runner starts.
    #[serde(default)]
    pub traffic: Vec<Traffic>,
    /// Every alert that fires.
    pub alerts: Vec<AlertRef>,
    /// Alerts that may fire too, depending on how long the trainee takes or on chance
    /// (a check that fails half the time).
    #[serde(default)]
    pub also: Vec<AlertRef>,
    /// All must hold for a victory.
    pub remedy: Vec<Remedy>,
}

/// A fault to set.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inject {
    /// `echo`, `daytime` or `time`.
    pub service: String,
    /// The fault's name.
    pub fault: String,
    /// `PARAM=VALUE,…`.
    pub params: String,
}

/// A setting the runner changes first.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Push {
    /// Which service.
    pub service: String,
    /// A live key.
    pub key: String,
    /// Its bad value.
    pub value: String,
}

/// One load.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// `clients`, `hold` or `chargen`.
    pub kind: String,
    /// Which service it goes to.
    pub service: String,
    /// `clients`/`chargen`: one connection or datagram this often.
    #[serde(default, deserialize_with = "some_duration")]
    pub every: Option<Duration>,
    /// `hold`: how many connections.
    #[serde(default)]
    pub connections: Option<usize>,
    /// `clients`: datagrams instead of connections.
    #[serde(default)]
    pub udp: bool,
    /// Sent from the scenario's offender address.
    #[serde(default)]
    pub offender: bool,
}

/// An alert and the service it fires for.
#[derive(Debug, Clone, Deserialize, serde::Serialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(deny_unknown_fields)]
pub struct AlertRef {
    /// `alertname`.
    pub alert: String,
    /// The `service` label.
    pub service: String,
}

/// One remedy: any of its ways, on one service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remedy {
    /// Which service.
    pub service: String,
    /// The ways; one is enough.
    pub any: Vec<Way>,
}

/// A live key and what its value must be.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Way {
    /// The key.
    pub key: String,
    /// It must be exactly this.
    #[serde(default)]
    pub equals: Option<String>,
    /// It must be anything but this.
    #[serde(default)]
    pub not_equals: Option<String>,
    /// It must be a number no larger than this.
    #[serde(default)]
    pub at_most: Option<u64>,
    /// `offender`: an address list holding the offender's address.
    #[serde(default)]
    pub covers: Option<String>,
}

impl Way {
    /// Whether `value` (the key's value in force) satisfies this way; `offender` is the
    /// offender's address, when the scenario has one.
    pub fn holds(&self, value: &str, offender: Option<IpAddr>) -> bool {
        let value = value.trim();
        if let Some(wanted) = &self.equals {
            return value == wanted;
        }
        if let Some(unwanted) = &self.not_equals {
            return value != unwanted;
        }
        if let Some(most) = self.at_most {
            return value.parse::<u64>().is_ok_and(|n| n <= most);
        }
        if self.covers.is_some() {
            return offender.is_some_and(|ip| covers(value, ip));
        }
        false
    }

    /// The way in words, for the solution and the status.
    pub fn describe(&self) -> String {
        let key = &self.key;
        match (&self.equals, &self.not_equals, self.at_most, &self.covers) {
            (Some(v), ..) => format!("{key} = {v}"),
            (_, Some(v), ..) => format!("{key} ≠ {v}"),
            (_, _, Some(n), _) => format!("{key} ≤ {n}"),
            (_, _, _, Some(who)) => format!("{key} holds the {who}'s address"),
            _ => key.clone(),
        }
    }
}

/// Whether an address list (`deny_sources` syntax: `ADDRESS[/PREFIX],…` or `none`)
/// holds `ip`.
pub fn covers(list: &str, ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    list.split(',').map(str::trim).any(|part| {
        part.parse::<ipnet::IpNet>()
            .map(|net| net.contains(&ip))
            .or_else(|_| part.parse::<IpAddr>().map(|a| a.to_canonical() == ip))
            .unwrap_or(false)
    })
}

/// Reads the compiled-in definitions; a broken file is a bug caught by the tests.
pub fn catalogue() -> Catalogue {
    let catalogue: Catalogue =
        toml::from_str(SCENARIOS).unwrap_or_else(|e| panic!("scenarios.toml: {e}"));
    catalogue
}

impl Catalogue {
    /// The scenario called `name`, or an error listing them.
    pub fn find(&self, name: &str) -> Result<&Scenario, String> {
        self.scenario
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.scenario.iter().map(|s| s.name.as_str()).collect();
                format!("no scenario `{name}`; there are: {}", names.join(", "))
            })
    }

    /// The Markdown table of docs/training/README.md.
    pub fn markdown_table(&self) -> String {
        let mut out = String::from(
            "| scenario | what breaks | difficulty | time box | alerts that fire |\n| --- | --- | --- | --- | --- |\n",
        );
        for s in &self.scenario {
            out.push_str(&format!(
                "| [{name}]({name}.md) | {} | {} | {} | {} |\n",
                s.title,
                s.difficulty,
                humantime::format_duration(s.time_box),
                s.alert_list(),
                name = s.name
            ));
        }
        out
    }
}

impl Scenario {
    /// `` `Alert` (service), … `` in the listed order, then those that may fire too.
    pub fn alert_list(&self) -> String {
        let list = |alerts: &[AlertRef]| {
            alerts
                .iter()
                .map(|a| format!("`{}` ({})", a.alert, a.service))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut out = list(&self.alerts);
        if !self.also.is_empty() {
            out.push_str(&format!("; may also fire: {}", list(&self.also)));
        }
        if !self.inject.is_empty() {
            out.push_str("; and `InetsvcFaultInjected` for the trainer");
        }
        out
    }

    /// The alert names (those that fire and those that may), deduplicated, for a PromQL
    /// matcher.
    pub fn alert_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .alerts
            .iter()
            .chain(&self.also)
            .map(|a| a.alert.as_str())
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Every service the scenario touches.
    pub fn services(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .alerts
            .iter()
            .chain(&self.also)
            .map(|a| a.service.as_str())
            .chain(self.remedy.iter().map(|r| r.service.as_str()))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The generated block of the scenario's page: alerts and the victory condition.
    pub fn markdown_block(&self) -> String {
        let mut out = format!(
            "**Game day.** `inetsvc gameday start {}` — {}, time box {}.\n\n**Alerts that fire:** {}.\n\n**Victory:** ",
            self.name,
            self.difficulty,
            humantime::format_duration(self.time_box),
            self.alert_list()
        );
        let remedies: Vec<String> = self
            .remedy
            .iter()
            .map(|r| {
                let ways: Vec<String> = r.any.iter().map(Way::describe).collect();
                format!("on {}: {}", r.service, ways.join(" or "))
            })
            .collect();
        out.push_str(&format!(
            "{}; the alerts resolved; the prober green for {}.\n",
            remedies.join("; "),
            humantime::format_duration(self.hold)
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_is_whole_and_its_cause_is_known() {
        let catalogue = catalogue();
        assert_eq!(catalogue.scenario.len(), 7);
        for s in &catalogue.scenario {
            assert!(
                catalogue.causes.contains_key(&s.cause),
                "{}: cause {}",
                s.name,
                s.cause
            );
            assert!(s.hints.len() >= 2, "{}: hints", s.name);
            assert!(!s.alerts.is_empty() && !s.remedy.is_empty(), "{}", s.name);
            assert!(
                !s.inject.is_empty() || !s.push.is_empty() || !s.traffic.is_empty(),
                "{}: nothing breaks",
                s.name
            );
            for way in s.remedy.iter().flat_map(|r| &r.any) {
                let conditions = [
                    way.equals.is_some(),
                    way.not_equals.is_some(),
                    way.at_most.is_some(),
                    way.covers.is_some(),
                ];
                assert_eq!(
                    conditions.iter().filter(|c| **c).count(),
                    1,
                    "{}: {way:?}",
                    s.name
                );
            }
        }
    }

    #[test]
    fn ways_judge_values() {
        let way = |text: &str| -> Way { toml::from_str(text).unwrap() };
        let offender = Some("172.20.0.9".parse().unwrap());
        assert!(way("key='a'\nequals='x'").holds("x", None));
        assert!(!way("key='a'\nequals='x'").holds("y", None));
        assert!(way("key='a'\nnot_equals='x'").holds("y", None));
        assert!(way("key='a'\nat_most=16").holds("8", None));
        assert!(!way("key='a'\nat_most=16").holds("256", None));
        assert!(way("key='a'\ncovers='offender'").holds("10.0.0.1, 172.20.0.0/24", offender));
        assert!(!way("key='a'\ncovers='offender'").holds("none", offender));
        assert!(!way("key='a'\ncovers='offender'").holds("172.20.0.9", None));
    }
}
