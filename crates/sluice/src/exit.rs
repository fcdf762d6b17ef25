//! Exit codes that mean something, and the CLI's error type that carries one.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | the thing asked for failed: a run failed or was cancelled, the file is invalid, the server refused the request |
//! | 2 | usage error (bad flags or arguments) |
//! | 3 | not found (project, run, file) |
//! | 4 | the server could not be reached |
//! | 5 | the server or this machine failed (internal error, IO) |
//! | 6 | not signed in, or not allowed (the server answered 401 or 403) |

/// Exit statuses of the `sluice` command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The thing asked for failed.
    Failed = 1,
    /// Bad usage.
    Usage = 2,
    /// Not found.
    NotFound = 3,
    /// Server unreachable.
    Unreachable = 4,
    /// Internal failure.
    Server = 5,
    /// Not signed in or not allowed.
    Denied = 6,
}

/// An error that ends the command with a message, an optional hint and an exit code.
#[derive(Debug)]
pub struct CliError {
    /// Exit code.
    pub exit: Exit,
    /// What went wrong.
    pub message: String,
    /// What to do.
    pub hint: Option<String>,
}

impl CliError {
    /// A new error.
    pub fn new(exit: Exit, message: impl Into<String>) -> Self {
        CliError {
            exit,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint.
    pub fn hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Some(h.into());
        self
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        CliError::new(Exit::Server, e.to_string())
    }
}
