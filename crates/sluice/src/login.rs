//! Signing in from the command line and managing who may do what: `sluice login` (with a
//! password, or with the one-time setup token of a new server) saves an API token per
//! server in the credentials file; `logout`, `whoami`; `users` (grants, email addresses for
//! pages) and `tokens` for admins and for one's own tokens; `approve` for gated deploys;
//! `tokens generate` for automation.
//!
//! The credentials file is `$SLUICE_CONFIG_DIR/credentials.json`, else
//! `$XDG_CONFIG_HOME/sluice/credentials.json`, else `~/.config/sluice/credentials.json`,
//! written with mode 0600. `SLUICE_TOKEN` overrides it.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Read, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Value, json};
use sluice_secrets::Zeroizing;

use crate::client::{Client, enc};
use crate::exit::{CliError, Exit};
use crate::table::{self, print_json};
use crate::{ClientOpts, Output};

fn credentials_path() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("SLUICE_CONFIG_DIR") {
        return Some(PathBuf::from(d).join("credentials.json"));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("sluice").join("credentials.json"))
}

/// A saved sign-in: the token and its id (to revoke it at logout).
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    token: String,
    id: String,
}

fn read_credentials() -> BTreeMap<String, Saved> {
    credentials_path()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn write_credentials(creds: &BTreeMap<String, Saved>) -> Result<PathBuf, CliError> {
    let path = credentials_path().ok_or_else(|| {
        CliError::new(Exit::Server, "cannot tell where to keep credentials")
            .hint("set SLUICE_CONFIG_DIR or HOME")
    })?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    sluice_server::engine::access::write_private(
        &path,
        &serde_json::to_vec_pretty(creds).unwrap_or_default(),
    )?;
    Ok(path)
}

/// The token `sluice login` saved for `base`, if any.
pub fn saved_token(base: &str) -> Option<String> {
    read_credentials()
        .remove(base.trim_end_matches('/'))
        .map(|s| s.token)
}

/// Reads a secret (a password, a key, a secret's value) from standard input, never from the
/// command line: one line after a prompt on a terminal (the input is shown), else the first
/// line, or with `whole` everything. One trailing newline is dropped; nothing is a usage error.
pub fn read_secret(what: &str, whole: bool) -> Result<Zeroizing<Vec<u8>>, CliError> {
    let stdin = std::io::stdin();
    let mut buf = Zeroizing::new(Vec::new());
    let terminal = stdin.is_terminal();
    if terminal {
        eprint!("{what} (one line; the input is shown): ");
        let _ = std::io::stderr().flush();
    }
    if whole && !terminal {
        stdin.lock().read_to_end(&mut buf)?;
    } else {
        stdin.lock().read_until(b'\n', &mut buf)?;
    }
    if buf.ends_with(b"\n") {
        buf.pop();
        if buf.ends_with(b"\r") {
            buf.pop();
        }
    }
    if buf.is_empty() {
        return Err(CliError::new(
            Exit::Usage,
            format!("no {what} on standard input"),
        ));
    }
    Ok(buf)
}

/// [`read_secret`] as text.
pub fn read_secret_text(what: &str, whole: bool) -> Result<Zeroizing<String>, CliError> {
    let bytes = read_secret(what, whole)?;
    std::str::from_utf8(&bytes)
        .map(|t| Zeroizing::new(t.to_string()))
        .map_err(|_| CliError::new(Exit::Usage, format!("the {what} is not text")))
}

/// `sluice login`.
#[derive(Args)]
pub struct LoginArgs {
    /// User name (default: admin with --setup-token, else required).
    #[arg(long, short = 'u')]
    user: Option<String>,
    /// The one-time setup token a new server printed (or an admin's `users reset`): sets
    /// the password, read from standard input, then signs in.
    #[arg(long)]
    setup_token: Option<String>,
    #[command(flatten)]
    c: ClientOpts,
}

/// `sluice login`: asks for the password (standard input; a terminal prompts), gets an API
/// token for this machine and saves it for the server.
pub async fn login(a: LoginArgs) -> Result<i32, CliError> {
    let client = Client::with_token(&a.c.server, None);
    let v: Value = match &a.setup_token {
        Some(t) => {
            let password = read_secret_text("new password", false)?;
            let mut body = json!({"setup_token": t, "password": password.as_str()});
            if let Some(u) = &a.user {
                body["user"] = json!(u);
            }
            client.post("/setup", &body).await?
        }
        None => {
            let user = a.user.clone().ok_or_else(|| {
                CliError::new(Exit::Usage, "name the user with --user")
                    .hint("first time on a new server? use --setup-token from its first start")
            })?;
            let password = read_secret_text("password", false)?;
            let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "cli".into());
            client
                .post(
                    "/login",
                    &json!({"user": user, "password": password.as_str(), "token_name": format!("sluice login on {host}")}),
                )
                .await?
        }
    };
    let token = v["token"]
        .as_str()
        .ok_or_else(|| CliError::new(Exit::Server, "the server answered no token"))?;
    let mut creds = read_credentials();
    creds.insert(
        client.base().to_string(),
        Saved {
            token: token.to_string(),
            id: v["token_id"].as_str().unwrap_or_default().to_string(),
        },
    );
    let path = write_credentials(&creds)?;
    eprintln!(
        "signed in to {} as {} (token saved in {})",
        client.base(),
        v["user"].as_str().unwrap_or("?"),
        path.display()
    );
    Ok(0)
}

