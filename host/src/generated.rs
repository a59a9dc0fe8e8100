//! Shell completions and man pages, written from an appliance's clap definitions: the Debian
//! packages install them, and each binary's hidden `generate` subcommand calls these.

use std::io;
use std::path::{Path, PathBuf};

use clap_complete::Shell;

/// Writes bash, zsh and fish completions for `command`, run as `bin`, into `out` (created if
/// missing). Returns the files written.
pub fn write_completions(command: &mut clap::Command, bin: &str, out: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)?;
    [Shell::Bash, Shell::Zsh, Shell::Fish]
        .into_iter()
        .map(|shell| clap_complete::generate_to(shell, command, bin, out))
        .collect()
}

/// Writes one man page for `command` and one for each visible subcommand, named as `clap_mangen`
/// names them (`diode-receiver-audit-verify.1`), into `out` (created if missing). Returns the files
/// written.
pub fn write_man_pages(command: clap::Command, out: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out)?;
    let mut command = command.disable_help_subcommand(true);
    command.build();
    man_pages(command, out)
}

fn man_pages(command: clap::Command, out: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for subcommand in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        written.extend(man_pages(subcommand.clone(), out)?);
    }
    written.push(clap_mangen::Man::new(command).generate_to(out)?);
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command() -> clap::Command {
        clap::Command::new("diode-example")
            .about("An example appliance.")
            .subcommand(clap::Command::new("run").about("Runs it."))
            .subcommand(clap::Command::new("internal").hide(true))
    }

    #[test]
    fn completions_for_three_shells_and_a_man_page_per_visible_command_are_written() {
        let out = tempfile::tempdir().unwrap();
        let completions = write_completions(&mut command(), "diode-example", &out.path().join("completions")).unwrap();
        let names: Vec<_> = completions.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["diode-example.bash", "_diode-example", "diode-example.fish"]);
        let pages = write_man_pages(command(), &out.path().join("man")).unwrap();
        let mut names: Vec<_> = pages.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["diode-example-run.1", "diode-example.1"]);
        assert!(std::fs::read_to_string(&pages[0]).unwrap().contains("Runs it."));
    }
}
