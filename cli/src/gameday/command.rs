//! The `inetsvc gameday` command line: arguments and what each subcommand prints.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use super::results::{self, span};
use super::scenario::{self, Catalogue};
use super::{now, traffic, Game, Outcome, Run};

/// `inetsvc gameday`.
#[derive(Args)]
pub struct GamedayArgs {
    /// The game directory: stack.json (from scripts/gameday), run.json, results/
    /// [default: $INETSVC_GAMEDAY_DIR, else ./gameday].
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// The scenarios: difficulty, time box, the alerts each raises.
    List {
        /// The Markdown table of docs/training/README.md instead.
        #[arg(long)]
        markdown: bool,
    },
    /// Start a scenario: reset the stack, break it, start its traffic.
    Start {
        /// Which (see `list`).
        scenario: String,
        /// Who plays (for the results and the ranking).
        #[arg(long, default_value = "trainee")]
        trainee: String,
        /// Divide every duration (time box, hold, the services' timeouts) by this, for a
        /// Prometheus whose rule windows are divided alike (tests).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=600))]
        compress: u32,
        /// A time box of this long instead of the scenario's.
        #[arg(long, value_parser = humantime::parse_duration)]
        time_box: Option<Duration>,
    },
    /// Where the game stands: times so far, the outcome once decided.
    Status {
        /// Print the run as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Take the next hint (counted).
    Hint,
    /// Name the cause; without an answer, list the causes to choose from.
    Diagnose {
        /// A cause (see the list).
        answer: Option<String>,
    },
    /// Give up: the run ends as given up, the solution is shown, the stack is reset.
    GiveUp,
    /// End the game (after the outcome, or to abandon it), show the solution, reset the stack.
    Stop,
    /// Wait until the outcome is decided (victory, time box, give-up), then print it.
    Wait {
        /// Wait only until every alert the scenario lists has fired.
        #[arg(long)]
        firing: bool,
    },
    /// The autopilot: apply the scenario's remedy with the trainee's token, as the trainee
    /// would (demonstrations, the soak script, the tests).
    #[command(hide = true)]
    Solve {
        /// The trainee's token.
        #[arg(long)]
        token_file: PathBuf,
    },
    /// Rank finished runs from their JSON results.
    Report {
        /// Result files (results/*.json).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also write every run as one JUnit XML file here.
        #[arg(long)]
        junit: Option<PathBuf>,
    },
    /// Regenerate (or with --check, compare) the generated parts of docs/training.
    Docs {
        /// The docs/training folder.
        folder: PathBuf,
        /// Fail if a page differs from what would be generated.
        #[arg(long)]
        check: bool,
    },
    /// Run one load of a scenario (started by the runner).
    #[command(hide = true)]
    Traffic(TrafficArgs),
}

#[derive(Args)]
struct TrafficArgs {
    /// `clients`, `hold` or `chargen`.
    kind: String,
    /// Where to, HOST:PORT (a name is resolved: `echod:7` inside the stack).
    target: String,
    /// How long.
    #[arg(long = "for", value_parser = humantime::parse_duration)]
    lasts: Duration,
    /// `clients`, `chargen`: one connection or datagram this often.
    #[arg(long, default_value = "500ms", value_parser = humantime::parse_duration)]
    every: Duration,
    /// `hold`: connections.
    #[arg(long, default_value_t = 80)]
    connections: usize,
    /// `clients`: datagrams.
    #[arg(long)]
    udp: bool,
    /// Send from this address (the offender's).
    #[arg(long)]
    source: Option<IpAddr>,
}

/// Runs `inetsvc gameday`.
pub fn run(args: GamedayArgs) -> ExitCode {
    let catalogue = scenario::catalogue();
    let result = match args.action {
        Action::List { markdown } => {
            print!("{}", list(&catalogue, markdown));
            Ok(ExitCode::SUCCESS)
        }
        Action::Traffic(t) => play_traffic(&t),
        Action::Report { files, junit } => report(&files, junit.as_deref()),
        Action::Docs { folder, check } => docs(&catalogue, &folder, check),
        action => {
            let dir = args
                .dir
                .or_else(|| std::env::var_os("INETSVC_GAMEDAY_DIR").map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from("gameday"));
            Game::open(&dir).and_then(|game| play(&game, &catalogue, action))
        }
    };
    match result {
        Ok(code) => code,
        Err(reason) => {
            eprintln!("inetsvc gameday: {reason}");
            ExitCode::from(1)
        }
    }
}

fn list(catalogue: &Catalogue, markdown: bool) -> String {
    if markdown {
        return catalogue.markdown_table();
    }
    let mut out = String::new();
    for s in &catalogue.scenario {
        out.push_str(&format!(
            "{:<22} {:<7} {:>4}  {}\n{:<36}alerts: {}\n",
            s.name,
            s.difficulty,
            humantime::format_duration(s.time_box).to_string(),
            s.title,
            "",
            s.alert_list().replace('`', "")
        ));
    }
    out
}

fn play(game: &Game, catalogue: &Catalogue, action: Action) -> Result<ExitCode, String> {
    if let Action::Start {
        scenario,
        trainee,
        compress,
        time_box,
    } = &action
    {
        let scenario = catalogue.find(scenario)?;
        let run = game.start(scenario, trainee, *compress, *time_box)?;
        println!(
            "{} started for {} on {}: {}\nTime box {}. The story: {}\nWhen you know the cause: inetsvc gameday diagnose CAUSE (list: inetsvc gameday diagnose)",
            scenario.name,
            run.trainee,
            run.stack,
            scenario.title,
            span(Some(run.time_box_seconds)),
            scenario.story
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut run = game.run()?;
    let scenario = catalogue.find(&run.scenario)?.clone();
    game.evaluate(&mut run, &scenario)?;
    match action {
        Action::Status { json } => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&run).map_err(|e| e.to_string())?
                );
            } else {
                print!("{}", results::summary(&run));
                if run.outcome.is_none() {
                    let left = run.started_at + run.time_box_seconds - now();
                    println!("Time left: {}.", span(Some(left.max(0.0))));
                }
            }
        }
        Action::Hint => {
            if run.outcome.is_some() {
                return Err("the game is over; `inetsvc gameday stop`".into());
            }
            match scenario.hints.get(run.hints_taken) {
                Some(hint) => {
                    run.hints_taken += 1;
                    println!(
                        "Hint {} of {}: {hint}",
                        run.hints_taken,
                        scenario.hints.len()
                    );
                }
                None => println!("No hints left: {} taken.", run.hints_taken),
            }
        }
        Action::Diagnose { answer: None } => {
            for (cause, meaning) in &catalogue.causes {
                println!("{cause:<20} {meaning}");
            }
        }
        Action::Diagnose {
            answer: Some(answer),
        } => {
            if !catalogue.causes.contains_key(&answer) {
                return Err(format!(
                    "`{answer}` is not a cause; `inetsvc gameday diagnose` lists them"
                ));
            }
            if run.diagnosed_at().is_some() {
                println!("Already diagnosed: {}.", scenario.cause);
            } else {
                let correct = answer == scenario.cause;
                run.diagnoses.push(super::Diagnosis {
                    answer: answer.clone(),
                    correct,
                    at: now(),
                });
                if correct {
                    println!("Right: {answer}. Now fix it the way an operator would.");
                } else {
                    println!("Not the cause ({} wrong so far).", run.wrong_diagnoses());
                }
            }
        }
        Action::GiveUp | Action::Stop => {
            if run.outcome.is_none() {
                let (outcome, reason) = match action {
                    Action::GiveUp => (Outcome::GaveUp, "gave up".to_owned()),
                    _ => (Outcome::GaveUp, "stopped before the end".to_owned()),
                };
                game.finish(&mut run, outcome, now(), Some(reason))?;
            }
            game.stop_traffic(&run);
            game.reset()?;
            print!("{}", results::summary(&run));
            println!("\nSolution: {}", scenario.solution);
            println!("Results in {}", game.results_dir().display());
            game.save(&run)?;
            return Ok(ExitCode::SUCCESS);
        }
        Action::Wait { firing: false } => {
            while run.outcome.is_none() {
                std::thread::sleep(Duration::from_secs(1));
                game.evaluate(&mut run, &scenario)?;
            }
            print!("{}", results::summary(&run));
        }
        Action::Wait { firing: true } => {
            while run.outcome.is_none() && !game.all_fired(&run, &scenario)? {
                std::thread::sleep(Duration::from_secs(1));
                game.evaluate(&mut run, &scenario)?;
            }
            println!(
                "{}",
                if run.outcome.is_none() {
                    "every listed alert fired"
                } else {
                    "the game ended first"
                }
            );
        }
        Action::Solve { token_file } => {
            for line in game.solve(&run, &scenario, &token_file)? {
                println!("{line}");
            }
        }
        _ => unreachable!("handled before"),
    }
    game.save(&run)?;
    Ok(ExitCode::SUCCESS)
}

