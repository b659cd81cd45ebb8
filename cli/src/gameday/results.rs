//! A finished run as JSON (everything), JUnit XML (a course keeps its scoreboard in any
//! CI viewer: one testcase per run, a failure unless it was a victory) and a Markdown
//! summary; and the ranking of several runs.

use std::path::{Path, PathBuf};

use super::{write_text, Outcome, Run};

/// Seconds as `1m 23s`, or `—` when it did not happen.
pub fn span(seconds: Option<f64>) -> String {
    match seconds {
        Some(s) => {
            let whole = s.round() as u64;
            if whole >= 60 {
                format!("{}m {:02}s", whole / 60, whole % 60)
            } else {
                format!("{whole}s")
            }
        }
        None => "—".to_owned(),
    }
}

/// `&`, `<`, `>`, `"` and `'` escaped, control characters dropped: safe in XML text and
/// attributes.
fn xml(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&apos;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// The run's times as (what, seconds from the start).
pub fn timeline(run: &Run) -> Vec<(&'static str, Option<f64>)> {
    vec![
        ("first alert pending", run.after(run.first_pending_at)),
        ("first alert firing", run.after(run.first_firing_at)),
        ("correct diagnosis", run.after(run.diagnosed_at())),
        ("remedy applied", run.after(run.remedy_at)),
        ("alerts resolved", run.after(run.resolved_at)),
        ("victory", run.after(run.victory_at)),
        ("ended", run.after(run.ended_at)),
    ]
}

/// JUnit XML of runs: one testsuite, one testcase per run.
pub fn junit(runs: &[Run]) -> String {
    let failures = runs
        .iter()
        .filter(|r| r.outcome != Some(Outcome::Victory))
        .count();
    let total: f64 = runs.iter().filter_map(|r| r.after(r.ended_at)).sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"inetsvc gameday\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" time=\"{total:.1}\">\n",
        runs.len()
    ));
    out.push_str(&format!(
        "  <testsuite name=\"inetsvc-gameday\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{total:.1}\">\n",
        runs.len()
    ));
    for run in runs {
        out.push_str(&format!(
            "    <testcase classname=\"gameday.{}\" name=\"{}\" time=\"{:.1}\">\n",
            xml(&run.trainee),
            xml(&run.scenario),
            run.after(run.ended_at).unwrap_or(0.0)
        ));
        if run.outcome != Some(Outcome::Victory) {
            let word = run.outcome.map_or("not finished", Outcome::word);
            out.push_str(&format!(
                "      <failure message=\"{}\" type=\"{}\">{}</failure>\n",
                xml(word),
                xml(word),
                xml(run.reason.as_deref().unwrap_or(word))
            ));
        }
        out.push_str("      <system-out>");
        for (what, at) in timeline(run) {
            out.push_str(&xml(&format!("{what}: {}\n", span(at))));
        }
        out.push_str(&xml(&format!(
            "hints: {}\nwrong diagnoses: {}\n",
            run.hints_taken,
            run.wrong_diagnoses()
        )));
        out.push_str("</system-out>\n    </testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// The Markdown summary of one run.
pub fn summary(run: &Run) -> String {
    let outcome = run.outcome.map_or("in progress", Outcome::word);
    let mut out = format!(
        "# Game day: {} — {}\n\nTrainee {}, stack {}, {}.\n\n| | after the start |\n| --- | --- |\n",
        run.scenario,
        outcome,
        run.trainee,
        run.stack,
        if run.compress > 1 {
            format!("time compressed {}×", run.compress)
        } else {
            "real time".to_owned()
        }
    );
    for (what, at) in timeline(run) {
        out.push_str(&format!("| {what} | {} |\n", span(at)));
    }
    out.push_str(&format!(
        "\nHints taken: {}. Wrong diagnoses: {}. Time box: {}.\n",
        run.hints_taken,
        run.wrong_diagnoses(),
        span(Some(run.time_box_seconds))
    ));
    if !run.remedy.is_empty() {
        out.push_str(&format!("Remedy: {}.\n", run.remedy.join("; ")));
    }
    if let Some(reason) = &run.reason {
        out.push_str(&format!("Ended: {reason}.\n"));
    }
    out
}

/// Writes `NAME.json`, `NAME.xml` and `NAME.md` of a finished run into `dir`.
pub fn write(dir: &Path, run: &Run) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let base = dir.join(format!(
        "{}-{}-{}",
        run.trainee, run.scenario, run.started_at as u64
    ));
    let with = |ext: &str| -> PathBuf { base.with_extension(ext) };
    let json = serde_json::to_string_pretty(run).map_err(|e| e.to_string())?;
    write_text(&with("json"), &json)?;
    write_text(&with("xml"), &junit(std::slice::from_ref(run)))?;
    write_text(&with("md"), &summary(run))
}

/// Ranks runs: victories first, the fastest first, then fewer hints and wrong diagnoses.
pub fn rank(runs: &mut [Run]) {
    runs.sort_by(|a, b| {
        let key = |r: &Run| {
            (
                r.outcome != Some(Outcome::Victory),
                r.after(r.victory_at).unwrap_or(f64::MAX),
                r.hints_taken,
                r.wrong_diagnoses(),
            )
        };
        let (ka, kb) = (key(a), key(b));
        ka.0.cmp(&kb.0)
            .then(ka.1.total_cmp(&kb.1))
            .then(ka.2.cmp(&kb.2))
            .then(ka.3.cmp(&kb.3))
    });
}

/// The ranking as a Markdown table.
pub fn ranking(runs: &[Run]) -> String {
    let mut out = String::from(
        "| rank | trainee | scenario | outcome | to first alert | to diagnosis | to victory | hints | wrong diagnoses |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for (i, run) in runs.iter().enumerate() {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            i + 1,
            run.trainee,
            run.scenario,
            run.outcome.map_or("in progress", Outcome::word),
            span(run.after(run.first_firing_at)),
            span(run.after(run.diagnosed_at())),
            span(run.after(run.victory_at)),
            run.hints_taken,
            run.wrong_diagnoses()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(trainee: &str, outcome: Outcome, victory: Option<f64>, hints: usize) -> Run {
        let text = format!(
            r#"{{"scenario":"clock-skew","trainee":"{trainee}","stack":"s","compress":1,"started_at":1000.0,
            "time_box_seconds":1200.0,"hold_seconds":120.0,"audit_since":{{}},"traffic":[],"offender":null,
            "hints_taken":{hints},"diagnoses":[],"first_pending_at":null,"first_firing_at":1150.0,"remedy_at":null,
            "remedy":[],"resolved_at":null,"victory_at":{},"outcome":"{}","ended_at":2000.0,"reason":"<&>"}}"#,
            victory.map_or("null".to_owned(), |v| v.to_string()),
            serde_json::to_value(outcome).unwrap().as_str().unwrap()
        );
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn ranking_puts_fast_victories_first() {
        let mut runs = vec![
            run("c", Outcome::TimedOut, None, 0),
            run("b", Outcome::Victory, Some(1600.0), 2),
            run("a", Outcome::Victory, Some(1400.0), 3),
            run("d", Outcome::Victory, Some(1600.0), 0),
        ];
        rank(&mut runs);
        let order: Vec<&str> = runs.iter().map(|r| r.trainee.as_str()).collect();
        assert_eq!(order, ["a", "d", "b", "c"]);
        let table = ranking(&runs);
        assert!(
            table.contains("| 1 | a | clock-skew | victory | 2m 30s | — | 6m 40s | 3 | 0 |"),
            "{table}"
        );
    }

    #[test]
    fn junit_escapes_and_fails_all_but_victories() {
        let xml = junit(&[
            run("a<b", Outcome::GaveUp, None, 0),
            run("c", Outcome::Victory, Some(1500.0), 0),
        ]);
        assert!(xml.contains("tests=\"2\" failures=\"1\""));
        assert!(xml.contains("classname=\"gameday.a&lt;b\""));
        assert!(
            xml.contains("<failure message=\"gave up\" type=\"gave up\">&lt;&amp;&gt;</failure>")
        );
        assert_eq!(xml.matches("<failure").count(), 1);
    }
}
