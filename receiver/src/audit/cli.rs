//! `diode-receiver audit ...`.

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {}

pub fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {}
}
