//! Secret commands: `secrets set|list|rm|rotate-key` and `unseal`. Values and keys are read
//! from standard input or a file, never from the command line (where shell history and the
//! process list would keep them), and nothing the server answers contains a value.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use sluice_secrets::{Kek, SecretsError, Zeroizing};

use crate::client::{Client, enc};
use crate::exit::{CliError, Exit};
use crate::login::{read_secret, read_secret_text};
use crate::table::{self, cell, print_json};
use crate::{ClientOpts, Output};

/// `sluice secrets`.
#[derive(Subcommand)]
pub enum SecretsCmd {
    /// Set a secret; the value is read from standard input (or --from-file), never from the command line.
    Set(SetArgs),
    /// List a project's secrets: names, environments and versions (values are never shown).
    List {
        /// Project.
        project: String,
        #[command(flatten)]
        c: ClientOpts,
    },
    /// Delete a secret (its versions are kept sealed for the audit trail).
    Rm {
        /// Project.
        project: String,
        /// Secret name.
        name: String,
        /// Environment; without it, the project-wide secret.
        #[arg(long)]
        env: Option<String>,
        #[command(flatten)]
        c: ClientOpts,
    },
    /// Re-encrypt every secret under a new key-encryption key (admins).
    RotateKey(RotateArgs),
}

/// `sluice secrets set` options.
#[derive(Args)]
pub struct SetArgs {
    /// Project.
    project: String,
    /// Secret name: letters, digits and `_`, not starting with a digit (steps and services refer to it in sluice.yml).
    name: String,
    /// Environment the value is for; without it, every environment of the project (an environment's own value wins).
    #[arg(long)]
    env: Option<String>,
    /// Read the value from this file, byte for byte; without it, standard input is read (one trailing newline is dropped).
    #[arg(long, value_name = "FILE")]
    from_file: Option<PathBuf>,
    #[command(flatten)]
    c: ClientOpts,
}

/// `sluice secrets rotate-key` options.
#[derive(Args)]
pub struct RotateArgs {
    /// The new key: read from FILE, or generated into FILE (mode 0600) when it does not exist. Required when the server's key comes from SLUICE_KEK. Without it the server generates the key and rewrites its key file.
    #[arg(long, value_name = "FILE")]
    new_key_file: Option<PathBuf>,
    #[command(flatten)]
    c: ClientOpts,
}

/// `sluice unseal` options.
#[derive(Args)]
pub struct UnsealArgs {
    /// The key file (`sluice-kek-v1:…`); without it, the key is read from standard input.
    #[arg(long, value_name = "FILE")]
    key_file: Option<PathBuf>,
    #[command(flatten)]
    c: ClientOpts,
}

fn secret_path(project: &str, name: &str, env: Option<&str>) -> String {
    let mut path = format!("/projects/{}/secrets/{}", enc(project), enc(name));
    if let Some(env) = env {
        path.push_str(&format!("?env={}", enc(env)));
    }
    path
}

fn local(e: impl std::fmt::Display) -> CliError {
    CliError::new(Exit::Failed, e.to_string())
}

/// `sluice secrets`.
pub async fn secrets(cmd: SecretsCmd) -> Result<i32, CliError> {
    match cmd {
        SecretsCmd::Set(a) => set(a).await,
        SecretsCmd::List { project, c } => {
            let v: Value = Client::new(&c.server)
                .get(&format!("/projects/{}/secrets", enc(&project)))
                .await?;
            if c.output == Output::Json {
                print_json(&v);
                return Ok(0);
            }
            if v["sealed"].as_bool() == Some(true) {
                eprintln!(
                    "note: the server is sealed; secrets cannot be used until `sluice unseal`"
                );
            }
            let rows: Vec<Vec<String>> = v["secrets"]
                .as_array()
                .map(|a| a.as_slice())
                .unwrap_or_default()
                .iter()
                .map(|m| {
                    vec![
                        cell(&m["name"]),
                        cell(&m["environment"]),
                        cell(&m["version"]),
                        cell(&m["updated_by"]),
                    ]
                })
                .collect();
            table::print(&["NAME", "ENVIRONMENT", "VERSION", "UPDATED BY"], &rows);
            Ok(0)
        }
        SecretsCmd::Rm {
            project,
            name,
            env,
            c,
        } => {
            Client::new(&c.server)
                .delete(&secret_path(&project, &name, env.as_deref()))
                .await?;
            if c.output == Output::Text {
                println!(
                    "deleted secret {name} of {project} ({})",
                    env.as_deref().unwrap_or("every environment")
                );
            }
            Ok(0)
        }
        SecretsCmd::RotateKey(a) => rotate_key(a).await,
    }
}

