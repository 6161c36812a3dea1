//! The `clnode` binary: parse, validate, run, exit with one line on error.

use std::process::ExitCode;

use clnode::config::{self, Command};
use clnode::shutdown::{install_signal_handlers, Shutdown};
use clnode::{log, node};

fn main() -> ExitCode {
    clnode::alloc::tune_allocator();
    // First, so that a SIGTERM at any moment (even while parsing flags) is
    // a clean stop rather than the default action's abrupt death.
    install_signal_handlers();
    let command = config::parse(std::env::args_os().skip(1), &|name| std::env::var(name).ok());
    let config = match command {
        Ok(Command::Run(config)) => config,
        Ok(Command::Help) => {
            print!("{}", config::usage());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Status(args)) => {
            return ExitCode::from(clnode::status_cli::run(&args, &Shutdown::new()));
        }
        Ok(Command::Version) => {
            println!("clnode {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("clnode: {error}");
            return ExitCode::from(2);
        }
    };
    log::set_instance(&config.instance_id);
    log::set_level(config.log_level);
    if let Some(path) = &config.jwt_secret_path {
        clnode::secret::warn_if_world_readable(path, "JWT secret file");
    }
    let shutdown = Shutdown::new();
    log::info(&format!(
        "starting in {} mode: engine {}, health {}, api {}",
        if config.mode == config::Mode::Leader { "leader" } else { "member" },
        config.eth_client_url,
        config.health_addr,
        config.api_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into())
    ));
    match node::start(*config, shutdown.clone()) {
        Ok(running) => {
            running.join();
            log::info("stopped");
            ExitCode::SUCCESS
        }
        // A signal during startup is a clean stop, not a failure.
        Err(_) if shutdown.is_requested() => {
            log::info("stopped during startup");
            ExitCode::SUCCESS
        }
        Err(error) => {
            shutdown.request();
            eprintln!("clnode: {error}");
            ExitCode::from(1)
        }
    }
}
