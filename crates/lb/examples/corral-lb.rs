//! A standalone balancer for benchmarks and experiments: `corral-lb CONFIG.toml` starts every
//! `[[service]]` of the file on a multi-threaded runtime sized to the cores, until Ctrl-C or
//! SIGTERM. Prints `ready NAME ADDR` per service once it listens.

use std::process::ExitCode;

use corral_lb::{start_service, LbConfig};

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: corral-lb CONFIG.toml");
        return ExitCode::from(2);
    };
    let config = match LbConfig::load(std::path::Path::new(&path)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("corral-lb: {e}");
            return ExitCode::FAILURE;
        }
    };
    let threads = std::env::var("CORRAL_LB_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("corral-lb: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let mut handles = Vec::new();
        for svc in config.services {
            match start_service(svc).await {
                Ok(h) => {
                    println!("ready {} {}", h.name(), h.local_addr());
                    handles.push(h);
                }
                Err(e) => {
                    eprintln!("corral-lb: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("corral-lb: {e}");
                    return ExitCode::FAILURE;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        for h in handles {
            h.shutdown().await;
        }
        ExitCode::SUCCESS
    })
}
