//! `gregor tools …`: inspection commands for operators and fault tests.

use std::path::PathBuf;

use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub(crate) struct ToolsArgs {
    #[command(subcommand)]
    command: ToolsCommand,
}

#[derive(Debug, Subcommand)]
enum ToolsCommand {
    /// Print a partition directory (or one segment file): segments, batches, offsets, leader
    /// epochs, CRC status, index entries and checkpoints.
    DumpLog {
        /// A `<topic>-<partition>` directory or a `.log` segment file.
        path: PathBuf,
    },
}

pub(crate) fn run(args: ToolsArgs) -> anyhow::Result<()> {
    match args.command {
        ToolsCommand::DumpLog { path } => {
            let stdout = std::io::stdout();
            let mut out = stdout.lock();
            gregor_storage::dump_log(&path, &mut out)?;
        }
    }
    Ok(())
}
