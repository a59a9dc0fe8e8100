//! `diode-receiver series` and `diode-receiver query`.

use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct SeriesArgs {
    #[arg(long)]
    pub config: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct QueryArgs {
    #[arg(long)]
    pub config: PathBuf,
}

pub fn series(_args: SeriesArgs) -> anyhow::Result<()> {
    anyhow::bail!("series listing is being written")
}

pub fn query(_args: QueryArgs) -> anyhow::Result<()> {
    anyhow::bail!("queries are being written")
}
