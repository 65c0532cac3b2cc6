//! `sluice txn list|describe|commit|abort`: transactions for operators. Commit and abort end
//! the open transaction of an id whose producer will not (gone, or a half transaction whose
//! check-backs went unanswered).

use anyhow::{Context, Result};
use sluice_client::Client;

use crate::args::{Output, TxnCommand};
use crate::txn_output::{describe_plain, list_plain, transaction_json};
use crate::{print, print_json};

pub(crate) async fn run(client: &Client, command: TxnCommand) -> Result<()> {
    let admin = client.admin();
    match command {
        TxnCommand::List { undecided, open, output } => {
            let transactions = admin.list_transactions(open, undecided).await?;
            let now = crate::bench::now_ms().max(0) as u64;
            match output.output {
                Output::Plain => print(&list_plain(&transactions, now))?,
                Output::Json => {
                    let list: Vec<serde_json::Value> = transactions.iter().map(|t| transaction_json(t, now)).collect();
                    print_json(&serde_json::Value::Array(list))?;
                }
            }
        }
        TxnCommand::Describe { id, output } => {
            let transaction = admin
                .describe_transaction(&id)
                .await
                .with_context(|| format!("cannot describe transactional id {id}"))?;
            let now = crate::bench::now_ms().max(0) as u64;
            match output.output {
                Output::Plain => print(&describe_plain(&transaction, now))?,
                Output::Json => print_json(&transaction_json(&transaction, now))?,
            }
        }
        TxnCommand::Commit { id } => end(client, &id, true).await?,
        TxnCommand::Abort { id } => end(client, &id, false).await?,
    }
    Ok(())
}

/// Ends `id`'s open transaction; returns once every partition has its marker.
async fn end(client: &Client, id: &str, commit: bool) -> Result<()> {
    let (verb, done) = if commit { ("commit", "committed") } else { ("abort", "aborted") };
    client
        .admin()
        .end_transaction(id, commit)
        .await
        .with_context(|| format!("cannot {verb} the transaction of {id}"))?;
    print(&format!("{done} the transaction of {id}\n"))?;
    Ok(())
}
