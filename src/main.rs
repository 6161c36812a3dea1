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
        Ok(Command::Admin(args)) => {
            return ExitCode::from(clnode::admin_cli::run(&args));
        }
        Ok(Command::Keygen(args)) => {
            return match clnode::signing::run_keygen(&args) {
                Ok(public_key) => {
                    println!("{public_key}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("clnode: keygen: {error}");
                    ExitCode::from(1)
                }
            };
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
    log::set_format(config.log_format);
    if let Some(path) = &config.jwt_secret_path {
        clnode::secret::warn_if_world_readable(path, "JWT secret file");
    }
    if let Some(path) = &config.signing_key_path {
        clnode::secret::warn_if_world_readable(path, "block-signing key file");
    }
    warn_if_insecure(&config);
    let shutdown = Shutdown::new();
    log::info(&format!(
        "starting in {} mode: engine {}, health {}, api {}",
        if config.mode == config::Mode::Leader { "leader" } else { "member" },
        config.eth_client_url,
        config.health_addr,
        config.api_addr.map(|a| a.to_string()).unwrap_or_else(|| "off".into())
    ));
    // Thousands of connections need as many descriptors: raise the soft
    // limit to the hard one and size the servers' connection budget by it.
    log::info(&clnode::http::limits::raise_open_files_limit());
    match node::start(*config, shutdown.clone()) {
        Ok(running) => {
            running.join();
            // A role met an error that waiting cannot fix: one line, non-zero.
            if let Some(reason) = shutdown.failure() {
                log::fatal(&reason);
                return ExitCode::from(1);
            }
            log::info("stopped");
            ExitCode::SUCCESS
        }
        // A signal during startup is a clean stop, not a failure.
        Err(_) if shutdown.is_requested() && shutdown.failure().is_none() => {
            log::info("stopped during startup");
            ExitCode::SUCCESS
        }
        Err(error) => {
            shutdown.request();
            log::fatal(&shutdown.failure().unwrap_or(error));
            ExitCode::from(1)
        }
    }
}

/// The opt-out from record signatures is loud: a line at start (and a field
/// on /health) so nobody runs it by accident.
fn warn_if_insecure(config: &config::Config) {
    let unsigned = match config.mode {
        config::Mode::Leader => config.leader.signing_key.is_none(),
        config::Mode::Member => config.member.record_trust == clnode::signing::RecordTrust::Unverified,
    };
    if unsigned {
        log::warn(match config.mode {
            config::Mode::Leader => {
                "--insecure-unsigned-records: committing blocks WITHOUT a signature; members that pin a key refuse them"
            }
            config::Mode::Member => {
                "--insecure-unsigned-records: executing records WITHOUT checking who committed them; any sync source \
                 or anyone on the path can feed this member a different chain"
            }
        });
    }
}
