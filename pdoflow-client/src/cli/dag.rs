//! `dag submit FILE`: a DAG document from a file (or stdin), sent as it is.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::Value;
use tokio::io::AsyncReadExt;
use uuid::Uuid;

use super::{connect, output};
use crate::config::ConnectionSettings;
use crate::error::{Error, Result};

#[derive(Debug, Subcommand)]
pub enum DagAction {
    /// Submit a DAG document (JSON); prints each job's id by node name.
    Submit(SubmitArgs),
}

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// The document's file; `-` reads stdin.
    pub file: PathBuf,
    /// Into this posting.
    #[arg(long)]
    pub posting: Option<Uuid>,
    /// Print the jobs as JSON: [{"name": ..., "id": ...}, ...].
    #[arg(long)]
    pub json: bool,
}

pub async fn dag(settings: &ConnectionSettings, action: DagAction) -> Result<()> {
    let DagAction::Submit(args) = action;
    let (source, text) = read(&args.file).await?;
    // Only checked to be JSON here: the server validates the document and
    // names what is wrong in it.
    let document: Value = serde_json::from_str(&text).map_err(|source_error| Error::Json {
        context: format!("{source}: not JSON"),
        source: source_error,
    })?;
    let client = connect(settings).await?;
    let ids = client.submit_dag_document(&document, args.posting).await?;
    if args.json {
        return output::json(&ids);
    }
    output::table(
        &["node", "id"],
        ids.into_iter()
            .map(|job| vec![job.name, job.id.to_string()])
            .collect(),
    );
    Ok(())
}

/// The document's text, and how to name where it came from in errors.
async fn read(file: &PathBuf) -> Result<(String, String)> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        tokio::io::stdin()
            .read_to_string(&mut text)
            .await
            .map_err(|error| Error::Invalid(format!("cannot read stdin: {error}")))?;
        return Ok(("stdin".to_owned(), text));
    }
    let source = file.display().to_string();
    let text = tokio::fs::read_to_string(file)
        .await
        .map_err(|error| Error::Invalid(format!("cannot read {source}: {error}")))?;
    Ok((source, text))
}
