//! `credits-fuzz <signature|event|packs> [--seconds N] [--seed S]`: a fuzzing loop that runs on
//! the stable toolchain. Each execution takes an input from the corpus (the seeds, plus every
//! input that showed a class of behaviour not seen before), mutates it, and runs the target
//! under `catch_unwind`; a panic or a broken oracle is a crash, saved under `artifacts/`.
//! `credits-fuzz <target> --replay PATH…` runs saved inputs once each. See README.md here.

mod mutate;
mod targets;

use std::{
    collections::HashSet,
    panic::{self, AssertUnwindSafe},
    path::{Path, PathBuf},
    process::ExitCode,
    sync::Mutex,
    time::{Duration, Instant},
};

use mutate::{Rng, mutate};
use targets::Target;

/// The corpus stops growing here: enough variety, bounded memory.
const MAX_CORPUS: usize = 8192;

/// An execution slower than this is reported (and saved) as a hang.
const SLOW: Duration = Duration::from_millis(500);

/// The message of the last panic, kept by a quiet panic hook.
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

struct Args {
    target: Target,
    seconds: u64,
    seed: u64,
    replay: Vec<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: credits-fuzz <signature|event|packs> [--seconds N] [--seed S] [--replay PATH…]";
    let target = args
        .next()
        .and_then(|name| Target::parse(&name))
        .ok_or_else(|| usage.to_owned())?;
    let mut parsed = Args {
        target,
        seconds: 60,
        seed: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
        replay: Vec::new(),
    };
    while let Some(arg) = args.next() {
        let mut number = || {
            args.next()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| format!("{arg} needs a number; {usage}"))
        };
        match arg.as_str() {
            "--seconds" => parsed.seconds = number()?,
            "--seed" => parsed.seed = number()?,
            "--replay" => parsed.replay.extend(
                std::env::args()
                    .skip_while(|a| a != "--replay")
                    .skip(1)
                    .map(PathBuf::from),
            ),
            _ => return Err(usage.to_owned()),
        }
        if !parsed.replay.is_empty() {
            break;
        }
    }
    Ok(parsed)
}

/// Runs the target once; a panic becomes `Err` with its message.
fn execute(target: Target, input: &[u8]) -> targets::Verdict {
    match panic::catch_unwind(AssertUnwindSafe(|| target.run(input))) {
        Ok(verdict) => verdict,
        Err(_) => {
            let message = LAST_PANIC.lock().ok().and_then(|mut m| m.take());
            Err(format!("panic: {}", message.unwrap_or_default()))
        }
    }
}

fn save(dir: &Path, kind: &str, n: u64, input: &[u8]) -> Option<PathBuf> {
    std::fs::create_dir_all(dir).ok()?;
    let path = dir.join(format!("{kind}-{n}"));
    std::fs::write(&path, input).ok()?;
    Some(path)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(usage) => {
            eprintln!("{usage}");
            return ExitCode::from(2);
        }
    };
    panic::set_hook(Box::new(|info| {
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = Some(info.to_string());
        }
    }));
    let target = args.target;
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let repo = manifest.parent().unwrap_or(manifest);
    let artifacts = manifest.join("artifacts").join(target.name());

    if !args.replay.is_empty() {
        let mut failed = 0;
        for path in &args.replay {
            let Ok(input) = std::fs::read(path) else {
                eprintln!("cannot read {}", path.display());
                return ExitCode::from(2);
            };
            match execute(target, &input) {
                Ok(class) => println!("{}: ok ({class})", path.display()),
                Err(err) => {
                    failed += 1;
                    println!("{}: CRASH {err}", path.display());
                }
            }
        }
        return if failed == 0 {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }

    let mut rng = Rng::new(args.seed);
    let mut corpus = target.seeds(repo);
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let seeds = corpus.len();
    let mut classes = HashSet::new();
    let (mut executions, mut crashes, mut slow) = (0_u64, 0_u64, 0_u64);
    let mut slowest = Duration::ZERO;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let mut report_at = started + Duration::from_secs(30);
    // Seeds first, unmutated; then mutations.
    let mut queue: Vec<Vec<u8>> = corpus.clone();
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if now >= report_at {
            eprintln!(
                "{:>5}s executions {executions} crashes {crashes} corpus {} classes {}",
                started.elapsed().as_secs(),
                corpus.len(),
                classes.len()
            );
            report_at = now + Duration::from_secs(30);
        }
        let input = queue.pop().unwrap_or_else(|| {
            let base = &corpus[rng.below(corpus.len())];
            match target.mutate_structured(&mut rng, base).filter(|_| rng.chance(3)) {
                Some(structured) => structured,
                None => {
                    let mut input = base.clone();
                    let other = &corpus[rng.below(corpus.len())];
                    mutate(&mut rng, &mut input, target.dictionary(), other, target.max_len());
                    input
                }
            }
        });
        let begun = Instant::now();
        let verdict = execute(target, &input);
        let took = begun.elapsed();
        executions += 1;
        slowest = slowest.max(took);
        if took > SLOW {
            slow += 1;
            let saved = save(&artifacts, "slow", slow, &input);
            eprintln!("slow input ({took:?}) saved as {saved:?}");
        }
        match verdict {
            Ok(class) => {
                if classes.insert(class) && corpus.len() < MAX_CORPUS {
                    corpus.push(input);
                }
            }
            Err(err) => {
                crashes += 1;
                let saved = save(&artifacts, "crash", crashes, &input);
                eprintln!("CRASH {err}\n  input saved as {saved:?}");
            }
        }
    }
    println!(
        "fuzz target={} harness=credits-fuzz(stable,mutation) seconds={} executions={executions} \
         crashes={crashes} slow={slow} slowest_ms={:.1} seeds={seeds} corpus={} classes={} seed={}",
        target.name(),
        started.elapsed().as_secs(),
        slowest.as_secs_f64() * 1000.0,
        corpus.len(),
        classes.len(),
        args.seed
    );
    if crashes == 0 && slow == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
