//! What the runner asks Prometheus: when an alert first went pending or firing, when it
//! last was, whether the prober was green. Every time the runner reports comes from here
//! (or from a service's audit trail), never from when someone happened to ask.

use std::time::Duration;

use reqwest::blocking::Client;
use serde_json::Value;

/// A Prometheus HTTP API.
pub struct Prometheus {
    base: String,
    http: Client,
    /// Resolution of range queries: the rule evaluation interval.
    step: Duration,
}

impl Prometheus {
    /// The API at `base` (`http://HOST:PORT`), read at `step`.
    pub fn new(base: &str, step: Duration) -> Result<Self, String> {
        let http = Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Prometheus {
            base: base.trim_end_matches('/').to_owned(),
            http,
            step,
        })
    }

    /// The range query's step in seconds.
    pub fn step(&self) -> f64 {
        self.step.as_secs_f64().max(1.0)
    }

    /// Every sample of `query` between `start` and `end` (Unix seconds), all series
    /// together, as (time, value), oldest first.
    pub fn samples(&self, query: &str, start: f64, end: f64) -> Result<Vec<(f64, f64)>, String> {
        let url = format!("{}/api/v1/query_range", self.base);
        let params = [
            ("query", query.to_owned()),
            ("start", format!("{start:.3}")),
            ("end", format!("{:.3}", end.max(start))),
            ("step", format!("{}", self.step())),
        ];
        let url =
            reqwest::Url::parse_with_params(&url, &params).map_err(|e| format!("{url}: {e}"))?;
        let text = self
            .http
            .get(url)
            .send()
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.text())
            .map_err(|e| format!("Prometheus at {}: {e}", self.base))?;
        let answer: Value = serde_json::from_str(&text)
            .map_err(|e| format!("Prometheus at {}: not JSON ({e})", self.base))?;
        let mut samples: Vec<(f64, f64)> = answer["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|series| series["values"].as_array().cloned().unwrap_or_default())
            .filter_map(|pair| {
                let time = pair[0].as_f64()?;
                let value = pair[1].as_str()?.parse::<f64>().ok()?;
                Some((time, value))
            })
            .collect();
        samples.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(samples)
    }

    /// How many series `query` returns now.
    pub fn count_now(&self, query: &str) -> Result<usize, String> {
        let t = super::now();
        Ok(self.samples(query, t, t)?.len())
    }

    /// When the first sample of `query` in [start, end] was, if any.
    pub fn first(&self, query: &str, start: f64, end: f64) -> Result<Option<f64>, String> {
        Ok(self.samples(query, start, end)?.first().map(|s| s.0))
    }

    /// When the last sample of `query` in [start, end] was, if any.
    pub fn last(&self, query: &str, start: f64, end: f64) -> Result<Option<f64>, String> {
        Ok(self.samples(query, start, end)?.last().map(|s| s.0))
    }
}

/// `ALERTS{alertstate=STATE, alertname=~"A|B", service=~"x|y"}`; `state` may be empty.
pub fn alerts_selector(names: &[&str], services: &[&str], state: &str) -> String {
    let state = if state.is_empty() {
        String::new()
    } else {
        format!("alertstate=\"{state}\",")
    };
    format!(
        "ALERTS{{{state}alertname=~\"{}\",service=~\"{}\"}}",
        names.join("|"),
        services.join("|")
    )
}
