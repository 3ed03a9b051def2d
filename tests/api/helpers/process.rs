//! The real `credits` binary as a child process: its output captured line by line, SIGTERM
//! sent the way Kubernetes sends it, its exit code read.

use std::{
    collections::HashMap,
    net::SocketAddr,
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

/// The real `credits` binary, serving; killed on drop.
pub struct ServerProcess {
    /// Held so the process lives as long as this value (`kill_on_drop`).
    child: tokio::process::Child,
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    /// Every line the process wrote, stdout and stderr, as it arrives.
    output: Arc<Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Everything written so far, one entry per line.
    pub fn output(&self) -> Vec<String> {
        self.output.lock().expect("output lock").clone()
    }

    /// Sends SIGTERM, as Kubernetes does, without waiting.
    pub fn terminate(&self) {
        let pid = self.child.id().expect("the process is running");
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {pid}");
    }

    /// Waits for the process to exit (at most `limit`) and returns its exit code.
    pub async fn wait(&mut self, limit: Duration) -> Option<i32> {
        tokio::time::timeout(limit, self.child.wait())
            .await
            .expect("the process exits in time")
            .expect("wait for the process")
            .code()
    }
}

/// Collects the lines of a child's pipe; returns the first `credits listening` line's
/// addresses through `ready` when reading stdout.
fn collect_lines<R>(
    pipe: R,
    output: Arc<Mutex<Vec<String>>>,
    ready: Option<tokio::sync::oneshot::Sender<(SocketAddr, SocketAddr)>>,
) where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut ready = ready;
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(log) = serde_json::from_str::<Value>(&line)
                && log["message"] == "credits listening"
            {
                let parse = |key: &str| log[key].as_str().and_then(|a| a.parse::<SocketAddr>().ok());
                if let (Some(addrs), Some(tx)) = (parse("grpc_addr").zip(parse("http_addr")), ready.take()) {
                    let _ = tx.send(addrs);
                }
            }
            output.lock().expect("output lock").push(line);
        }
    });
}

/// Starts `credits serve` with `env` and waits for its "listening" log line.
/// Runs the binary once with exactly these settings (nothing inherited) and waits for it.
pub async fn run_binary(args: &[&str], env: &[(&str, &str)]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_credits"))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .await
        .expect("run the credits binary")
}

pub async fn spawn_process(env: &HashMap<String, String>) -> ServerProcess {
    let mut env = env.clone();
    env.entry("LOG_FORMAT".into()).or_insert_with(|| "json".into());
    env.entry("RUST_LOG".into()).or_insert_with(|| "info".into());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_credits"))
        .arg("serve")
        .env_clear()
        .envs(env.iter().filter(|(_, v)| !v.is_empty()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the credits binary");
    let output = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = tokio::sync::oneshot::channel();
    collect_lines(
        child.stdout.take().expect("piped stdout"),
        output.clone(),
        Some(tx),
    );
    collect_lines(child.stderr.take().expect("piped stderr"), output.clone(), None);
    let addrs = tokio::time::timeout(Duration::from_secs(60), rx)
        .await
        .ok()
        .and_then(Result::ok);
    let Some((grpc_addr, http_addr)) = addrs else {
        panic!(
            "the binary logs its listening addresses; it wrote: {:#?}",
            output.lock().expect("output lock")
        );
    };
    ServerProcess {
        child,
        grpc_addr,
        http_addr,
        output,
    }
}