fn play_traffic(args: &TrafficArgs) -> Result<ExitCode, String> {
    use std::net::ToSocketAddrs;
    let until = Instant::now() + args.lasts;
    let target = args
        .target
        .to_socket_addrs()
        .map_err(|e| format!("{}: {e}", args.target))?
        .next()
        .ok_or_else(|| format!("{}: no address", args.target))?;
    match args.kind.as_str() {
        "clients" => traffic::clients(target, args.every, args.udp, until),
        "hold" => traffic::hold(target, args.connections, args.source, until),
        "chargen" => {
            let source = args.source.unwrap_or(if target.is_ipv4() {
                IpAddr::from([0, 0, 0, 0])
            } else {
                IpAddr::from([0u16; 8])
            });
            traffic::chargen(target, args.every, source, until)
                .map_err(|e| format!("chargen from port {}: {e}", traffic::CHARGEN_PORT))?;
        }
        other => return Err(format!("no traffic kind `{other}`; clients, hold, chargen")),
    }
    Ok(ExitCode::SUCCESS)
}

fn report(files: &[PathBuf], junit: Option<&std::path::Path>) -> Result<ExitCode, String> {
    let mut runs: Vec<Run> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        runs.push(serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?);
    }
    results::rank(&mut runs);
    print!("{}", results::ranking(&runs));
    if let Some(path) = junit {
        super::write_text(path, &results::junit(&runs))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Markers around a generated part of a page.
const BEGIN: &str =
    "<!-- generated by `inetsvc gameday docs` from cli/src/gameday/scenarios.toml: do not edit -->";
const END: &str = "<!-- end of generated part -->";

/// `text` with the part between the markers replaced by `generated`.
fn splice(text: &str, generated: &str) -> Option<String> {
    let start = text.find(BEGIN)? + BEGIN.len();
    let end = start + text[start..].find(END)?;
    Some(format!("{}\n{}{}", &text[..start], generated, &text[end..]))
}

fn docs(catalogue: &Catalogue, folder: &std::path::Path, check: bool) -> Result<ExitCode, String> {
    let mut pages = vec![(folder.join("README.md"), catalogue.markdown_table())];
    for s in &catalogue.scenario {
        pages.push((folder.join(format!("{}.md", s.name)), s.markdown_block()));
    }
    let mut stale = Vec::new();
    for (path, generated) in pages {
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let new = splice(&text, &generated).ok_or_else(|| {
            format!(
                "{}: no generated part (markers `{BEGIN}` … `{END}`)",
                path.display()
            )
        })?;
        if new != text {
            if check {
                stale.push(path.display().to_string());
            } else {
                std::fs::write(&path, new).map_err(|e| format!("{}: {e}", path.display()))?;
            }
        }
    }
    if stale.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        Err(format!(
            "out of date (run `inetsvc gameday docs docs/training`): {}",
            stale.join(", ")
        ))
    }
}