/// `sluice logout`: revokes this machine's token and forgets it.
pub async fn logout(c: ClientOpts) -> Result<i32, CliError> {
    let client = Client::new(&c.server);
    let mut creds = read_credentials();
    let Some(saved) = creds.remove(client.base()) else {
        eprintln!("not signed in to {}", client.base());
        return Ok(0);
    };
    if let Err(e) = client.delete(&format!("/tokens/{}", saved.id)).await {
        eprintln!(
            "warning: could not revoke the token on the server: {}",
            e.message
        );
    }
    write_credentials(&creds)?;
    eprintln!("signed out of {}", client.base());
    Ok(0)
}

/// `sluice whoami`.
pub async fn whoami(c: ClientOpts) -> Result<i32, CliError> {
    let v: Value = Client::new(&c.server).get("/whoami").await?;
    match c.output {
        Output::Json => print_json(&v),
        Output::Text => {
            let p = &v["principal"];
            println!(
                "{} ({})",
                v["user"].as_str().unwrap_or("?"),
                p["kind"].as_str().unwrap_or("?")
            );
            if let Some(scopes) = p["scopes"].as_array() {
                let s: Vec<&str> = scopes.iter().filter_map(Value::as_str).collect();
                println!("scopes: {}", s.join(", "));
            }
            for g in p["grants"].as_array().into_iter().flatten() {
                println!(
                    "{} on project {} environment {}",
                    g["role"].as_str().unwrap_or("?"),
                    g["project"].as_str().unwrap_or("*"),
                    g["environment"].as_str().unwrap_or("*")
                );
            }
        }
    }
    Ok(0)
}

/// `sluice users ...`.
#[derive(Subcommand)]
pub enum UsersCmd {
    /// List users and their grants.
    List {
        #[command(flatten)]
        c: ClientOpts,
    },
    /// Add a user; prints the one-time setup token with which they choose a password.
    Add {
        /// The user's name.
        name: String,
        /// Make them an instance admin.
        #[arg(long)]
        admin: bool,
        #[command(flatten)]
        c: ClientOpts,
    },
    /// Grant a role (viewer, developer, releaser, admin), on one project and environment or all.
    Grant(GrantArgs),
    /// Take a grant back (same arguments as `grant`).
    Revoke(GrantArgs),
    /// Disable a user: they cannot sign in and their tokens stop working.
    Disable {
        /// The user's name.
        name: String,
        #[command(flatten)]
        c: ClientOpts,
    },
    /// Enable a disabled user again.
    Enable {
        /// The user's name.
        name: String,
        #[command(flatten)]
        c: ClientOpts,
    },
    /// Set the email address a user's pages go to ("" removes it).
    SetEmail {
        /// The user's name.
        name: String,
        /// The address, e.g. `alice@example.com`; "" removes it.
        email: String,
        #[command(flatten)]
        c: ClientOpts,
    },
    /// End a user's sessions and print a one-time token to set a new password.
    Reset {
        /// The user's name.
        name: String,
        #[command(flatten)]
        c: ClientOpts,
    },
    /// Remove a user.
    Rm {
        /// The user's name.
        name: String,
        #[command(flatten)]
        c: ClientOpts,
    },
}

/// A grant, as `users grant` and `users revoke` name it.
#[derive(Args)]
pub struct GrantArgs {
    /// The user's name.
    name: String,
    /// The role.
    role: String,
    /// The grant's project (default: all).
    #[arg(long)]
    project: Option<String>,
    /// The grant's environment (default: all).
    #[arg(long, visible_alias = "env")]
    environment: Option<String>,
    #[command(flatten)]
    c: ClientOpts,
}

