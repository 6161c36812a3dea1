//! PgBouncer in front of a test PostgreSQL, started by the project's
//! launcher (scripts/pgbouncer.sh).

use std::time::Duration;

use super::{free_port, script, wait_for, Postgres, Proc, TestDir};

pub struct PgBouncer {
    pub proc: Proc,
    pub port: u16,
}

impl PgBouncer {
    /// PgBouncer on a free port, pooling to `postgres` in `mode`
    /// ("session" or "transaction").
    pub fn start(dir: &TestDir, name: &str, postgres: &Postgres, mode: &str) -> PgBouncer {
        let port = free_port();
        let args = [
            dir.join(name).display().to_string(),
            port.to_string(),
            format!("127.0.0.1:{}", postgres.port),
            mode.to_owned(),
        ];
        let proc = Proc::spawn(name, dir.join(format!("{name}.log")), &script("pgbouncer.sh"), &args);
        let bouncer = PgBouncer { proc, port };
        let url = bouncer.url();
        wait_for(Duration::from_secs(20), "pgbouncer answers", || {
            postgres::Client::connect(&url, postgres::NoTls).ok().and_then(|mut c| c.simple_query("SELECT 1").ok())
        });
        bouncer
    }

    /// The URL clnode is given instead of the server's.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}