async fn set(a: SetArgs) -> Result<i32, CliError> {
    let value = match &a.from_file {
        Some(f) => Zeroizing::new(std::fs::read(f).map_err(|e| {
            CliError::new(Exit::NotFound, format!("cannot read {}: {e}", f.display()))
        })?),
        None => read_secret(&format!("value of {}", a.name), true).map_err(|e| {
            e.hint(
                "pipe it in, e.g. `sluice secrets set PROJECT NAME < value.txt`, or use --from-file",
            )
        })?,
    };
    let body = match std::str::from_utf8(&value) {
        Ok(text) => json!({ "value": text }),
        Err(_) => {
            let hex: Zeroizing<String> =
                Zeroizing::new(value.iter().map(|b| format!("{b:02x}")).collect());
            json!({ "value_hex": hex.as_str() })
        }
    };
    let v: Value = Client::new(&a.c.server)
        .put(&secret_path(&a.project, &a.name, a.env.as_deref()), &body)
        .await?;
    if a.c.output == Output::Json {
        print_json(&v);
    } else {
        println!(
            "set secret {} of {} ({}), version {}",
            a.name,
            a.project,
            a.env.as_deref().unwrap_or("every environment"),
            cell(&v["version"])
        );
    }
    Ok(0)
}

/// Loads the key in `path`, or generates one there when the file does not exist.
fn key_file(path: &Path) -> Result<(Kek, bool), CliError> {
    match Kek::load(path) {
        Ok(k) => Ok((k, false)),
        Err(SecretsError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            let k = Kek::generate().map_err(local)?;
            k.write_new(path).map_err(local)?;
            Ok((k, true))
        }
        Err(e) => Err(local(e)),
    }
}

async fn rotate_key(a: RotateArgs) -> Result<i32, CliError> {
    let body = match &a.new_key_file {
        Some(path) => {
            let (kek, generated) = key_file(path)?;
            if generated && a.c.output == Output::Text {
                eprintln!(
                    "generated a new key in {} (key id {})",
                    path.display(),
                    kek.key_id()
                );
            }
            json!({ "new_key": kek.to_text().as_str() })
        }
        None => json!({}),
    };
    let v: Value = Client::new(&a.c.server)
        .post("/secrets/rotate-key", &body)
        .await?;
    if a.c.output == Output::Json {
        print_json(&v);
    } else {
        println!("{}", cell(&v["message"]));
        if let Some(path) = &a.new_key_file {
            println!(
                "{} holds the new key: keep it safe, the server cannot be unsealed without it",
                path.display()
            );
        }
    }
    Ok(0)
}

/// `sluice unseal`.
pub async fn unseal(a: UnsealArgs) -> Result<i32, CliError> {
    let key = match &a.key_file {
        Some(path) => Kek::load(path).map_err(local)?,
        None => {
            let text = read_secret_text("key", true).map_err(|e| {
                e.hint("pipe it in, e.g. `sluice unseal < key.txt`, or use --key-file")
            })?;
            Kek::from_text(&text).map_err(local)?
        }
    };
    let v: Value = Client::new(&a.c.server)
        .post("/unseal", &json!({ "key": key.to_text().as_str() }))
        .await?;
    if a.c.output == Output::Json {
        print_json(&v);
    } else {
        println!("{}", cell(&v["message"]));
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_paths_are_encoded() {
        assert_eq!(
            secret_path("shop", "DB_URL", Some("prod eu")),
            "/projects/shop/secrets/DB_URL?env=prod%20eu"
        );
        assert_eq!(secret_path("a/b", "X", None), "/projects/a%2Fb/secrets/X");
    }
}