impl GrantArgs {
    fn path_and_body(&self) -> (String, Value) {
        (
            format!("/users/{}/grants", self.name),
            json!({"role": self.role.to_lowercase(), "project": self.project, "environment": self.environment}),
        )
    }
}

fn setup_hint(client: &Client, v: &Value) {
    if let Some(t) = v["setup_token"].as_str() {
        println!("one-time setup token (valid 24 hours): {t}");
        println!(
            "the user sets a password at {}/setup?token={t} or with `sluice login --setup-token {t} --user NAME`",
            client.base()
        );
    }
}

/// Runs a `users` subcommand.
pub async fn users(cmd: UsersCmd) -> Result<i32, CliError> {
    match cmd {
        UsersCmd::List { c } => {
            let v: Vec<Value> = Client::new(&c.server).get("/users").await?;
            if c.output == Output::Json {
                print_json(&Value::Array(v));
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = v
                .iter()
                .map(|u| {
                    let grants: Vec<String> = u["grants"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|g| {
                            format!(
                                "{}@{}/{}",
                                g["role"].as_str().unwrap_or("?"),
                                g["project"].as_str().unwrap_or("*"),
                                g["environment"].as_str().unwrap_or("*")
                            )
                        })
                        .collect();
                    vec![
                        u["user"]["name"].as_str().unwrap_or("?").to_string(),
                        if u["user"]["admin"] == true {
                            "yes"
                        } else {
                            ""
                        }
                        .into(),
                        if u["user"]["disabled"] == true {
                            "disabled"
                        } else {
                            ""
                        }
                        .into(),
                        u["user"]["email"].as_str().unwrap_or("").to_string(),
                        grants.join(" "),
                    ]
                })
                .collect();
            table::print(&["USER", "ADMIN", "STATE", "EMAIL", "GRANTS"], &rows);
        }
        UsersCmd::Add { name, admin, c } => {
            let client = Client::new(&c.server);
            let v: Value = client
                .post("/users", &json!({"name": name, "admin": admin}))
                .await?;
            if c.output == Output::Json {
                print_json(&v);
            } else {
                println!("added user {name}");
                setup_hint(&client, &v);
            }
        }
        UsersCmd::Grant(g) => {
            let (path, body) = g.path_and_body();
            let _: Value = Client::new(&g.c.server).post(&path, &body).await?;
            println!("granted {} to {}", g.role, g.name);
        }
        UsersCmd::Revoke(g) => {
            let (path, body) = g.path_and_body();
            Client::new(&g.c.server).delete_json(&path, &body).await?;
            println!("revoked {} from {}", g.role, g.name);
        }
        UsersCmd::Disable { name, c } => set_disabled(&c, &name, true).await?,
        UsersCmd::Enable { name, c } => set_disabled(&c, &name, false).await?,
        UsersCmd::SetEmail { name, email, c } => {
            let email = email.trim();
            let v: Value = Client::new(&c.server)
                .patch(&format!("/users/{}", enc(&name)), &json!({"email": email}))
                .await?;
            if c.output == Output::Json {
                print_json(&v);
            } else if email.is_empty() {
                println!("removed the email address of {name}: they cannot be paged");
            } else {
                println!("pages for {name} go to {email}");
            }
        }
        UsersCmd::Reset { name, c } => {
            let client = Client::new(&c.server);
            let v: Value = client
                .post(&format!("/users/{name}/setup-token"), &json!({}))
                .await?;
            setup_hint(&client, &v);
        }
        UsersCmd::Rm { name, c } => {
            Client::new(&c.server)
                .delete(&format!("/users/{name}"))
                .await?;
            println!("removed user {name}");
        }
    }
    Ok(0)
}

async fn set_disabled(c: &ClientOpts, name: &str, disabled: bool) -> Result<(), CliError> {
    let _: Value = Client::new(&c.server)
        .patch(&format!("/users/{name}"), &json!({"disabled": disabled}))
        .await?;
    println!("{} {name}", if disabled { "disabled" } else { "enabled" });
    Ok(())
}

/// `sluice tokens ...`: one's own API tokens.
#[derive(Subcommand)]
pub enum TokensCmd {
    /// List your tokens (never their values).
    List {
        #[command(flatten)]
        c: ClientOpts,
    },
    /// Make a token; its value is printed once.
    New {
        /// A label, e.g. what uses it.
        name: String,
        /// What it may do (repeat): read, run, deploy, secrets, operate, admin.
        #[arg(long = "scope", required = true)]
        scopes: Vec<String>,
        /// Days until it expires (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
        #[command(flatten)]
        c: ClientOpts,
    },
    /// Revoke a token by id.
    Revoke {
        /// The token's id (see `sluice tokens list`).
        id: String,
        #[command(flatten)]
        c: ClientOpts,
    },
    /// Print a new random admin token for `SLUICE_ADMIN_TOKEN` (offline; nothing is stored).
    Generate,
}

/// Runs a `tokens` subcommand.
pub async fn tokens(cmd: TokensCmd) -> Result<i32, CliError> {
    match cmd {
        TokensCmd::List { c } => {
            let v: Vec<Value> = Client::new(&c.server).get("/tokens").await?;
            if c.output == Output::Json {
                print_json(&Value::Array(v));
                return Ok(0);
            }
            let rows: Vec<Vec<String>> = v
                .iter()
                .map(|t| {
                    let state = if !t["revoked_ms"].is_null() {
                        "revoked"
                    } else {
                        "active"
                    };
                    let scopes: Vec<&str> = t["scopes"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(Value::as_str)
                        .collect();
                    vec![
                        t["id"].as_str().unwrap_or("?").to_string(),
                        t["name"].as_str().unwrap_or("").to_string(),
                        scopes.join(","),
                        state.to_string(),
                    ]
                })
                .collect();
            table::print(&["ID", "NAME", "SCOPES", "STATE"], &rows);
        }
        TokensCmd::New {
            name,
            scopes,
            expires_in_days,
            c,
        } => {
            let v: Value = Client::new(&c.server)
                .post(
                    "/tokens",
                    &json!({"name": name, "scopes": scopes.iter().map(|s| s.to_lowercase()).collect::<Vec<_>>(), "expires_in_days": expires_in_days}),
                )
                .await?;
            if c.output == Output::Json {
                print_json(&v);
            } else {
                println!("{}", v["token"].as_str().unwrap_or_default());
                eprintln!(
                    "token {} made; this is the only time its value is shown",
                    v["info"]["id"].as_str().unwrap_or("?")
                );
            }
        }
        TokensCmd::Revoke { id, c } => {
            Client::new(&c.server)
                .delete(&format!("/tokens/{id}"))
                .await?;
            println!("revoked token {id}");
        }
        TokensCmd::Generate => {
            let (token, _) = sluice_auth::token::generate_token(sluice_auth::TokenKind::Api)
                .map_err(|e| CliError::new(Exit::Server, e.to_string()))?;
            println!("{token}");
        }
    }
    Ok(0)
}

/// `sluice approve`.
#[derive(Args)]
pub struct ApproveArgs {
    /// The deployment waiting for approval (see `sluice deploys`).
    id: i64,
    /// Why, for the audit trail.
    #[arg(long, short = 'm')]
    comment: Option<String>,
    #[command(flatten)]
    c: ClientOpts,
}

/// Approves a deployment waiting at its gate.
pub async fn approve(a: ApproveArgs) -> Result<i32, CliError> {
    let v: Value = Client::new(&a.c.server)
        .post(
            &format!("/deployments/{}/approve", a.id),
            &json!({"comment": a.comment}),
        )
        .await?;
    if a.c.output == Output::Json {
        print_json(&v);
    } else {
        println!("approved deployment {}; {}", a.id, gate_text(&v["gate"]));
    }
    Ok(0)
}

/// A gate as words: "ready", "needs 1 more approval (1 of 2)", "waiting until ...".
pub fn gate_text(g: &Value) -> String {
    match g["state"].as_str() {
        Some("ready") => "the gate is open; the deployment proceeds".into(),
        Some("needs_approvals") => {
            let (have, need) = (
                g["have"].as_u64().unwrap_or(0),
                g["need"].as_u64().unwrap_or(0),
            );
            format!(
                "waiting for approvals: {have} of {need} (`sluice approve` by someone else with the releaser role)"
            )
        }
        Some("waiting") => {
            let until = g["until_ms"].as_i64().unwrap_or(0);
            let left = (until - sluice_server::engine::now_ms()).max(0);
            format!(
                "approved; the wait timer runs {}s more",
                (left + 999) / 1000
            )
        }
        _ => g.to_string(),
    }
}
